//! The listener: accepts connections, enforces the connection limit, runs
//! one task per connection on one of the connection threads
//! ([`crate::workers`]) and shuts down gracefully.
//!
//! Shutdown contract: when `shutdown` resolves, stop accepting, let every
//! connection finish the requests it has read (their writes complete in the
//! writer), wait for the connections to close, and return; the caller then
//! makes the store durable.

use std::future::Future;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mcstore_protocol::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::Instrument;

use mcstore_storage::Store;

use crate::cluster::ClusterNode;
use crate::conns::{tcp_name, ConnState};
use crate::session::{NodeInfo, Session};
use crate::stats::Shared;
use crate::workers::ConnectionThreads;

/// How long shutdown waits for connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    store: Arc<Store>,
    node: Arc<NodeInfo>,
    shared: Arc<Shared>,
    cluster: Option<Arc<ClusterNode>>,
    workers: &ConnectionThreads,
    shutdown: impl Future<Output = ()>,
) {
    let limits: Limits = node.limits;
    let slots = Arc::new(Semaphore::new(node.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let next_id = AtomicU64::new(1);
    let local = listener.local_addr().ok();
    let local_name = local.map_or_else(|| "tcp:?".to_owned(), tcp_name);
    let listener_entry = shared.conns.register(
        listener.as_raw_fd(),
        local_name.clone(),
        None,
        ConnState::Listening,
    );
    tokio::pin!(shutdown);
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::error!(cause = %err, "accept failed");
                    // Out of file descriptors and the like: back off briefly.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        shared
            .counters
            .total_connections
            .fetch_add(1, Ordering::Relaxed);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared
                .counters
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = stream
                    .write_all(b"ERROR Too many open connections\r\n")
                    .await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("connection", id, %peer);
        let fd = stream.as_raw_fd();
        let entry = shared.conns.register(
            fd,
            tcp_name(peer),
            Some(local_name.clone()),
            ConnState::Read,
        );
        let store = store.clone();
        let node = node.clone();
        let cluster = cluster.clone();
        let mut stop = stop_rx.clone();
        let done = done_tx.clone();
        let shared = shared.clone();
        // The connection moves to its thread's runtime (a tokio stream
        // belongs to the runtime that registered it).
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(cause = %err, "could not hand a connection to its thread");
                shared.conns.remove(&entry);
                continue;
            }
        };
        workers.spawn(
            async move {
                shared.curr_connections.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("accepted");
                let stream = match TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(err) => {
                        tracing::warn!(cause = %err, "could not register a connection");
                        shared.conns.remove(&entry);
                        shared.curr_connections.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                };
                // A peer's connection starts with the peer handshake, which
                // no memcache client sends.
                let mut first = [0u8; 1];
                let is_peer = tokio::select! {
                    peeked = stream.peek(&mut first) => {
                        matches!(peeked, Ok(1)) && first[0] == mcstore_cluster::peer::PEER_FIRST_BYTE
                    }
                    _ = stop.changed() => false,
                };
                match cluster.clone().filter(|_| is_peer) {
                    Some(cluster) => {
                        let store2 = store.clone();
                        let session =
                            Session::new(store, node, shared.clone(), Some(cluster.clone()), true);
                        crate::peer_session::serve(stream, session, store2, cluster, limits, stop)
                            .await;
                    }
                    None => {
                        let mut session = Session::new(store, node, shared.clone(), cluster, false);
                        session.client_fd = fd;
                        if let Err(err) =
                            crate::connection::serve(stream, session, limits, stop, &shared, &entry)
                                .await
                        {
                            tracing::debug!(cause = %err, "connection error");
                        }
                    }
                }
                shared.conns.remove(&entry);
                shared.watchers.prune();
                shared.curr_connections.fetch_sub(1, Ordering::Relaxed);
                tracing::debug!("closed");
                drop(slot);
                drop(done);
            }
            .instrument(span),
        );
    }
    shared.conns.remove(&listener_entry);
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_tx);
    if tokio::time::timeout(DRAIN_TIMEOUT, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain timeout; stopping anyway");
    }
}
