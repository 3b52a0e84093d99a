//! The measurement loop: starts every system, then for each cell of the
//! matrix runs `runs` rounds, each round visiting the systems one after the
//! other (so a burst of machine noise spreads over all of them). memcache
//! systems are driven by the `mcstore-bench` binary (`--json`), Redis by
//! `redis-benchmark --csv` with `-n` sized from a calibrated rate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::args::Plan;
use super::redis::{combine_mixed, parse_csv, RedisBenchArgs, RedisResult};
use super::servers::{shell_words, Binaries, Server, System, TempDir};
use super::summary::{Cell, Results, Sample};
use crate::args::WorkloadKind;

/// The client programs.
#[derive(Debug, Clone)]
pub struct Clients {
    /// `mcstore-bench`.
    pub bench: PathBuf,
    /// `redis-benchmark`.
    pub redis_benchmark: PathBuf,
}

/// The machine and the versions of everything measured.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Logical CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
    /// `memcached -V`.
    pub memcached: String,
    /// `redis-server --version`.
    pub redis: String,
    /// `redis-benchmark --version`.
    pub redis_benchmark: String,
    /// `mcstore --version`.
    pub mcstore: String,
    /// `date -u` at the start.
    pub started: String,
    /// `date -u` at the end.
    pub finished: String,
    /// The 1-minute load average at the start (`/proc/loadavg`).
    pub load_start: String,
    /// The 1-minute load average at the end.
    pub load_end: String,
}

/// Everything the report needs.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// What ran.
    pub plan: Plan,
    /// The medians' inputs.
    pub results: Results,
    /// Each system's server command line (ports are the ones used).
    pub server_commands: Vec<(System, String)>,
    /// Per cell: the mcstore-bench command line and the redis-benchmark ones
    /// (one line per test), with `ADDR`, `PORT` and `N` placeholders.
    pub client_commands: Vec<(Cell, String, String)>,
    /// Machine and versions.
    pub environment: Environment,
}

/// The first line of `program args` stdout (or stderr), or `unknown (...)`.
pub fn first_line_of(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(output) => {
            let text = if output.stdout.is_empty() {
                output.stderr
            } else {
                output.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        }
        Err(error) => format!("unknown ({error})"),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Runs `command` with stdout captured (through a file, so a chatty child
/// cannot block on a full pipe), killing it after `timeout`. Returns stdout
/// if it exited 0.
pub fn run_with_deadline(command: &mut Command, timeout: Duration) -> anyhow::Result<String> {
    let scratch = TempDir::new("mcstore-compare-client")?;
    let out_path = scratch.path().join("stdout");
    let err_path = scratch.path().join("stderr");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()
        .context("cannot start the client")?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the client did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        bail!("the client exited with {status}: {}", stderr.trim());
    }
    Ok(stdout)
}

/// The mcstore-bench arguments for `cell` against `addr`.
pub fn bench_args(plan: &Plan, cell: &Cell, addr: &str) -> Vec<String> {
    let mut args = vec![
        "--servers".to_owned(),
        addr.to_owned(),
        "--connections".to_owned(),
        cell.connections.to_string(),
        "--pipeline".to_owned(),
        cell.pipeline.to_string(),
        "--workload".to_owned(),
        cell.workload.to_string(),
        "--keys".to_owned(),
        plan.keys.to_string(),
        "--key-size".to_owned(),
        plan.key_size.to_string(),
        "--value-size".to_owned(),
        cell.value_size.to_string(),
        "--duration".to_owned(),
        format!("{}ms", plan.duration.as_millis()),
        "--warmup".to_owned(),
        format!("{}ms", plan.warmup.as_millis()),
        "--json".to_owned(),
        "--quiet".to_owned(),
    ];
    if cell.needs_prefill() {
        args.push("--prefill".to_owned());
    }
    args
}

/// Reads `ops_per_sec`, `p99_us` and `errors` from the last non-empty line
/// of mcstore-bench `--json` output.
pub fn parse_bench_json(stdout: &str) -> anyhow::Result<Sample> {
    let line = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .context("mcstore-bench printed nothing")?;
    let value: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
    let number = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("no number `{key}` in {line}"))
    };
    Ok(Sample {
        ops_per_sec: number("ops_per_sec")?,
        p99_us: number("p99_us")?,
        errors: number("errors")? as u64,
    })
}

/// Runs the plan and collects the results. Progress goes to stderr. Every
/// server is stopped and its directory removed before this returns, also
/// on error.
pub fn run(plan: &Plan, binaries: &Binaries, clients: &Clients) -> anyhow::Result<Comparison> {
    let mut environment = Environment {
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        kernel: first_line_of(Path::new("uname"), &["-r"]),
        memcached: first_line_of(&binaries.memcached, &["-V"]),
        redis: first_line_of(&binaries.redis_server, &["--version"]),
        redis_benchmark: first_line_of(&clients.redis_benchmark, &["--version"]),
        mcstore: first_line_of(&binaries.mcstore, &["--version"]),
        started: first_line_of(Path::new("date"), &["-u"]),
        load_start: load_average(),
        ..Environment::default()
    };
    let mut servers = Vec::new();
    for &system in &plan.systems {
        let server =
            Server::start(system, binaries).with_context(|| format!("cannot start {system}"))?;
        eprintln!("started {system} on {}: {}", server.addr(), server.command);
        servers.push(server);
    }
    let server_commands = servers
        .iter()
        .map(|server| (server.system, server.command.clone()))
        .collect();
    let mut client_commands = Vec::new();
    for cell in &plan.cells {
        let bench = shell_words(&clients.bench, &bench_args(plan, cell, "ADDR"));
        let tests: &[&str] = match cell.workload {
            WorkloadKind::Set => &["set"],
            WorkloadKind::Get => &["get"],
            WorkloadKind::Mixed(_) => &["set", "get"],
        };
        let redis = tests
            .iter()
            .map(|test| {
                format!(
                    "{} -h 127.0.0.1 -p PORT -c {} -P {} -d {} -r {} -n N -t {test} --csv",
                    clients.redis_benchmark.display(),
                    cell.connections,
                    cell.pipeline,
                    cell.value_size,
                    plan.keys
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        client_commands.push((*cell, bench, redis));
    }

    let mut results = Results::default();
    let mut rates = Rates::new();
    let total = plan.cells.len() * plan.runs as usize * servers.len();
    let mut done = 0;
    for (index, cell) in plan.cells.iter().enumerate() {
        for run in 0..plan.runs {
            for server in &servers {
                done += 1;
                let outcome = if server.system.is_redis() {
                    RedisCell {
                        plan,
                        cell,
                        index,
                        server,
                        clients,
                    }
                    .measure(run == 0, &mut rates)
                } else {
                    measure_memcache(plan, cell, server, clients)
                };
                match outcome {
                    Ok(sample) => {
                        eprintln!(
                            "[{done}/{total}] {} run {} {}: {:.0} ops/s, p99 {:.0} us{}",
                            cell.label(),
                            run + 1,
                            server.system,
                            sample.ops_per_sec,
                            sample.p99_us,
                            if sample.errors > 0 {
                                format!(", {} errors", sample.errors)
                            } else {
                                String::new()
                            }
                        );
                        results.record(index, server.system, sample);
                    }
                    Err(error) => {
                        eprintln!(
                            "[{done}/{total}] {} run {} {}: FAILED: {error:#}",
                            cell.label(),
                            run + 1,
                            server.system
                        );
                        results.record_failure(index, server.system, format!("{error:#}"));
                    }
                }
            }
        }
    }
    drop(servers);
    environment.finished = first_line_of(Path::new("date"), &["-u"]);
    environment.load_end = load_average();
    Ok(Comparison {
        plan: plan.clone(),
        results,
        server_commands,
        client_commands,
        environment,
    })
}

fn client_timeout(plan: &Plan) -> Duration {
    plan.duration * 10 + plan.warmup + Duration::from_secs(60)
}

fn measure_memcache(
    plan: &Plan,
    cell: &Cell,
    server: &Server,
    clients: &Clients,
) -> anyhow::Result<Sample> {
    let stdout = run_with_deadline(
        Command::new(&clients.bench).args(bench_args(plan, cell, &server.addr())),
        client_timeout(plan),
    )?;
    parse_bench_json(&stdout)
}

/// One redis-benchmark invocation; returns its rows.
fn redis_bench(
    plan: &Plan,
    clients: &Clients,
    args: &RedisBenchArgs,
) -> anyhow::Result<Vec<RedisResult>> {
    let stdout = run_with_deadline(
        Command::new(&clients.redis_benchmark).args(args.to_args()),
        client_timeout(plan),
    )?;
    Ok(parse_csv(&stdout)?)
}

/// One Redis server on one cell, and the rates measured so far.
struct RedisCell<'a> {
    plan: &'a Plan,
    cell: &'a Cell,
    index: usize,
    server: &'a Server,
    clients: &'a Clients,
}

type Rates = HashMap<(usize, System, &'static str), f64>;

impl RedisCell<'_> {
    /// Runs one redis-benchmark test (`set` or `get`) for about `seconds`,
    /// calibrating the request count on the first call for this cell.
    fn timed_test(
        &self,
        rates: &mut Rates,
        test: &'static str,
        seconds: f64,
    ) -> anyhow::Result<RedisResult> {
        let cell = self.cell;
        let in_flight = u64::from(cell.connections) * u64::from(cell.pipeline);
        let mut args = RedisBenchArgs {
            port: self.server.port,
            connections: cell.connections,
            pipeline: cell.pipeline,
            value_size: cell.value_size,
            keys: self.plan.keys,
            requests: (in_flight * 100).clamp(2_000, 100_000),
            tests: test.to_owned(),
        };
        let key = (self.index, self.server.system, test);
        let rate = match rates.get(&key) {
            Some(&rate) => rate,
            None => {
                let calibration = redis_bench(self.plan, self.clients, &args)?;
                calibration.first().context("no calibration row")?.rps
            }
        };
        args.requests = ((rate * seconds) as u64).max(in_flight * 4).max(1_000);
        let rows = redis_bench(self.plan, self.clients, &args)?;
        let row = rows
            .into_iter()
            .find(|row| row.test.eq_ignore_ascii_case(test))
            .with_context(|| format!("no {test} row"))?;
        rates.insert(key, row.rps);
        Ok(row)
    }

    /// One run: a prefill on the first run of a cell that reads, then the
    /// cell's test(s).
    fn measure(&self, first_run: bool, rates: &mut Rates) -> anyhow::Result<Sample> {
        let cell = self.cell;
        if first_run && cell.needs_prefill() {
            // Random keys over 3x the key space store about 95% of them.
            redis_bench(
                self.plan,
                self.clients,
                &RedisBenchArgs {
                    port: self.server.port,
                    connections: 4,
                    pipeline: 16,
                    value_size: cell.value_size,
                    keys: self.plan.keys,
                    requests: self.plan.keys * 3,
                    tests: "set".to_owned(),
                },
            )
            .context("prefill")?;
        }
        let seconds = self.plan.duration.as_secs_f64();
        let (ops_per_sec, p99_us) = match cell.workload {
            WorkloadKind::Set => {
                let row = self.timed_test(rates, "set", seconds)?;
                (row.rps, row.p99_us)
            }
            WorkloadKind::Get => {
                let row = self.timed_test(rates, "get", seconds)?;
                (row.rps, row.p99_us)
            }
            WorkloadKind::Mixed(fraction) => {
                let set = self.timed_test(rates, "set", seconds * (1.0 - fraction).max(0.25))?;
                let get = self.timed_test(rates, "get", seconds * fraction.max(0.25))?;
                combine_mixed(&set, &get, fraction)
                    .context("redis-benchmark reported a zero rate")?
            }
        };
        Ok(Sample {
            ops_per_sec,
            p99_us,
            errors: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_json_line_of_mcstore_bench() {
        let stdout =
            "progress...\n{\"ops\":10,\"ops_per_sec\":1234.5,\"p99_us\":87.0,\"errors\":2}\n\n";
        let sample = parse_bench_json(stdout).unwrap();
        assert_eq!(
            sample,
            Sample {
                ops_per_sec: 1234.5,
                p99_us: 87.0,
                errors: 2
            }
        );
        assert!(parse_bench_json("").is_err());
        assert!(parse_bench_json("{\"ops_per_sec\":1}").is_err());
        assert!(parse_bench_json("not json").is_err());
    }
}
