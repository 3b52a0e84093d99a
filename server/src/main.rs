//! The `mcstore` binary: wires configuration, store and server together.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use mcstore_server::auth::{Auth, PasswordFile};
use mcstore_server::config::Config;
use mcstore_server::session::NodeInfo;
use mcstore_server::stats::Shared;
use mcstore_storage::clock::SystemClock;
use mcstore_storage::Store;
use tokio::signal::unix::{signal, SignalKind};

fn main() {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Err(err) = run(config) {
        eprintln!("mcstore: {err:#}");
        std::process::exit(1);
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    mcstore_server::cluster_start::check(&config, config.listen)?;
    let threads = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
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
    let started = Instant::now();
    let store = Arc::new(
        Store::open(config.store(), Arc::new(SystemClock))
            .with_context(|| format!("opening {}", config.data_dir.display()))?,
    );
    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "store open");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let local = listener.local_addr()?;
        let cluster = mcstore_server::cluster_start::start(&config, local, store.clone()).await?;
        let node = Arc::new(NodeInfo {
            started,
            max_connections: config.max_connections,
            threads,
            listen: local.to_string(),
            limits: config.limits(),
        });
        println!("listening on {local}");
        std::io::stdout().flush()?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
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
        let shared = Arc::new(Shared {
            auth,
            ..Shared::default()
        });
        mcstore_server::server::run(listener, store.clone(), node, shared, cluster, shutdown).await;
        anyhow::Ok(())
    })?;
    store
        .shutdown()
        .context("making the data durable at shutdown")?;
    tracing::info!("stopped cleanly");
    Ok(())
}
