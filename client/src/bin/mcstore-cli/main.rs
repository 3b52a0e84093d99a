//! `mcstore-cli`: an operator's command line for an mcstore cluster (or any
//! memcached servers): read and write keys, show the cluster, load and
//! check test data, back a cluster up and restore it.
//!
//! Exit codes (for scripts): 0 success; 1 a negative answer (a key not
//! found or not stored, `check` found missing or wrong items); 2 a usage
//! error; 3 no server could be reached or answered in time; 4 a server or
//! client error, or a bad dump file. Messages go to stderr, data
//! (`get`'s value, `stats`, `cluster`) to stdout.
//!
//! - this file: the flags and the dispatch;
//! - `keys.rs`: `get`, `set`, `delete`, `incr`, `decr`;
//! - `show.rs`: `stats`, `cluster`;
//! - `data.rs`: `load`, `check`;
//! - `backup.rs`: `dump`, `restore`.

mod backup;
mod data;
mod keys;
mod membership;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mcstore_client::{Client, Config, Error};

/// Command line for mcstore clusters and memcached servers.
#[derive(Debug, Parser)]
#[command(name = "mcstore-cli", version, about)]
struct Cli {
    #[command(flatten)]
    target: Target,
    /// Seconds a request may wait for its reply.
    #[arg(long, global = true, default_value_t = 2.0)]
    timeout: f64,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct Target {
    /// A cluster: seed nodes (`host:port,...`), whose `stats cluster` gives
    /// the topology; requests go to each key's owner.
    #[arg(long, env = "MCSTORE_SEEDS", value_delimiter = ',', global = true)]
    seeds: Vec<String>,
    /// A static ketama server list (`host:port[:weight],...`), placed as
    /// libmemcached places keys; no topology, no failover.
    #[arg(long, env = "MCSTORE_SERVERS", value_delimiter = ',', global = true)]
    servers: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a key's value (exit 1 if it is not found).
    Get {
        /// The key.
        key: String,
    },
    /// Store a value.
    Set {
        /// The key.
        key: String,
        /// The value (`-` reads it from stdin).
        value: String,
        /// Client flags.
        #[arg(long, default_value_t = 0)]
        flags: u32,
        /// Exptime: 0 never, up to 30 days relative seconds, else unix time.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        exptime: i32,
    },
    /// Delete a key (exit 1 if it is not found).
    Delete {
        /// The key.
        key: String,
    },
    /// Increment a decimal value and print the new one (exit 1 if not found).
    Incr {
        /// The key.
        key: String,
        /// The amount.
        #[arg(default_value_t = 1)]
        delta: u64,
    },
    /// Decrement a decimal value (stops at 0) and print the new one.
    Decr {
        /// The key.
        key: String,
        /// The amount.
        #[arg(default_value_t = 1)]
        delta: u64,
    },
    /// Print `stats [group]` of every node: `<node> <name> <value>` lines.
    Stats {
        /// The group (`settings`, `store`, `cluster`, ...).
        group: Option<String>,
    },
    /// A table of the members: state, weight, items, replication lag, hints.
    Cluster,
    /// Make a node leave the cluster: it hands its ranges over to the nodes
    /// that take them, announces `left` and exits. Waits until it is seen
    /// left (progress on stderr).
    Leave {
        /// The node (`host:port`, as it is advertised).
        node: String,
    },
    /// Take a node that is dead for good off the ring: the survivors
    /// re-replicate its ranges until every key has its copies again.
    Remove {
        /// The dead node (`host:port`, as it is advertised).
        node: String,
    },
    /// Write `<prefix><i>` for i in 0..count, with values `check` can verify.
    Load(data::LoadArgs),
    /// Read back what `load` wrote: prints `N ok, M missing, K wrong`;
    /// exit 1 on any missing or wrong.
    Check(data::LoadArgs),
    /// Back up every item (key, flags, absolute expiry, value) to a file.
    Dump {
        /// The backup file to write.
        file: PathBuf,
        /// Only this node's items (all it stores, replicas included);
        /// default: the whole cluster, each key once.
        #[arg(long)]
        node: Option<String>,
    },
    /// Write every item of a backup through the client, so each key lands
    /// on its owners in this cluster, whatever its size (expired items are
    /// skipped).
    Restore {
        /// The backup file to read.
        file: PathBuf,
        /// Writes in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
}

/// How a command failed, for the exit code.
#[derive(Debug)]
enum Failure {
    /// A negative answer (exit 1), already reported.
    Negative(String),
    /// Unreachable (3), or any other error (4).
    Error(anyhow::Error),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Error(err.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Error(err)
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Failure::Error(err.into())
    }
}

type Outcome = Result<(), Failure>;

fn exit_code(failure: &Failure) -> (u8, String) {
    match failure {
        Failure::Negative(message) => (1, message.clone()),
        Failure::Error(err) => {
            let code = match err.downcast_ref::<Error>() {
                Some(Error::NotFound | Error::NotStored | Error::Exists) => 1,
                Some(err) if err.is_unavailable() => 3,
                _ => 4,
            };
            (code, format!("{err:#}"))
        }
    }
}

async fn connect(cli: &Cli) -> Result<Client, Error> {
    let config = Config::default().timeout(Duration::from_secs_f64(cli.timeout.max(0.001)));
    if cli.target.seeds.is_empty() {
        Client::connect_servers_with(&cli.target.servers, config)
    } else {
        Client::connect_seeds_with(cli.target.seeds.clone(), config).await
    }
}

async fn run(cli: Cli) -> Outcome {
    let client = connect(&cli).await?;
    let quiet = cli.quiet;
    match cli.command {
        Command::Get { key } => keys::get(&client, &key).await,
        Command::Set {
            key,
            value,
            flags,
            exptime,
        } => keys::set(&client, &key, &value, flags, exptime).await,
        Command::Delete { key } => keys::delete(&client, &key).await,
        Command::Incr { key, delta } => keys::arithmetic(&client, &key, delta, true).await,
        Command::Decr { key, delta } => keys::arithmetic(&client, &key, delta, false).await,
        Command::Stats { group } => show::stats(&client, group.as_deref()).await,
        Command::Cluster => show::cluster(&client).await,
        Command::Leave { node } => membership::leave(&client, &node, quiet).await,
        Command::Remove { node } => membership::remove(&client, &node).await,
        Command::Load(args) => data::load(&client, &args, quiet).await,
        Command::Check(args) => data::check(&client, &args, quiet).await,
        Command::Dump { file, node } => backup::dump(&client, &file, node.as_deref(), quiet).await,
        Command::Restore { file, concurrency } => {
            backup::restore(&client, &file, concurrency, quiet).await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mcstore-cli: cannot start the runtime: {err}");
            return ExitCode::from(4);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let (code, message) = exit_code(&failure);
            eprintln!("mcstore-cli: {message}");
            ExitCode::from(code)
        }
    }
}

/// A progress bar on stderr (hidden when `quiet` or stderr is not a
/// terminal).
fn progress(total: Option<u64>, what: &str, quiet: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
                .expect("a valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {pos} ({per_sec})")
                .expect("a valid template"),
        ),
    };
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_message(what.to_owned());
    bar
}
