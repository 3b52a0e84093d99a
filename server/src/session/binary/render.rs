//! Rendering: storage outcomes and items become memcached 1.6.18's binary
//! responses (`complete_update_bin`, `process_bin_delete`,
//! `complete_incr_bin`, `process_bin_get_or_touch`), quiet opcodes
//! suppressing what memcached suppresses ([`Opcode::suppresses`]).
//!
//! | outcome | status |
//! | --- | --- |
//! | stored | 0, the new item's cas |
//! | cas mismatch | `KEY_EXISTS` |
//! | `add` of a live key | `KEY_EXISTS` |
//! | `replace`, cas store, delete, incr/decr, touch of a missing key | `KEY_NOT_FOUND` |
//! | `append`/`prepend` to a missing key, or grown past the size limit | `ITEM_NOT_STORED` |
//! | incr/decr of a non-number | `NON_NUMERIC` |
//! | a storage failure (no memcached equivalent) | `0x84` internal error, with the cause |

use bytes::{BufMut, Bytes, BytesMut};
use mcstore_protocol::binary::{encode_hit_header, BinaryResponse, Opcode, Status};
use mcstore_storage::ops::Outcome;
use mcstore_storage::Record;

/// memcached's `PROTOCOL_BINARY_RESPONSE_EINTERNAL`, for failures that have
/// no memcached equivalent (a failed fsync, a corrupt record).
pub const INTERNAL_ERROR: Status = Status(0x0084);

/// How a keyed request is answered: its opcode, opaque and key.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The request's opcode (decides quietness and the response's shape).
    pub opcode: Opcode,
    /// The request's opaque, echoed.
    pub opaque: u32,
    /// The key (returned by `getk*`/`gatk*`).
    pub key: Bytes,
    /// A store with a cas in its header (counted as a cas command).
    pub cas_store: bool,
}

impl Answer {
    /// An answer to `opcode`.
    pub fn new(opcode: Opcode, opaque: u32, key: Bytes) -> Answer {
        Answer {
            opcode,
            opaque,
            key,
            cas_store: false,
        }
    }
}

/// Writes `response` unless the opcode suppresses its status.
pub fn respond(out: &mut BytesMut, opcode: Opcode, response: BinaryResponse) {
    if !opcode.suppresses(response.status) {
        response.encode(out);
    }
}

/// An error with memcached's message for `status`.
pub fn error(answer: &Answer, status: Status) -> BinaryResponse {
    BinaryResponse::error(answer.opcode.code(), answer.opaque, status)
}

/// A failure of the node itself.
pub fn failure(opcode: u8, opaque: u32, cause: impl std::fmt::Display) -> BinaryResponse {
    BinaryResponse::error_with_message(
        opcode,
        opaque,
        INTERNAL_ERROR,
        Bytes::from(cause.to_string()),
    )
}

/// A get or gat hit: flags, cas, the key for `getk*`/`gatk*`, the value
/// (never suppressed: quiet gets answer hits).
pub fn hit(out: &mut BytesMut, answer: &Answer, record: &Record) {
    encode_hit_header(
        out,
        answer.opcode,
        answer.opaque,
        record.cas,
        record.flags,
        &answer.key,
        record.value.len(),
    );
    out.put_slice(&record.value);
}

/// A get or gat miss (nothing for the quiet ones).
pub fn miss(out: &mut BytesMut, answer: &Answer) {
    let response = BinaryResponse::miss(answer.opcode, answer.opaque, &answer.key);
    respond(out, answer.opcode, response);
}

/// Writes the response to a write's outcome.
pub fn outcome(out: &mut BytesMut, answer: &Answer, outcome: Outcome) {
    use Opcode::*;
    let (opcode, opaque) = (answer.opcode, answer.opaque);
    let response = match (opcode, outcome) {
        (_, Outcome::Failed(err)) => failure(opcode.code(), opaque, err),
        (Gat | GatQ | GatK | GatKQ, Outcome::Fetched(item)) => {
            hit(out, answer, &item.record);
            return;
        }
        (Gat | GatQ | GatK | GatKQ | Touch, Outcome::NotFound) => {
            miss(out, answer);
            return;
        }
        (Touch, Outcome::Fetched(item)) => {
            BinaryResponse::touched(opaque, item.record.cas, item.record.flags)
        }
        (_, Outcome::Stored { cas, .. }) => BinaryResponse::ok(opcode.code(), opaque, cas),
        (_, Outcome::Counter(result)) => {
            BinaryResponse::counter(opcode, opaque, result.record.cas, result.number)
        }
        (_, Outcome::Exists) => error(answer, Status::KEY_EXISTS),
        (Add | AddQ, Outcome::NotStored) => error(answer, Status::KEY_EXISTS),
        (Replace | ReplaceQ, Outcome::NotStored) => error(answer, Status::KEY_NOT_FOUND),
        (_, Outcome::NotStored) => error(answer, Status::ITEM_NOT_STORED),
        (_, Outcome::NonNumeric) => error(answer, Status::NON_NUMERIC),
        (_, Outcome::NotFound) => error(answer, Status::KEY_NOT_FOUND),
        // Deleted, flushed.
        _ => BinaryResponse::ok(opcode.code(), opaque, 0),
    };
    respond(out, opcode, response);
}

#[cfg(test)]
mod tests {
    use mcstore_protocol::binary::parse_binary_response;
    use mcstore_protocol::Decoded;
    use mcstore_storage::ops::{CounterResult, FetchedItem};
    use mcstore_storage::Expiry;
    use mcstore_storage::Version;

    use super::*;

    fn record(value: &'static [u8]) -> Record {
        Record {
            flags: 0xdead_beef,
            expiry: Expiry::Never,
            cas: 77,
            version: Version::default(),
            marks: 0,
            value: Bytes::from_static(value),
        }
    }

    fn answer(opcode: Opcode) -> Answer {
        Answer::new(opcode, 0x0102_0304, Bytes::from_static(b"key"))
    }

    fn rendered(opcode: Opcode, result: Outcome) -> Vec<BinaryResponse> {
        let mut out = BytesMut::new();
        outcome(&mut out, &answer(opcode), result);
        let mut responses = Vec::new();
        let mut rest = &out[..];
        while let Ok(Decoded::Complete(response, used)) = parse_binary_response(rest) {
            responses.push(response);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
        responses
    }

    fn status(opcode: Opcode, result: Outcome) -> Option<Status> {
        rendered(opcode, result).first().map(|r| r.status)
    }

    #[test]
    fn failed_conditions_map_to_memcached_statuses() {
        use Opcode::*;
        assert_eq!(status(Add, Outcome::NotStored), Some(Status::KEY_EXISTS));
        assert_eq!(
            status(Replace, Outcome::NotStored),
            Some(Status::KEY_NOT_FOUND)
        );
        assert_eq!(
            status(AppendQ, Outcome::NotStored),
            Some(Status::ITEM_NOT_STORED)
        );
        assert_eq!(status(Set, Outcome::Exists), Some(Status::KEY_EXISTS));
        assert_eq!(status(Set, Outcome::NotFound), Some(Status::KEY_NOT_FOUND));
        assert_eq!(
            status(DecrementQ, Outcome::NonNumeric),
            Some(Status::NON_NUMERIC)
        );
        assert_eq!(
            status(DeleteQ, Outcome::NotFound),
            Some(Status::KEY_NOT_FOUND)
        );
    }

    #[test]
    fn quiet_successes_and_quiet_misses_are_silent() {
        use Opcode::*;
        let stored = || Outcome::Stored { cas: 5, size: 1 };
        assert!(rendered(SetQ, stored()).is_empty());
        assert!(rendered(DeleteQ, Outcome::Deleted).is_empty());
        assert!(rendered(FlushQ, Outcome::Done).is_empty());
        assert!(rendered(GatKQ, Outcome::NotFound).is_empty());
        let responses = rendered(Set, stored());
        assert_eq!(responses[0], BinaryResponse::ok(Set.code(), 0x0102_0304, 5));
    }

    #[test]
    fn hits_counters_and_touches_carry_the_item() {
        use Opcode::*;
        let fetched = || {
            Outcome::Fetched(FetchedItem {
                record: record(b"value"),
                marks_before: 0,
                expiry_before: Expiry::Never,
                created: false,
                won: false,
                now: 1,
            })
        };
        let hit = &rendered(GatKQ, fetched())[0];
        assert_eq!(
            (hit.cas, hit.flags(), &hit.key[..], &hit.value[..]),
            (77, Some(0xdead_beef), &b"key"[..], &b"value"[..])
        );
        let touched = &rendered(Touch, fetched())[0];
        assert_eq!(
            (touched.flags(), touched.value.len()),
            (Some(0xdead_beef), 0)
        );
        let counter = Outcome::Counter(CounterResult {
            number: 42,
            record: record(b"42"),
            expiry_before: Expiry::Never,
            created: false,
            in_place: true,
            old_cas: 1,
            now: 1,
        });
        let response = &rendered(Increment, counter)[0];
        assert_eq!((response.counter_value(), response.cas), (Some(42), 77));
        let miss = &rendered(GatK, Outcome::NotFound)[0];
        assert_eq!(
            (miss.status, &miss.key[..]),
            (Status::KEY_NOT_FOUND, &b"key"[..])
        );
    }
}
