//! Real binary-protocol clients against mcstore and against memcached
//! 1.6.18, each required to pass and to report the same checks on both:
//!
//! - Dalli (`ruby-dalli`, binary only): `tests/ruby/dalli_binary_exercise.rb`;
//! - php-memcached with `OPT_BINARY_PROTOCOL`:
//!   `tests/php/memcached_binary_exercise.php`;
//! - libmemcached's conformance checker in binary mode, `memccapable -b`
//!   (`libmemcached-tools`).
//!
//! Dalli and php-memcached also run against one node of a three-node
//! cluster, where most of their requests are forwarded.
//!
//! `tests/run.sh` installs them (`ruby ruby-dalli php-cli php-memcached
//! libmemcached-tools`).

use std::time::Duration;

use mcstore_e2e::cluster::Cluster;
use mcstore_e2e::{run_program, Mcstore, Memcached};

/// Upper bound on one client run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);

/// The checks a client run reports: `ok`/`FAIL` and the check's name for
/// the scripts (their values carry per-run key prefixes), the `[pass]`
/// lines for memccapable.
fn checks(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            if let Some(rest) = line.strip_prefix("ok   ") {
                Some(format!("ok {}", rest.split(':').next().unwrap_or(rest)))
            } else if let Some(rest) = line.strip_prefix("FAIL ") {
                Some(format!("FAIL {}", rest.split(':').next().unwrap_or(rest)))
            } else if line.contains('[') && line.trim_end().ends_with(']') {
                Some(line.split_whitespace().collect::<Vec<_>>().join(" "))
            } else {
                None
            }
        })
        .collect()
}

/// Where a client run goes besides memcached.
#[derive(Clone, Copy)]
enum Subject {
    /// One mcstore node.
    Node,
    /// The first node of a three-node cluster: most keys live on the other
    /// nodes, so most requests are forwarded.
    Cluster,
}

/// Runs `program` (with `args` and then the port, or `-p <port>` style
/// via `port_args`) against memcached and mcstore and compares.
fn same_on_both(name: &str, program: &str, port_args: impl Fn(u16) -> Vec<String>) {
    same_against(Subject::Node, name, program, port_args);
}

/// [`same_on_both`] against `subject`.
fn same_against(
    subject: Subject,
    name: &str,
    program: &str,
    port_args: impl Fn(u16) -> Vec<String>,
) {
    let memcached = Memcached::start();
    let reference = run_program(program, &port_args(memcached.port()), CLIENT_TIMEOUT)
        .unwrap_or_else(|failure| panic!("{name} against memcached: {failure}"));
    let (node, cluster) = match subject {
        Subject::Node => (Some(Mcstore::start(&[])), None),
        Subject::Cluster => (None, Some(Cluster::start(3, &[]))),
    };
    let node = node
        .as_ref()
        .or_else(|| cluster.as_ref().map(|c| &c.nodes[0]))
        .expect("a subject");
    let subject_output = match run_program(program, &port_args(node.port()), CLIENT_TIMEOUT) {
        Ok(output) => output,
        Err(failure) => panic!(
            "{name} against mcstore: {failure}\nserver stderr:\n{}",
            node.stderr()
        ),
    };
    println!("{name} against mcstore:\n{subject_output}");
    let (expected, actual) = (checks(&reference), checks(&subject_output));
    assert!(
        !expected.is_empty(),
        "{name} reported no checks:\n{reference}"
    );
    assert_eq!(
        expected, actual,
        "{name}: mcstore's checks differ from memcached's"
    );
    if let Some(cluster) = &cluster {
        assert!(
            cluster.sum_cluster_stat("forwarded") > 0,
            "{name} through a cluster: nothing was forwarded"
        );
        assert_eq!(cluster.sum_cluster_stat("forward_errors"), 0);
    }
}

fn script(path: &str) -> impl Fn(u16) -> Vec<String> + '_ {
    move |port| vec![path.to_string(), port.to_string()]
}

#[test]
fn dalli_works_unchanged() {
    same_on_both(
        "Dalli",
        "ruby",
        script("tests/ruby/dalli_binary_exercise.rb"),
    );
}

#[test]
fn php_memcached_in_binary_mode_works_unchanged() {
    same_on_both(
        "php-memcached",
        "php",
        script("tests/php/memcached_binary_exercise.php"),
    );
}

#[test]
fn dalli_and_php_memcached_work_unchanged_through_a_cluster_node() {
    same_against(
        Subject::Cluster,
        "Dalli",
        "ruby",
        script("tests/ruby/dalli_binary_exercise.rb"),
    );
    same_against(
        Subject::Cluster,
        "php-memcached",
        "php",
        script("tests/php/memcached_binary_exercise.php"),
    );
}

fn memccapable_args(port: u16) -> Vec<String> {
    vec![
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "-b".into(),
    ]
}

#[test]
fn memccapable_binary_passes_every_test() {
    same_on_both("memccapable -b", "memccapable", memccapable_args);
}

#[test]
fn memccapable_binary_passes_every_test_through_a_cluster_node() {
    same_against(
        Subject::Cluster,
        "memccapable -b",
        "memccapable",
        memccapable_args,
    );
}
