//! The systems under test: memcached, mcstore (`--sync always|periodic|none`)
//! and Redis (`appendonly yes` with `appendfsync always|everysec`), each
//! started on an ephemeral loopback port with a fresh temporary directory.
//! A [`Server`] kills its process and removes its directory when dropped.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    /// memcached, the in-memory ceiling and the reference for ratios.
    Memcached,
    /// mcstore with `--sync always`.
    McstoreAlways,
    /// mcstore with `--sync periodic`.
    McstorePeriodic,
    /// mcstore with `--sync none`.
    McstoreNone,
    /// Redis with `appendonly yes`, `appendfsync always`.
    RedisAlways,
    /// Redis with `appendonly yes`, `appendfsync everysec`.
    RedisEverysec,
}

impl System {
    /// Every system, in report order.
    pub const ALL: [System; 6] = [
        System::Memcached,
        System::McstoreAlways,
        System::McstorePeriodic,
        System::McstoreNone,
        System::RedisAlways,
        System::RedisEverysec,
    ];

    /// The short name used in tables, flags and the chart.
    pub fn name(self) -> &'static str {
        match self {
            System::Memcached => "memcached",
            System::McstoreAlways => "mcstore-always",
            System::McstorePeriodic => "mcstore-periodic",
            System::McstoreNone => "mcstore-none",
            System::RedisAlways => "redis-aof-always",
            System::RedisEverysec => "redis-aof-everysec",
        }
    }

    /// The system with this [`System::name`].
    pub fn from_name(name: &str) -> Option<System> {
        System::ALL.into_iter().find(|system| system.name() == name)
    }

    /// Whether it speaks the Redis protocol (driven by `redis-benchmark`).
    pub fn is_redis(self) -> bool {
        matches!(self, System::RedisAlways | System::RedisEverysec)
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A directory under the system temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh, empty directory whose name starts with `prefix`.
    pub fn new(prefix: &str) -> anyhow::Result<TempDir> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Where the external programs are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `mcstore` server.
    pub mcstore: PathBuf,
    /// `memcached`.
    pub memcached: PathBuf,
    /// `redis-server`.
    pub redis_server: PathBuf,
}

/// A running system: its process, its port and its directory, all cleaned up
/// on drop (the process is killed before the directory is removed).
#[derive(Debug)]
pub struct Server {
    /// Which system this is.
    pub system: System,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The command line it was started with.
    pub command: String,
    child: Child,
    dir: TempDir,
}

impl Server {
    /// Starts `system` on a free loopback port and waits until it accepts
    /// connections.
    pub fn start(system: System, binaries: &Binaries) -> anyhow::Result<Server> {
        let dir = TempDir::new(&format!("mcstore-compare-{}", system.name()))?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let data = data.display().to_string();
        let (program, args, fixed_port): (&Path, Vec<String>, Option<u16>) = match system {
            System::Memcached => {
                let port = free_port()?;
                let mut args = strings(&["-u", "nobody", "-l", "127.0.0.1", "-U", "0"]);
                args.extend(strings(&["-t", "2", "-m", "1024", "-p"]));
                args.push(port.to_string());
                (&binaries.memcached, args, Some(port))
            }
            System::McstoreAlways | System::McstorePeriodic | System::McstoreNone => {
                let mode = match system {
                    System::McstoreAlways => "always",
                    System::McstorePeriodic => "periodic",
                    _ => "none",
                };
                let mut args = strings(&["--listen", "127.0.0.1:0", "--data-dir"]);
                args.push(data);
                args.extend(strings(&["--sync", mode]));
                (&binaries.mcstore, args, None)
            }
            System::RedisAlways | System::RedisEverysec => {
                let port = free_port()?;
                let fsync = if system == System::RedisAlways {
                    "always"
                } else {
                    "everysec"
                };
                let mut args = vec!["--port".to_owned(), port.to_string()];
                args.extend(strings(&["--bind", "127.0.0.1", "--save", ""]));
                args.extend(strings(&["--appendonly", "yes", "--appendfsync", fsync]));
                args.extend(strings(&["--dir", &data, "--protected-mode", "no"]));
                (&binaries.redis_server, args, Some(port))
            }
        };
        let command = shell_words(program, &args);
        let mut child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(if fixed_port.is_some() {
                Stdio::from(log.try_clone()?)
            } else {
                Stdio::piped()
            })
            .spawn()
            .with_context(|| format!("cannot start {command}"))?;
        let port = match fixed_port {
            Some(port) => wait_for_port(&mut child, port, system.name()).map(|()| port),
            None => read_listening_port(&mut child, log)
                .and_then(|port| wait_for_port(&mut child, port, system.name()).map(|()| port)),
        };
        let port = match port {
            Ok(port) => port,
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                let log =
                    std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
                return Err(error.context(format!("{command}\nits log:\n{log}")));
            }
        };
        Ok(Server {
            system,
            port,
            command,
            child,
            dir,
        })
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's temporary directory (data and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// `program args...`, with empty or spaced arguments quoted for a shell.
pub fn shell_words(program: &Path, args: &[String]) -> String {
    let mut words = vec![program.display().to_string()];
    for arg in args {
        if arg.is_empty() || arg.contains([' ', '\'', '"']) {
            words.push(format!("'{}'", arg.replace('\'', "'\\''")));
        } else {
            words.push(arg.clone());
        }
    }
    words.join(" ")
}

/// A port that was free a moment ago (bound to 0, then released).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind an ephemeral port")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until 127.0.0.1:`port` accepts a connection, or `child` exits.
fn wait_for_port(child: &mut Child, port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before accepting connections on port {port}");
        }
        if Instant::now() > deadline {
            bail!("{what} did not accept connections on port {port} within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `child`'s stderr until mcstore's `listening on` log event (text
/// or JSON) and returns the port; every line is copied into `log`, and the
/// rest of stderr is drained into it by a thread.
fn read_listening_port(child: &mut Child, mut log: std::fs::File) -> anyhow::Result<u16> {
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no stderr pipe"))?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        let mut sent = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let _ = std::io::Write::write_all(&mut log, line.as_bytes());
                    if !sent {
                        if let Some(port) = listening_port(&line) {
                            let _ = sender.send(port);
                            sent = true;
                        }
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        match receiver.recv_timeout(Duration::from_millis(50)) {
            Ok(port) => return Ok(port),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("mcstore closed stderr before logging `listening on`")
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("mcstore exited ({status}) before logging `listening on`");
        }
        if Instant::now() > deadline {
            bail!("mcstore did not log `listening on` within {START_TIMEOUT:?}");
        }
    }
}

/// The port of mcstore's readiness event: `listening on addr=HOST:PORT` in
/// text logs, `"message":"listening on"` with `"addr":"HOST:PORT"` in JSON.
pub fn listening_port(line: &str) -> Option<u16> {
    let addr = if let Some(rest) = line.split(" listening on addr=").nth(1) {
        rest.split_whitespace().next()?
    } else if line.contains("\"message\":\"listening on\"") {
        line.split("\"addr\":\"").nth(1)?.split('"').next()?
    } else {
        return None;
    };
    addr.rsplit(':').next()?.parse().ok()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
