//! `redis-benchmark`: the arguments of one invocation and the parsing of its
//! `--csv` output (`"test","rps",...,"p99_latency_ms",...`, one row per
//! test). redis-benchmark has no duration flag and no mixed workload, so the
//! caller picks `-n` from a calibrated rate and combines `SET` and `GET`
//! runs for mixed workloads (see [`combine_mixed`]).

use thiserror::Error;

/// One row of `redis-benchmark --csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisResult {
    /// The test name as printed (`SET`, `GET`, ...).
    pub test: String,
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile latency, in microseconds.
    pub p99_us: f64,
}

/// Output that is not the `--csv` format this module understands.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParseError {
    /// No header line with `test`, `rps` and `p99_latency_ms` columns.
    #[error(
        "no CSV header with \"test\", \"rps\" and \"p99_latency_ms\" in redis-benchmark output"
    )]
    NoHeader,
    /// A data row with a missing or unparsable field.
    #[error("bad redis-benchmark CSV row: {0}")]
    BadRow(String),
    /// A header but no data rows.
    #[error("redis-benchmark printed no results")]
    NoRows,
}

/// Splits one CSV line of double-quoted (or bare) fields.
fn fields(line: &str) -> Vec<String> {
    line.split(',')
        .map(|field| field.trim().trim_matches('"').to_owned())
        .collect()
}

/// Parses the output of `redis-benchmark --csv`. Lines before the header
/// and progress output (anything up to a `\r`) are ignored.
pub fn parse_csv(output: &str) -> Result<Vec<RedisResult>, ParseError> {
    let mut columns: Option<(usize, usize, usize)> = None;
    let mut results = Vec::new();
    for raw in output.lines() {
        let line = raw.rsplit('\r').next().unwrap_or(raw).trim();
        if line.is_empty() {
            continue;
        }
        let row = fields(line);
        match columns {
            None => {
                let find = |name: &str| row.iter().position(|field| field == name);
                if let (Some(test), Some(rps), Some(p99)) =
                    (find("test"), find("rps"), find("p99_latency_ms"))
                {
                    columns = Some((test, rps, p99));
                }
            }
            Some((test, rps, p99)) => {
                let bad = || ParseError::BadRow(line.to_owned());
                let get = |index: usize| row.get(index).ok_or_else(bad);
                let number = |index: usize| -> Result<f64, ParseError> {
                    let value: f64 = get(index)?.parse().map_err(|_| bad())?;
                    if value.is_finite() && value >= 0.0 {
                        Ok(value)
                    } else {
                        Err(bad())
                    }
                };
                results.push(RedisResult {
                    test: get(test)?.clone(),
                    rps: number(rps)?,
                    p99_us: number(p99)? * 1000.0,
                });
            }
        }
    }
    if columns.is_none() {
        return Err(ParseError::NoHeader);
    }
    if results.is_empty() {
        return Err(ParseError::NoRows);
    }
    Ok(results)
}

/// The arguments of one `redis-benchmark` run (without the program name).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisBenchArgs {
    /// Server port on 127.0.0.1.
    pub port: u16,
    /// `-c`: parallel connections.
    pub connections: u32,
    /// `-P`: requests pipelined per connection.
    pub pipeline: u32,
    /// `-d`: value size in bytes.
    pub value_size: usize,
    /// `-r`: key space (keys are `key:NNNNNNNNNNNN`).
    pub keys: u64,
    /// `-n`: requests per test.
    pub requests: u64,
    /// `-t`: tests, e.g. `set` or `set,get`.
    pub tests: String,
}

impl RedisBenchArgs {
    /// The argument vector, ending with `--csv`.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "-h".into(),
            "127.0.0.1".into(),
            "-p".into(),
            self.port.to_string(),
            "-c".into(),
            self.connections.to_string(),
            "-P".into(),
            self.pipeline.to_string(),
            "-d".into(),
            self.value_size.to_string(),
            "-r".into(),
            self.keys.to_string(),
            "-n".into(),
            self.requests.to_string(),
            "-t".into(),
            self.tests.clone(),
            "--csv".into(),
        ]
    }
}

/// The estimate for a mixed workload (get fraction `get_fraction`) from
/// separate `SET` and `GET` runs: throughput is what a stream with that mix
/// would reach if each operation cost what it cost in its own run,
/// `1 / (f / get_rps + (1 - f) / set_rps)`; p99 is the larger of the two
/// p99s, an upper bound on the p99 of the mixture. `None` if a rate is not
/// positive.
pub fn combine_mixed(
    set: &RedisResult,
    get: &RedisResult,
    get_fraction: f64,
) -> Option<(f64, f64)> {
    if set.rps <= 0.0 || get.rps <= 0.0 {
        return None;
    }
    let seconds_per_op = get_fraction / get.rps + (1.0 - get_fraction) / set.rps;
    Some((1.0 / seconds_per_op, set.p99_us.max(get.p99_us)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
\"SET\",\"30769.23\",\"0.050\",\"0.016\",\"0.031\",\"0.143\",\"0.455\",\"0.879\"\n\
\"GET\",\"29411.76\",\"0.051\",\"0.016\",\"0.039\",\"0.159\",\"0.551\",\"2.167\"\n";

    #[test]
    fn parses_redis_7_csv() {
        let results = parse_csv(SAMPLE).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].test, "SET");
        assert!((results[0].rps - 30769.23).abs() < 1e-9);
        assert!((results[0].p99_us - 455.0).abs() < 1e-9);
        assert_eq!(results[1].test, "GET");
        assert!((results[1].p99_us - 551.0).abs() < 1e-9);
    }

    #[test]
    fn ignores_progress_and_noise_before_the_header() {
        let noisy = format!("WARNING: something\r\nSET: rps=1000.0 (overall: 900.0)\r{SAMPLE}");
        let results = parse_csv(&noisy).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].test, "GET");
    }

    #[test]
    fn finds_columns_by_name() {
        let reordered = "\"p99_latency_ms\",\"test\",\"rps\"\n\"1.5\",\"GET\",\"100\"\n";
        let results = parse_csv(reordered).unwrap();
        assert_eq!(
            results,
            vec![RedisResult {
                test: "GET".into(),
                rps: 100.0,
                p99_us: 1500.0
            }]
        );
    }

    #[test]
    fn rejects_bad_output() {
        assert_eq!(parse_csv(""), Err(ParseError::NoHeader));
        assert_eq!(
            parse_csv("GET: 35087.72 requests per second, p50=0.535 msec"),
            Err(ParseError::NoHeader)
        );
        let header_only = SAMPLE.lines().next().unwrap();
        assert_eq!(parse_csv(header_only), Err(ParseError::NoRows));
        let bad =
            format!("{header_only}\n\"SET\",\"fast\",\"0\",\"0\",\"0\",\"0\",\"0.4\",\"1\"\n");
        assert!(matches!(parse_csv(&bad), Err(ParseError::BadRow(_))));
        let short = format!("{header_only}\n\"SET\",\"100\"\n");
        assert!(matches!(parse_csv(&short), Err(ParseError::BadRow(_))));
    }

    #[test]
    fn combines_set_and_get_into_a_mix() {
        let set = RedisResult {
            test: "SET".into(),
            rps: 10_000.0,
            p99_us: 900.0,
        };
        let get = RedisResult {
            test: "GET".into(),
            rps: 90_000.0,
            p99_us: 300.0,
        };
        let (rps, p99) = combine_mixed(&set, &get, 0.9).unwrap();
        // 0.9 / 90k + 0.1 / 10k = 2e-5 s per operation.
        assert!((rps - 50_000.0).abs() < 1e-6, "{rps}");
        assert_eq!(p99, 900.0);
        let (all_gets, _) = combine_mixed(&set, &get, 1.0).unwrap();
        assert!((all_gets - 90_000.0).abs() < 1e-6);
        let zero = RedisResult { rps: 0.0, ..set };
        assert_eq!(combine_mixed(&zero, &get, 0.9), None);
    }

    #[test]
    fn builds_the_argument_vector() {
        let args = RedisBenchArgs {
            port: 6400,
            connections: 32,
            pipeline: 16,
            value_size: 4096,
            keys: 10_000,
            requests: 50_000,
            tests: "set,get".into(),
        }
        .to_args()
        .join(" ");
        assert_eq!(
            args,
            "-h 127.0.0.1 -p 6400 -c 32 -P 16 -d 4096 -r 10000 -n 50000 -t set,get --csv"
        );
    }
}
