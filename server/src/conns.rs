//! `stats conns`: every open connection and the listener, by file
//! descriptor, in memcached's shape (`<fd>:addr`, `<fd>:listen_addr`,
//! `<fd>:state`, `<fd>:secs_since_last_cmd`).
//!
//! States use memcached's names for what a connection is doing:
//! `conn_listening` (the listener), `conn_parse_cmd` (executing requests),
//! `conn_nread` (holding part of a request, waiting for the rest),
//! `conn_read` (idle, waiting for a request) and `conn_watch` (streaming
//! `watch` lines).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// The listener.
    Listening,
    /// Waiting for a request.
    Read,
    /// Holding part of a request.
    Nread,
    /// Executing requests.
    ParseCmd,
    /// Streaming `watch` lines.
    Watch,
}

impl ConnState {
    /// memcached's name.
    pub fn name(self) -> &'static str {
        match self {
            ConnState::Listening => "conn_listening",
            ConnState::Read => "conn_read",
            ConnState::Nread => "conn_nread",
            ConnState::ParseCmd => "conn_parse_cmd",
            ConnState::Watch => "conn_watch",
        }
    }

    fn from_u8(value: u8) -> ConnState {
        match value {
            0 => ConnState::Listening,
            1 => ConnState::Read,
            2 => ConnState::Nread,
            3 => ConnState::ParseCmd,
            _ => ConnState::Watch,
        }
    }
}

/// One connection's entry, updated by its task.
#[derive(Debug)]
pub struct ConnEntry {
    fd: i32,
    addr: String,
    listen_addr: Option<String>,
    state: AtomicU8,
    last_cmd_ms: AtomicU64,
    epoch: Instant,
}

impl ConnEntry {
    /// Sets the state.
    pub fn set_state(&self, state: ConnState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Notes that a request arrived now.
    pub fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_cmd_ms.store(now, Ordering::Relaxed);
    }

    /// The descriptor.
    pub fn fd(&self) -> i32 {
        self.fd
    }
}

/// One line group of `stats conns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnReport {
    /// File descriptor.
    pub fd: i32,
    /// `tcp:<peer>` (the listener: `tcp:<its address>`).
    pub addr: String,
    /// `tcp:<listener address>` for client connections.
    pub listen_addr: Option<String>,
    /// memcached's state name.
    pub state: &'static str,
    /// Whole seconds since the last request (the listener: since it opened).
    pub secs_since_last_cmd: u64,
}

/// Every open connection, by descriptor.
#[derive(Debug)]
pub struct Connections {
    epoch: Instant,
    entries: Mutex<BTreeMap<i32, Arc<ConnEntry>>>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            epoch: Instant::now(),
            entries: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Connections {
    /// Adds a connection (or the listener) in `state`.
    pub fn register(
        &self,
        fd: i32,
        addr: String,
        listen_addr: Option<String>,
        state: ConnState,
    ) -> Arc<ConnEntry> {
        let entry = Arc::new(ConnEntry {
            fd,
            addr,
            listen_addr,
            state: AtomicU8::new(state as u8),
            last_cmd_ms: AtomicU64::new(0),
            epoch: self.epoch,
        });
        entry.touch();
        self.lock().insert(fd, entry.clone());
        entry
    }

    /// Removes `entry` (if its descriptor still belongs to it).
    pub fn remove(&self, entry: &Arc<ConnEntry>) {
        let mut entries = self.lock();
        if entries
            .get(&entry.fd)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
        {
            entries.remove(&entry.fd);
        }
    }

    /// Every connection, by descriptor.
    pub fn report(&self) -> Vec<ConnReport> {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.lock()
            .values()
            .map(|entry| ConnReport {
                fd: entry.fd,
                addr: entry.addr.clone(),
                listen_addr: entry.listen_addr.clone(),
                state: ConnState::from_u8(entry.state.load(Ordering::Relaxed)).name(),
                secs_since_last_cmd: now.saturating_sub(entry.last_cmd_ms.load(Ordering::Relaxed))
                    / 1000,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, Arc<ConnEntry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `tcp:<addr>` as memcached writes it.
pub fn tcp_name(addr: std::net::SocketAddr) -> String {
    format!("tcp:{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_by_descriptor_and_forgets_closed_ones() {
        let conns = Connections::default();
        let client = conns.register(
            9,
            "tcp:1.2.3.4:5".into(),
            Some("tcp:l".into()),
            ConnState::Read,
        );
        conns.register(3, "tcp:l".into(), None, ConnState::Listening);
        client.set_state(ConnState::Watch);
        let report = conns.report();
        assert_eq!(report.iter().map(|r| r.fd).collect::<Vec<_>>(), [3, 9]);
        assert_eq!(report[1].state, "conn_watch");
        conns.remove(&client);
        assert_eq!(conns.report().len(), 1);
    }
}
