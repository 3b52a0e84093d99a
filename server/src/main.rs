//! The `mcstore` binary: wires configuration, logging, store, metrics and
//! server together.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use mcstore_server::auth::{Auth, PasswordFile};
use mcstore_server::config::Config;
use mcstore_server::config_file::{self, LoadError};
use mcstore_server::metrics::{self, NodeMetrics};
use mcstore_server::session::NodeInfo;
use mcstore_server::stats::Shared;
use mcstore_server::workers::ConnectionThreads;
use mcstore_server::{listen, logging};
use mcstore_storage::clock::SystemClock;
use mcstore_storage::Store;
use tokio::signal::unix::{signal, SignalKind};

fn main() {
    let config = match config_file::load(std::env::args_os()) {
        Ok(config) => config,
        Err(LoadError::Usage(err)) => err.exit(),
        Err(err) => {
            eprintln!("mcstore: {err}");
            std::process::exit(2);
        }
    };
    if config.generate_man {
        if let Err(err) = mcstore_server::man::write(&mut std::io::stdout()) {
            eprintln!("mcstore: writing the man page: {err}");
            std::process::exit(1);
        }
        return;
    }
    logging::init(config.log_format, config.log_level());
    if let Err(err) = run(config) {
        tracing::error!("{}", logging::describe_error(&err));
        std::process::exit(1);
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let threads = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let workers = ConnectionThreads::start(threads).context("starting the connection threads")?;
    match mcstore_server::rlimit::raise_open_files_for(config.max_connections) {
        Ok(open_files) if (open_files as usize) < config.max_connections => tracing::warn!(
            open_files,
            max_connections = config.max_connections,
            "the open-file limit is below --max-connections; raise the hard limit (ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!(cause = %err, "could not raise the open-file limit"),
    }
    let auth = match &config.sasl_password_file {
        Some(path) => {
            let passwords =
                PasswordFile::load(path).with_context(|| format!("loading {}", path.display()))?;
            tracing::info!(?passwords, "clients must authenticate");
            Auth {
                passwords: Some(Arc::new(passwords)),
            }
        }
        None => Auth::default(),
    };
    // Ports first: a port in use is reported before the data directory is
    // created or locked.
    let listen = config.listen_spec();
    let client_listener = listen::bind(&listen)?;
    mcstore_server::cluster_start::check(&config, client_listener.local_addr()?)?;
    let metrics_listener = config
        .metrics_listen
        .as_ref()
        .map(listen::bind)
        .transpose()?;
    let started = Instant::now();
    let store = Arc::new(Store::open(config.store(), Arc::new(SystemClock))?);
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "store open");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(client_listener)?;
        let local = listener.local_addr()?;
        let cluster = mcstore_server::cluster_start::start(&config, local, store.clone()).await?;
        let node = Arc::new(NodeInfo {
            started,
            max_connections: config.max_connections,
            threads,
            listen: local.to_string(),
            limits: config.limits(),
        });
        let shared = Arc::new(Shared {
            auth,
            ..Shared::default()
        });
        if let Some(metrics_listener) = metrics_listener {
            let metrics_listener = tokio::net::TcpListener::from_std(metrics_listener)?;
            let metrics_addr = metrics_listener.local_addr()?;
            let mut registry = metrics::Registry::default();
            registry.register(Arc::new(NodeMetrics {
                store: store.clone(),
                node: node.clone(),
                shared: shared.clone(),
            }));
            tokio::spawn(metrics::serve(metrics_listener, Arc::new(registry)));
            tracing::info!(metrics_addr = %metrics_addr, "serving metrics");
        }
        // Signal handlers before readiness: a SIGTERM right after the
        // `listening on` event is a graceful stop, not the default kill.
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        tracing::info!(addr = %local, "{}", logging::LISTENING);
        let leaving = cluster.clone();
        let shutdown = async move {
            let left = async {
                match &leaving {
                    Some(cluster) => cluster.exit_requested().await,
                    None => std::future::pending().await,
                }
            };
            let signalled = tokio::select! {
                _ = interrupt.recv() => true,
                _ = terminate.recv() => true,
                () = left => false,
            };
            tracing::info!("shutting down");
            if let Some(cluster) = leaving.filter(|_| signalled) {
                // Peers stop routing here before the connections drain.
                mcstore_server::rebalance::announce_left(&cluster).await;
            }
        };
        mcstore_server::server::run(
            listener,
            store.clone(),
            node,
            shared,
            cluster,
            &workers,
            shutdown,
        )
        .await;
        anyhow::Ok(())
    })?;
    workers.stop();
    store
        .shutdown()
        .context("making the data durable at shutdown")?;
    tracing::info!("stopped cleanly");
    Ok(())
}
