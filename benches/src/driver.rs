//! One connection's request loop, and the prefill loop.
//!
//! A connection keeps up to `pipeline` requests in flight. It encodes every
//! request it may send into one reused write buffer and sends them with one
//! write, then decodes whatever replies have arrived from one reused read
//! buffer. Keys are formatted into a reused scratch block and values are
//! slices of a shared pattern, so nothing is allocated per set; a get costs
//! only the decoder's copies.
//!
//! - Closed loop (no rate): a request is sent as soon as a slot is free and
//!   its latency counts from that moment.
//! - Open loop (`--rate`): request `i` of a connection is due at
//!   `start + phase + i / rate`; it is sent when due and a slot is free, and
//!   its latency counts from when it was due if it had to wait for a slot, so
//!   a stalled server shows up in the latencies instead of silently lowering
//!   the send rate (coordinated omission). A request that had a free slot
//!   counts from when it was sent, so the timer's 1 ms granularity does not
//!   add to every latency.
//!
//! A request without a reply within the timeout, a reply that does not fit
//! the request, or a failed connection is counted as an error for every
//! request in flight; the connection is then re-established. When that fails
//! the connection is dead, and the caller decides whether the run can go on.

use std::collections::VecDeque;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use mcstore_protocol::{parse_reply, Decoded, Get, Reply, Request, Store, StoreMode};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, Instant};

use crate::args::ServerAddr;
use crate::stats::{ErrorKind, IntervalStats, Measurements, Outcome, Recorder};
use crate::workload::{Op, OpGenerator, OpKind, Workload};

/// How often a connection hands its interval stats over and checks timeouts.
const HOUSEKEEPING_PERIOD: Duration = Duration::from_millis(250);
/// Free space ensured in the read buffer before each read.
const READ_RESERVE: usize = 32 * 1024;
/// Attempts to re-establish a failed connection before giving it up.
const RECONNECT_ATTEMPTS: u32 = 3;
/// Time allowed for one connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection failed.
#[derive(Debug, Error)]
pub enum DriverError {
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The server.
        addr: String,
        /// The error.
        source: io::Error,
    },
    /// Connecting took too long.
    #[error("connecting to {0} timed out")]
    ConnectTimeout(String),
    /// Reading or writing failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// No reply within the timeout.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// A reply that does not answer the request it should.
    #[error("unexpected reply: {0}")]
    UnexpectedReply(String),
}

impl DriverError {
    fn kind(&self) -> ErrorKind {
        match self {
            DriverError::Timeout(_) => ErrorKind::Timeout,
            DriverError::UnexpectedReply(_) => ErrorKind::Protocol,
            _ => ErrorKind::Connection,
        }
    }
}

/// Opens a connection with `TCP_NODELAY`.
pub async fn connect(addr: &ServerAddr) -> Result<TcpStream, DriverError> {
    let target = (addr.host.as_str(), addr.port);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(source)) => {
            return Err(DriverError::Connect {
                addr: addr.to_string(),
                source,
            })
        }
        Err(_) => return Err(DriverError::ConnectTimeout(addr.to_string())),
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// When the run starts, when measuring starts and when it ends.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    /// Start of the run (and of the warmup).
    pub start: Instant,
    /// End of the warmup: operations completing from here on are measured.
    pub measure_from: Instant,
    /// End of the run.
    pub end: Instant,
}

/// How every connection behaves.
#[derive(Debug, Clone, Copy)]
pub struct DriverConfig {
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Reply timeout.
    pub timeout: Duration,
    /// Check values read back.
    pub verify: bool,
    /// Open loop: time between two requests of one connection.
    pub send_interval: Option<Duration>,
    /// The run's timeline.
    pub clock: RunClock,
}

/// State shared by all connections of a run.
#[derive(Debug)]
pub struct RunControl {
    /// Live connections per server.
    pub live_per_server: Vec<AtomicUsize>,
    /// Set when the run must stop early.
    pub abort: AtomicBool,
    /// Why the run stopped early.
    pub abort_reason: Mutex<Option<String>>,
    /// Measurements for the progress line.
    pub interval: IntervalStats,
}

impl RunControl {
    /// Control for `live_per_server[i]` connections to server `i`.
    pub fn new(live_per_server: &[usize]) -> RunControl {
        RunControl {
            live_per_server: live_per_server
                .iter()
                .map(|&n| AtomicUsize::new(n))
                .collect(),
            abort: AtomicBool::new(false),
            abort_reason: Mutex::new(None),
            interval: IntervalStats::default(),
        }
    }

    /// Notes a dead connection to `server`; the last one stops the run.
    fn connection_died(&self, server: &ServerAddr, index: usize, reason: &str) {
        if self.live_per_server[index].fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut abort_reason = self.abort_reason.lock().unwrap_or_else(|e| e.into_inner());
            abort_reason.get_or_insert_with(|| {
                format!("server {server} went away: every connection to it failed ({reason})")
            });
            self.abort.store(true, Ordering::Release);
        }
    }
}

/// A connection to drive.
#[derive(Debug)]
pub struct Connection {
    /// Its number (also seeds its key choice).
    pub id: usize,
    /// Index of its server.
    pub server: usize,
    /// Its server's address.
    pub addr: ServerAddr,
    /// The open stream.
    pub stream: TcpStream,
}

/// What a connection measured.
#[derive(Debug)]
pub struct ConnectionResult {
    /// Its measurements over the run.
    pub measurements: Measurements,
    /// The first error it saw, if any.
    pub first_error: Option<String>,
    /// Why it died, if it did.
    pub failure: Option<String>,
}

struct InFlight {
    op: Op,
    /// When the request was due (open loop) or sent (closed loop).
    intended: Instant,
    /// When it was written.
    sent: Instant,
    /// A get whose `VALUE` has arrived.
    got_value: bool,
}

enum Event {
    Read(io::Result<usize>),
    SendDue,
    Housekeeping,
}

/// Drives `connection` until the end of the run, an abort, or its death.
pub async fn drive(
    connection: Connection,
    workload: &Workload,
    config: &DriverConfig,
    control: &RunControl,
) -> ConnectionResult {
    let mut driver = Driver {
        generator: workload.generator(connection.server, connection.id as u64),
        server: connection.server,
        addr: connection.addr,
        stream: connection.stream,
        workload,
        config,
        read_buffer: BytesMut::with_capacity(READ_RESERVE * 2),
        write_buffer: BytesMut::with_capacity(16 * 1024),
        key_scratch: BytesMut::new(),
        in_flight: VecDeque::with_capacity(config.pipeline),
        recorder: Recorder::default(),
        set_request: Request::Store(Store {
            mode: StoreMode::Set,
            key: Default::default(),
            flags: 0,
            exptime: 0,
            value: Default::default(),
            noreply: false,
        }),
        get_request: Request::Get(Get {
            keys: vec![Default::default()],
            with_cas: false,
            touch: None,
        }),
        first_error: None,
        failure: None,
        last_unblocked: config.clock.start,
    };
    let phase = config
        .send_interval
        .map(|interval| interval.mul_f64(f64::from(schedule_phase(connection.id))))
        .unwrap_or_default();
    driver.run(control, config.clock.start + phase).await;
    driver.recorder.flush_into(&control.interval);
    if let Some(reason) = &driver.failure {
        control.connection_died(&driver.addr, driver.server, reason);
    }
    ConnectionResult {
        measurements: driver.recorder.total,
        first_error: driver.first_error,
        failure: driver.failure,
    }
}

/// A fraction in `[0, 1)` that spreads the connections' open-loop schedules.
fn schedule_phase(id: usize) -> f32 {
    (crate::workload::mix64(id as u64) >> 40) as f32 / (1u64 << 24) as f32
}

struct Driver<'a> {
    generator: OpGenerator<'a>,
    server: usize,
    addr: ServerAddr,
    stream: TcpStream,
    workload: &'a Workload,
    config: &'a DriverConfig,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
    /// Keys are formatted into this and split off it.
    key_scratch: BytesMut,
    in_flight: VecDeque<InFlight>,
    recorder: Recorder,
    set_request: Request,
    get_request: Request,
    first_error: Option<String>,
    failure: Option<String>,
    /// When a full pipeline last got a free slot.
    last_unblocked: Instant,
}

impl Driver<'_> {
    async fn run(&mut self, control: &RunControl, first_due: Instant) {
        let clock = self.config.clock;
        let depth = self.config.pipeline;
        let interval = self.config.send_interval;
        let mut next_due = first_due;
        let mut housekeeping = pin!(sleep_until(
            clock.end.min(Instant::now() + HOUSEKEEPING_PERIOD)
        ));
        let mut send_timer = pin!(sleep_until(next_due));
        let mut send_timer_at = next_due;
        loop {
            if control.abort.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            if now >= clock.end {
                break;
            }
            while self.in_flight.len() < depth {
                let intended = match interval {
                    None => now,
                    Some(interval) => {
                        if next_due > now {
                            break;
                        }
                        let due = next_due;
                        next_due += interval;
                        // Held back by a full pipeline: the wait is the
                        // server's doing and counts. Otherwise the delay is
                        // only the timer's granularity (1 ms): not counted.
                        if self.last_unblocked > due {
                            due
                        } else {
                            now
                        }
                    }
                };
                let op = self.generator.next_op();
                self.encode(op);
                self.in_flight.push_back(InFlight {
                    op,
                    intended,
                    sent: now,
                    got_value: false,
                });
            }
            if !self.write_buffer.is_empty() {
                if let Err(error) = self.flush_writes().await {
                    if self.recover(error, clock.end).await {
                        continue;
                    }
                    break;
                }
            }
            if interval.is_some() && send_timer_at != next_due {
                send_timer.as_mut().reset(next_due);
                send_timer_at = next_due;
            }
            self.read_buffer.reserve(READ_RESERVE);
            let waiting = !self.in_flight.is_empty();
            let may_send = interval.is_some() && self.in_flight.len() < depth;
            let event = tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.read_buffer), if waiting => Event::Read(read),
                () = &mut send_timer, if may_send => Event::SendDue,
                () = &mut housekeeping => Event::Housekeeping,
            };
            let outcome = match event {
                Event::Read(Ok(0)) => Err(DriverError::Closed),
                Event::Read(Ok(_)) => self.process_replies(),
                Event::Read(Err(error)) => Err(DriverError::Io(error)),
                Event::SendDue => Ok(()),
                Event::Housekeeping => {
                    let now = Instant::now();
                    housekeeping
                        .as_mut()
                        .reset(clock.end.min(now + HOUSEKEEPING_PERIOD));
                    self.recorder.flush_into(&control.interval);
                    match self.in_flight.front() {
                        Some(oldest) if now.duration_since(oldest.sent) > self.config.timeout => {
                            Err(DriverError::Timeout(self.config.timeout))
                        }
                        _ => Ok(()),
                    }
                }
            };
            if let Err(error) = outcome {
                if !self.recover(error, clock.end).await {
                    break;
                }
            }
        }
    }

    fn encode(&mut self, op: Op) {
        let key = self.workload.keys.key_in(op.key, &mut self.key_scratch);
        match op.kind {
            OpKind::Set => {
                if let Request::Store(store) = &mut self.set_request {
                    store.key = key;
                    store.value = self.workload.values.value(op.key);
                }
                self.set_request.encode(&mut self.write_buffer);
            }
            OpKind::Get => {
                if let Request::Get(get) = &mut self.get_request {
                    get.keys[0] = key;
                }
                self.get_request.encode(&mut self.write_buffer);
            }
        }
    }

    /// Writes the write buffer: directly when the socket takes it, else
    /// waiting at most the reply timeout.
    async fn flush_writes(&mut self) -> Result<(), DriverError> {
        while !self.write_buffer.is_empty() {
            match self.stream.try_write(&self.write_buffer) {
                Ok(0) => return Err(DriverError::Closed),
                Ok(written) => self.write_buffer.advance(written),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    let write = self.stream.write_all(&self.write_buffer);
                    match tokio::time::timeout(self.config.timeout, write).await {
                        Ok(result) => result?,
                        Err(_) => return Err(DriverError::Timeout(self.config.timeout)),
                    }
                    self.write_buffer.clear();
                }
                Err(error) => return Err(DriverError::Io(error)),
            }
        }
        self.write_buffer.clear();
        Ok(())
    }

    fn process_replies(&mut self) -> Result<(), DriverError> {
        let now = Instant::now();
        let mut used = 0;
        let result = loop {
            match parse_reply(&self.read_buffer[used..]) {
                Decoded::Incomplete => break Ok(()),
                Decoded::Complete(reply, length) => {
                    used += length;
                    if let Err(error) = self.on_reply(reply, now) {
                        break Err(error);
                    }
                }
            }
        };
        self.read_buffer.advance(used);
        result
    }

    fn note_error(&mut self, text: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(format!("{}: {}", self.addr, text()));
        }
    }

    fn on_reply(&mut self, reply: Reply, now: Instant) -> Result<(), DriverError> {
        let Some(front) = self.in_flight.front_mut() else {
            return Err(DriverError::UnexpectedReply(format!(
                "{reply:?} with no request in flight"
            )));
        };
        let outcome = match (front.op.kind, reply) {
            (OpKind::Set, Reply::Stored) => Outcome::Stored,
            (OpKind::Get, Reply::Value(value)) => {
                let key = front.op.key;
                if front.got_value || !self.workload.keys.is_key(key, &value.key) {
                    return Err(DriverError::UnexpectedReply(format!(
                        "VALUE for key {:?} while waiting for key {key}",
                        String::from_utf8_lossy(&value.key)
                    )));
                }
                front.got_value = true;
                if self.config.verify
                    && (value.flags != 0 || !self.workload.values.matches(key, &value.data))
                {
                    self.recorder.verify_error();
                    let (length, flags) = (value.data.len(), value.flags);
                    self.note_error(|| {
                        format!("verify failed for key {key} ({length} bytes, flags {flags})")
                    });
                }
                return Ok(());
            }
            (OpKind::Get, Reply::End) => {
                if front.got_value {
                    Outcome::Hit
                } else {
                    Outcome::Miss
                }
            }
            (_, Reply::ServerError(message)) => {
                self.note_error(|| format!("SERVER_ERROR {message}"));
                Outcome::Failed(ErrorKind::Server)
            }
            (_, Reply::ClientError(message)) => {
                self.note_error(|| format!("CLIENT_ERROR {message}"));
                Outcome::Failed(ErrorKind::Client)
            }
            (kind, other) => {
                self.note_error(|| format!("unexpected reply {other:?} to a {kind:?}"));
                Outcome::Failed(ErrorKind::Protocol)
            }
        };
        if self.in_flight.len() == self.config.pipeline {
            self.last_unblocked = now;
        }
        let done = self
            .in_flight
            .pop_front()
            .expect("the front request exists");
        let clock = self.config.clock;
        let measured = now >= clock.measure_from && now <= clock.end;
        self.recorder.record(
            done.op.kind == OpKind::Get,
            outcome,
            now.duration_since(done.intended),
            measured,
        );
        Ok(())
    }

    /// Counts the requests in flight as failed and reconnects; `false` when
    /// the run is over or the connection could not be re-established.
    async fn recover(&mut self, error: DriverError, end: Instant) -> bool {
        let lost = (self.in_flight.len() as u64).max(1);
        self.recorder.errors(error.kind(), lost);
        self.note_error(|| error.to_string());
        self.in_flight.clear();
        self.read_buffer.clear();
        self.write_buffer.clear();
        if Instant::now() >= end {
            return false;
        }
        let mut last_error = None;
        for attempt in 1..=RECONNECT_ATTEMPTS {
            match connect(&self.addr).await {
                Ok(stream) => {
                    self.stream = stream;
                    self.recorder.reconnect();
                    return true;
                }
                Err(error) => last_error = Some(error),
            }
            sleep(Duration::from_millis(100) * attempt).await;
        }
        let last_error = last_error.map(|e| e.to_string()).unwrap_or_default();
        self.failure = Some(format!("{error}; reconnecting failed: {last_error}"));
        false
    }
}

/// What a prefill wrote.
#[derive(Debug, Default, Clone)]
pub struct PrefillResult {
    /// Keys stored.
    pub stored: u64,
    /// Sets that got an error reply.
    pub errors: u64,
    /// The first error reply.
    pub first_error: Option<String>,
}

/// Sets every key of `keys` to its value over `stream`, `batch` requests per
/// write, adding each finished batch to `progress`.
pub async fn prefill(
    stream: &mut TcpStream,
    workload: &Workload,
    keys: impl Iterator<Item = u32>,
    batch: usize,
    timeout: Duration,
    progress: &AtomicU64,
) -> Result<PrefillResult, DriverError> {
    let mut result = PrefillResult::default();
    let mut write_buffer = BytesMut::with_capacity(64 * 1024);
    let mut read_buffer = BytesMut::with_capacity(64 * 1024);
    let mut key_scratch = BytesMut::new();
    let mut keys = keys.peekable();
    while keys.peek().is_some() {
        let mut sent = 0;
        for key in keys.by_ref().take(batch.max(1)) {
            Request::Store(Store {
                mode: StoreMode::Set,
                key: workload.keys.key_in(key, &mut key_scratch),
                flags: 0,
                exptime: 0,
                value: workload.values.value(key),
                noreply: false,
            })
            .encode(&mut write_buffer);
            sent += 1;
        }
        stream.write_all(&write_buffer).await?;
        write_buffer.clear();
        let mut answered = 0;
        while answered < sent {
            read_buffer.reserve(READ_RESERVE);
            let read = tokio::time::timeout(timeout, stream.read_buf(&mut read_buffer))
                .await
                .map_err(|_| DriverError::Timeout(timeout))??;
            if read == 0 {
                return Err(DriverError::Closed);
            }
            let mut used = 0;
            while answered < sent {
                let Decoded::Complete(reply, length) = parse_reply(&read_buffer[used..]) else {
                    break;
                };
                used += length;
                answered += 1;
                match reply {
                    Reply::Stored => result.stored += 1,
                    other => {
                        result.errors += 1;
                        result
                            .first_error
                            .get_or_insert_with(|| format!("prefill set: {other:?}"));
                    }
                }
            }
            read_buffer.advance(used);
        }
        progress.fetch_add(sent, Ordering::Relaxed);
    }
    Ok(result)
}
