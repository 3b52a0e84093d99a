//! Test helpers: a real memcached on an ephemeral loopback port (killed on
//! drop; from the end-to-end tests' support crate), running the
//! `mcstore-bench` binary, and a raw memcache client.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// Each test binary that includes this module uses a part of it.
#[allow(unused_imports)]
pub use mcstore_e2e::{free_port, Memcached};

/// A minimal blocking memcache text-protocol client.
pub struct RawClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawClient {
    /// Connects to a server, with a 5 s read timeout.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect to the server");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        RawClient {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        }
    }

    /// `set key 0 0 len` with `value`; panics unless `STORED`.
    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        let mut request = format!(
            "set {} 0 0 {}\r\n",
            String::from_utf8_lossy(key),
            value.len()
        )
        .into_bytes();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        self.writer.write_all(&request).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert_eq!(line, "STORED\r\n");
    }

    /// `get key`: the value, if any.
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let request = format!("get {}\r\n", String::from_utf8_lossy(key));
        self.writer.write_all(request.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        if line == "END\r\n" {
            return None;
        }
        let length: usize = line
            .trim_end()
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad VALUE line {line:?}"));
        let mut data = vec![0; length + 2];
        self.reader.read_exact(&mut data).unwrap();
        data.truncate(length);
        line.clear();
        self.reader.read_line(&mut line).unwrap();
        assert_eq!(line, "END\r\n");
        Some(data)
    }
}

/// Runs the binary with `args` (killed after `limit`), returning its output.
pub fn run_bench(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcstore-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mcstore-bench");
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "mcstore-bench {args:?} did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The JSON object on the last line of stdout of a successful run.
pub fn json_report(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "mcstore-bench failed: {:?}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("stdout has a line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

/// A non-negative integer field of the report.
pub fn count(report: &serde_json::Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("field {field} is not a count in {report}"))
}

/// A fake memcache server on a loopback port that answers every `set` with
/// a fixed line, or never answers; stops when dropped.
pub struct FakeServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Starts the server; `reply` is sent after each `set` (none if `None`).
    pub fn start(reply: Option<&'static [u8]>) -> FakeServer {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let acceptor = std::thread::spawn(move || {
            let mut handlers = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let flag = flag.clone();
                        handlers.push(std::thread::spawn(move || serve(stream, reply, &flag)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for handler in handlers {
                let _ = handler.join();
            }
        });
        FakeServer {
            port,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Reads `set` commands (and their data) from `stream`, answering `reply`.
fn serve(stream: TcpStream, reply: Option<&[u8]>, stop: &std::sync::atomic::AtomicBool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line.ends_with('\n') => {}
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let length: Option<usize> = line
            .starts_with("set ")
            .then(|| line.split(' ').nth(4).and_then(|n| n.trim().parse().ok()))
            .flatten();
        line.clear();
        let Some(length) = length else { continue };
        let mut data = vec![0; length + 2];
        let mut filled = 0;
        while filled < data.len() {
            match reader.read(&mut data[filled..]) {
                Ok(0) => return,
                Ok(n) => filled += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        if let Some(reply) = reply {
            if writer.write_all(reply).is_err() {
                return;
            }
        }
    }
}
