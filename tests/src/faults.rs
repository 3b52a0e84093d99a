//! A fault-injecting proxy for one node's address: TCP and UDP on one
//! loopback address and port, relayed to the node, with links that can be
//! cut and healed by source address.
//!
//! A node advertises the proxy's address (so its peers reach it through the
//! proxy) and listens on its own loopback address (127.0.0.N), from which its
//! own outgoing peer connections and gossip also come. Cutting the link
//! between nodes A and B is then `proxy_of_b.cut(ip_of_a)` and
//! `proxy_of_a.cut(ip_of_b)`: their gossip datagrams and peer connections
//! (existing ones are closed) are dropped in both directions, while clients
//! and other nodes still get through. Everything runs on plain threads with
//! short timeouts and stops when the proxy is dropped.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Default)]
struct State {
    blocked: HashSet<IpAddr>,
    /// Relayed TCP connections: the client side of each, by source address.
    connections: Vec<(IpAddr, TcpStream)>,
}

/// A TCP and UDP relay to one node; see the module documentation.
pub struct LinkProxy {
    /// Where the proxy listens (the node's advertised address).
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl LinkProxy {
    /// A proxy on `ip` (a free port, the same for TCP and UDP) relaying to
    /// `target`.
    pub fn start(ip: Ipv4Addr, target: SocketAddr) -> LinkProxy {
        let (listener, udp) = (0..20)
            .find_map(|_| {
                let listener = TcpListener::bind((ip, 0)).ok()?;
                let port = listener.local_addr().ok()?.port();
                let udp = UdpSocket::bind((ip, port)).ok()?;
                Some((listener, udp))
            })
            .expect("a port free for both TCP and UDP");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            {
                let (state, stop) = (state.clone(), stop.clone());
                thread::spawn(move || relay_tcp(listener, target, state, stop))
            },
            {
                let (state, stop) = (state.clone(), stop.clone());
                thread::spawn(move || relay_udp(udp, ip, target, state, stop))
            },
        ];
        LinkProxy {
            addr,
            state,
            stop,
            threads,
        }
    }

    /// Drops everything from `source` from now on, and closes its relayed
    /// connections.
    pub fn cut(&self, source: IpAddr) {
        let mut state = self.state.lock().unwrap();
        state.blocked.insert(source);
        state.connections.retain(|(ip, stream)| {
            if *ip == source {
                let _ = stream.shutdown(Shutdown::Both);
                false
            } else {
                true
            }
        });
    }

    /// Lets `source` through again.
    pub fn heal(&self, source: IpAddr) {
        self.state.lock().unwrap().blocked.remove(&source);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, stream) in self.state.lock().unwrap().connections.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn blocked(state: &Mutex<State>, ip: IpAddr) -> bool {
    state.lock().unwrap().blocked.contains(&ip)
}

fn relay_tcp(
    listener: TcpListener,
    target: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        let (client, source) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(_) => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        if blocked(&state, source.ip()) {
            continue;
        }
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        if let Ok(clone) = client.try_clone() {
            state.lock().unwrap().connections.push((source.ip(), clone));
        }
        for (mut from, mut to) in [
            (client.try_clone().unwrap(), server.try_clone().unwrap()),
            (server, client),
        ] {
            let stop = stop.clone();
            thread::spawn(move || {
                let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
                let mut buffer = [0u8; 64 * 1024];
                while !stop.load(Ordering::SeqCst) {
                    match from.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => {
                            if to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        Err(err)
                            if matches!(
                                err.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => break,
                    }
                }
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
            });
        }
    }
}

fn relay_udp(
    socket: UdpSocket,
    ip: Ipv4Addr,
    target: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
) {
    let socket = Arc::new(socket);
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    // One upstream socket per source, so the node's answers find their way.
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buffer = [0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let Ok((len, source)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        if blocked(&state, source.ip()) {
            continue;
        }
        let upstream = upstreams.entry(source).or_insert_with(|| {
            let upstream = Arc::new(UdpSocket::bind((ip, 0)).unwrap());
            upstream
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let (back, reply_to, state, stop, upstream2) = (
                socket.clone(),
                source,
                state.clone(),
                stop.clone(),
                upstream.clone(),
            );
            thread::spawn(move || {
                let mut buffer = [0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok((len, _)) = upstream2.recv_from(&mut buffer) {
                        if !blocked(&state, reply_to.ip()) {
                            let _ = back.send_to(&buffer[..len], reply_to);
                        }
                    }
                }
            });
            upstream
        });
        let _ = upstream.send_to(&buffer[..len], target);
    }
}
