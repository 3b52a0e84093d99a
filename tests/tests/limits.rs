//! Connection and input limits of a real mcstore process: the connection
//! limit answers memcached's `ERROR Too many open connections`, a slot frees
//! up when a client leaves, and a long line without newline closes the
//! connection.

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
