//! Binary protocol tests: every command cut at every byte offset, pipelined
//! input, `parse(encode(x)) == x` for requests and responses, limits
//! enforced from the header, memcached 1.6.18's treatment of malformed
//! frames (each expectation below was checked against a live memcached
//! 1.6.18), and malformed input that must not panic.

use bytes::Bytes;

use super::*;
use crate::parse::Decoded;
use crate::Limits;

fn limits() -> Limits {
    Limits::default()
}

fn parse(input: &[u8]) -> Decoded<BinaryFrame> {
    parse_binary_request(input, &limits())
}

fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

fn request(opaque: u32, command: Command) -> BinaryRequest {
    BinaryRequest { opaque, command }
}

/// One request of every opcode memcached serves, in the variants clients send.
fn sample_requests() -> Vec<BinaryRequest> {
    let mut out = Vec::new();
    let mut opaque = 0x1000;
    let mut push = |command| {
        opaque += 1;
        out.push(request(opaque, command));
    };
    for touch in [None, Some(0), Some(0xffff_ffff)] {
        for with_key in [false, true] {
            for quiet in [false, true] {
                push(Command::Get(Get {
                    key: b(b"key"),
                    with_key,
                    quiet,
                    touch,
                }));
            }
        }
    }
    for mode in [StoreMode::Set, StoreMode::Add, StoreMode::Replace] {
        for quiet in [false, true] {
            for cas in [0, u64::MAX] {
                push(Command::Store(Store {
                    mode,
                    key: b(b"k"),
                    flags: 0xdead_beef,
                    exptime: 3600,
                    value: b(b"\0\x80binary\r\n\xff"),
                    cas,
                    quiet,
                }));
            }
        }
    }
    push(Command::Store(Store {
        mode: StoreMode::Set,
        key: b(&[b'k'; 250]),
        flags: 0,
        exptime: 0,
        value: Bytes::new(),
        cas: 0,
        quiet: false,
    }));
    for prepend in [false, true] {
        for quiet in [false, true] {
            push(Command::Concat(Concat {
                prepend,
                key: b(b"c"),
                value: b(b"more"),
                cas: 7,
                quiet,
            }));
        }
    }
    for quiet in [false, true] {
        push(Command::Delete(Delete {
            key: b(b"gone"),
            cas: if quiet { 0 } else { 42 },
            quiet,
        }));
    }
    for increment in [false, true] {
        for quiet in [false, true] {
            push(Command::Arithmetic(Arithmetic {
                key: b(b"n"),
                increment,
                delta: u64::MAX,
                initial: 10,
                exptime: Arithmetic::NO_CREATE,
                cas: 3,
                quiet,
            }));
        }
    }
    push(Command::Touch(Touch {
        key: b(b"t"),
        exptime: 100,
    }));
    for delay in [None, Some(0), Some(30)] {
        for quiet in [false, true] {
            push(Command::Flush(Flush { delay, quiet }));
        }
    }
    push(Command::Stat(Stat { key: Bytes::new() }));
    push(Command::Stat(Stat {
        key: b(b"settings"),
    }));
    push(Command::Quit(Quit { quiet: false }));
    push(Command::Quit(Quit { quiet: true }));
    push(Command::Noop);
    push(Command::Version);
    push(Command::SaslListMechs);
    for step in [false, true] {
        push(Command::SaslAuth(SaslAuth {
            mechanism: b(PLAIN),
            data: b(b"\0user\0secret"),
            step,
        }));
    }
    out
}

fn encode(request: &BinaryRequest) -> Vec<u8> {
    let mut out = Vec::new();
    request.encode(&mut out);
    assert_eq!(out.len(), request.encoded_len());
    out
}

#[test]
fn samples_cover_every_served_opcode() {
    let used: Vec<Opcode> = sample_requests()
        .iter()
        .map(BinaryRequest::opcode)
        .collect();
    for opcode in Opcode::ALL {
        if *opcode != Opcode::Verbosity {
            assert!(used.contains(opcode), "no sample for {opcode:?}");
        }
    }
}

#[test]
fn opcodes_round_trip_through_their_byte() {
    for code in 0..=u8::MAX {
        if let Some(opcode) = Opcode::from_u8(code) {
            assert_eq!(opcode.code(), code);
        }
    }
    assert_eq!(Opcode::ALL.len(), 36);
    assert_eq!(Opcode::from_u8(0x1f), None);
    assert_eq!(Opcode::from_u8(0x25), None);
}

#[test]
fn parse_of_encode_is_identity() {
    for request in sample_requests() {
        let wire = encode(&request);
        assert_eq!(
            parse(&wire),
            Decoded::Complete(BinaryFrame::Request(request.clone()), wire.len()),
            "{request:?}"
        );
    }
}

#[test]
fn every_command_cut_at_every_offset_needs_more() {
    for request in sample_requests() {
        let wire = encode(&request);
        for cut in 0..wire.len() {
            assert_eq!(
                parse(&wire[..cut]),
                Decoded::Incomplete,
                "{request:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn pipelined_requests_parse_one_after_another_and_byte_by_byte() {
    let requests = sample_requests();
    let mut wire = Vec::new();
    for request in &requests {
        request.encode(&mut wire);
    }
    let mut offset = 0;
    for request in &requests {
        match parse(&wire[offset..]) {
            Decoded::Complete(BinaryFrame::Request(parsed), used) => {
                assert_eq!(&parsed, request);
                offset += used;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(offset, wire.len());

    let mut buffer = Vec::new();
    let mut parsed = Vec::new();
    for &byte in &wire {
        buffer.push(byte);
        while let Decoded::Complete(frame, used) = parse(&buffer) {
            match frame {
                BinaryFrame::Request(request) => parsed.push(request),
                other => panic!("unexpected {other:?}"),
            }
            buffer.drain(..used);
        }
    }
    assert!(buffer.is_empty());
    assert_eq!(parsed, requests);
}

/// A request frame built field by field, for malformed input.
#[derive(Clone)]
struct Raw {
    magic: u8,
    opcode: u8,
    key: Vec<u8>,
    extras: Vec<u8>,
    value: Vec<u8>,
    key_len: Option<u16>,
    body_len: Option<u32>,
    opaque: u32,
    cas: u64,
}

fn raw(opcode: u8) -> Raw {
    Raw {
        magic: REQUEST_MAGIC,
        opcode,
        key: Vec::new(),
        extras: Vec::new(),
        value: Vec::new(),
        key_len: None,
        body_len: None,
        opaque: 0xdead_beef,
        cas: 0,
    }
}

impl Raw {
    fn key(mut self, key: &[u8]) -> Raw {
        self.key = key.to_vec();
        self
    }
    fn extras(mut self, extras: &[u8]) -> Raw {
        self.extras = extras.to_vec();
        self
    }
    fn value(mut self, value: &[u8]) -> Raw {
        self.value = value.to_vec();
        self
    }
    fn body_len(mut self, len: u32) -> Raw {
        self.body_len = Some(len);
        self
    }
    fn key_len(mut self, len: u16) -> Raw {
        self.key_len = Some(len);
        self
    }
    fn magic(mut self, magic: u8) -> Raw {
        self.magic = magic;
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        Header {
            magic: self.magic,
            opcode: self.opcode,
            key_len: self.key_len.unwrap_or(self.key.len() as u16),
            extras_len: self.extras.len() as u8,
            data_type: 0,
            vbucket_or_status: 0,
            body_len: self
                .body_len
                .unwrap_or((self.key.len() + self.extras.len() + self.value.len()) as u32),
            opaque: self.opaque,
            cas: self.cas,
        }
        .encode(&mut out);
        out.extend_from_slice(&self.extras);
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.value);
        out
    }
}

fn protocol_error(opcode: u8, status: Status) -> BinaryFrame {
    BinaryFrame::ProtocolError {
        opcode,
        opaque: 0xdead_beef,
        status,
    }
}

fn unknown(opcode: u8, discard: u64) -> BinaryFrame {
    BinaryFrame::UnknownCommand {
        opcode,
        opaque: 0xdead_beef,
        discard,
    }
}

fn assert_frame(input: &[u8], frame: BinaryFrame, used: usize) {
    assert_eq!(parse(input), Decoded::Complete(frame, used));
}

#[test]
fn a_header_is_needed_before_the_magic_is_checked() {
    let bad = raw(0x0a).magic(0x81).bytes();
    for cut in 0..HEADER_LEN {
        assert_eq!(parse(&bad[..cut]), Decoded::Incomplete);
    }
    assert_frame(&bad, BinaryFrame::Close(BinaryCloseReason::BadMagic), 0);
    assert_frame(
        &[0; HEADER_LEN],
        BinaryFrame::Close(BinaryCloseReason::BadMagic),
        0,
    );
    assert_frame(
        b"get foo\r\nget bar\r\nget baz\r\n",
        BinaryFrame::Close(BinaryCloseReason::BadMagic),
        0,
    );
}

#[test]
fn a_body_shorter_than_key_and_extras_is_unknown_command_and_closes() {
    // memcached waits for the whole key even so.
    let input = raw(0x00).key(b"abcd").body_len(2).bytes();
    assert_eq!(parse(&input[..HEADER_LEN + 3]), Decoded::Incomplete);
    assert_frame(
        &input,
        protocol_error(0x00, Status::UNKNOWN_COMMAND),
        HEADER_LEN + 4,
    );
    let input = raw(0x01).key(b"abcd").extras(&[0; 8]).body_len(10).bytes();
    assert_frame(&input, protocol_error(0x01, Status::UNKNOWN_COMMAND), 36);
    // Checked before the opcode: an unknown opcode too.
    let input = raw(0x50).key(b"k").body_len(0).bytes();
    assert_frame(&input, protocol_error(0x50, Status::UNKNOWN_COMMAND), 25);
}

#[test]
fn a_key_over_250_bytes_is_invalid_arguments_and_closes() {
    let input = raw(0x00).key(&[b'k'; 251]).bytes();
    assert_frame(
        &input,
        protocol_error(0x00, Status::INVALID_ARGUMENTS),
        input.len(),
    );
    let input = raw(0x00).key(&[b'k'; 250]).bytes();
    assert!(matches!(
        parse(&input),
        Decoded::Complete(BinaryFrame::Request(_), 274)
    ));
    // Even for an opcode memcached does not know, and for a quiet one.
    let input = raw(0x50).key(&[b'k'; 251]).bytes();
    assert_frame(&input, protocol_error(0x50, Status::INVALID_ARGUMENTS), 275);
    let input = raw(0x09).key(&[b'k'; 300]).bytes();
    assert_frame(&input, protocol_error(0x09, Status::INVALID_ARGUMENTS), 324);
}

#[test]
fn header_extras_and_key_must_fit_memcacheds_read_buffer() {
    // 24 + 16360 = 16384 fits: memcached reads the key, then rejects it.
    let fits = raw(0x00).key(&vec![b'k'; 16360]).bytes();
    assert_eq!(parse(&fits[..READ_BUFFER_SIZE - 1]), Decoded::Incomplete);
    assert_frame(
        &fits,
        protocol_error(0x00, Status::INVALID_ARGUMENTS),
        READ_BUFFER_SIZE,
    );
    // One byte more never fits: closed, silently, once the buffer is full.
    let too_long = raw(0x00).key(&vec![b'k'; 16361]).bytes();
    assert_eq!(
        parse(&too_long[..READ_BUFFER_SIZE - 1]),
        Decoded::Incomplete
    );
    assert_frame(
        &too_long[..READ_BUFFER_SIZE],
        BinaryFrame::Close(BinaryCloseReason::ReadBufferFull),
        0,
    );
    let extras_and_key = raw(0x01).key(&vec![b'k'; 16130]).extras(&[0; 255]).bytes();
    assert_frame(
        &extras_and_key,
        BinaryFrame::Close(BinaryCloseReason::ReadBufferFull),
        0,
    );
    // A header that only announces a long key waits for it.
    let header_only = raw(0x00).key_len(300).body_len(300).bytes();
    assert_eq!(parse(&header_only), Decoded::Incomplete);
}

#[test]
fn unknown_opcodes_discard_the_body_length_after_the_key() {
    // memcached has consumed extras and key, then discards body_len more.
    let input = raw(0x50).key(b"kk").value(b"vv").bytes();
    assert_frame(&input, unknown(0x50, 4), 26);
    let input = raw(0x50).extras(b"eeee").bytes();
    assert_frame(&input, unknown(0x50, 4), 28);
    assert_frame(&raw(0x50).bytes(), unknown(0x50, 0), 24);
    // verbosity is not served by memcached 1.6.18.
    let input = raw(0x1b).extras(&1u32.to_be_bytes()).bytes();
    assert_frame(&input, unknown(0x1b, 4), 28);
    // A body length that is negative as an int discards nothing.
    assert_frame(
        &raw(0x50).body_len(0xffff_ffff).bytes(),
        unknown(0x50, 0),
        24,
    );
    assert_frame(
        &raw(0x50).body_len(0x8000_0000).bytes(),
        unknown(0x50, 0),
        24,
    );
    assert_frame(
        &raw(0x50).body_len(0x7fff_ffff).bytes(),
        unknown(0x50, 0x7fff_ffff),
        24,
    );
    for code in [0x1f, 0x25, 0x30, 0x3c, 0xff] {
        assert_frame(&raw(code).bytes(), unknown(code, 0), 24);
    }
}

#[test]
fn each_opcode_checks_its_lengths_and_closes_on_a_mismatch() {
    let invalid = |input: Raw| {
        let bytes = input.bytes();
        let fixed = HEADER_LEN + input.extras.len() + input.key.len();
        assert_frame(
            &bytes,
            protocol_error(input.opcode, Status::INVALID_ARGUMENTS),
            fixed,
        );
    };
    let four = [0u8; 4];
    let eight = [0u8; 8];
    invalid(raw(0x00).key(b"k").extras(&four));
    invalid(raw(0x00).key(b"k").value(b"xxxx"));
    invalid(raw(0x00));
    invalid(raw(0x0d).key(b"k").value(b"v"));
    invalid(raw(0x01).key(b"k").extras(&four).value(b"v"));
    invalid(raw(0x01).extras(&eight).value(b"v"));
    invalid(raw(0x11).key(b"k"));
    invalid(raw(0x04).key(b"k").extras(&four));
    invalid(raw(0x04).key(b"k").value(b"v"));
    invalid(raw(0x14));
    invalid(raw(0x05).key(b"k").extras(&eight));
    invalid(raw(0x05).key(b"k").extras(&[0; 20]).value(b"v"));
    invalid(raw(0x16).extras(&[0; 20]));
    invalid(raw(0x0b).key(b"k"));
    invalid(raw(0x0a).value(b"v"));
    invalid(raw(0x07).value(b"v"));
    invalid(raw(0x17).extras(&four));
    invalid(raw(0x08).extras(&eight));
    invalid(raw(0x08).key(b"k"));
    invalid(raw(0x18).extras(&four).value(b"v"));
    invalid(raw(0x0e).key(b"k").extras(&four).value(b"v"));
    invalid(raw(0x1a).value(b"v"));
    invalid(raw(0x1c).key(b"k"));
    invalid(raw(0x1c).key(b"k").extras(&eight));
    invalid(raw(0x1d).extras(&four));
    invalid(raw(0x24).key(b"k").extras(&eight));
    invalid(raw(0x10).extras(&four));
    invalid(raw(0x20).key(b"k"));
    invalid(raw(0x21).value(b"abc"));
    invalid(raw(0x22).key(b"PLAIN").extras(b"ee").value(b"\0u\0p"));
}

#[test]
fn stat_and_touch_leave_extra_body_bytes_to_the_next_request() {
    let noop = encode(&request(7, Command::Noop));
    let mut input = raw(0x10).body_len(24).bytes();
    input.extend_from_slice(&noop);
    assert_frame(
        &input,
        BinaryFrame::Request(request(
            0xdead_beef,
            Command::Stat(Stat { key: Bytes::new() }),
        )),
        24,
    );
    assert_frame(
        &input[24..],
        BinaryFrame::Request(request(7, Command::Noop)),
        24,
    );

    let mut input = raw(0x1d)
        .key(b"k1")
        .extras(&9u32.to_be_bytes())
        .body_len(6 + 24)
        .bytes();
    input.extend_from_slice(&noop);
    let gat = Command::Get(Get {
        key: b(b"k1"),
        with_key: false,
        quiet: false,
        touch: Some(9),
    });
    assert_frame(&input, BinaryFrame::Request(request(0xdead_beef, gat)), 30);
    assert_frame(
        &input[30..],
        BinaryFrame::Request(request(7, Command::Noop)),
        24,
    );
}

fn set(key: &[u8], flags: u32, value_len: usize) -> Raw {
    let mut extras = flags.to_be_bytes().to_vec();
    extras.extend_from_slice(&0u32.to_be_bytes());
    raw(0x01)
        .key(key)
        .extras(&extras)
        .value(&vec![b'v'; value_len])
}

#[test]
fn the_item_size_limit_is_checked_from_the_header() {
    let max = limits().max_item_size;
    // memcached's item size: 59 + key + 4 if flags + value.
    let at_limit = set(b"big", 0, max - 59 - 3).bytes();
    assert!(matches!(
        parse(&at_limit),
        Decoded::Complete(BinaryFrame::Request(_), n) if n == at_limit.len()
    ));
    let over = set(b"big", 0, max - 59 - 3 + 1).bytes();
    let too_large = BinaryFrame::TooLarge(TooLarge {
        opcode: Opcode::Set,
        opaque: 0xdead_beef,
        key: b(b"big"),
        discard: (max - 59 - 3 + 1) as u64,
    });
    // Decided as soon as header, extras and key are there.
    assert_eq!(parse(&over[..34]), Decoded::Incomplete);
    assert_frame(&over[..35], too_large.clone(), 35);
    assert_frame(&over, too_large, 35);
    // Non-zero flags take 4 bytes.
    let flags_at_limit = set(b"big", 1, max - 59 - 3 - 4).bytes();
    assert!(matches!(
        parse(&flags_at_limit),
        Decoded::Complete(BinaryFrame::Request(_), _)
    ));
    let flags_over = set(b"big", 1, max - 59 - 3 - 3).bytes();
    assert!(matches!(
        parse(&flags_over),
        Decoded::Complete(BinaryFrame::TooLarge(_), 35)
    ));
}

#[test]
fn a_huge_body_length_is_answered_without_the_body() {
    let header_only = set(b"k", 0, 0).body_len(100 << 20).bytes();
    let expected = BinaryFrame::TooLarge(TooLarge {
        opcode: Opcode::Set,
        opaque: 0xdead_beef,
        key: b(b"k"),
        discard: (100 << 20) - 9,
    });
    assert_frame(&header_only, expected, 33);
    // As memcached's int, a body of 2^31 or more is negative: nothing to
    // discard.
    for body_len in [0xffff_ffff, 0x8000_0000 + 9] {
        let input = set(b"k", 0, 0).body_len(body_len).bytes();
        assert!(matches!(
            parse(&input),
            Decoded::Complete(BinaryFrame::TooLarge(TooLarge { discard: 0, .. }), 33)
        ));
    }
    let input = set(b"k", 0, 0).body_len(0x8000_0000 + 8).bytes();
    assert!(matches!(
        parse(&input),
        Decoded::Complete(
            BinaryFrame::TooLarge(TooLarge {
                discard: 0x7fff_ffff,
                ..
            }),
            33
        )
    ));
    // append, SASL: same rule, flags 0.
    let append = raw(0x19).key(b"k").body_len(0xffff).bytes();
    let small = Limits {
        max_item_size: 1000,
        ..limits()
    };
    assert_eq!(
        parse_binary_request(&append, &small),
        Decoded::Complete(
            BinaryFrame::TooLarge(TooLarge {
                opcode: Opcode::AppendQ,
                opaque: 0xdead_beef,
                key: b(b"k"),
                discard: 0xfffe,
            }),
            25
        )
    );
    let sasl = raw(0x21).key(b"PLAIN").body_len(0xffff_ff00).bytes();
    assert!(matches!(
        parse(&sasl),
        Decoded::Complete(BinaryFrame::TooLarge(TooLarge { discard: 0, .. }), 29)
    ));
    // A get with a huge body length is a protocol error, also from the key.
    let get = raw(0x00).key(b"k").body_len(0xffff_ffff).bytes();
    assert_frame(&get, protocol_error(0x00, Status::INVALID_ARGUMENTS), 25);
}

#[test]
fn too_large_answers_as_memcached_does() {
    let frame = |opcode, key: &[u8]| TooLarge {
        opcode,
        opaque: 1,
        key: b(key),
        discard: 0,
    };
    let set = frame(Opcode::SetQ, b"k");
    assert!(set.unlinks());
    assert_eq!(set.response(false).status, Status::VALUE_TOO_LARGE);
    assert_eq!(&set.response(false).value[..], b"Too large.");
    assert_eq!(set.response(false).opcode, 0x11);
    assert!(!frame(Opcode::Add, b"k").unlinks());
    assert!(!frame(Opcode::Append, b"k").unlinks());
    let sasl = frame(Opcode::SaslAuth, b"PLAIN");
    assert_eq!(sasl.response(false).status, Status::UNKNOWN_COMMAND);
    assert_eq!(sasl.response(true).status, Status::OUT_OF_MEMORY);
    assert_eq!(
        frame(Opcode::SaslStep, &[b'M'; 33]).response(true).status,
        Status::INVALID_ARGUMENTS
    );
}

/// Bytes as `xxd -p` would print them, spaces ignored.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn encoded(response: &BinaryResponse) -> Vec<u8> {
    let mut out = Vec::new();
    response.encode(&mut out);
    out
}

const OPAQUE: u32 = 0xdead_beef;

#[test]
fn responses_have_memcacheds_bytes() {
    // Each expectation is what memcached 1.6.18 sent.
    let cases: Vec<(BinaryResponse, Vec<u8>)> = vec![
        (
            BinaryResponse::miss(Opcode::Get, OPAQUE, &b(b"nope")),
            [
                hex("81 00 0000 00 00 0001 00000009 deadbeef 0000000000000000"),
                b"Not found".to_vec(),
            ]
            .concat(),
        ),
        (
            BinaryResponse::miss(Opcode::GetK, OPAQUE, &b(b"nope")),
            [
                hex("81 0c 0004 00 00 0001 00000004 deadbeef 0000000000000000"),
                b"nope".to_vec(),
            ]
            .concat(),
        ),
        (
            BinaryResponse::hit(Opcode::Get, OPAQUE, 1, 5, &b(b"k1"), b(b"hello")),
            [
                hex("81 00 0000 04 00 0000 00000009 deadbeef 0000000000000001 00000005"),
                b"hello".to_vec(),
            ]
            .concat(),
        ),
        (
            BinaryResponse::hit(Opcode::GetKQ, OPAQUE, 1, 5, &b(b"k1"), b(b"hello")),
            [
                hex("81 0d 0002 04 00 0000 0000000b deadbeef 0000000000000001 00000005"),
                b"k1hello".to_vec(),
            ]
            .concat(),
        ),
        (
            BinaryResponse::counter(Opcode::Increment, OPAQUE, 4, 10),
            hex("81 05 0000 00 00 0000 00000008 deadbeef 0000000000000004 000000000000000a"),
        ),
        (
            BinaryResponse::touched(OPAQUE, 17, 7),
            hex("81 1c 0000 04 00 0000 00000004 deadbeef 0000000000000011 00000007"),
        ),
        (
            BinaryResponse::ok(0x01, OPAQUE, 1),
            hex("81 01 0000 00 00 0000 00000000 deadbeef 0000000000000001"),
        ),
        (
            BinaryResponse::version(OPAQUE, b(b"1.6.18")),
            [
                hex("81 0b 0000 00 00 0000 00000006 deadbeef 0000000000000000"),
                b"1.6.18".to_vec(),
            ]
            .concat(),
        ),
        (
            BinaryResponse::error(0x50, OPAQUE, Status::UNKNOWN_COMMAND),
            [
                hex("81 50 0000 00 00 0081 0000000f deadbeef 0000000000000000"),
                b"Unknown command".to_vec(),
            ]
            .concat(),
        ),
        (
            BinaryResponse::stat(OPAQUE, b(b"pid"), b(b"15061")),
            [
                hex("81 10 0003 00 00 0000 00000008 deadbeef 0000000000000000"),
                b"pid15061".to_vec(),
            ]
            .concat(),
        ),
        (
            BinaryResponse::stat_end(OPAQUE),
            hex("81 10 0000 00 00 0000 00000000 deadbeef 0000000000000000"),
        ),
    ];
    for (response, bytes) in cases {
        assert_eq!(encoded(&response), bytes, "{response:?}");
    }
    let messages = [
        (Status::KEY_EXISTS, "Data exists for key."),
        (Status::VALUE_TOO_LARGE, "Too large."),
        (Status::INVALID_ARGUMENTS, "Invalid arguments"),
        (Status::ITEM_NOT_STORED, "Not stored."),
        (
            Status::NON_NUMERIC,
            "Non-numeric server-side value for incr or decr",
        ),
        (Status::AUTH_ERROR, "Auth failure."),
        (Status::OUT_OF_MEMORY, "Out of memory"),
    ];
    for (status, message) in messages {
        let response = BinaryResponse::error(0x01, 0, status);
        assert_eq!(&response.value[..], message.as_bytes());
        assert_eq!(response.cas, 0);
    }
    assert_eq!(Status::AUTH_CONTINUE.message(), None);
    assert_eq!(Status::NO_ERROR.message(), None);
}

#[test]
fn the_hit_header_matches_the_whole_hit() {
    for opcode in [Opcode::Get, Opcode::GetKQ, Opcode::GatK, Opcode::GatQ] {
        let whole = encoded(&BinaryResponse::hit(
            opcode,
            9,
            77,
            0xabcd,
            &b(b"key"),
            b(b"value"),
        ));
        let mut header = Vec::new();
        encode_hit_header(&mut header, opcode, 9, 77, 0xabcd, b"key", 5);
        header.extend_from_slice(b"value");
        assert_eq!(header, whole);
    }
}

fn sample_responses() -> Vec<BinaryResponse> {
    vec![
        BinaryResponse::ok(0x01, 1, 99),
        BinaryResponse::error(0x04, 2, Status::KEY_NOT_FOUND),
        BinaryResponse::miss(Opcode::GatK, 3, &b(b"key")),
        BinaryResponse::hit(Opcode::GetK, 4, u64::MAX, 0, &b(b"k"), b(b"\x81\0")),
        BinaryResponse::touched(5, 6, 7),
        BinaryResponse::counter(Opcode::IncrementQ, 8, 9, u64::MAX),
        BinaryResponse::version(10, b(b"1.6.18")),
        BinaryResponse::stat(11, b(b"name"), Bytes::new()),
        BinaryResponse::stat_end(12),
        BinaryResponse::error_with_message(
            0x01,
            13,
            Status::OUT_OF_MEMORY,
            b(b"Out of memory allocating item"),
        ),
        BinaryResponse {
            opcode: 0xff,
            status: Status(0xfffe),
            opaque: 14,
            cas: 15,
            extras: b(b"e"),
            key: b(b"kk"),
            value: b(b"vvv"),
        },
    ]
}

fn decode_response(input: &[u8]) -> Decoded<BinaryResponse> {
    parse_binary_response(input).expect("well-formed response")
}

#[test]
fn responses_round_trip_and_need_every_byte() {
    let mut stream = Vec::new();
    for response in sample_responses() {
        let wire = encoded(&response);
        assert_eq!(
            decode_response(&wire),
            Decoded::Complete(response.clone(), wire.len())
        );
        for cut in 0..wire.len() {
            assert_eq!(decode_response(&wire[..cut]), Decoded::Incomplete);
        }
        stream.extend_from_slice(&wire);
    }
    let mut decoded = Vec::new();
    let mut rest = &stream[..];
    while let Decoded::Complete(response, used) = decode_response(rest) {
        decoded.push(response);
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    assert_eq!(decoded, sample_responses());
}

#[test]
fn response_accessors() {
    assert_eq!(
        BinaryResponse::counter(Opcode::Increment, 0, 0, 42).counter_value(),
        Some(42)
    );
    assert_eq!(BinaryResponse::touched(0, 0, 7).flags(), Some(7));
    assert_eq!(BinaryResponse::ok(1, 0, 0).flags(), None);
    assert!(BinaryResponse::stat_end(0).ends_stat());
    assert!(!BinaryResponse::stat(0, b(b"pid"), b(b"1")).ends_stat());
    assert!(BinaryResponse::error(0x10, 0, Status::KEY_NOT_FOUND).ends_stat());
}

#[test]
fn malformed_responses_are_errors() {
    let mut bad_magic = encoded(&BinaryResponse::ok(1, 0, 0));
    bad_magic[0] = 0x80;
    assert_eq!(
        parse_binary_response(&bad_magic),
        Err(BinaryResponseError::BadMagic(0x80))
    );
    let mut short = encoded(&BinaryResponse::miss(Opcode::GetK, 0, &b(b"key")));
    short[11] = 2;
    assert_eq!(
        parse_binary_response(&short),
        Err(BinaryResponseError::BodyTooShort {
            key_len: 3,
            extras_len: 0,
            body_len: 2
        })
    );
    assert_eq!(parse_binary_response(&short[..23]), Ok(Decoded::Incomplete));
}

#[test]
fn quiet_opcodes_suppress_success_and_quiet_gets_suppress_misses() {
    for opcode in Opcode::ALL.iter().copied() {
        let quiet_get = matches!(
            opcode,
            Opcode::GetQ | Opcode::GetKQ | Opcode::GatQ | Opcode::GatKQ
        );
        assert_eq!(
            opcode.suppresses(Status::NO_ERROR),
            opcode.is_quiet() && !quiet_get,
            "{opcode:?}"
        );
        assert_eq!(
            opcode.suppresses(Status::KEY_NOT_FOUND),
            quiet_get,
            "{opcode:?}"
        );
        for status in [
            Status::KEY_EXISTS,
            Status::VALUE_TOO_LARGE,
            Status::INVALID_ARGUMENTS,
            Status::NON_NUMERIC,
        ] {
            assert!(!opcode.suppresses(status));
        }
    }
}

#[test]
fn stat_keys_name_groups_as_memcached_matches_them() {
    let group = |key: &[u8]| Stat { key: b(key) }.group();
    assert_eq!(group(b""), StatGroup::General);
    assert_eq!(group(b"reset"), StatGroup::Reset);
    assert_eq!(group(b"resetting"), StatGroup::Reset);
    assert_eq!(group(b"settingsXYZ"), StatGroup::Settings);
    assert_eq!(group(b"detail on"), StatGroup::DetailOn);
    assert_eq!(group(b"detail off"), StatGroup::DetailOff);
    assert_eq!(group(b"detail dump"), StatGroup::DetailDump);
    assert_eq!(group(b"detail"), StatGroup::Other(b(b"detail")));
    assert_eq!(group(b"items"), StatGroup::Other(b(b"items")));
    assert_eq!(group(b"rese"), StatGroup::Other(b(b"rese")));
}

#[test]
fn plain_credentials_split_at_two_nuls() {
    let auth = |mechanism: &[u8], data: &[u8]| SaslAuth {
        mechanism: b(mechanism),
        data: b(data),
        step: false,
    };
    let parsed = auth(b"PLAIN", b"\0user\0pass word");
    let credentials = parsed.plain().unwrap();
    assert_eq!(credentials.authzid, b"");
    assert_eq!(credentials.user, b"user");
    assert_eq!(credentials.password, b"pass word");
    assert_eq!(credentials.encode(), b"\0user\0pass word");
    let with_authzid = auth(b"PLAIN", b"admin\0user\0");
    let credentials = with_authzid.plain().unwrap();
    assert_eq!(credentials.authzid, b"admin");
    assert_eq!(credentials.password, b"");
    assert_eq!(auth(b"PLAIN", b"\0\0pass").plain(), None);
    assert_eq!(auth(b"PLAIN", b"user\0pass").plain(), None);
    assert_eq!(auth(b"PLAIN", b"\0user\0pa\0ss").plain(), None);
    assert_eq!(auth(b"CRAM-MD5", b"\0user\0pass").plain(), None);
}

#[test]
fn arithmetic_creates_unless_the_expiration_is_all_ones() {
    let arith = |exptime| Arithmetic {
        key: b(b"n"),
        increment: true,
        delta: 1,
        initial: 0,
        exptime,
        cas: 0,
        quiet: false,
    };
    assert!(arith(0).creates_missing());
    assert!(arith(0xffff_fffe).creates_missing());
    assert!(!arith(0xffff_ffff).creates_missing());
}

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_frames_never_panic_and_never_overrun() {
    let small = Limits {
        max_item_size: 200,
        ..limits()
    };
    let mut seeds: Vec<Vec<u8>> = sample_requests().iter().map(encode).collect();
    seeds.extend(sample_responses().iter().map(encoded));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..20_000 {
        let mut input = seeds[round % seeds.len()].clone();
        for _ in 0..(rng.next() % 4 + 1) {
            if input.is_empty() {
                break;
            }
            let at = (rng.next() as usize) % input.len();
            input[at] = rng.next() as u8;
        }
        if rng.next().is_multiple_of(4) {
            let cut = (rng.next() as usize) % (input.len() + 1);
            input.truncate(cut);
        }
        for limits in [&limits(), &small] {
            if let Decoded::Complete(frame, used) = parse_binary_request(&input, limits) {
                assert!(used <= input.len());
                if let BinaryFrame::Request(request) = &frame {
                    let wire = encode(request);
                    assert_eq!(
                        parse_binary_request(&wire, limits),
                        Decoded::Complete(frame.clone(), wire.len())
                    );
                }
            }
        }
        if let Ok(Decoded::Complete(response, used)) = parse_binary_response(&input) {
            assert!(used <= input.len());
            assert_eq!(
                decode_response(&encoded(&response)),
                Decoded::Complete(response.clone(), used)
            );
        }
    }
}
