//! A small pool of pipelined connections to one server.
//!
//! Requests are spread round-robin over the pool's connections, each of
//! which carries many requests at once ([`crate::conn`]). A connection is
//! opened when first needed and replaced when it fails; a request that
//! gets no reply within the timeout closes its connection (a server that
//! stopped answering would stall every request behind it).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::conn::{Conn, Expect, Response};
use crate::error::{Error, Result};

/// The connections to one server.
pub(crate) struct NodePool {
    addr: String,
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
    timeout: Duration,
    connect_timeout: Duration,
    /// Requests sent to this server (answered or not).
    pub(crate) requests: AtomicU64,
}

impl NodePool {
    pub(crate) fn new(
        addr: &str,
        connections: usize,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> NodePool {
        NodePool {
            addr: addr.to_owned(),
            slots: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            timeout,
            connect_timeout,
            requests: AtomicU64::new(0),
        }
    }

    async fn conn(&self) -> Result<Arc<Conn>> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(conn) = slot.as_ref().filter(|conn| !conn.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = Arc::new(Conn::connect(&self.addr, self.connect_timeout).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Sends one request and waits for its reply, at most the timeout.
    pub(crate) async fn call(&self, bytes: Bytes, expect: Expect) -> Result<Response> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let conn = self.conn().await?;
        match tokio::time::timeout(self.timeout, conn.call(bytes, expect)).await {
            Ok(result) => result,
            Err(_) => {
                conn.close();
                Err(Error::Timeout {
                    addr: self.addr.clone(),
                    timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
        }
    }
}
