//! The meta commands' main uses: request builders over the protocol
//! crate's types (every field stays public, set what you need), the
//! decoded item of an `mg`, and stale-while-revalidate.
//!
//! Stale-while-revalidate: a writer marks an item stale instead of
//! deleting it ([`Client::invalidate`], `md <key> I T<secs>`); readers keep
//! getting the stale value, and exactly one of them is handed the win token
//! (`W`) to recompute it ([`Client::get_swr`], `mg <key> v f c t
//! R<secs>`: the token is also handed out when the item's TTL falls below
//! `R`); the winner stores the new value with the cas it read
//! ([`Client::recache`], `ms <key> C<cas>`), which clears the mark. Losers
//! see `Z` (a token is out) and use the value they got.
//!
//! ```no_run
//! # async fn demo(client: mcstore_client::Client) -> mcstore_client::Result<()> {
//! if let Some(item) = client.get_swr("page:/", 30).await? {
//!     if item.won {
//!         let fresh = format!("rendered at {:?}", std::time::SystemTime::now());
//!         client.recache("page:/", fresh, 0, 300, item.cas.unwrap_or(0)).await?;
//!     }
//! }
//! client.invalidate("page:/", 60).await?;
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use mcstore_protocol::{
    MetaArithmetic, MetaArithmeticMode, MetaDelete, MetaFlag, MetaGet, MetaReply, MetaSet,
    MetaSetMode, MetaStatus, ReturnFlag, TtlOrder,
};

use crate::client::{is_text_key, Client};
use crate::error::{Error, Result};

/// An `mg` for `key` asking for the value, flags, cas and TTL (`v f c t`).
/// A key the text protocol cannot carry is sent in base64 (`b`).
pub fn get(key: impl Into<Bytes>) -> MetaGet {
    let key = key.into();
    MetaGet {
        base64_key: !is_text_key(&key),
        key,
        returns: vec![ReturnFlag::Flags, ReturnFlag::Cas, ReturnFlag::Ttl],
        opaque: None,
        value: true,
        quiet: false,
        no_bump: false,
        touch: None,
        vivify: None,
        recache: None,
        new_cas: None,
        ttl_order: TtlOrder::default(),
    }
}

/// An `ms` of `value` under `key` (mode set, flags 0, no TTL), asking for
/// the new cas (`c`).
pub fn set(key: impl Into<Bytes>, value: impl Into<Bytes>) -> MetaSet {
    let key = key.into();
    MetaSet {
        base64_key: !is_text_key(&key),
        key,
        returns: vec![ReturnFlag::Cas],
        opaque: None,
        mode: MetaSetMode::Set,
        flags: 0,
        ttl: None,
        compare_cas: None,
        invalidate: false,
        new_cas: None,
        vivify: None,
        quiet: false,
        value: value.into(),
    }
}

/// An `md` of `key`.
pub fn delete(key: impl Into<Bytes>) -> MetaDelete {
    let key = key.into();
    MetaDelete {
        base64_key: !is_text_key(&key),
        key,
        returns: Vec::new(),
        opaque: None,
        compare_cas: None,
        invalidate: false,
        ttl: None,
        remove_value: false,
        flags: 0,
        new_cas: None,
        quiet: false,
    }
}

/// An `ma` of `key` (increment by 1) asking for the new value (`v`).
pub fn arithmetic(key: impl Into<Bytes>) -> MetaArithmetic {
    let key = key.into();
    MetaArithmetic {
        base64_key: !is_text_key(&key),
        key,
        returns: Vec::new(),
        opaque: None,
        mode: MetaArithmeticMode::Increment,
        delta: 1,
        initial: 0,
        vivify: None,
        ttl: None,
        ttl_order: TtlOrder::default(),
        compare_cas: None,
        new_cas: None,
        value: true,
        quiet: false,
    }
}

/// What an `mg` hit reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MetaItem {
    /// The value (`VA`), `None` for `HD`.
    pub value: Option<Bytes>,
    /// `f`: the client flags.
    pub flags: Option<u32>,
    /// `c`: the cas unique.
    pub cas: Option<u64>,
    /// `t`: seconds left, `-1` for an item that never expires.
    pub ttl: Option<i64>,
    /// `W`: this client won the right to recompute the item.
    pub won: bool,
    /// `X`: the item is stale.
    pub stale: bool,
    /// `Z`: a win token was already handed out.
    pub token_sent: bool,
}

impl MetaItem {
    /// The item an `mg` reply describes; `None` for a miss (`EN`) or any
    /// reply that is not a hit.
    pub fn from_reply(reply: &MetaReply) -> Option<MetaItem> {
        let mut item = MetaItem::default();
        match &reply.status {
            MetaStatus::Value(value) => item.value = Some(value.clone()),
            MetaStatus::Done => {}
            _ => return None,
        }
        for flag in &reply.flags {
            match flag {
                MetaFlag::Flags(flags) => item.flags = Some(*flags),
                MetaFlag::Cas(cas) => item.cas = Some(*cas),
                MetaFlag::Ttl(ttl) => item.ttl = Some(*ttl),
                MetaFlag::Won => item.won = true,
                MetaFlag::Stale => item.stale = true,
                MetaFlag::TokenSent => item.token_sent = true,
                _ => {}
            }
        }
        Some(item)
    }
}

impl Client {
    /// Stale-while-revalidate read (`mg <key> v f c t R<recache_below>`):
    /// the item, with `won` set for the one reader that should recompute it
    /// (it is stale, or has less than `recache_below` seconds left);
    /// `None` on a miss.
    pub async fn get_swr(
        &self,
        key: impl Into<Bytes>,
        recache_below: i32,
    ) -> Result<Option<MetaItem>> {
        let mut request = get(key);
        request.recache = Some(recache_below);
        let reply = self.meta_get(request).await?;
        Ok(MetaItem::from_reply(&reply))
    }

    /// Marks an item stale instead of deleting it (`md <key> I T<stale_for>`):
    /// readers still get it, flagged stale, for `stale_for` seconds, and one
    /// of them wins the token to recompute it. [`Error::NotFound`] without
    /// an item.
    pub async fn invalidate(&self, key: impl Into<Bytes>, stale_for: i32) -> Result<()> {
        let mut request = delete(key);
        request.invalidate = true;
        request.ttl = Some(stale_for);
        let reply = self.meta_delete(request).await?;
        check_reply(&reply).map(|_| ())
    }

    /// Stores a recomputed value if the item's cas is still `cas`
    /// (`ms <key> <len> F<flags> T<exptime> C<cas> c`), which clears the
    /// stale mark; the new cas. [`Error::Exists`] when another write came
    /// first.
    pub async fn recache(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        flags: u32,
        exptime: i32,
        cas: u64,
    ) -> Result<u64> {
        let mut request = set(key, value);
        request.flags = flags;
        request.ttl = Some(exptime);
        request.compare_cas = Some(cas);
        let reply = self.meta_set(request).await?;
        check_reply(&reply)
    }
}

/// A meta reply as a result: `HD`/`VA` give the reply's cas (0 if it has none), the other statuses their errors ([`Error::NotFound`], ...).
pub fn check_reply(reply: &MetaReply) -> Result<u64> {
    match reply.status {
        MetaStatus::Done | MetaStatus::Value(_) => Ok(reply
            .flags
            .iter()
            .find_map(|f| match f {
                MetaFlag::Cas(cas) => Some(*cas),
                _ => None,
            })
            .unwrap_or(0)),
        MetaStatus::NotFound | MetaStatus::Miss => Err(Error::NotFound),
        MetaStatus::NotStored => Err(Error::NotStored),
        MetaStatus::Exists => Err(Error::Exists),
        MetaStatus::Noop => Err(Error::Server("unexpected MN".into())),
    }
}
