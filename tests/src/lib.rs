//! Support library for mcstore's end-to-end tests.
//!
//! Everything here runs real processes on the loopback interface with
//! ephemeral ports and cleans them up again, even when a test panics:
//!
//! - [`Mcstore`] starts the `mcstore` binary (found through `MCSTORE_BIN`, or
//!   `<workspace>/target/release/mcstore`) on a temporary data directory,
//!   waits for its `listening on` log event on stderr (text or JSON, see
//!   [`listening_addr`]), and can `kill -9`, SIGTERM and restart it on the
//!   same data directory.
//! - [`Memcached`] starts `/usr/bin/memcached` on a free port, the reference
//!   implementation for the differential test.
//! - [`exchange`] sends raw bytes on a fresh connection and collects the
//!   reply, counting complete replies so it can stop early, and records
//!   `<CLOSED>` when the server closed the connection.
//! - [`Client`] is a tiny blocking memcache text client for load generation
//!   and verification in the crash tests.
//!
//! Every socket read has a timeout and every wait for a process is bounded.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to log its `listening on` event.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a server may take to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// The marker appended to a collected reply when the server closed the connection.
pub const CLOSED_MARKER: &[u8] = b"<CLOSED>";

/// Root of the Cargo workspace (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the e2e crate lives inside the workspace")
        .to_path_buf()
}

/// Path of the mcstore binary: `MCSTORE_BIN` or `<workspace>/target/release/mcstore`.
///
/// Panics with instructions when the binary does not exist.
pub fn mcstore_binary() -> PathBuf {
    let path = match std::env::var_os("MCSTORE_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/release/mcstore"),
    };
    assert!(
        path.is_file(),
        "mcstore binary not found at {}: run `cargo build --release -p mcstore-server` \
         or point MCSTORE_BIN at an mcstore binary",
        path.display()
    );
    path
}

/// Sends a signal to a process id.
fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits for a child to exit, at most `timeout`; `None` if it is still running.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Kills (SIGKILL) and reaps a child; errors are ignored (it may be gone already).
fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// Output of a process collected by background threads.
#[derive(Clone, Default)]
pub struct CapturedOutput(Arc<Mutex<Vec<u8>>>);

impl CapturedOutput {
    /// Everything captured so far, lossily decoded.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    fn append(&self, bytes: &[u8]) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
    }

    /// Drains `source` into this capture on a background thread.
    pub fn drain_from(&self, mut source: impl Read + Send + 'static) {
        let capture = self.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = source.read(&mut buf) {
                if n == 0 {
                    break;
                }
                capture.append(&buf[..n]);
            }
        });
    }
}

/// A running mcstore process (no data-directory ownership); killed on drop.
pub struct McstoreProcess {
    child: Child,
    addr: SocketAddr,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
}

/// What happened to an mcstore process started with [`McstoreProcess::spawn`].
pub enum StartOutcome {
    /// It logged `listening on …`.
    Listening(McstoreProcess),
    /// It exited before listening.
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Its standard output.
        stdout: String,
        /// Its standard error.
        stderr: String,
    },
}

impl McstoreProcess {
    /// Spawns mcstore on `data_dir` with `--listen 127.0.0.1:0` (unless
    /// `args` say `--listen` or `-l`) plus `args`, and
    /// waits until it logs its `listening on` event or exits. `MCSTORE_*`
    /// variables (but `MCSTORE_BIN`) and `RUST_LOG` are not passed on.
    ///
    /// Panics if neither happens within [`START_TIMEOUT`].
    pub fn spawn(data_dir: &Path, args: &[&str]) -> io::Result<StartOutcome> {
        Self::spawn_with(data_dir, args, &[])
    }

    /// Like [`McstoreProcess::spawn`], listening on `listen`.
    pub fn spawn_on(listen: &str, data_dir: &Path, args: &[&str]) -> io::Result<StartOutcome> {
        let mut all = vec!["--listen", listen];
        all.extend_from_slice(args);
        Self::spawn_with(data_dir, &all, &[])
    }

    /// Like [`McstoreProcess::spawn`], with extra environment variables.
    pub fn spawn_with(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> io::Result<StartOutcome> {
        let mut command = Command::new(mcstore_binary());
        let names_listen = args
            .iter()
            .any(|a| *a == "-l" || *a == "--listen" || a.starts_with("--listen="));
        if !names_listen {
            command.arg("--listen").arg("127.0.0.1:0");
        }
        command.arg("--data-dir").arg(data_dir).args(args);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MCSTORE_") && name != "MCSTORE_BIN" {
                command.env_remove(name);
            }
        }
        command.env_remove("RUST_LOG");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = CapturedOutput::default();
        stdout.drain_from(child.stdout.take().expect("stdout is piped"));
        let stderr = CapturedOutput::default();
        let (line_tx, line_rx) = mpsc::channel::<String>();
        {
            let capture = stderr.clone();
            let mut reader = BufReader::new(child.stderr.take().expect("stderr is piped"));
            thread::spawn(move || {
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            capture.append(&line);
                            let _ = line_tx.send(String::from_utf8_lossy(&line).into_owned());
                        }
                    }
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                // Give the drain threads a moment to collect the last words.
                thread::sleep(Duration::from_millis(100));
                return Ok(StartOutcome::Exited {
                    status,
                    stdout: stdout.text(),
                    stderr: stderr.text(),
                });
            }
            if Instant::now() >= deadline {
                kill_and_reap(&mut child);
                panic!(
                    "mcstore did not log `listening on` within {START_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                    stdout.text(),
                    stderr.text()
                );
            }
            match line_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(addr) = listening_addr(&line) {
                        return Ok(StartOutcome::Listening(McstoreProcess {
                            child,
                            addr,
                            stdout,
                            stderr,
                        }));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stderr closed; the exit check above will catch the exit.
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Standard error captured so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Standard output captured so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// `kill -9` and reap.
    pub fn kill9(mut self) {
        kill_and_reap(&mut self.child);
    }

    /// Waits up to `timeout` for the process to exit by itself; `None` if
    /// it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_with_timeout(&mut self.child, timeout).ok().flatten()
    }

    /// SIGTERM, then waits up to [`SHUTDOWN_TIMEOUT`]; `None` if it did not exit
    /// (it is then killed with SIGKILL).
    pub fn terminate(mut self) -> Option<ExitStatus> {
        let _ = send_signal(self.child.id(), libc::SIGTERM);
        match wait_with_timeout(&mut self.child, SHUTDOWN_TIMEOUT) {
            Ok(Some(status)) => Some(status),
            _ => {
                kill_and_reap(&mut self.child);
                None
            }
        }
    }
}

impl Drop for McstoreProcess {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// The address of mcstore's readiness event, in either log format: text
/// (`... INFO mcstore: listening on addr=127.0.0.1:11211`) or JSON
/// (`{..."fields":{"message":"listening on","addr":"127.0.0.1:11211"}...}`).
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    if let Some(rest) = line.split(" listening on addr=").nth(1) {
        return rest.split_whitespace().next()?.parse().ok();
    }
    if line.contains("\"message\":\"listening on\"") {
        let rest = line.split("\"addr\":\"").nth(1)?;
        return rest.split('"').next()?.parse().ok();
    }
    None
}

/// An mcstore server on its own temporary data directory.
///
/// The process is killed and the directory removed on drop. The data directory
/// survives [`Mcstore::kill9`] and [`Mcstore::terminate`], so [`Mcstore::restart`]
/// brings the server back on the same data.
pub struct Mcstore {
    process: Option<McstoreProcess>,
    args: Vec<String>,
    listen: String,
    // Declared last so the process is gone before the directory is removed.
    data_dir: tempfile::TempDir,
}

impl Mcstore {
    /// Starts mcstore with `args` (besides `--listen` and `--data-dir`) on a fresh
    /// temporary data directory.
    pub fn start(args: &[&str]) -> Mcstore {
        let data_dir = tempfile::Builder::new()
            .prefix("mcstore-e2e-")
            .tempdir()
            .expect("create a temporary data directory");
        let mut server = Mcstore {
            process: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            listen: "127.0.0.1:0".into(),
            data_dir,
        };
        server.restart();
        server
    }

    /// Starts mcstore listening on `listen` (a cluster node's fixed
    /// address; restarts use it again) with `args` on a fresh data directory.
    pub fn start_at(listen: &str, args: &[&str]) -> Result<Mcstore, String> {
        let data_dir = tempfile::Builder::new()
            .prefix("mcstore-e2e-")
            .tempdir()
            .expect("create a temporary data directory");
        Mcstore::start_in_at(data_dir, listen, args)
    }

    /// Like [`Mcstore::start_at`], on an existing data directory.
    pub fn start_in_at(
        data_dir: tempfile::TempDir,
        listen: &str,
        args: &[&str],
    ) -> Result<Mcstore, String> {
        let mut server = Mcstore {
            process: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            listen: listen.to_string(),
            data_dir,
        };
        server.try_restart()?;
        Ok(server)
    }

    /// Restarts on the same address from now on (the one it listens on).
    pub fn pin_address(&mut self) {
        self.listen = self.addr().to_string();
    }

    /// Replaces the arguments used by the next restart.
    pub fn set_args(&mut self, args: &[&str]) {
        self.args = args.iter().map(|s| s.to_string()).collect();
    }

    /// Starts mcstore with `args` on an existing data directory, which is
    /// removed on drop like a fresh one.
    pub fn start_in(data_dir: tempfile::TempDir, args: &[&str]) -> Mcstore {
        let mut server = Mcstore {
            process: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            listen: "127.0.0.1:0".into(),
            data_dir,
        };
        server.restart();
        server
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Whether the server process is (supposed to be) running.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    fn process(&self) -> &McstoreProcess {
        self.process
            .as_ref()
            .expect("mcstore is not running; call restart()")
    }

    /// Address of the running server.
    pub fn addr(&self) -> SocketAddr {
        self.process().addr()
    }

    /// Port of the running server.
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Standard error of the running server so far.
    pub fn stderr(&self) -> String {
        self.process().stderr()
    }

    /// Starts the server again on the same data directory with the same args
    /// (a previous process, if any, is killed first). Panics if it does not start.
    pub fn restart(&mut self) {
        if let Err(message) = self.try_restart() {
            panic!("{message}");
        }
    }

    /// Like [`Mcstore::restart`], with the failure as an error.
    pub fn try_restart(&mut self) -> Result<(), String> {
        if let Some(old) = self.process.take() {
            old.kill9();
        }
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        match McstoreProcess::spawn_on(&self.listen, self.data_dir.path(), &args)
            .expect("spawn mcstore")
        {
            StartOutcome::Listening(process) => {
                self.process = Some(process);
                Ok(())
            }
            StartOutcome::Exited {
                status,
                stdout,
                stderr,
            } => Err(format!(
                "mcstore exited with {status} before listening\nstdout:\n{stdout}\nstderr:\n{stderr}"
            )),
        }
    }

    /// The process id of the running server.
    pub fn pid(&self) -> u32 {
        self.process().pid()
    }

    /// Sends `signal` (SIGSTOP, SIGCONT, ...) to the running server.
    pub fn signal(&self, signal: libc::c_int) {
        send_signal(self.pid(), signal).expect("send a signal");
    }

    /// `kill -9` the server and reap it; the data directory stays.
    pub fn kill9(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill9();
        }
    }

    /// Waits up to `timeout` for the server to exit by itself (a node that
    /// left its cluster); `None` if it still runs. Once it exited the server
    /// is stopped (restartable), as after [`Mcstore::kill9`].
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = self.process.as_mut()?.wait_exit(timeout)?;
        self.process = None;
        Some(status)
    }

    /// SIGTERM the server and wait for it; `None` if it had to be killed after
    /// [`SHUTDOWN_TIMEOUT`]. The data directory stays.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.process
            .take()
            .expect("mcstore is not running")
            .terminate()
    }
}

pub mod cluster;
pub mod faults;
pub mod load;

/// Picks a port that was free a moment ago by binding 127.0.0.1:0 and dropping the listener.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A memcached reference server on a free loopback port; killed on drop.
pub struct Memcached {
    child: Child,
    addr: SocketAddr,
}

impl Memcached {
    /// Path of the memcached binary.
    pub const BINARY: &'static str = "/usr/bin/memcached";

    /// Starts `memcached -u nobody -l 127.0.0.1 -p <free port> -U 0` and waits
    /// until it accepts connections (retrying on another port if it lost a race).
    pub fn start() -> Memcached {
        Memcached::start_with(&[], &[])
    }

    /// Like [`Memcached::start`], with more arguments (e.g. `-S`, `-Y
    /// <file>`) and environment variables (e.g. `SASL_CONF_PATH`).
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Memcached {
        assert!(
            Path::new(Self::BINARY).is_file(),
            "{} is missing: these tests need a real memcached (apt-get install memcached)",
            Self::BINARY
        );
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let stderr = CapturedOutput::default();
            let mut child = Command::new(Self::BINARY)
                .args(["-u", "nobody", "-l", "127.0.0.1", "-U", "0", "-p"])
                .arg(port.to_string())
                .args(args)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn memcached");
            stderr.drain_from(child.stderr.take().expect("stderr is piped"));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!("memcached exited with {status}: {}", stderr.text());
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Memcached { child, addr };
                }
                if Instant::now() >= deadline {
                    kill_and_reap(&mut child);
                    last_error = format!("memcached did not accept connections: {}", stderr.text());
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start memcached: {last_error}");
    }

    /// The address memcached listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port memcached listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Kills memcached now (dropping it later is then a no-op).
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// Counts the complete replies at the start of `reply`.
///
/// A reply ends with a line that is neither a `VALUE` header (whose data block
/// is skipped) nor a `STAT` line: `END`, `STORED`, `ERROR`, a number, etc.;
/// a meta `VA` header with its data block is one complete reply.
/// Stops at the first incomplete element.
pub fn count_reply_terminators(reply: &[u8]) -> usize {
    let mut count = 0;
    let mut pos = 0;
    while let Some(line_len) = find_crlf(&reply[pos..]) {
        let line = &reply[pos..pos + line_len];
        let mut next = pos + line_len + 2;
        if let Some(bytes) = data_block_length(line) {
            match bytes {
                Some(n) if next + n + 2 <= reply.len() => next += n + 2,
                Some(_) => return count,
                // A malformed header: count it so the reader does not hang on it.
                None => count += 1,
            }
            // A meta `VA` header and its data block are a complete reply.
            if line.starts_with(b"VA ") {
                count += 1;
            }
        } else if !line.starts_with(b"STAT ") {
            count += 1;
        }
        pos = next;
    }
    count
}

/// For a header line announcing a data block (`VALUE key flags bytes [cas]` or
/// the meta protocol's `VA bytes flags…`): `Some(parsed length)`; `None` for
/// other lines.
pub fn data_block_length(line: &[u8]) -> Option<Option<usize>> {
    let index = if line.starts_with(b"VALUE ") {
        3
    } else if line.starts_with(b"VA ") {
        1
    } else {
        return None;
    };
    Some(
        line.split(|&b| b == b' ')
            .nth(index)
            .and_then(|t| std::str::from_utf8(t).ok())
            .and_then(|t| t.parse::<usize>().ok()),
    )
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

/// How long to keep reading for unexpected extra bytes once the expected
/// number of replies has arrived.
pub const GRACE_PERIOD: Duration = Duration::from_millis(15);

/// How long a connection must stay silent before the reply is considered complete
/// when the expected replies did not (all) arrive.
pub const QUIET_PERIOD: Duration = Duration::from_millis(400);

/// Upper bound on the time spent collecting one reply.
pub const REPLY_DEADLINE: Duration = Duration::from_secs(10);

/// Reads from `stream` into `reply` until `terminators` complete replies have
/// arrived (then a short grace period for extra bytes), or the connection is
/// quiet for [`QUIET_PERIOD`], or it is closed (then [`CLOSED_MARKER`] is
/// appended and `true` returned).
pub fn collect_reply(stream: &mut TcpStream, terminators: usize, reply: &mut Vec<u8>) -> bool {
    collect_reply_with_quiet(stream, terminators, QUIET_PERIOD, reply)
}

/// Like [`collect_reply`] with a chosen quiet period.
pub fn collect_reply_with_quiet(
    stream: &mut TcpStream,
    terminators: usize,
    quiet: Duration,
    reply: &mut Vec<u8>,
) -> bool {
    let start_len = reply.len();
    let deadline = Instant::now() + REPLY_DEADLINE;
    let mut buf = vec![0u8; 64 * 1024];
    let mut satisfied = false;
    loop {
        if !satisfied
            && terminators > 0
            && count_reply_terminators(&reply[start_len..]) >= terminators
        {
            satisfied = true;
        }
        let wait = if satisfied { GRACE_PERIOD } else { quiet };
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let _ = stream.set_read_timeout(Some(wait.min(deadline - now)));
        match stream.read(&mut buf) {
            Ok(0) => {
                reply.extend_from_slice(CLOSED_MARKER);
                return true;
            }
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                reply.extend_from_slice(CLOSED_MARKER);
                return true;
            }
        }
    }
}

/// Writes all of `input`, tolerating a server that closes early (returns `false` then).
pub fn send_all(stream: &mut TcpStream, input: &[u8]) -> bool {
    let _ = stream.set_write_timeout(Some(REPLY_DEADLINE));
    stream.write_all(input).is_ok()
}

/// Opens a fresh connection to `addr`, sends `input`, and collects the reply
/// with [`collect_reply`] expecting `terminators` replies.
pub fn exchange(addr: SocketAddr, input: &[u8], terminators: usize) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    let mut reply = Vec::new();
    send_all(&mut stream, input);
    collect_reply(&mut stream, terminators, &mut reply);
    let _ = stream.shutdown(Shutdown::Both);
    Ok(reply)
}

/// Escapes bytes for display: printable ASCII as is, `\r` `\n` `\t` `\0` and
/// `\xNN` otherwise; long runs of one byte are abbreviated.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let run = bytes[i..].iter().take_while(|&&c| c == b).count();
        let shown = escape_byte(b);
        if run > 16 {
            out.push_str(&format!("{shown}{{x{run}}}"));
            i += run;
            continue;
        }
        out.push_str(&shown);
        i += 1;
    }
    out
}

fn escape_byte(b: u8) -> String {
    match b {
        b'\r' => "\\r".into(),
        b'\n' => "\\n".into(),
        b'\t' => "\\t".into(),
        0 => "\\0".into(),
        b'\\' => "\\\\".into(),
        0x20..=0x7e => (b as char).to_string(),
        _ => format!("\\x{b:02x}"),
    }
}

/// A small blocking memcache text-protocol client used to generate load and
/// verify contents. Every read has a timeout.
pub struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr` with a read/write timeout of `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\r\n") {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("incomplete reply line {:?}", escape(&line)),
            ));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    /// Sends `set` and returns the reply line (e.g. `STORED`).
    pub fn set(&mut self, key: &str, flags: u32, exptime: i64, value: &[u8]) -> io::Result<String> {
        let mut request = format!("set {key} {flags} {exptime} {}\r\n", value.len()).into_bytes();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        self.reader.get_mut().write_all(&request)?;
        Ok(String::from_utf8_lossy(&self.read_line()?).into_owned())
    }

    /// Sends a one-line command and returns the first reply line.
    pub fn command(&mut self, line: &str) -> io::Result<String> {
        self.reader
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())?;
        Ok(String::from_utf8_lossy(&self.read_line()?).into_owned())
    }

    /// Fetches many keys with one `get` line, returning the found values.
    pub fn get_many(&mut self, keys: &[&str]) -> io::Result<HashMap<String, Vec<u8>>> {
        let mut found = HashMap::new();
        if keys.is_empty() {
            return Ok(found);
        }
        self.reader
            .get_mut()
            .write_all(format!("get {}\r\n", keys.join(" ")).as_bytes())?;
        loop {
            let line = self.read_line()?;
            if line == b"END" {
                return Ok(found);
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            let tokens: Vec<&str> = text.split(' ').collect();
            if tokens.len() < 4 || tokens[0] != "VALUE" {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unexpected reply line {text:?}"),
                ));
            }
            let len: usize = tokens[3]
                .parse()
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, text.clone()))?;
            let mut data = vec![0u8; len + 2];
            self.reader.read_exact(&mut data)?;
            if !data.ends_with(b"\r\n") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("value of {} not followed by \\r\\n", tokens[1]),
                ));
            }
            data.truncate(len);
            found.insert(tokens[1].to_string(), data);
        }
    }

    /// Fetches one key.
    pub fn get(&mut self, key: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.get_many(&[key])?.remove(key))
    }
}

/// Runs `python3 <script> <args...>` from the workspace root (`script`
/// relative to it), for at most `timeout`. Returns its combined output if it
/// exited 0, or a description of the failure with that output.
pub fn run_python(script: &str, args: &[String], timeout: Duration) -> Result<String, String> {
    let mut all = vec![workspace_root().join(script).display().to_string()];
    all.extend_from_slice(args);
    run_program("python3", &all, timeout)
}

/// Runs `program <args...>` from the workspace root for at most `timeout`.
/// Returns its combined output if it exited 0, or a description of the
/// failure with that output.
pub fn run_program(program: &str, args: &[String], timeout: Duration) -> Result<String, String> {
    let shown = format!("{program} {}", args.join(" "));
    let mut child = std::process::Command::new(program)
        .args(args)
        .current_dir(workspace_root())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|err| format!("could not run {shown}: {err}"))?;
    let output = CapturedOutput::default();
    output.drain_from(child.stdout.take().expect("stdout is piped"));
    output.drain_from(child.stderr.take().expect("stderr is piped"));
    let status = wait_with_timeout(&mut child, timeout)
        .map_err(|err| format!("waiting for {shown}: {err}"))?;
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // Let the drain threads pick up the last output.
    std::thread::sleep(Duration::from_millis(100));
    let text = output.text();
    match status {
        Some(status) if status.success() => Ok(text),
        Some(status) => Err(format!("{shown} failed with {status}:\n{text}")),
        None => Err(format!(
            "{shown} did not finish within {timeout:?}:\n{text}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_terminators_across_value_blocks() {
        let reply = b"VALUE a 0 5\r\nEND\r\n\r\nVALUE b 0 1 7\r\nx\r\nEND\r\nSTORED\r\nSTAT pid 1\r\nEND\r\n";
        assert_eq!(count_reply_terminators(reply), 3);
        assert_eq!(count_reply_terminators(b"VALUE a 0 5\r\nEN"), 0);
        assert_eq!(count_reply_terminators(b"STORED\r\nNOT_"), 1);
        assert_eq!(count_reply_terminators(b"VA 2 f5\r\nEN\r\nMN\r\n"), 2);
    }

    #[test]
    fn readiness_is_read_from_text_and_json_logs() {
        let text = "2026-01-01T00:00:00.000001Z  INFO mcstore: listening on addr=127.0.0.1:4242\n";
        assert_eq!(
            listening_addr(text),
            Some("127.0.0.1:4242".parse().unwrap())
        );
        let json = r#"{"timestamp":"t","level":"INFO","fields":{"message":"listening on","addr":"127.0.0.1:9"},"target":"mcstore"}"#;
        assert_eq!(listening_addr(json), Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(
            listening_addr("INFO mcstore: serving metrics metrics_addr=127.0.0.1:1"),
            None
        );
    }

    #[test]
    fn escapes_control_bytes_and_runs() {
        assert_eq!(escape(b"a\r\n\0\xff"), "a\\r\\n\\0\\xff");
        assert_eq!(escape(&[b'x'; 20]), "x{x20}");
    }
}
