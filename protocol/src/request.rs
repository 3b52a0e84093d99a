//! Requests of the memcache text protocol: one type per command, one enum
//! over them (the meta commands' types live in [`crate::meta`]), and their wire encoding (used by clients and by the
//! `parse(encode(x)) == x` tests).
//!
//! Numbers are kept as memcached reads them: `exptime` is the 32-bit value
//! the client sent (relative seconds, absolute unix time, 0 or negative);
//! turning it into an absolute expiry is [`crate::exptime`]'s job.

use bytes::{BufMut, Bytes};

use crate::meta::MetaRequest;

/// One request of the text or meta protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `get`, `gets`, `gat`, `gats`.
    Get(Get),
    /// `set`, `add`, `replace`, `append`, `prepend`, `cas`.
    Store(Store),
    /// `delete <key> [0] [noreply]`.
    Delete(Delete),
    /// `incr` and `decr`.
    Arithmetic(Arithmetic),
    /// `touch <key> <exptime> [noreply]`.
    Touch(Touch),
    /// `flush_all [delay] [noreply]`.
    FlushAll(FlushAll),
    /// `version`.
    Version,
    /// `verbosity <level> [noreply]`.
    Verbosity(Verbosity),
    /// `quit`: close the connection once earlier replies are written.
    Quit,
    /// `stats [group]`.
    Stats(Stats),
    /// A meta command (`mg`, `ms`, `md`, `ma`, `mn`, `me`).
    Meta(MetaRequest),
    /// `mcstore_cluster <subcommand>`: cluster administration (see
    /// [`crate::admin`]).
    Cluster(crate::admin::ClusterCommand),
    /// `mcstore_scan <limit> [<after>]`: mcstore's key listing (see
    /// [`crate::scan`]).
    Scan(crate::scan::Scan),
    /// `watch [event class]*`: stream log lines on this connection.
    Watch(Watch),
    /// `slabs automove <0|1|2>` and `slabs reassign <src> <dst>`.
    Slabs(Slabs),
}

/// `watch [fetchers|mutations|evictions|...]*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The words after `watch`, as sent (a trailing `noreply` included, as
    /// memcached reads them).
    pub words: Vec<Bytes>,
    /// The last token was `noreply`: errors are not sent.
    pub noreply: bool,
}

/// The `slabs` admin commands memcached validates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slabs {
    /// `slabs automove <level>`, level 0, 1 or 2 (checked by the parser).
    Automove {
        /// The new level.
        level: u32,
        /// Send no reply.
        noreply: bool,
    },
    /// `slabs automove ratio <r>`.
    AutomoveRatio {
        /// The new ratio, as sent.
        ratio: Bytes,
        /// Send no reply.
        noreply: bool,
    },
    /// `slabs reassign <src> <dst>`.
    Reassign {
        /// Source class.
        source: i32,
        /// Destination class.
        destination: i32,
    },
}

/// `get`/`gets` (`touch == None`) and `gat`/`gats` (`touch == Some(exptime)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    /// The keys, in request order; there is at least one unless `touch` is set
    /// (memcached answers a bare `gat <exptime>` with just `END`).
    pub keys: Vec<Bytes>,
    /// `gets`/`gats`: include each item's cas unique.
    pub with_cas: bool,
    /// `gat`/`gats`: the new exptime to set on every hit.
    pub touch: Option<i32>,
}

/// Which storage command a [`Store`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreMode {
    /// Store unconditionally.
    Set,
    /// Store only if the key holds no live item.
    Add,
    /// Store only if the key holds a live item.
    Replace,
    /// Add the data after the existing item's data; flags and exptime stay.
    Append,
    /// Add the data before the existing item's data; flags and exptime stay.
    Prepend,
    /// Store only if the item's cas unique still equals this value.
    Cas(u64),
}

impl StoreMode {
    /// The command name on the wire.
    pub fn command(self) -> &'static str {
        match self {
            StoreMode::Set => "set",
            StoreMode::Add => "add",
            StoreMode::Replace => "replace",
            StoreMode::Append => "append",
            StoreMode::Prepend => "prepend",
            StoreMode::Cas(_) => "cas",
        }
    }
}

/// A storage command with its data block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Which command.
    pub mode: StoreMode,
    /// The key (validated: at most [`crate::MAX_KEY_LENGTH`] bytes).
    pub key: Bytes,
    /// Opaque client flags.
    pub flags: u32,
    /// Expiration as sent.
    pub exptime: i32,
    /// The data block, without its trailing `\r\n`.
    pub value: Bytes,
    /// Send no reply.
    pub noreply: bool,
}

/// `delete <key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    /// The key.
    pub key: Bytes,
    /// Send no reply.
    pub noreply: bool,
}

/// `incr` or `decr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arithmetic {
    /// The key.
    pub key: Bytes,
    /// `true` for `incr` (wraps at 2^64), `false` for `decr` (stops at 0).
    pub increment: bool,
    /// The amount.
    pub delta: u64,
    /// Send no reply.
    pub noreply: bool,
}

/// `touch <key> <exptime>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// The key.
    pub key: Bytes,
    /// The new expiration.
    pub exptime: i32,
    /// Send no reply.
    pub noreply: bool,
}

/// `flush_all [delay]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushAll {
    /// Seconds from now (or an absolute time, as for exptime); 0 = now.
    pub delay: i32,
    /// Send no reply.
    pub noreply: bool,
}

/// `verbosity <level>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verbosity {
    /// The level (accepted and acknowledged; logging is controlled by `RUST_LOG`).
    pub level: u32,
    /// Send no reply.
    pub noreply: bool,
}

/// `stats` and its sub-commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stats {
    /// `stats`: the general counters.
    General,
    /// `stats settings`.
    Settings,
    /// `stats reset`: zero the resettable counters.
    Reset,
    /// `stats detail [on|off|dump]`: the word after `detail`, if any.
    Detail(Option<Bytes>),
    /// `stats <name> ...`: any other group (the server decides what it knows).
    Group(Bytes),
}

impl Request {
    /// Writes the request in wire format.
    pub fn encode(&self, out: &mut impl BufMut) {
        match self {
            Request::Get(get) => get.encode(out),
            Request::Store(store) => store.encode(out),
            Request::Delete(delete) => {
                out.put_slice(b"delete ");
                out.put_slice(&delete.key);
                put_noreply(out, delete.noreply);
                out.put_slice(b"\r\n");
            }
            Request::Arithmetic(arith) => {
                out.put_slice(if arith.increment { b"incr " } else { b"decr " });
                out.put_slice(&arith.key);
                put_fmt(out, format_args!(" {}", arith.delta));
                put_noreply(out, arith.noreply);
                out.put_slice(b"\r\n");
            }
            Request::Touch(touch) => {
                out.put_slice(b"touch ");
                out.put_slice(&touch.key);
                put_fmt(out, format_args!(" {}", touch.exptime));
                put_noreply(out, touch.noreply);
                out.put_slice(b"\r\n");
            }
            Request::FlushAll(flush) => {
                put_fmt(out, format_args!("flush_all {}", flush.delay));
                put_noreply(out, flush.noreply);
                out.put_slice(b"\r\n");
            }
            Request::Version => out.put_slice(b"version\r\n"),
            Request::Verbosity(verbosity) => {
                put_fmt(out, format_args!("verbosity {}", verbosity.level));
                put_noreply(out, verbosity.noreply);
                out.put_slice(b"\r\n");
            }
            Request::Quit => out.put_slice(b"quit\r\n"),
            Request::Stats(stats) => {
                out.put_slice(b"stats");
                match stats {
                    Stats::General => {}
                    Stats::Settings => out.put_slice(b" settings"),
                    Stats::Reset => out.put_slice(b" reset"),
                    Stats::Detail(word) => {
                        out.put_slice(b" detail");
                        if let Some(word) = word {
                            out.put_u8(b' ');
                            out.put_slice(word);
                        }
                    }
                    Stats::Group(name) => {
                        out.put_u8(b' ');
                        out.put_slice(name);
                    }
                }
                out.put_slice(b"\r\n");
            }
            Request::Meta(meta) => meta.encode(out),
            Request::Cluster(command) => command.encode(out),
            Request::Scan(scan) => scan.encode(out),
            Request::Watch(watch) => {
                out.put_slice(b"watch");
                for word in &watch.words {
                    out.put_u8(b' ');
                    out.put_slice(word);
                }
                out.put_slice(b"\r\n");
            }
            Request::Slabs(Slabs::Automove { level, noreply }) => {
                put_fmt(out, format_args!("slabs automove {level}"));
                put_noreply(out, *noreply);
                out.put_slice(b"\r\n");
            }
            Request::Slabs(Slabs::AutomoveRatio { ratio, noreply }) => {
                out.put_slice(b"slabs automove ratio ");
                out.put_slice(ratio);
                put_noreply(out, *noreply);
                out.put_slice(b"\r\n");
            }
            Request::Slabs(Slabs::Reassign {
                source,
                destination,
            }) => put_fmt(
                out,
                format_args!("slabs reassign {source} {destination}\r\n"),
            ),
        }
    }

    /// Whether the request changes stored data (and so goes to the writer).
    pub fn is_write(&self) -> bool {
        match self {
            Request::Store(_)
            | Request::Delete(_)
            | Request::Arithmetic(_)
            | Request::Touch(_)
            | Request::FlushAll(_) => true,
            Request::Get(get) => get.touch.is_some(),
            Request::Meta(meta) => meta.is_write(),
            Request::Version
            | Request::Verbosity(_)
            | Request::Quit
            | Request::Stats(_)
            | Request::Cluster(_)
            | Request::Scan(_)
            | Request::Watch(_)
            | Request::Slabs(_) => false,
        }
    }
}

impl Get {
    fn encode(&self, out: &mut impl BufMut) {
        let command: &[u8] = match (self.touch.is_some(), self.with_cas) {
            (false, false) => b"get",
            (false, true) => b"gets",
            (true, false) => b"gat",
            (true, true) => b"gats",
        };
        out.put_slice(command);
        if let Some(exptime) = self.touch {
            put_fmt(out, format_args!(" {exptime}"));
        }
        for key in &self.keys {
            out.put_u8(b' ');
            out.put_slice(key);
        }
        out.put_slice(b"\r\n");
    }
}

impl Store {
    fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(self.mode.command().as_bytes());
        out.put_u8(b' ');
        out.put_slice(&self.key);
        put_fmt(
            out,
            format_args!(" {} {} {}", self.flags, self.exptime, self.value.len()),
        );
        if let StoreMode::Cas(unique) = self.mode {
            put_fmt(out, format_args!(" {unique}"));
        }
        put_noreply(out, self.noreply);
        out.put_slice(b"\r\n");
        out.put_slice(&self.value);
        out.put_slice(b"\r\n");
    }
}

fn put_noreply(out: &mut impl BufMut, noreply: bool) {
    if noreply {
        out.put_slice(b" noreply");
    }
}

/// Writes formatted text into a `BufMut` without an intermediate `String`.
pub(crate) fn put_fmt(out: &mut impl BufMut, args: std::fmt::Arguments<'_>) {
    struct Writer<'a, B: BufMut>(&'a mut B);
    impl<B: BufMut> std::fmt::Write for Writer<'_, B> {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.put_slice(s.as_bytes());
            Ok(())
        }
    }
    // Writing into a growable buffer cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut Writer(out), args);
}
