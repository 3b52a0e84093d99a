//! The meta protocol of memcached 1.6 (`mg`, `ms`, `md`, `ma`, `mn`, `me`):
//! request types, their parsing and encoding, the meta replies, and the pure
//! helpers a server needs to answer them (base64 keys, return flags).
//!
//! Parsing follows memcached 1.6.18's `proto_text.c` (as shipped by Debian)
//! token by token, including which error string each malformed line gets:
//!
//! - a meta command is any two-byte command starting with `m`; an unknown
//!   second byte, or `mg`/`ms`/`md`/`ma` with no key, is `ERROR`;
//! - every flag is one token whose first byte is the flag; a flag may appear
//!   once (`CLIENT_ERROR duplicate flag`), unknown flags are `CLIENT_ERROR
//!   invalid flag`, and all commands share one flag parser, so a flag that
//!   means nothing to a command (`mg k F5`) is still accepted and validated;
//! - meta errors are always answered, even with `q`: every rejection here is
//!   [`Frame::Rejected`] with `noreply: false`;
//! - `md` and `ma` answer every flag error with `CLIENT_ERROR invalid or
//!   duplicate flag`;
//! - a rejected `ms` still has its data block coming: it becomes
//!   [`Frame::Swallow`], which discards `<datalen> + 2` bytes as they arrive.
//! - three flags of the current `doc/protocol.txt` that 1.6.18 lacks (it
//!   calls them invalid) are parsed as the current memcached parses them:
//!   `E<cas>` (an explicit new cas unique, all commands), `x` (`md`: empty
//!   the value, keep the item) and `N<exptime>` on `ms` (append/prepend
//!   vivify); see `docs/meta-protocol.md`, "Flags newer than 1.6.18".
//!
//! Where memcached reports an error only after it has executed part of a
//! command (an over-long opaque on `mg`/`ma` is noticed while the reply is
//! built), this parser rejects the line up front and nothing is executed.
//! `docs/meta-protocol.md` lists every flag and every difference.

use bytes::{BufMut, Bytes};

use crate::parse::{data_block, item_size, reject, Decoded, Dispatched, Frame, Tokens, ERROR};
use crate::reply::Reply;
use crate::request::{put_fmt, Request, StoreMode};
use crate::{number, Limits, MAX_KEY_LENGTH};

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
    fn from_byte(byte: u8) -> Option<ReturnFlag> {
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
    fn from_positions(
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
fn put_key(out: &mut impl BufMut, key: &[u8], base64: bool) {
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

fn put_switch(out: &mut impl BufMut, flag: u8, on: bool) {
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

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

const BAD_FORMAT: &str = "bad command line format";
const BAD_TOKEN: &str = "bad token in command line format";
const INVALID_OR_DUPLICATE: &str = "invalid or duplicate flag";
const OPAQUE_TOO_LONG: &str = "opaque token too long";

/// What `_meta_flag_preparse` learns from the flag tokens.
#[derive(Default)]
struct Flags<'a> {
    key: Option<Vec<u8>>,
    base64: bool,
    returns: Vec<ReturnFlag>,
    /// The whole `O` token, `O` included.
    opaque: Option<&'a [u8]>,
    value: bool,
    quiet: bool,
    no_bump: bool,
    invalidate: bool,
    ttl: Option<i32>,
    vivify: Option<i32>,
    recache: Option<i32>,
    client_flags: u32,
    cas: Option<u64>,
    new_cas: Option<u64>,
    remove_value: bool,
    mode: Option<u8>,
    initial: u64,
    delta: Option<u64>,
    /// Positions of `T`, `N` and `t` among the flags.
    touch_at: Option<usize>,
    vivify_at: Option<usize>,
    ttl_at: Option<usize>,
    recache_at: Option<usize>,
}

impl Flags<'_> {
    fn key(&self, raw: &[u8]) -> Bytes {
        match &self.key {
            Some(decoded) => Bytes::copy_from_slice(decoded),
            None => Bytes::copy_from_slice(raw),
        }
    }

    fn ttl_order(&self) -> TtlOrder {
        TtlOrder::from_positions(self.touch_at, self.vivify_at, self.ttl_at, self.recache_at)
    }

    fn opaque_too_long(&self) -> bool {
        self.opaque
            .is_some_and(|token| token.len() > MAX_OPAQUE_TOKEN)
    }

    fn opaque(&self) -> Option<Bytes> {
        self.opaque.map(|token| Bytes::copy_from_slice(&token[1..]))
    }

    /// The return flags, keeping only those the command echoes.
    fn returns(&self, echoed: &[ReturnFlag]) -> Vec<ReturnFlag> {
        self.returns
            .iter()
            .copied()
            .filter(|flag| echoed.contains(flag))
            .collect()
    }
}

/// memcached's `_meta_flag_preparse`. Like memcached it goes on after a bad
/// numeric token (a later bad token may replace the message) but stops at a
/// duplicate or unknown flag. Errors are messages for `CLIENT_ERROR`.
fn preparse<'a>(key: &[u8], flags: &[&'a [u8]]) -> Result<Flags<'a>, &'static str> {
    let mut parsed = Flags::default();
    let mut seen = [false; 127];
    let mut error: Option<&'static str> = None;
    let mut has_error = false;
    let mut fail = |message: Option<&'static str>| {
        has_error = true;
        if let Some(message) = message {
            error = Some(message);
        }
    };
    for (position, &token) in flags.iter().enumerate() {
        let flag = token[0];
        if flag >= 127 || seen[flag as usize] {
            return Err("duplicate flag");
        }
        seen[flag as usize] = true;
        let argument = &token[1..];
        match flag {
            b'T' => parsed.touch_at = Some(position),
            b'N' => parsed.vivify_at = Some(position),
            b't' => parsed.ttl_at = Some(position),
            b'R' => parsed.recache_at = Some(position),
            _ => {}
        }
        if let Some(returned) = ReturnFlag::from_byte(flag) {
            parsed.returns.push(returned);
            if returned == ReturnFlag::Opaque {
                parsed.opaque = Some(token);
            }
            continue;
        }
        let exptime = |fail: &mut dyn FnMut(Option<&'static str>)| {
            let value = number::parse_i32(argument);
            if value.is_none() {
                fail(Some(BAD_TOKEN));
            }
            value
        };
        match flag {
            b'b' => {
                parsed.base64 = true;
                match decode_base64(key) {
                    Some(decoded) => parsed.key = Some(decoded),
                    None => {
                        parsed.key = Some(Vec::new());
                        fail(Some("error decoding key"));
                    }
                }
            }
            b'N' => parsed.vivify = exptime(&mut fail),
            b'T' => parsed.ttl = exptime(&mut fail),
            b'R' => parsed.recache = exptime(&mut fail),
            b'P' | b'L' => {}
            b'v' => parsed.value = true,
            b'u' => parsed.no_bump = true,
            b'q' => parsed.quiet = true,
            b'F' => match number::parse_u32(argument) {
                Some(value) => parsed.client_flags = value,
                None => fail(None),
            },
            b'C' => match number::parse_u64(argument) {
                Some(value) => parsed.cas = Some(value),
                None => fail(Some(BAD_TOKEN)),
            },
            b'M' => {
                if token.len() == 2 {
                    parsed.mode = Some(token[1]);
                } else {
                    fail(Some("incorrect length for M token"));
                }
            }
            b'J' => match number::parse_u64(argument) {
                Some(value) => parsed.initial = value,
                None => fail(Some("invalid numeric initial value")),
            },
            b'D' => match number::parse_u64(argument) {
                Some(value) => parsed.delta = Some(value),
                None => fail(Some("invalid numeric delta value")),
            },
            b'I' => parsed.invalidate = true,
            // Newer than 1.6.18 (current doc/protocol.txt).
            b'E' => match number::parse_u64(argument) {
                Some(value) => parsed.new_cas = Some(value),
                None => fail(Some(BAD_TOKEN)),
            },
            b'x' => parsed.remove_value = true,
            _ => return Err("invalid flag"),
        }
    }
    if has_error {
        Err(error.unwrap_or(BAD_FORMAT))
    } else {
        Ok(parsed)
    }
}

fn meta_error(message: &'static str) -> Dispatched {
    // memcached's out_errstring: meta errors ignore `q`.
    reject(message, false).into()
}

/// Parses a meta command (a two-byte command starting with `m`). `input`
/// starts with the command line, which is `line_len` bytes long.
pub(crate) fn parse_meta(
    tokens: &Tokens<'_>,
    input: &[u8],
    line_len: usize,
    limits: &Limits,
) -> Dispatched {
    let ntokens = tokens.ntokens();
    let command = tokens.get(0)[1];
    match command {
        b'n' => return Frame::Request(Request::Meta(MetaRequest::Noop)).into(),
        b'e' => return parse_debug(tokens),
        b'g' | b's' | b'd' | b'a' => {}
        _ => return ERROR.into(),
    }
    if ntokens < 3 {
        return ERROR.into();
    }
    let key = tokens.get(1);
    if key.len() > MAX_KEY_LENGTH {
        return meta_error(BAD_FORMAT);
    }
    if command == b's' {
        return parse_set(tokens, key, input, line_len, limits);
    }
    if ntokens > MAX_META_TOKENS {
        return meta_error(if command == b'g' {
            "options flags are too long"
        } else {
            "options flags too long"
        });
    }
    let flags = match preparse(key, &tokens.as_slice()[2..]) {
        Ok(flags) => flags,
        Err(message) if command == b'g' => return meta_error(message),
        Err(_) => return meta_error(INVALID_OR_DUPLICATE),
    };
    let request = match command {
        b'g' => {
            if flags.opaque_too_long() {
                return meta_error(OPAQUE_TOO_LONG);
            }
            MetaRequest::Get(MetaGet {
                key: flags.key(key),
                base64_key: flags.base64,
                returns: flags.returns.clone(),
                opaque: flags.opaque(),
                value: flags.value,
                quiet: flags.quiet,
                no_bump: flags.no_bump,
                touch: flags.ttl,
                vivify: flags.vivify,
                recache: flags.recache,
                new_cas: flags.new_cas,
                ttl_order: flags.ttl_order(),
            })
        }
        b'd' => {
            if flags.opaque_too_long() {
                return meta_error(OPAQUE_TOO_LONG);
            }
            MetaRequest::Delete(MetaDelete {
                key: flags.key(key),
                base64_key: flags.base64,
                returns: flags.returns(&[ReturnFlag::Key, ReturnFlag::Opaque]),
                opaque: flags.opaque(),
                compare_cas: flags.cas,
                invalidate: flags.invalidate,
                ttl: flags.ttl,
                remove_value: flags.remove_value,
                flags: flags.client_flags,
                new_cas: flags.new_cas,
                quiet: flags.quiet,
            })
        }
        _ => {
            let mode = match flags.mode {
                None | Some(b'I' | b'+') => MetaArithmeticMode::Increment,
                Some(b'D' | b'-') => MetaArithmeticMode::Decrement,
                Some(_) => return meta_error("invalid mode for ma M token"),
            };
            if flags.opaque_too_long() {
                return meta_error(OPAQUE_TOO_LONG);
            }
            MetaRequest::Arithmetic(MetaArithmetic {
                key: flags.key(key),
                base64_key: flags.base64,
                returns: flags.returns(&[
                    ReturnFlag::Cas,
                    ReturnFlag::Ttl,
                    ReturnFlag::Key,
                    ReturnFlag::Opaque,
                ]),
                opaque: flags.opaque(),
                mode,
                delta: flags.delta.unwrap_or(1),
                initial: flags.initial,
                vivify: flags.vivify,
                ttl: flags.ttl,
                // ma ignores R, so its position must not shape the order.
                ttl_order: TtlOrder {
                    touch_before_recache: false,
                    ..flags.ttl_order()
                },
                compare_cas: flags.cas,
                new_cas: flags.new_cas,
                value: flags.value,
                quiet: flags.quiet,
            })
        }
    };
    Frame::Request(Request::Meta(request)).into()
}

/// `ms`: the checks of `process_mset_command`, in its order. Errors found
/// after the data length is known swallow the data block.
fn parse_set(
    tokens: &Tokens<'_>,
    key: &[u8],
    input: &[u8],
    line_len: usize,
    limits: &Limits,
) -> Dispatched {
    let ntokens = tokens.ntokens();
    if ntokens == 3 {
        return meta_error(BAD_FORMAT);
    }
    if ntokens > MAX_META_TOKENS {
        return meta_error("options flags too long");
    }
    let value_len = match number::parse_i32(tokens.get(2)) {
        Some(len) if (0..=i32::MAX - 2).contains(&len) => len as usize,
        _ => return meta_error(BAD_FORMAT),
    };
    let discard = value_len as u64 + 2;
    let swallow = |reply: Reply, unlink: Option<Bytes>| {
        Dispatched::Frame(Frame::Swallow {
            reply,
            discard,
            unlink,
        })
    };
    let flags = match preparse(key, &tokens.as_slice()[3..]) {
        Ok(flags) => flags,
        Err(message) => return swallow(Reply::client_error(message), None),
    };
    let mode = match flags.mode {
        None => MetaSetMode::Set,
        Some(byte) => match MetaSetMode::from_byte(byte) {
            Some(mode) => mode,
            None => return swallow(Reply::client_error("invalid mode for ms M token"), None),
        },
    };
    if flags.opaque_too_long() {
        return swallow(Reply::client_error(OPAQUE_TOO_LONG), None);
    }
    let key = flags.key(key);
    if item_size(key.len(), flags.client_flags, value_len) > limits.max_item_size as u64 {
        return swallow(Reply::server_error("object too large for cache"), Some(key));
    }
    match data_block(&input[line_len..], value_len) {
        Decoded::Incomplete => Dispatched::NeedData,
        Decoded::Complete(None, used) => {
            Dispatched::WithData(reject("bad data chunk", false), used)
        }
        Decoded::Complete(Some(value), used) => Dispatched::WithData(
            Frame::Request(Request::Meta(MetaRequest::Set(MetaSet {
                key,
                base64_key: flags.base64,
                returns: flags.returns(&[
                    ReturnFlag::Cas,
                    ReturnFlag::Key,
                    ReturnFlag::Opaque,
                    ReturnFlag::Size,
                ]),
                opaque: flags.opaque(),
                mode,
                flags: flags.client_flags,
                ttl: flags.ttl,
                compare_cas: flags.cas,
                invalidate: flags.invalidate,
                new_cas: flags.new_cas,
                vivify: flags.vivify,
                quiet: flags.quiet,
                value: Bytes::copy_from_slice(value),
            }))),
            used,
        ),
    }
}

/// `me`: `process_meta_command`, which has its own checks and no flags.
fn parse_debug(tokens: &Tokens<'_>) -> Dispatched {
    let ntokens = tokens.ntokens();
    let key = tokens.get(1);
    if ntokens < 3 || key.len() > MAX_KEY_LENGTH {
        return meta_error(BAD_FORMAT);
    }
    let base64_key = ntokens >= 4 && tokens.get(2) == b"b";
    let key = if base64_key {
        match decode_base64(key) {
            Some(decoded) => Bytes::from(decoded),
            None => return meta_error(BAD_FORMAT),
        }
    } else {
        Bytes::copy_from_slice(key)
    };
    Frame::Request(Request::Meta(MetaRequest::Debug(MetaDebug {
        key,
        base64_key,
    })))
    .into()
}

// ---------------------------------------------------------------------------
// Base64 keys
// ---------------------------------------------------------------------------

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The value of a base64 digit; `=` counts as a digit worth 0, as in
/// memcached's decode table.
fn base64_digit(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Encodes `data` in standard padded base64, as memcached encodes binary
/// keys in replies.
pub fn encode_base64(data: &[u8], out: &mut impl BufMut) {
    let digit = |index: u8| BASE64_ALPHABET[usize::from(index & 0x3f)];
    let mut chunks = data.chunks_exact(3);
    for chunk in &mut chunks {
        out.put_slice(&[
            digit(chunk[0] >> 2),
            digit((chunk[0] << 4) | (chunk[1] >> 4)),
            digit((chunk[1] << 2) | (chunk[2] >> 6)),
            digit(chunk[2]),
        ]);
    }
    match *chunks.remainder() {
        [a] => out.put_slice(&[digit(a >> 2), digit(a << 4), b'=', b'=']),
        [a, b] => out.put_slice(&[
            digit(a >> 2),
            digit((a << 4) | (b >> 4)),
            digit(b << 2),
            b'=',
        ]),
        _ => {}
    }
}

/// [`encode_base64`] into a new `Bytes`.
pub fn base64_encoded(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    encode_base64(data, &mut out);
    Bytes::from(out)
}

/// Decodes a base64 key exactly as memcached 1.6.18's `base64_decode` does:
/// bytes outside the alphabet are skipped, the digits (with `=`) must be a
/// non-zero multiple of four, decoding stops after the first group holding
/// padding, and a group with more than two `=` fails. `None` where memcached
/// fails (it also fails when nothing is decoded).
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let digits = text.iter().filter(|&&b| base64_digit(b).is_some()).count();
    if digits == 0 || digits % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(digits / 4 * 3);
    let mut group = [0u8; 4];
    let mut filled = 0;
    let mut padding = 0;
    for &byte in text {
        let Some(value) = base64_digit(byte) else {
            continue;
        };
        if byte == b'=' {
            padding += 1;
        }
        group[filled] = value;
        filled += 1;
        if filled == 4 {
            out.push((group[0] << 2) | (group[1] >> 4));
            out.push((group[1] << 4) | (group[2] >> 2));
            out.push((group[2] << 6) | group[3]);
            filled = 0;
            if padding > 0 {
                match padding {
                    1 | 2 => out.truncate(out.len() - padding),
                    _ => return None,
                }
                break;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

// ---------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------

/// The two-letter status of a meta reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaStatus {
    /// `VA <size>`: success with a value (`mg v`, `ma v`); the value follows.
    Value(Bytes),
    /// `HD`: success without a value.
    Done,
    /// `EN`: a miss (`mg`, `me`).
    Miss,
    /// `NF`: not found (`md`, `ma`, `ms` with a cas).
    NotFound,
    /// `NS`: not stored (`ms` modes, `ma` auto-create).
    NotStored,
    /// `EX`: cas mismatch.
    Exists,
    /// `MN`: the answer to `mn`.
    Noop,
}

impl MetaStatus {
    /// The code on the wire (without the size of `VA`).
    pub fn code(&self) -> &'static str {
        match self {
            MetaStatus::Value(_) => "VA",
            MetaStatus::Done => "HD",
            MetaStatus::Miss => "EN",
            MetaStatus::NotFound => "NF",
            MetaStatus::NotStored => "NS",
            MetaStatus::Exists => "EX",
            MetaStatus::Noop => "MN",
        }
    }
}

/// One flag of a meta reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaFlag {
    /// `c<cas>`.
    Cas(u64),
    /// `f<flags>`.
    Flags(u32),
    /// `h0` or `h1`: whether the item had been fetched before.
    Hit(bool),
    /// `k<key>`, or `k<base64 key> b` for a binary key.
    Key {
        /// The key (binary, not encoded).
        key: Bytes,
        /// Send it in base64 followed by the `b` flag.
        base64: bool,
    },
    /// `l<seconds>` since the last access.
    LastAccess(u64),
    /// `O<opaque>`: the request's opaque, echoed.
    Opaque(Bytes),
    /// `s<size>` of the value.
    Size(u64),
    /// `t<seconds>` of TTL left, `-1` for an item that never expires.
    Ttl(i64),
    /// `W`: this client won the right to recache the item.
    Won,
    /// `X`: the item is stale.
    Stale,
    /// `Z`: a win token was already sent for this item.
    TokenSent,
    /// A token this decoder does not know (client side only).
    Other(Bytes),
}

impl MetaFlag {
    fn encode(&self, out: &mut impl BufMut) {
        out.put_u8(b' ');
        match self {
            MetaFlag::Cas(cas) => put_fmt(out, format_args!("c{cas}")),
            MetaFlag::Flags(flags) => put_fmt(out, format_args!("f{flags}")),
            MetaFlag::Hit(hit) => out.put_slice(if *hit { b"h1" } else { b"h0" }),
            MetaFlag::Key { key, base64 } => {
                out.put_u8(b'k');
                put_key(out, key, *base64);
                put_switch(out, b'b', *base64);
            }
            MetaFlag::LastAccess(seconds) => put_fmt(out, format_args!("l{seconds}")),
            MetaFlag::Opaque(opaque) => {
                out.put_u8(b'O');
                out.put_slice(opaque);
            }
            MetaFlag::Size(size) => put_fmt(out, format_args!("s{size}")),
            MetaFlag::Ttl(ttl) => put_fmt(out, format_args!("t{ttl}")),
            MetaFlag::Won => out.put_u8(b'W'),
            MetaFlag::Stale => out.put_u8(b'X'),
            MetaFlag::TokenSent => out.put_u8(b'Z'),
            MetaFlag::Other(token) => out.put_slice(token),
        }
    }
}

/// A meta reply: a status and its flags (and the value, for `VA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaReply {
    /// The status (with the value for `VA`).
    pub status: MetaStatus,
    /// The flags, in order.
    pub flags: Vec<MetaFlag>,
}

impl MetaReply {
    /// A reply without flags (`MN`, a plain `EN`).
    pub fn bare(status: MetaStatus) -> MetaReply {
        MetaReply {
            status,
            flags: Vec::new(),
        }
    }

    /// Writes the reply in wire format.
    pub fn encode(&self, out: &mut impl BufMut) {
        match &self.status {
            MetaStatus::Value(data) => {
                encode_meta_value_header(out, data.len(), &self.flags);
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            status => {
                out.put_slice(status.code().as_bytes());
                for flag in &self.flags {
                    flag.encode(out);
                }
                out.put_slice(b"\r\n");
            }
        }
    }
}

/// Writes `VA <data_len> <flags>\r\n`; the caller writes the data and its
/// `\r\n` (so a server can send a stored value without copying it).
pub fn encode_meta_value_header(out: &mut impl BufMut, data_len: usize, flags: &[MetaFlag]) {
    put_fmt(out, format_args!("VA {data_len}"));
    for flag in flags {
        flag.encode(out);
    }
    out.put_slice(b"\r\n");
}

/// What a meta reply can report about an item; see [`return_flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemMeta {
    /// The cas unique (for `ms`: the new one, 0 when nothing was stored).
    pub cas: u64,
    /// The client flags.
    pub flags: u32,
    /// Whether the item had been fetched before this request.
    pub fetched: bool,
    /// Seconds since the last access, before this request.
    pub last_access: u64,
    /// The value's size in bytes.
    pub size: u64,
    /// Seconds of TTL left, `-1` for none (see
    /// the server's expiry type).
    pub ttl: i64,
}

/// The reply flags for a request's `returns`, in order. With `item: None`
/// (a miss, `NF`, `EX`) only `O` and `k` are produced, as memcached does.
/// `key` is the request's (decoded) key; `k` re-encodes it in base64 and adds
/// `b` when `base64_key`. Pass the request's `base64_key`, except for an
/// `mg` hit, where memcached uses the stored item's mark instead (an item
/// stored by `ms` with `b` has a binary key; `mg YWJj b k` on an item stored
/// as `abc` answers `HD kabc`). `mg`'s `Z`, `X`, `W` are not included: the
/// server appends them, in that order.
pub fn return_flags(
    returns: &[ReturnFlag],
    key: &Bytes,
    base64_key: bool,
    opaque: Option<&Bytes>,
    item: Option<&ItemMeta>,
) -> Vec<MetaFlag> {
    returns
        .iter()
        .filter_map(|flag| match (flag, item) {
            (ReturnFlag::Opaque, _) => Some(MetaFlag::Opaque(opaque.cloned().unwrap_or_default())),
            (ReturnFlag::Key, _) => Some(MetaFlag::Key {
                key: key.clone(),
                base64: base64_key,
            }),
            (_, None) => None,
            (ReturnFlag::Cas, Some(item)) => Some(MetaFlag::Cas(item.cas)),
            (ReturnFlag::Flags, Some(item)) => Some(MetaFlag::Flags(item.flags)),
            (ReturnFlag::Hit, Some(item)) => Some(MetaFlag::Hit(item.fetched)),
            (ReturnFlag::LastAccess, Some(item)) => Some(MetaFlag::LastAccess(item.last_access)),
            (ReturnFlag::Size, Some(item)) => Some(MetaFlag::Size(item.size)),
            (ReturnFlag::Ttl, Some(item)) => Some(MetaFlag::Ttl(item.ttl)),
        })
        .collect()
}

/// The `me` answer for a hit:
/// `ME <key> exp=<exp> la=<la> cas=<cas> fetch=<yes|no> cls=<cls> size=<size>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaDebugInfo {
    /// The key as printed: a binary key (stored with `b`) is printed in
    /// base64, with no marker (use [`base64_encoded`]).
    pub key: Bytes,
    /// memcached prints `now - exptime`: `-1` for an item that never
    /// expires, otherwise minus the seconds left (`-100` for 100 s left).
    pub exp: i64,
    /// Seconds since the last access.
    pub la: u64,
    /// The cas unique.
    pub cas: u64,
    /// Whether the item has been fetched.
    pub fetch: bool,
    /// The slab class (any small number; we have no slabs).
    pub cls: u32,
    /// The item's total size, as [`crate::item_size`] counts it.
    pub size: u64,
}

impl MetaDebugInfo {
    /// Writes the `ME` line.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(b"ME ");
        out.put_slice(&self.key);
        put_fmt(
            out,
            format_args!(
                " exp={} la={} cas={} fetch={} cls={} size={}\r\n",
                self.exp,
                self.la,
                self.cas,
                if self.fetch { "yes" } else { "no" },
                self.cls,
                self.size
            ),
        );
    }
}

fn parse_meta_flags(tokens: &[&[u8]]) -> Vec<MetaFlag> {
    let mut flags = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        i += 1;
        let rest = &token[1..];
        let other = || MetaFlag::Other(Bytes::copy_from_slice(token));
        let flag = match token[0] {
            b'c' => number::parse_u64(rest).map_or_else(other, MetaFlag::Cas),
            b'f' => number::parse_u64(rest)
                .and_then(|f| u32::try_from(f).ok())
                .map_or_else(other, MetaFlag::Flags),
            b'h' if rest == b"0" || rest == b"1" => MetaFlag::Hit(rest == b"1"),
            b'k' => {
                let binary = (tokens.get(i) == Some(&&b"b"[..]))
                    .then(|| decode_base64(rest))
                    .flatten();
                match binary {
                    Some(key) => {
                        i += 1;
                        MetaFlag::Key {
                            key: Bytes::from(key),
                            base64: true,
                        }
                    }
                    None => MetaFlag::Key {
                        key: Bytes::copy_from_slice(rest),
                        base64: false,
                    },
                }
            }
            b'l' => number::parse_u64(rest).map_or_else(other, MetaFlag::LastAccess),
            b'O' => MetaFlag::Opaque(Bytes::copy_from_slice(rest)),
            b's' => number::parse_u64(rest).map_or_else(other, MetaFlag::Size),
            b't' => number::parse_i64(rest).map_or_else(other, MetaFlag::Ttl),
            b'W' if rest.is_empty() => MetaFlag::Won,
            b'X' if rest.is_empty() => MetaFlag::Stale,
            b'Z' if rest.is_empty() => MetaFlag::TokenSent,
            _ => other(),
        };
        flags.push(flag);
    }
    flags
}

fn parse_debug_info(fields: &[&[u8]]) -> Option<MetaDebugInfo> {
    let (key, fields) = fields.split_first()?;
    let mut info = MetaDebugInfo {
        key: Bytes::copy_from_slice(key),
        exp: 0,
        la: 0,
        cas: 0,
        fetch: false,
        cls: 0,
        size: 0,
    };
    let mut seen = 0u8;
    for field in fields {
        let mut parts = field.splitn(2, |&b| b == b'=');
        let (name, value) = (parts.next()?, parts.next()?);
        let bit = match name {
            b"exp" => {
                info.exp = number::parse_i64(value)?;
                1
            }
            b"la" => {
                info.la = number::parse_u64(value)?;
                2
            }
            b"cas" => {
                info.cas = number::parse_u64(value)?;
                4
            }
            b"fetch" => {
                info.fetch = match value {
                    b"yes" => true,
                    b"no" => false,
                    _ => return None,
                };
                8
            }
            b"cls" => {
                info.cls = u32::try_from(number::parse_u64(value)?).ok()?;
                16
            }
            b"size" => {
                info.size = number::parse_u64(value)?;
                32
            }
            // "Others may be added."
            _ => 0,
        };
        seen |= bit;
    }
    (seen == 63).then_some(info)
}

/// Decodes a meta reply whose first line (without its line ending) is
/// `line`, `line_len` bytes with the ending; `None` if the line is not a
/// meta reply. Client side.
pub(crate) fn parse_meta_reply(
    input: &[u8],
    line: &[u8],
    line_len: usize,
) -> Option<Decoded<Reply>> {
    // Every meta reply starts with a two-letter code and a space or the end.
    if line.len() < 2 || line.get(2).is_some_and(|&b| b != b' ') {
        return None;
    }
    let tokens: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|token| !token.is_empty())
        .collect();
    let (&code, rest) = tokens.split_first()?;
    let status = match code {
        b"HD" => MetaStatus::Done,
        b"EN" => MetaStatus::Miss,
        b"NF" => MetaStatus::NotFound,
        b"NS" => MetaStatus::NotStored,
        b"EX" => MetaStatus::Exists,
        b"MN" => MetaStatus::Noop,
        b"ME" => {
            let reply = match parse_debug_info(rest) {
                Some(info) => Reply::MetaDebug(info),
                None => Reply::ServerError(
                    format!("malformed ME line: {}", String::from_utf8_lossy(line)).into(),
                ),
            };
            return Some(Decoded::Complete(reply, line_len));
        }
        b"VA" => {
            let Some(len) = rest
                .first()
                .and_then(|len| number::parse_u64(len))
                .and_then(|len| usize::try_from(len).ok())
            else {
                let message = format!("malformed VA line: {}", String::from_utf8_lossy(line));
                return Some(Decoded::Complete(
                    Reply::ServerError(message.into()),
                    line_len,
                ));
            };
            let Some(total) = line_len.checked_add(len).and_then(|n| n.checked_add(2)) else {
                return Some(Decoded::Complete(
                    Reply::server_error("VA length out of range"),
                    line_len,
                ));
            };
            if input.len() < total {
                return Some(Decoded::Incomplete);
            }
            if &input[line_len + len..total] != b"\r\n" {
                return Some(Decoded::Complete(
                    Reply::server_error("VA data block not terminated by \\r\\n"),
                    total,
                ));
            }
            let data = Bytes::copy_from_slice(&input[line_len..line_len + len]);
            let reply = MetaReply {
                status: MetaStatus::Value(data),
                flags: parse_meta_flags(&rest[1..]),
            };
            return Some(Decoded::Complete(Reply::Meta(reply), total));
        }
        _ => return None,
    };
    let reply = MetaReply {
        status,
        flags: parse_meta_flags(rest),
    };
    Some(Decoded::Complete(Reply::Meta(reply), line_len))
}

#[cfg(test)]
mod tests;
