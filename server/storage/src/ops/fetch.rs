//! Reads that change their item: `touch`, `gat`, and the `mg`s that touch
//! (`T`), create (`N`, vivify), recache (`R`) or win a stale item's token.
//!
//! They go through the commit pipeline rather than the read path so that,
//! of racing clients, exactly one wins a token.

use bytes::Bytes;

use super::{expiry_after, new_item_cas, FetchedItem, Outcome};
use crate::error::WriteError;
use crate::expiry::Expiry;
use crate::record::{Record, MARK_STALE, MARK_TOKEN_SENT};
use crate::txn::Txn;

/// The meta protocol's recache (`R<ttl>`): a hit whose item expires before
/// `limit`, and whose win token was not handed out yet, wins it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recache {
    /// The expiry the item's is compared with.
    pub limit: Expiry,
    /// Compare the touch's new expiry, not the item's old one (the touch
    /// came before the recache in the request).
    pub against_touch: bool,
}

/// A read that may change its item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOp {
    /// The key.
    pub key: Bytes,
    /// On a hit, set the item's expiry.
    pub touch: Option<Expiry>,
    /// On a miss, create an empty item (flags 0) with this expiry; the
    /// request then wins its token.
    pub vivify: Option<Expiry>,
    /// On an item this request created, a touch that came after the
    /// vivify decides the expiry.
    pub touch_after_vivify: bool,
    /// See [`Recache`].
    pub recache: Option<Recache>,
    /// A stale item whose token was not handed out yet hands it to this
    /// request (the meta protocol; a text `touch` never takes tokens).
    pub take_win_token: bool,
    /// The cas unique of an item this request creates.
    pub explicit_cas: Option<u64>,
}

impl FetchOp {
    /// `touch` and `gat`: set the expiry of a live item.
    pub fn touch(key: Bytes, expiry: Expiry) -> FetchOp {
        FetchOp {
            key,
            touch: Some(expiry),
            vivify: None,
            touch_after_vivify: false,
            recache: None,
            take_win_token: false,
            explicit_cas: None,
        }
    }

    /// Whether a read of `record` with this request must go through the
    /// commit pipeline: it would win the stale item's token.
    pub fn read_would_win(record: &Record) -> bool {
        record.has(MARK_STALE) && !record.has(MARK_TOKEN_SENT)
    }
}

pub(super) fn evaluate(op: &FetchOp, txn: &mut Txn<'_>) -> Result<Outcome, WriteError> {
    let now = txn.now();
    let (slot, live) = txn.live_slot(&op.key)?;
    let (old, created) = match live {
        Some(record) => (record, false),
        None if op.vivify.is_some() => {
            let record = Record {
                flags: 0,
                expiry: Expiry::Never,
                cas: new_item_cas(txn, op.explicit_cas),
                version: txn.new_version(),
                marks: 0,
                value: Bytes::new(),
            };
            (record, true)
        }
        None => return Ok(Outcome::NotFound),
    };
    let token_sent = old.has(MARK_TOKEN_SENT);
    let recache_wins = op.recache.is_some_and(|recache| {
        let against = match op.touch {
            Some(touch) if recache.against_touch => touch,
            _ => old.expiry,
        };
        match (against, recache.limit) {
            (Expiry::At(at), Expiry::At(limit)) => !created && !token_sent && at < limit,
            _ => false,
        }
    });
    let won = created || recache_wins || (op.take_win_token && old.has(MARK_STALE) && !token_sent);
    let expiry = expiry_after(
        created,
        op.touch,
        op.vivify,
        op.touch_after_vivify,
        old.expiry,
    );
    let marks = if won {
        old.marks | MARK_TOKEN_SENT
    } else {
        old.marks
    };
    let changed = created || expiry != old.expiry || marks != old.marks;
    let record = Record {
        expiry,
        marks,
        version: if changed && !created {
            txn.new_version()
        } else {
            old.version
        },
        ..old.clone()
    };
    if changed {
        txn.put(&op.key, record.clone(), &slot);
    }
    Ok(Outcome::Fetched(FetchedItem {
        record,
        marks_before: if created { 0 } else { old.marks },
        expiry_before: if created { Expiry::Never } else { old.expiry },
        created,
        won,
        now,
    }))
}
