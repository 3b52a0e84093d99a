//! Connection and input limits of a real mcstore process: thousands of
//! concurrent connections are served, the connection limit answers
//! memcached's `ERROR Too many open connections`, a slot frees up when a
//! client leaves, and a long line without newline closes the connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mcstore_e2e::{exchange, Mcstore};

fn connect(server: &Mcstore) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&server.addr(), Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Sends `version` and returns the reply line.
fn version(stream: &mut TcpStream) -> String {
    stream.write_all(b"version\r\n").unwrap();
    let mut buf = [0u8; 128];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn connections_beyond_the_limit_are_told_and_closed() {
    let server = Mcstore::start(&["--max-connections", "2"]);
    let mut first = connect(&server);
    let mut second = connect(&server);
    // Both are being served (version round-trips prove they were accepted).
    assert!(version(&mut first).starts_with("VERSION "));
    assert!(version(&mut second).starts_with("VERSION "));

    let mut third = connect(&server);
    let mut reply = Vec::new();
    third
        .read_to_end(&mut reply)
        .expect("server closes the refused connection");
    assert_eq!(reply, b"ERROR Too many open connections\r\n");

    // A slot frees up when a client leaves.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut fourth = connect(&server);
        fourth.write_all(b"version\r\n").unwrap();
        let mut buf = [0u8; 128];
        let n = fourth.read(&mut buf).unwrap_or(0);
        if buf[..n].starts_with(b"VERSION ") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slot never freed: {:?}",
            &buf[..n]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(version(&mut second).starts_with("VERSION "));
}

#[test]
fn a_long_line_without_newline_closes_the_connection() {
    let server = Mcstore::start(&[]);
    let reply = exchange(server.addr(), &vec![b'x'; 3000], 1).expect("exchange");
    assert!(
        reply.ends_with(b"<CLOSED>"),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
}

/// Concurrent connections in the many-connections test.
const MANY: usize = 3000;

/// Raises this process's soft open-file limit to its hard limit (the
/// clients below need one descriptor each).
fn raise_own_open_file_limit() {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[test]
fn thousands_of_concurrent_connections_are_served() {
    raise_own_open_file_limit();
    let server = Mcstore::start(&[]);
    let mut clients: Vec<TcpStream> = (0..MANY).map(|_| connect(&server)).collect();
    // Every connection writes its own key, then every one reads it back,
    // all while the others stay open.
    for (i, client) in clients.iter_mut().enumerate() {
        let value = format!("v{i}");
        let request = format!("set many:{i} 0 0 {}\r\n{value}\r\n", value.len());
        client.write_all(request.as_bytes()).unwrap();
    }
    for client in clients.iter_mut() {
        let mut reply = [0u8; 8];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"STORED\r\n");
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .write_all(format!("get many:{i}\r\n").as_bytes())
            .unwrap();
        let expected = format!(
            "VALUE many:{i} 0 {}\r\nv{i}\r\nEND\r\n",
            format!("v{i}").len()
        );
        let mut reply = vec![0u8; expected.len()];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(String::from_utf8_lossy(&reply), expected);
    }
    let stats = exchange(server.addr(), b"stats\r\n", 1).unwrap();
    let stats = String::from_utf8_lossy(&stats);
    let current: usize = stats
        .lines()
        .find_map(|line| line.strip_prefix("STAT curr_connections "))
        .and_then(|n| n.trim().parse().ok())
        .expect("curr_connections in stats");
    assert!(
        current > MANY,
        "curr_connections {current} with {MANY} clients open"
    );
}
