//! Binary requests: one type per command, [`Command`] over them,
//! [`BinaryRequest`] (a command and its opaque), and their wire encoding
//! (for clients and for the `parse(encode(x)) == x` tests).
//!
//! The types keep what memcached 1.6.18 acts on and nothing else: the data
//! type and vbucket fields of the header are ignored by memcached and are
//! not kept (they encode as 0); the header's cas is kept only by the
//! commands that use it as a condition (stores, `delete`, incr/decr).
//!
//! Expirations are the unsigned 32-bit values sent: memcached reads them
//! with `ntohl` and applies its usual rules (0 never, up to 30 days
//! relative, otherwise absolute), so `crate::exptime::Expiry::from_exptime(
//! i64::from(exptime), now)` converts them; they are never negative.

use bytes::{BufMut, Bytes};

use super::header::{Header, Opcode, HEADER_LEN, REQUEST_MAGIC};
use super::sasl::PlainCredentials;

/// One binary request: a command and the opaque value its responses echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryRequest {
    /// Chosen by the client, echoed in every response to this request.
    pub opaque: u32,
    /// The command.
    pub command: Command,
}

/// A binary command memcached 1.6.18 serves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `get`, `getq`, `getk`, `getkq`, `gat`, `gatq`, `gatk`, `gatkq`.
    Get(Get),
    /// `set`, `add`, `replace` and their quiet variants.
    Store(Store),
    /// `append`, `prepend` and their quiet variants.
    Concat(Concat),
    /// `delete`, `deleteq`.
    Delete(Delete),
    /// `increment`, `decrement` and their quiet variants.
    Arithmetic(Arithmetic),
    /// `touch`.
    Touch(Touch),
    /// `flush`, `flushq`.
    Flush(Flush),
    /// `stat`.
    Stat(Stat),
    /// `quit`, `quitq`: answer (unless quiet), then close.
    Quit(Quit),
    /// `noop`: answer and flush every pending response.
    Noop,
    /// `version`.
    Version,
    /// SASL list mechanisms.
    SaslListMechs,
    /// SASL auth and SASL step.
    SaslAuth(SaslAuth),
}

/// A get, possibly also touching the item (`gat*`), possibly returning the
/// key (`getk*`, `gatk*`), possibly quiet.
///
/// A hit answers with the flags as extras, the cas in the header, the key
/// if `with_key`, and the value; a miss answers "Not found", or with
/// `with_key` a [`super::Status::KEY_NOT_FOUND`] response carrying just the
/// key; a quiet miss answers nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    /// The key (1 to 250 bytes).
    pub key: Bytes,
    /// Return the key in the response.
    pub with_key: bool,
    /// Send nothing on a miss.
    pub quiet: bool,
    /// `gat*`: the new expiration to set on a hit.
    pub touch: Option<u32>,
}

/// Which store a [`Store`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreMode {
    /// Store unconditionally (unless `cas` is set).
    Set,
    /// Store only if the key holds no live item.
    Add,
    /// Store only if the key holds a live item.
    Replace,
}

/// `set`, `add`, `replace`: extras are the flags and the expiration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Which store.
    pub mode: StoreMode,
    /// The key (1 to 250 bytes).
    pub key: Bytes,
    /// Opaque client flags.
    pub flags: u32,
    /// Expiration as sent.
    pub exptime: u32,
    /// The value.
    pub value: Bytes,
    /// 0, or the cas unique the item must still have (memcached then treats
    /// any mode as a cas store).
    pub cas: u64,
    /// Send nothing on success.
    pub quiet: bool,
}

/// `append` or `prepend`: no extras (flags and expiration stay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concat {
    /// `true` for prepend, `false` for append.
    pub prepend: bool,
    /// The key (1 to 250 bytes).
    pub key: Bytes,
    /// The bytes to add.
    pub value: Bytes,
    /// 0, or the cas unique the item must still have.
    pub cas: u64,
    /// Send nothing on success.
    pub quiet: bool,
}

/// `delete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The key (1 to 250 bytes).
    pub key: Bytes,
    /// 0, or the cas unique the item must still have.
    pub cas: u64,
    /// Send nothing on success.
    pub quiet: bool,
}

/// `increment` or `decrement`: extras are the delta, the initial value and
/// the expiration (20 bytes). The response's value is the new number as 8
/// big-endian bytes, and its cas the item's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arithmetic {
    /// The key (1 to 250 bytes).
    pub key: Bytes,
    /// `true` for increment (wraps at 2^64), `false` for decrement (stops at 0).
    pub increment: bool,
    /// The amount.
    pub delta: u64,
    /// The value to store when the key is missing (the delta is not applied).
    pub initial: u64,
    /// The expiration of a created item, or [`Arithmetic::NO_CREATE`].
    pub exptime: u32,
    /// 0, or the cas unique the item must still have.
    pub cas: u64,
    /// Send nothing on success.
    pub quiet: bool,
}

impl Arithmetic {
    /// The expiration that means "answer Not found for a missing key
    /// instead of creating it".
    pub const NO_CREATE: u32 = 0xffff_ffff;

    /// Whether a missing key is created with [`Arithmetic::initial`].
    pub fn creates_missing(&self) -> bool {
        self.exptime != Self::NO_CREATE
    }
}

/// `touch`: a new expiration. A hit answers with the flags as extras and
/// the cas, without the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// The key (1 to 250 bytes).
    pub key: Bytes,
    /// The new expiration.
    pub exptime: u32,
}

/// `flush`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    /// The 4-byte delay extra, if sent (`None` and `Some(0)` both flush now).
    pub delay: Option<u32>,
    /// Send nothing on success.
    pub quiet: bool,
}

/// `stat`: the key names the group, none for the general statistics. The
/// answer is one response per statistic (key: the name, value: the value)
/// and an empty one to end it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The group as sent (possibly empty).
    pub key: Bytes,
}

/// What memcached 1.6.18 makes of a [`Stat`] key (`process_bin_stat`).
/// `reset`, `settings` and `detail` are matched as prefixes, as memcached's
/// `strncmp` does (`resetting` resets).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatGroup {
    /// No key: the general statistics.
    General,
    /// `reset...`: zero the counters; the answer is just the end response.
    Reset,
    /// `settings...`.
    Settings,
    /// `detail on...`: the answer is just the end response.
    DetailOn,
    /// `detail off...`: the answer is just the end response.
    DetailOff,
    /// `detail dump...`: one statistic named `detailed`, then the end.
    DetailDump,
    /// Any other key: memcached knows `items`, `slabs`, `sizes`,
    /// `sizes_enable` and `sizes_disable` (exactly), and answers every other
    /// key, including other `detail...` keys, with "Not found".
    Other(Bytes),
}

impl Stat {
    /// The group memcached would answer.
    pub fn group(&self) -> StatGroup {
        let key = &self.key[..];
        if key.is_empty() {
            StatGroup::General
        } else if key.starts_with(b"reset") {
            StatGroup::Reset
        } else if key.starts_with(b"settings") {
            StatGroup::Settings
        } else if let Some(detail) = key.strip_prefix(b"detail") {
            if detail.starts_with(b" dump") {
                StatGroup::DetailDump
            } else if detail.starts_with(b" on") {
                StatGroup::DetailOn
            } else if detail.starts_with(b" off") {
                StatGroup::DetailOff
            } else {
                StatGroup::Other(self.key.clone())
            }
        } else {
            StatGroup::Other(self.key.clone())
        }
    }
}

/// `quit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quit {
    /// Close without answering.
    pub quiet: bool,
}

/// SASL auth (`step == false`) or step: the key is the mechanism, the value
/// the client's data. Checking credentials is the server's business; see
/// [`SaslAuth::plain`] for the `PLAIN` mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslAuth {
    /// The mechanism name (non-empty; memcached with SASL enabled answers
    /// "Invalid arguments" for one longer than
    /// [`super::MAX_SASL_MECHANISM_LEN`]).
    pub mechanism: Bytes,
    /// The mechanism's data.
    pub data: Bytes,
    /// SASL step rather than SASL auth.
    pub step: bool,
}

impl SaslAuth {
    /// The credentials, if the mechanism is `PLAIN` and the data is
    /// `authzid NUL user NUL password`.
    pub fn plain(&self) -> Option<PlainCredentials<'_>> {
        if &self.mechanism[..] != b"PLAIN" {
            return None;
        }
        PlainCredentials::parse(&self.data)
    }
}

impl BinaryRequest {
    /// The opcode this request is sent with.
    pub fn opcode(&self) -> Opcode {
        self.command.opcode()
    }

    /// Writes the request in wire format.
    ///
    /// # Panics
    ///
    /// If a key is longer than 65,535 bytes or the body longer than
    /// 4 GiB − 1: the format cannot express them. Parsed requests never are.
    pub fn encode(&self, out: &mut impl BufMut) {
        let parts = self.parts();
        let key_len = u16::try_from(parts.key.len()).expect("a binary key is at most 65535 bytes");
        let body_len = u32::try_from(parts.body_len()).expect("a binary body is less than 4 GiB");
        Header {
            magic: REQUEST_MAGIC,
            opcode: self.opcode().code(),
            key_len,
            extras_len: parts.extras_len as u8,
            data_type: 0,
            vbucket_or_status: 0,
            body_len,
            opaque: self.opaque,
            cas: parts.cas,
        }
        .encode(out);
        out.put_slice(&parts.extras[..parts.extras_len]);
        out.put_slice(parts.key);
        out.put_slice(parts.value);
    }

    /// The encoded length: the header and the body.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.parts().body_len()
    }

    fn parts(&self) -> Parts<'_> {
        let mut extras = [0u8; 20];
        let (extras_len, key, value, cas): (usize, &[u8], &[u8], u64) = match &self.command {
            Command::Get(get) => match get.touch {
                Some(exptime) => {
                    extras[..4].copy_from_slice(&exptime.to_be_bytes());
                    (4, &get.key, &[], 0)
                }
                None => (0, &get.key, &[], 0),
            },
            Command::Store(store) => {
                extras[..4].copy_from_slice(&store.flags.to_be_bytes());
                extras[4..8].copy_from_slice(&store.exptime.to_be_bytes());
                (8, &store.key, &store.value, store.cas)
            }
            Command::Concat(concat) => (0, &concat.key, &concat.value, concat.cas),
            Command::Delete(delete) => (0, &delete.key, &[], delete.cas),
            Command::Arithmetic(arith) => {
                extras[..8].copy_from_slice(&arith.delta.to_be_bytes());
                extras[8..16].copy_from_slice(&arith.initial.to_be_bytes());
                extras[16..20].copy_from_slice(&arith.exptime.to_be_bytes());
                (20, &arith.key, &[], arith.cas)
            }
            Command::Touch(touch) => {
                extras[..4].copy_from_slice(&touch.exptime.to_be_bytes());
                (4, &touch.key, &[], 0)
            }
            Command::Flush(flush) => match flush.delay {
                Some(delay) => {
                    extras[..4].copy_from_slice(&delay.to_be_bytes());
                    (4, &[], &[], 0)
                }
                None => (0, &[], &[], 0),
            },
            Command::Stat(stat) => (0, &stat.key, &[], 0),
            Command::SaslAuth(auth) => (0, &auth.mechanism, &auth.data, 0),
            Command::Quit(_) | Command::Noop | Command::Version | Command::SaslListMechs => {
                (0, &[], &[], 0)
            }
        };
        Parts {
            extras,
            extras_len,
            key,
            value,
            cas,
        }
    }
}

/// The pieces of an encoded request.
struct Parts<'a> {
    extras: [u8; 20],
    extras_len: usize,
    key: &'a [u8],
    value: &'a [u8],
    cas: u64,
}

impl Parts<'_> {
    fn body_len(&self) -> usize {
        self.extras_len + self.key.len() + self.value.len()
    }
}

impl Command {
    /// The opcode this command is sent with.
    pub fn opcode(&self) -> Opcode {
        use Opcode::*;
        match self {
            Command::Get(get) => match (get.touch.is_some(), get.with_key, get.quiet) {
                (false, false, false) => Get,
                (false, false, true) => GetQ,
                (false, true, false) => GetK,
                (false, true, true) => GetKQ,
                (true, false, false) => Gat,
                (true, false, true) => GatQ,
                (true, true, false) => GatK,
                (true, true, true) => GatKQ,
            },
            Command::Store(store) => match (store.mode, store.quiet) {
                (StoreMode::Set, false) => Set,
                (StoreMode::Set, true) => SetQ,
                (StoreMode::Add, false) => Add,
                (StoreMode::Add, true) => AddQ,
                (StoreMode::Replace, false) => Replace,
                (StoreMode::Replace, true) => ReplaceQ,
            },
            Command::Concat(concat) => match (concat.prepend, concat.quiet) {
                (false, false) => Append,
                (false, true) => AppendQ,
                (true, false) => Prepend,
                (true, true) => PrependQ,
            },
            Command::Delete(delete) => quiet_or(delete.quiet, Delete, DeleteQ),
            Command::Arithmetic(arith) => match (arith.increment, arith.quiet) {
                (true, false) => Increment,
                (true, true) => IncrementQ,
                (false, false) => Decrement,
                (false, true) => DecrementQ,
            },
            Command::Touch(_) => Touch,
            Command::Flush(flush) => quiet_or(flush.quiet, Flush, FlushQ),
            Command::Stat(_) => Stat,
            Command::Quit(quit) => quiet_or(quit.quiet, Quit, QuitQ),
            Command::Noop => Noop,
            Command::Version => Version,
            Command::SaslListMechs => SaslListMechs,
            Command::SaslAuth(auth) => {
                if auth.step {
                    SaslStep
                } else {
                    SaslAuth
                }
            }
        }
    }

    /// Whether the command changes stored data.
    pub fn is_write(&self) -> bool {
        match self {
            Command::Get(get) => get.touch.is_some(),
            Command::Store(_)
            | Command::Concat(_)
            | Command::Delete(_)
            | Command::Arithmetic(_)
            | Command::Touch(_)
            | Command::Flush(_) => true,
            Command::Stat(_)
            | Command::Quit(_)
            | Command::Noop
            | Command::Version
            | Command::SaslListMechs
            | Command::SaslAuth(_) => false,
        }
    }
}

fn quiet_or(quiet: bool, loud: Opcode, quiet_opcode: Opcode) -> Opcode {
    if quiet {
        quiet_opcode
    } else {
        loud
    }
}
