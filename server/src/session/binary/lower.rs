//! Lowering: binary commands become the same storage operations the text
//! and meta commands become, so an item is one item whatever protocol
//! wrote it.
//!
//! The header's cas is a condition on every write, as memcached 1.6.18
//! reads it: a non-zero cas turns `set`, `add` and `replace` into a
//! compare-and-swap (`NREAD_CAS`), and must match for `append`/`prepend`,
//! `delete` and incr/decr. Binary exptimes and flush delays are unsigned
//! 32-bit and follow the text protocol's rules (`realtime()`).

use mcstore_protocol::binary::{Arithmetic, Concat, Delete, Flush, Store, StoreMode as Mode};
use mcstore_storage::ops::{CounterOp, DeleteOp, FetchOp, StoreMode, StoreOp};
use mcstore_storage::{Expiry, Operation};

use crate::session::lower::{expiry_of, flush_deadline_of};

/// The absolute expiry of a binary exptime at unix second `now`.
pub fn expiry(exptime: u32, now: u64) -> Expiry {
    expiry_of(i64::from(exptime), now)
}

/// `cas` as a condition: 0 is none.
fn condition(cas: u64) -> Option<u64> {
    (cas != 0).then_some(cas)
}

/// `set`, `add`, `replace` (and quiet): a non-zero cas makes any of them a
/// compare-and-swap.
pub fn store(store: Store, now: u64) -> Operation {
    let mode = match (store.cas, store.mode) {
        (0, Mode::Set) => StoreMode::Set,
        (0, Mode::Add) => StoreMode::Add,
        (0, Mode::Replace) => StoreMode::Replace,
        (cas, _) => StoreMode::Cas(cas),
    };
    Operation::Store(StoreOp::new(
        store.key,
        mode,
        store.flags,
        expiry(store.exptime, now),
        store.value,
    ))
}

/// `append`, `prepend` (and quiet): the item keeps its flags and expiry.
pub fn concat(concat: Concat) -> Operation {
    let mode = if concat.prepend {
        StoreMode::Prepend
    } else {
        StoreMode::Append
    };
    Operation::Store(StoreOp {
        compare_cas: condition(concat.cas),
        ..StoreOp::new(concat.key, mode, 0, Expiry::Never, concat.value)
    })
}

/// `delete` (and quiet).
pub fn delete(delete: Delete) -> Operation {
    Operation::Delete(DeleteOp {
        compare_cas: condition(delete.cas),
        ..DeleteOp::new(delete.key)
    })
}

/// `increment`, `decrement` (and quiet): a missing key is created with the
/// initial value (the delta not applied) unless the expiration is
/// `0xffffffff`.
pub fn arithmetic(arith: Arithmetic, now: u64) -> Operation {
    let vivify = arith
        .creates_missing()
        .then(|| (arith.initial, expiry(arith.exptime, now)));
    Operation::Counter(CounterOp {
        compare_cas: condition(arith.cas),
        vivify,
        ..CounterOp::new(arith.key, arith.increment, arith.delta)
    })
}

/// `touch` and the `gat` family: a new expiry for a live item.
pub fn touch(key: bytes::Bytes, exptime: u32, now: u64) -> Operation {
    Operation::Fetch(FetchOp::touch(key, expiry(exptime, now)))
}

/// `flush` (and quiet): the text protocol's deadline for the delay.
pub fn flush(flush: &Flush, now: u64) -> Operation {
    Operation::FlushAll {
        deadline: flush_deadline_of(i64::from(flush.delay.unwrap_or(0)), now),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn set(mode: Mode, cas: u64) -> Store {
        Store {
            mode,
            key: Bytes::from_static(b"k"),
            flags: 7,
            exptime: 10,
            value: Bytes::from_static(b"v"),
            cas,
            quiet: false,
        }
    }

    fn mode_of(op: Operation) -> StoreMode {
        match op {
            Operation::Store(store) => store.mode,
            other => panic!("not a store: {other:?}"),
        }
    }

    #[test]
    fn a_cas_in_the_header_makes_every_store_a_compare_and_swap() {
        assert_eq!(mode_of(store(set(Mode::Set, 0), NOW)), StoreMode::Set);
        assert_eq!(mode_of(store(set(Mode::Add, 0), NOW)), StoreMode::Add);
        for mode in [Mode::Set, Mode::Add, Mode::Replace] {
            assert_eq!(mode_of(store(set(mode, 42), NOW)), StoreMode::Cas(42));
        }
        let Operation::Store(op) = store(set(Mode::Set, 0), NOW) else {
            unreachable!()
        };
        assert_eq!((op.flags, op.expiry), (7, Expiry::At(NOW + 10)));
    }

    #[test]
    fn counters_create_unless_told_not_to() {
        let arith = |exptime, cas| Arithmetic {
            key: Bytes::from_static(b"n"),
            increment: true,
            delta: 5,
            initial: 10,
            exptime,
            cas,
            quiet: false,
        };
        let Operation::Counter(op) = arithmetic(arith(0, 0), NOW) else {
            unreachable!()
        };
        assert_eq!(op.vivify, Some((10, Expiry::Never)));
        assert_eq!(op.compare_cas, None);
        let Operation::Counter(op) = arithmetic(arith(Arithmetic::NO_CREATE, 9), NOW) else {
            unreachable!()
        };
        assert_eq!(op.vivify, None);
        assert_eq!(op.compare_cas, Some(9));
    }

    #[test]
    fn exptimes_are_unsigned_and_flush_follows_the_text_rule() {
        // 0xffffffff is an absolute time in 2106, not "already expired".
        assert_eq!(expiry(u32::MAX, NOW), Expiry::At(u64::from(u32::MAX)));
        let deadline = |delay| match flush(
            &Flush {
                delay,
                quiet: false,
            },
            NOW,
        ) {
            Operation::FlushAll { deadline } => deadline,
            other => panic!("{other:?}"),
        };
        assert_eq!(deadline(None), NOW - 1);
        assert_eq!(deadline(Some(0)), NOW - 1);
        assert_eq!(deadline(Some(2)), NOW + 1);
    }
}
