//! The meta commands' request types, and their wire encoding (for clients
//! and for the `parse(encode(x)) == x` tests).

use bytes::{BufMut, Bytes};

use super::*;
use crate::request::{put_fmt, StoreMode};

/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`: the longest `O` token, counting the
/// `O` itself (so the opaque value is at most 31 bytes).
pub const MAX_OPAQUE_TOKEN: usize = 32;

/// memcached's `MFLAG_MAX_OPT_LENGTH`: a meta line may have at most this many
/// tokens, counting a terminal one (so 19 real tokens: the command, the key,
/// and 17 flags, or for `ms` the data length and 16 flags).
pub const MAX_META_TOKENS: usize = 20;

/// A meta command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaRequest {
    /// `mg <key> <flags>*`.
    Get(MetaGet),
    /// `ms <key> <datalen> <flags>*` and its data block.
    Set(MetaSet),
    /// `md <key> <flags>*`.
    Delete(MetaDelete),
    /// `ma <key> <flags>*`.
    Arithmetic(MetaArithmetic),
    /// `mn`: answer `MN` (and flush). memcached ignores any tokens after it.
    Noop,
    /// `me <key> [b]`.
    Debug(MetaDebug),
}

/// A flag that asks for something to be echoed in the reply. A request keeps
/// these in the order they were sent, which is the order of the reply flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnFlag {
    /// `c`: the item's cas unique ([`MetaFlag::Cas`]).
    Cas,
    /// `f`: the client flags ([`MetaFlag::Flags`]).
    Flags,
    /// `h`: whether the item was fetched before this request ([`MetaFlag::Hit`]).
    Hit,
    /// `k`: the key ([`MetaFlag::Key`]).
    Key,
    /// `l`: seconds since the last access, before this request
    /// ([`MetaFlag::LastAccess`]).
    LastAccess,
    /// `O<opaque>`: the opaque value ([`MetaFlag::Opaque`]).
    Opaque,
    /// `s`: the value's size ([`MetaFlag::Size`]).
    Size,
    /// `t`: the remaining TTL, `-1` for none ([`MetaFlag::Ttl`]).
    Ttl,
}

impl ReturnFlag {
    pub(super) fn from_byte(byte: u8) -> Option<ReturnFlag> {
        Some(match byte {
            b'c' => ReturnFlag::Cas,
            b'f' => ReturnFlag::Flags,
            b'h' => ReturnFlag::Hit,
            b'k' => ReturnFlag::Key,
            b'l' => ReturnFlag::LastAccess,
            b'O' => ReturnFlag::Opaque,
            b's' => ReturnFlag::Size,
            b't' => ReturnFlag::Ttl,
            _ => return None,
        })
    }

    fn byte(self) -> u8 {
        match self {
            ReturnFlag::Cas => b'c',
            ReturnFlag::Flags => b'f',
            ReturnFlag::Hit => b'h',
            ReturnFlag::Key => b'k',
            ReturnFlag::LastAccess => b'l',
            ReturnFlag::Opaque => b'O',
            ReturnFlag::Size => b's',
            ReturnFlag::Ttl => b't',
        }
    }
}

/// `mg <key> <flags>*`: fetch (and maybe touch or create) one item.
///
/// Replies: on a hit `VA <size> <flags>` and the value when `value`, else
/// `HD <flags>`, with [`return_flags`] for every entry of `returns` and then,
/// in this order, `Z` if the item already handed out a win token, `X` if it
/// is stale, `W` if this request wins (created by `vivify`, or `recache`
/// applies, or the item is stale and no token was sent yet). On a miss (and
/// no `vivify`) `EN`, with only the `O` and `k` flags; `quiet` hides that
/// `EN` and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaGet {
    /// The key; already decoded when `base64_key`.
    pub key: Bytes,
    /// `b`: the key was sent in base64. On a miss a `k` in the reply
    /// re-encodes it and adds `b`; on a hit memcached follows the stored
    /// item's binary-key mark instead (see [`return_flags`]).
    pub base64_key: bool,
    /// `c f h k l O s t`, in request order: what the reply echoes.
    pub returns: Vec<ReturnFlag>,
    /// `O<opaque>`: the bytes after the `O` (at most 31).
    pub opaque: Option<Bytes>,
    /// `v`: answer `VA` with the value instead of `HD`.
    pub value: bool,
    /// `q`: send nothing on a miss.
    pub quiet: bool,
    /// `u`: do not bump the item in the LRU, nor mark it fetched, nor
    /// update its last-access time.
    pub no_bump: bool,
    /// `T<exptime>`: on a hit, set the item's exptime (as for `touch`).
    pub touch: Option<i32>,
    /// `N<exptime>`: on a miss, create an empty item (flags 0) with this
    /// exptime and answer as a hit carrying `W`.
    pub vivify: Option<i32>,
    /// `R<exptime>`: on a hit whose item has an exptime earlier than this
    /// exptime (converted as exptimes are), and which has not sent a win
    /// token yet, answer with `W` and mark the token sent.
    pub recache: Option<i32>,
    /// `E<cas>` (newer than 1.6.18): the cas unique of an item this request
    /// creates with `vivify`, instead of the next one. An item that exists
    /// keeps its cas.
    pub new_cas: Option<u64>,
    /// Where `T` and `N` stood relative to `t`; see [`MetaGet::exptime`].
    pub ttl_order: TtlOrder,
}

impl MetaGet {
    /// Which exptime an `mg` that found or created (`created`) its item
    /// leaves on it, or (`at_ttl`) which one its `t` flag reports.
    /// [`ExptimeChange::Unchanged`] means the item's exptime as it was (for
    /// an item this request created: none, `t-1`).
    pub fn exptime(&self, created: bool, at_ttl: bool) -> ExptimeChange {
        self.ttl_order
            .exptime(self.touch, self.vivify, created, at_ttl)
    }

    /// The exptime `recache` (`R`) is compared with on a hit: the `T`
    /// exptime when `T` came before `R`, else `None` (the item's exptime as
    /// it was before this request).
    pub fn recache_compares_with(&self) -> Option<i32> {
        self.touch.filter(|_| self.ttl_order.touch_before_recache)
    }
}

/// Where `T` and `N` stood relative to `t` (and to each other) in an `mg`
/// or `ma`. memcached applies `T`, and `N` on an item the request created,
/// at their positions among the flags, so a `t` reports the exptime as it
/// is at its own position, and the later of `T` and `N` decides a created
/// item's exptime. Each field is false unless both flags were sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TtlOrder {
    /// `T` came before `t`.
    pub touch_before_ttl: bool,
    /// `N` came before `t`.
    pub vivify_before_ttl: bool,
    /// `N` came before `T`.
    pub vivify_before_touch: bool,
    /// `T` came before `R` (`mg`): `R` then compares against the `T`
    /// exptime instead of the item's previous one.
    pub touch_before_recache: bool,
}

/// The exptime an `mg`/`ma` sets, or its `t` flag reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExptimeChange {
    /// The item's exptime is left as it was.
    Unchanged,
    /// The `T` exptime.
    Touch(i32),
    /// The `N` exptime (only for an item the request created).
    Vivify(i32),
}

impl TtlOrder {
    fn exptime(
        self,
        touch: Option<i32>,
        vivify: Option<i32>,
        created: bool,
        at_ttl: bool,
    ) -> ExptimeChange {
        let touch = touch.filter(|_| !at_ttl || self.touch_before_ttl);
        let vivify = vivify.filter(|_| created && (!at_ttl || self.vivify_before_ttl));
        match (touch, vivify) {
            (Some(touch), Some(_)) if self.vivify_before_touch => ExptimeChange::Touch(touch),
            (_, Some(vivify)) => ExptimeChange::Vivify(vivify),
            (Some(touch), None) => ExptimeChange::Touch(touch),
            (None, None) => ExptimeChange::Unchanged,
        }
    }

    /// Computes the order from the flags' positions.
    pub(super) fn from_positions(
        touch: Option<usize>,
        vivify: Option<usize>,
        ttl: Option<usize>,
        recache: Option<usize>,
    ) -> Self {
        let before =
            |a: Option<usize>, b: Option<usize>| matches!((a, b), (Some(a), Some(b)) if a < b);
        TtlOrder {
            touch_before_ttl: before(touch, ttl),
            vivify_before_ttl: before(vivify, ttl),
            vivify_before_touch: before(vivify, touch),
            touch_before_recache: before(touch, recache),
        }
    }
}

/// The `M` mode of `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetaSetMode {
    /// `MS` (the default): store unconditionally, or compare-and-swap with `C`.
    #[default]
    Set,
    /// `ME`: store only if there is no live item (`NS` otherwise).
    Add,
    /// `MR`: store only if there is a live item (`NS` otherwise); with `C`
    /// it behaves exactly like `Set` with `C`.
    Replace,
    /// `MA`: append to the live item's data (`NS` without one).
    Append,
    /// `MP`: prepend to the live item's data (`NS` without one).
    Prepend,
}

impl MetaSetMode {
    /// The mode for an `M` token's second byte, as memcached 1.6.18 reads it.
    pub fn from_byte(byte: u8) -> Option<MetaSetMode> {
        Some(match byte {
            b'S' => MetaSetMode::Set,
            b'E' => MetaSetMode::Add,
            b'R' => MetaSetMode::Replace,
            b'A' => MetaSetMode::Append,
            b'P' => MetaSetMode::Prepend,
            _ => return None,
        })
    }

    /// The byte after `M` on the wire.
    pub fn byte(self) -> u8 {
        match self {
            MetaSetMode::Set => b'S',
            MetaSetMode::Add => b'E',
            MetaSetMode::Replace => b'R',
            MetaSetMode::Append => b'A',
            MetaSetMode::Prepend => b'P',
        }
    }
}

/// `ms <key> <datalen> <flags>*` and its data block: store an item.
///
/// Replies: `HD` (stored), `NS` (not stored: add/replace/append/prepend
/// condition failed), `EX` (cas mismatch), `NF` (cas given, no item), each
/// followed by the `returns` flags: `O`, `k`, and `c` with the new cas (0
/// when nothing was stored). `quiet` hides `HD` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaSet {
    /// The key; already decoded when `base64_key`.
    pub key: Bytes,
    /// `b`: the key was sent in base64; the stored item remembers that its
    /// key is binary (for `k` and `me`).
    pub base64_key: bool,
    /// `c`, `k`, `O` in request order: what the reply echoes.
    pub returns: Vec<ReturnFlag>,
    /// `O<opaque>`: the bytes after the `O` (at most 31).
    pub opaque: Option<Bytes>,
    /// `M<mode>`.
    pub mode: MetaSetMode,
    /// `F<flags>`: the client flags (0 when absent).
    pub flags: u32,
    /// `T<exptime>`: the item's exptime (never expires when absent).
    pub ttl: Option<i32>,
    /// `C<cas>`: compare with the item's cas unique (see [`MetaSet::store_mode`]).
    pub compare_cas: Option<u64>,
    /// `I`: with a compare-and-swap, a cas *lower* than the item's is
    /// accepted and the new item is marked stale.
    pub invalidate: bool,
    /// `E<cas>` (newer than 1.6.18): the stored item's cas unique, instead
    /// of the next one.
    pub new_cas: Option<u64>,
    /// `N<exptime>` (newer than 1.6.18): in append and prepend mode, a miss
    /// stores the data as a new item with this exptime (`T` is ignored)
    /// instead of answering `NS`. Ignored in the other modes.
    pub vivify: Option<i32>,
    /// `q`: do not send `HD`.
    pub quiet: bool,
    /// The data block, without its `\r\n`.
    pub value: Bytes,
}

impl MetaSet {
    /// The storage operation memcached performs: `Set` and `Replace` with a
    /// `C` become a compare-and-swap. `Append` and `Prepend` with a non-zero
    /// `C` also refuse (`EX`) when the item's cas differs; `Add` ignores `C`.
    pub fn store_mode(&self) -> StoreMode {
        match (self.mode, self.compare_cas) {
            (MetaSetMode::Set | MetaSetMode::Replace, Some(cas)) => StoreMode::Cas(cas),
            (MetaSetMode::Set, None) => StoreMode::Set,
            (MetaSetMode::Replace, None) => StoreMode::Replace,
            (MetaSetMode::Add, _) => StoreMode::Add,
            (MetaSetMode::Append, _) => StoreMode::Append,
            (MetaSetMode::Prepend, _) => StoreMode::Prepend,
        }
    }
}

/// `md <key> <flags>*`: delete an item, or mark it stale.
///
/// Replies: `HD` (deleted or marked stale), `NF` (no item), `EX` (`C` given
/// and different from the item's cas), each followed by the `returns` flags
/// (`O`, `k`). `quiet` hides `HD` only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDelete {
    /// The key; already decoded when `base64_key`.
    pub key: Bytes,
    /// `b`: the key was sent in base64.
    pub base64_key: bool,
    /// `k`, `O` in request order: what the reply echoes.
    pub returns: Vec<ReturnFlag>,
    /// `O<opaque>`: the bytes after the `O` (at most 31).
    pub opaque: Option<Bytes>,
    /// `C<cas>`: delete only if the item's cas unique equals this.
    pub compare_cas: Option<u64>,
    /// `I`: do not delete; mark the item stale, give it a new cas unique and
    /// clear its "win token sent" mark.
    pub invalidate: bool,
    /// `T<exptime>`: with `I`, also set the item's exptime; with
    /// `remove_value`, the emptied item's exptime. Ignored otherwise.
    pub ttl: Option<i32>,
    /// `x` (newer than 1.6.18): do not delete; replace the item with an
    /// empty one (client flags `flags`, exptime `ttl` or none, the old cas
    /// unique or `new_cas`, no marks). With `invalidate` that item is then
    /// marked stale as `I` does.
    pub remove_value: bool,
    /// `F<flags>`: the client flags of the item `remove_value` leaves
    /// (0 when absent). Ignored otherwise.
    pub flags: u32,
    /// `E<cas>` (newer than 1.6.18): the cas unique given by `invalidate`
    /// (instead of the next one) or by `remove_value` (instead of the old
    /// item's).
    pub new_cas: Option<u64>,
    /// `q`: do not send `HD`.
    pub quiet: bool,
}

/// The `M` mode of `ma`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MetaArithmeticMode {
    /// `MI` or `M+` (the default): add, wrapping at 2^64.
    #[default]
    Increment,
    /// `MD` or `M-`: subtract, stopping at 0.
    Decrement,
}

/// `ma <key> <flags>*`: increment or decrement a decimal value.
///
/// Replies: `HD`, or `VA <len>` and the new value when `value`, followed by
/// the `returns` flags (`c` new cas, `t` TTL, `O`, `k`); `NF` (no item and
/// no `vivify`) or `EX` (cas mismatch) with only `O` and `k`; `CLIENT_ERROR
/// cannot increment or decrement non-numeric value` for a value that is not a
/// number. `quiet` hides `HD`/`VA` for an existing item, but memcached 1.6.18
/// still answers when the item was just created by `vivify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaArithmetic {
    /// The key; already decoded when `base64_key`.
    pub key: Bytes,
    /// `b`: the key was sent in base64.
    pub base64_key: bool,
    /// `c`, `t`, `k`, `O` in request order: what the reply echoes.
    pub returns: Vec<ReturnFlag>,
    /// `O<opaque>`: the bytes after the `O` (at most 31).
    pub opaque: Option<Bytes>,
    /// `M<mode>`.
    pub mode: MetaArithmeticMode,
    /// `D<delta>` (default 1).
    pub delta: u64,
    /// `J<initial>`: the value of an item created by `vivify` (default 0).
    pub initial: u64,
    /// `N<exptime>`: on a miss, create the item with value `initial`
    /// (the delta is not applied) and this exptime.
    pub vivify: Option<i32>,
    /// `T<exptime>`: on success, set the item's exptime.
    pub ttl: Option<i32>,
    /// Where `T` and `N` stood relative to `t`; see [`MetaArithmetic::exptime`].
    pub ttl_order: TtlOrder,
    /// `C<cas>`: apply only if the item's cas unique equals this (0 compares
    /// nothing).
    pub compare_cas: Option<u64>,
    /// `E<cas>` (newer than 1.6.18): the cas unique of the updated or
    /// created item, instead of the next one.
    pub new_cas: Option<u64>,
    /// `v`: answer `VA` with the new value instead of `HD`.
    pub value: bool,
    /// `q`: see the type's documentation.
    pub quiet: bool,
}

impl MetaArithmetic {
    /// Which exptime an `ma` that updated or created (`created`) its item
    /// leaves on it, or (`at_ttl`) which one its `t` flag reports.
    /// [`ExptimeChange::Unchanged`] means the item's exptime as it was (for
    /// an item this request created: none, `t-1`).
    pub fn exptime(&self, created: bool, at_ttl: bool) -> ExptimeChange {
        self.ttl_order
            .exptime(self.ttl, self.vivify, created, at_ttl)
    }
}

/// `me <key> [b]`: the debug dump of an item. Replies [`MetaDebugInfo`]
/// (`ME ...`) on a hit, `EN` on a miss. It does not bump the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDebug {
    /// The key; already decoded when `base64_key`.
    pub key: Bytes,
    /// The token after the key was exactly `b`: the key was sent in base64.
    pub base64_key: bool,
}

impl MetaRequest {
    /// Whether the request may change stored data: `ms`, `md`, `ma`, and an
    /// `mg` with `T` (touch), `N` (vivify) or `R` (recache: may hand out the
    /// win token, which is recorded on the item). A plain `mg` can change
    /// the item too when it is stale and wins its token; a server learns
    /// that only by reading the item.
    pub fn is_write(&self) -> bool {
        match self {
            MetaRequest::Set(_) | MetaRequest::Delete(_) | MetaRequest::Arithmetic(_) => true,
            MetaRequest::Get(get) => {
                get.touch.is_some() || get.vivify.is_some() || get.recache.is_some()
            }
            MetaRequest::Noop | MetaRequest::Debug(_) => false,
        }
    }

    /// Writes the request in wire format (flags in a canonical order, the
    /// return flags in their order).
    pub fn encode(&self, out: &mut impl BufMut) {
        match self {
            MetaRequest::Get(get) => {
                out.put_slice(b"mg ");
                put_key(out, &get.key, get.base64_key);
                put_switch(out, b'b', get.base64_key);
                put_ordered(
                    out,
                    &get.returns,
                    get.opaque.as_ref(),
                    [get.touch, get.vivify, get.recache],
                    get.ttl_order,
                );
                put_switch(out, b'v', get.value);
                put_switch(out, b'q', get.quiet);
                put_switch(out, b'u', get.no_bump);
                put_number(out, b'E', get.new_cas);
                out.put_slice(b"\r\n");
            }
            MetaRequest::Set(set) => {
                out.put_slice(b"ms ");
                put_key(out, &set.key, set.base64_key);
                put_fmt(out, format_args!(" {}", set.value.len()));
                put_switch(out, b'b', set.base64_key);
                put_returns(out, &set.returns, set.opaque.as_ref());
                if set.mode != MetaSetMode::Set {
                    out.put_slice(&[b' ', b'M', set.mode.byte()]);
                }
                if set.flags != 0 {
                    put_fmt(out, format_args!(" F{}", set.flags));
                }
                put_number(out, b'T', set.ttl);
                put_number(out, b'C', set.compare_cas);
                put_switch(out, b'I', set.invalidate);
                put_number(out, b'E', set.new_cas);
                put_number(out, b'N', set.vivify);
                put_switch(out, b'q', set.quiet);
                out.put_slice(b"\r\n");
                out.put_slice(&set.value);
                out.put_slice(b"\r\n");
            }
            MetaRequest::Delete(delete) => {
                out.put_slice(b"md ");
                put_key(out, &delete.key, delete.base64_key);
                put_switch(out, b'b', delete.base64_key);
                put_returns(out, &delete.returns, delete.opaque.as_ref());
                put_number(out, b'C', delete.compare_cas);
                put_switch(out, b'I', delete.invalidate);
                put_number(out, b'T', delete.ttl);
                put_switch(out, b'x', delete.remove_value);
                if delete.flags != 0 {
                    put_fmt(out, format_args!(" F{}", delete.flags));
                }
                put_number(out, b'E', delete.new_cas);
                put_switch(out, b'q', delete.quiet);
                out.put_slice(b"\r\n");
            }
            MetaRequest::Arithmetic(arith) => {
                out.put_slice(b"ma ");
                put_key(out, &arith.key, arith.base64_key);
                put_switch(out, b'b', arith.base64_key);
                put_ordered(
                    out,
                    &arith.returns,
                    arith.opaque.as_ref(),
                    [arith.ttl, arith.vivify, None],
                    arith.ttl_order,
                );
                put_switch(out, b'v', arith.value);
                if arith.mode == MetaArithmeticMode::Decrement {
                    out.put_slice(b" MD");
                }
                if arith.delta != 1 {
                    put_fmt(out, format_args!(" D{}", arith.delta));
                }
                if arith.initial != 0 {
                    put_fmt(out, format_args!(" J{}", arith.initial));
                }
                put_number(out, b'C', arith.compare_cas);
                put_number(out, b'E', arith.new_cas);
                put_switch(out, b'q', arith.quiet);
                out.put_slice(b"\r\n");
            }
            MetaRequest::Noop => out.put_slice(b"mn\r\n"),
            MetaRequest::Debug(debug) => {
                out.put_slice(b"me ");
                put_key(out, &debug.key, debug.base64_key);
                put_switch(out, b'b', debug.base64_key);
                out.put_slice(b"\r\n");
            }
        }
    }
}

/// Writes a key token: the key itself, or its base64 encoding (the caller
/// adds the `b` flag).
pub(super) fn put_key(out: &mut impl BufMut, key: &[u8], base64: bool) {
    if base64 {
        encode_base64(key, out);
    } else {
        out.put_slice(key);
    }
}

fn put_returns(out: &mut impl BufMut, returns: &[ReturnFlag], opaque: Option<&Bytes>) {
    for flag in returns {
        out.put_slice(&[b' ', flag.byte()]);
        if *flag == ReturnFlag::Opaque {
            out.put_slice(opaque.map(|o| &o[..]).unwrap_or_default());
        }
    }
}

/// The return flags with `T`, `N` and `R` (`[touch, vivify, recache]`)
/// placed as `order` says.
fn put_ordered(
    out: &mut impl BufMut,
    returns: &[ReturnFlag],
    opaque: Option<&Bytes>,
    [touch, vivify, recache]: [Option<i32>; 3],
    order: TtlOrder,
) {
    let mut touch_left = touch;
    let mut vivify_left = vivify;
    let mut recache_left = recache;
    let mut put_setters = |out: &mut _, touch: Option<i32>, vivify: Option<i32>| {
        let mut put_touch = |out: &mut _| {
            if touch.is_some() && !order.touch_before_recache {
                put_number(out, b'R', recache_left.take());
            }
            put_number(out, b'T', touch);
        };
        if order.vivify_before_touch {
            put_number(out, b'N', vivify);
            put_touch(out);
        } else {
            put_touch(out);
            put_number(out, b'N', vivify);
        }
    };
    for (i, flag) in returns.iter().enumerate() {
        if *flag == ReturnFlag::Ttl {
            let touch = touch_left.take_if(|_| order.touch_before_ttl);
            let vivify = vivify_left.take_if(|_| order.vivify_before_ttl);
            put_setters(out, touch, vivify);
        }
        put_returns(out, &returns[i..=i], opaque);
    }
    put_setters(out, touch_left, vivify_left);
    put_number(out, b'R', recache_left);
}

pub(super) fn put_switch(out: &mut impl BufMut, flag: u8, on: bool) {
    if on {
        out.put_slice(&[b' ', flag]);
    }
}

fn put_number<T: std::fmt::Display>(out: &mut impl BufMut, flag: u8, value: Option<T>) {
    if let Some(value) = value {
        out.put_slice(&[b' ', flag]);
        put_fmt(out, format_args!("{value}"));
    }
}
