//! Connection threads, as memcached's worker threads: `--threads` OS
//! threads, each running its own single-threaded tokio runtime, and every
//! accepted connection handed to one of them (round robin) for its whole
//! life.
//!
//! A connection's task then never moves between threads and no thread
//! wakes another to steal work: on a get-heavy load the multi-threaded
//! scheduler spent about 1.5 µs of kernel time per request in those
//! wakeups and switches (docs/benchmarks.md, "Connection threads").
//! Everything else (accepting, membership, replication, metrics) stays on
//! the node's main runtime. Tasks a connection spawns (a peer connection
//! opened to forward its request) run on the connection's thread.
//!
//! [`ConnectionThreads::stop`] ends the runtimes after the server has
//! drained its connections; tasks still on them are dropped.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long a stopping thread waits for the tasks left on its runtime.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection threads of a node.
pub struct ConnectionThreads {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl ConnectionThreads {
    /// Starts `count` threads (at least one), named `mcstore-conn-<i>`.
    pub fn start(count: usize) -> std::io::Result<ConnectionThreads> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("mcstore-conn-{index}"))
                    .spawn(move || {
                        // Runs the connections spawned onto this runtime
                        // until told to stop.
                        let _ = runtime.block_on(stopped);
                        runtime.shutdown_timeout(STOP_TIMEOUT);
                    })?,
            );
        }
        Ok(ConnectionThreads {
            handles,
            next: AtomicUsize::new(0),
            stops,
            threads,
        })
    }

    /// Runs `task` on the next thread, round robin.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[index].spawn(task);
    }

    /// Stops every thread and waits for it.
    pub fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_round_robin_on_their_own_threads_until_stopped() {
        let threads = ConnectionThreads::start(2).unwrap();
        let (names_tx, names_rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let names_tx = names_tx.clone();
            threads.spawn(async move {
                // A timer and a wakeup from another thread work here.
                tokio::time::sleep(Duration::from_millis(1)).await;
                let name = std::thread::current().name().unwrap_or("").to_string();
                names_tx.send(name).unwrap();
            });
        }
        let mut names: Vec<String> = (0..4)
            .map(|_| names_rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "mcstore-conn-0",
                "mcstore-conn-0",
                "mcstore-conn-1",
                "mcstore-conn-1"
            ]
        );
        threads.spawn(std::future::pending());
        threads.stop();
    }
}
