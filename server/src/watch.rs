//! `watch`: log lines streamed to a connection, as memcached 1.6 does.
//!
//! `watch` (alone: `fetchers`), `watch fetchers mutations evictions ...`
//! answers `OK` and then streams, one line per event:
//!
//! - `fetchers`: `ts=<s>.<us> gid=<n> type=item_get key=<uri-encoded>
//!   status=found|not_found|flushed|expired clsid=<1 or 0> cfd=<fd>
//!   size=<value bytes>`, for every item lookup a command makes (each key of
//!   a get, and the lookup a storage, delete, touch, incr/decr or meta
//!   command makes of its key first, as memcached's do);
//! - `mutations`: `... type=item_store key=... status=stored|not_stored|
//!   exists|not_found cmd=set|add|replace|append|prepend|cas ttl=<s>
//!   clsid=1 cfd=<fd> size=<bytes>`, for every storage command;
//! - `evictions`: nothing, ever: mcstore keeps every item until it is
//!   deleted or expires.
//!
//! Other memcached event classes (`rawcmds`, `sysevents`, `connevents`,
//! `proxy*`) are accepted and stream nothing. A watcher that cannot keep up
//! loses lines and is told `skipped=<n>` before the next one it gets, as
//! memcached does. While anyone watches, connections run their requests
//! one at a time (so lines come in request order).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Lines a watcher may have queued before it loses some.
const WATCHER_QUEUE: usize = 4096;

/// Which events a watcher asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchFlags {
    /// `fetchers`.
    pub fetchers: bool,
    /// `mutations`.
    pub mutations: bool,
    /// `evictions`.
    pub evictions: bool,
}

impl WatchFlags {
    /// The flags of `watch <words>`: none means `fetchers`; `None` for an
    /// unknown word (memcached answers `ERROR`).
    pub fn parse<'a>(words: impl IntoIterator<Item = &'a [u8]>) -> Option<WatchFlags> {
        let mut flags = WatchFlags::default();
        let mut any = false;
        for word in words {
            any = true;
            match word {
                b"fetchers" => flags.fetchers = true,
                b"mutations" => flags.mutations = true,
                b"evictions" => flags.evictions = true,
                b"rawcmds" | b"sysevents" | b"connevents" | b"proxyreqs" | b"proxyevents"
                | b"proxyuser" => {}
                _ => return None,
            }
        }
        if !any {
            flags.fetchers = true;
        }
        Some(flags)
    }
}

/// What a lookup found (memcached's `was_found`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStatus {
    /// No item.
    NotFound,
    /// A live item.
    Found,
    /// An item hidden by `flush_all`.
    Flushed,
    /// An expired item.
    Expired,
}

impl FetchStatus {
    fn name(self) -> &'static str {
        match self {
            FetchStatus::NotFound => "not_found",
            FetchStatus::Found => "found",
            FetchStatus::Flushed => "flushed",
            FetchStatus::Expired => "expired",
        }
    }
}

/// How a storage command ended (memcached's `store_item_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    /// `NOT_STORED`.
    NotStored,
    /// `STORED`.
    Stored,
    /// `EXISTS`.
    Exists,
    /// `NOT_FOUND`.
    NotFound,
}

impl StoreStatus {
    fn name(self) -> &'static str {
        match self {
            StoreStatus::NotStored => "not_stored",
            StoreStatus::Stored => "stored",
            StoreStatus::Exists => "exists",
            StoreStatus::NotFound => "not_found",
        }
    }
}

struct Watcher {
    flags: WatchFlags,
    lines: mpsc::Sender<Bytes>,
    skipped: u64,
}

/// The node's watchers.
#[derive(Default)]
pub struct Watchers {
    gid: AtomicU64,
    fetchers: AtomicUsize,
    mutations: AtomicUsize,
    list: Mutex<Vec<Watcher>>,
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchers")
            .field("fetchers", &self.fetchers)
            .field("mutations", &self.mutations)
            .finish_non_exhaustive()
    }
}

impl Watchers {
    /// Whether anyone watches fetches or mutations (connections then run
    /// requests one at a time and report their lookups).
    pub fn active(&self) -> bool {
        self.wants_fetches() || self.wants_mutations()
    }

    /// Whether anyone watches `fetchers`.
    pub fn wants_fetches(&self) -> bool {
        self.fetchers.load(Ordering::Relaxed) > 0
    }

    /// Whether anyone watches `mutations`.
    pub fn wants_mutations(&self) -> bool {
        self.mutations.load(Ordering::Relaxed) > 0
    }

    /// Adds a watcher; its lines arrive on the receiver until it is dropped
    /// (then [`Watchers::prune`] forgets it).
    pub fn subscribe(&self, flags: WatchFlags) -> mpsc::Receiver<Bytes> {
        let (lines, receiver) = mpsc::channel(WATCHER_QUEUE);
        let mut list = self.lock();
        list.push(Watcher {
            flags,
            lines,
            skipped: 0,
        });
        self.recount(&list);
        receiver
    }

    /// Forgets watchers whose connection is gone.
    pub fn prune(&self) {
        let mut list = self.lock();
        list.retain(|w| !w.lines.is_closed());
        self.recount(&list);
    }

    fn recount(&self, list: &[Watcher]) {
        let count = |pick: fn(&WatchFlags) -> bool| list.iter().filter(|w| pick(&w.flags)).count();
        self.fetchers
            .store(count(|f| f.fetchers), Ordering::Relaxed);
        self.mutations
            .store(count(|f| f.mutations), Ordering::Relaxed);
    }

    /// Reports a lookup of `key`.
    pub fn fetch(&self, key: &[u8], status: FetchStatus, size: usize, cfd: i32) {
        if !self.wants_fetches() {
            return;
        }
        let clsid = u8::from(status == FetchStatus::Found);
        let size = if status == FetchStatus::Found {
            size
        } else {
            0
        };
        self.publish(
            |f| f.fetchers,
            |gid, ts| {
                format!(
                    "{ts} gid={gid} type=item_get key={} status={} clsid={clsid} cfd={cfd} size={size}\n",
                    uri_encode(key),
                    status.name()
                )
            },
        );
    }

    /// Reports a storage command on `key`.
    pub fn store(&self, key: &[u8], event: StoreEvent, cfd: i32) {
        if !self.wants_mutations() {
            return;
        }
        self.publish(
            |f| f.mutations,
            |gid, ts| {
                format!(
                    "{ts} gid={gid} type=item_store key={} status={} cmd={} ttl={} clsid=1 cfd={cfd} size={}\n",
                    uri_encode(key),
                    event.status.name(),
                    event.command,
                    event.ttl,
                    event.size
                )
            },
        );
    }

    fn publish(&self, wants: fn(&WatchFlags) -> bool, line: impl FnOnce(u64, String) -> String) {
        let gid = self.gid.fetch_add(1, Ordering::Relaxed) + 1;
        let line = Bytes::from(line(gid, timestamp()));
        let mut list = self.lock();
        let mut closed = false;
        for watcher in list.iter_mut().filter(|w| wants(&w.flags)) {
            if watcher.skipped > 0 {
                let notice = Bytes::from(format!("skipped={}\n", watcher.skipped));
                if watcher.lines.try_send(notice).is_err() {
                    watcher.skipped += 1;
                    continue;
                }
                watcher.skipped = 0;
            }
            match watcher.lines.try_send(line.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => watcher.skipped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => closed = true,
            }
        }
        if closed {
            list.retain(|w| !w.lines.is_closed());
            self.recount(&list);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Watcher>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What an `item_store` line says.
#[derive(Debug, Clone, Copy)]
pub struct StoreEvent {
    /// The outcome.
    pub status: StoreStatus,
    /// `set`, `add`, `replace`, `append`, `prepend` or `cas`.
    pub command: &'static str,
    /// Seconds the item has left (0: never expires).
    pub ttl: u64,
    /// Value bytes of the item stored (or offered).
    pub size: u64,
}

/// `ts=<seconds>.<microseconds>`, microseconds unpadded as memcached prints them.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("ts={}.{}", now.as_secs(), now.subsec_micros())
}

/// memcached's `uriencode`: letters, digits and `-._~` as they are, every
/// other byte `%XX`.
pub fn uri_encode(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_default_to_fetchers_and_refuse_unknown_words() {
        let parse = |words: &[&str]| WatchFlags::parse(words.iter().map(|w| w.as_bytes()));
        assert_eq!(
            parse(&[]),
            Some(WatchFlags {
                fetchers: true,
                ..WatchFlags::default()
            })
        );
        assert_eq!(
            parse(&["mutations"]).map(|f| (f.fetchers, f.mutations)),
            Some((false, true))
        );
        assert_eq!(parse(&["fetchers", "bogus"]), None);
    }

    #[test]
    fn lines_reach_watchers_and_gone_watchers_are_forgotten() {
        let watchers = Watchers::default();
        assert!(!watchers.active());
        let mut lines = watchers.subscribe(WatchFlags::parse([&b"mutations"[..]]).unwrap());
        assert!(watchers.wants_mutations() && !watchers.wants_fetches());
        watchers.fetch(b"k", FetchStatus::Found, 3, 7);
        let event = StoreEvent {
            status: StoreStatus::Stored,
            command: "set",
            ttl: 0,
            size: 3,
        };
        watchers.store(b"a:b c", event, 7);
        let line = String::from_utf8(lines.try_recv().unwrap().to_vec()).unwrap();
        assert!(line.starts_with("ts="), "{line}");
        assert!(
            line.ends_with(
                " type=item_store key=a%3Ab%20c status=stored cmd=set ttl=0 clsid=1 cfd=7 size=3\n"
            ),
            "{line}"
        );
        assert!(lines.try_recv().is_err(), "fetches were not asked for");
        drop(lines);
        watchers.prune();
        assert!(!watchers.active());
    }
}
