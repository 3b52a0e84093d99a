//! Helpers shared by the client's end-to-end tests: running `mcstore-cli`
//! and a tokio runtime for the async client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Command, Output};

/// Runs `mcstore-cli --seeds <addrs> <args>` to completion.
pub fn cli(seeds: &[SocketAddr], args: &[&str]) -> Output {
    let seeds: Vec<String> = seeds.iter().map(|a| a.to_string()).collect();
    Command::new(env!("CARGO_BIN_EXE_mcstore-cli"))
        .arg("--seeds")
        .arg(seeds.join(","))
        .arg("--quiet")
        .args(args)
        .output()
        .expect("run mcstore-cli")
}

/// The CLI's exit code, stdout and stderr, for assertions.
pub fn outcome(output: &Output) -> (i32, String, String) {
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A runtime for the async client in a synchronous test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}
