//! Lowering: text and meta commands become the storage layer's operations.
//!
//! The wire's relative exptimes become absolute expiries here (at the
//! session's clock reading, as memcached converts them when it parses a
//! command), `flush_all <delay>` becomes memcached's deadline, and each meta
//! command's flags become the fields of one operation, so that the storage
//! layer knows nothing of either protocol.

use mcstore_protocol::exptime::expires_at;
use mcstore_protocol::{
    MetaArithmetic, MetaArithmeticMode, MetaDelete, MetaGet, MetaSet, Store as StoreRequest,
};
use mcstore_storage::ops::fetch::Recache;
use mcstore_storage::ops::{CounterOp, DeleteOp, FetchOp, StoreMode, StoreOp};
use mcstore_storage::{Expiry, Operation};

/// The absolute expiry of a wire exptime at unix second `now`.
pub fn expiry(exptime: i32, now: u64) -> Expiry {
    expiry_of(i64::from(exptime), now)
}

/// [`expiry`] for any width of exptime (the binary protocol's are
/// unsigned 32-bit).
pub fn expiry_of(exptime: i64, now: u64) -> Expiry {
    Expiry::from_deadline(expires_at(exptime, now))
}

/// memcached 1.6.18's `flush_all <delay>` deadline: `realtime(delay) - 1`,
/// or `now - 1` without a (positive) delay. Items last written in a second
/// at or before it are flushed from the deadline on.
pub fn flush_deadline(delay: i32, now: u64) -> u64 {
    flush_deadline_of(i64::from(delay), now)
}

/// [`flush_deadline`] for any width of delay (the binary protocol's is
/// unsigned 32-bit).
pub fn flush_deadline_of(delay: i64, now: u64) -> u64 {
    match expires_at(delay, now) {
        Some(at) if delay > 0 => at.saturating_sub(1),
        _ => now.saturating_sub(1),
    }
}

/// The storage mode of a wire storage mode.
pub fn store_mode(mode: mcstore_protocol::StoreMode) -> StoreMode {
    match mode {
        mcstore_protocol::StoreMode::Set => StoreMode::Set,
        mcstore_protocol::StoreMode::Add => StoreMode::Add,
        mcstore_protocol::StoreMode::Replace => StoreMode::Replace,
        mcstore_protocol::StoreMode::Append => StoreMode::Append,
        mcstore_protocol::StoreMode::Prepend => StoreMode::Prepend,
        mcstore_protocol::StoreMode::Cas(unique) => StoreMode::Cas(unique),
    }
}

/// `set add replace append prepend cas`.
pub fn text_store(store: StoreRequest, now: u64) -> Operation {
    Operation::Store(StoreOp::new(
        store.key,
        store_mode(store.mode),
        store.flags,
        expiry(store.exptime, now),
        store.value,
    ))
}

/// An `mg` that may change its item.
pub fn meta_get(get: &MetaGet, now: u64) -> Operation {
    Operation::Fetch(FetchOp {
        key: get.key.clone(),
        touch: get.touch.map(|exptime| expiry(exptime, now)),
        vivify: get.vivify.map(|exptime| expiry(exptime, now)),
        touch_after_vivify: get.ttl_order.vivify_before_touch,
        recache: get.recache.map(|exptime| Recache {
            limit: expiry(exptime, now),
            against_touch: get.ttl_order.touch_before_recache,
        }),
        take_win_token: true,
        explicit_cas: get.new_cas,
    })
}

/// `ms`.
pub fn meta_set(set: &MetaSet, now: u64) -> Operation {
    Operation::Store(StoreOp {
        key: set.key.clone(),
        mode: store_mode(set.store_mode()),
        flags: set.flags,
        expiry: expiry(set.ttl.unwrap_or(0), now),
        value: set.value.clone(),
        compare_cas: set.compare_cas,
        invalidate: set.invalidate,
        vivify: set.vivify.map(|exptime| expiry(exptime, now)),
        explicit_cas: set.new_cas,
        binary_key: set.base64_key,
    })
}

/// `md`.
pub fn meta_delete(delete: &MetaDelete, now: u64) -> Operation {
    Operation::Delete(DeleteOp {
        key: delete.key.clone(),
        compare_cas: delete.compare_cas,
        invalidate: delete.invalidate,
        empty_with_flags: delete.remove_value.then_some(delete.flags),
        expiry: delete.ttl.map(|exptime| expiry(exptime, now)),
        explicit_cas: delete.new_cas,
    })
}

/// `ma`.
pub fn meta_arithmetic(arith: &MetaArithmetic, now: u64) -> Operation {
    Operation::Counter(CounterOp {
        key: arith.key.clone(),
        increment: arith.mode == MetaArithmeticMode::Increment,
        delta: arith.delta,
        compare_cas: arith.compare_cas,
        vivify: arith
            .vivify
            .map(|exptime| (arith.initial, expiry(exptime, now))),
        touch: arith.ttl.map(|exptime| expiry(exptime, now)),
        touch_after_vivify: arith.ttl_order.vivify_before_touch,
        explicit_cas: arith.new_cas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn flush_deadlines_follow_memcached() {
        assert_eq!(flush_deadline(0, NOW), NOW - 1);
        assert_eq!(flush_deadline(-5, NOW), NOW - 1);
        assert_eq!(flush_deadline(1, NOW), NOW);
        assert_eq!(flush_deadline(2, NOW), NOW + 1);
        // An absolute time, as any exptime over 30 days is.
        assert_eq!(flush_deadline(1_900_000_000, NOW), 1_899_999_999);
    }

    #[test]
    fn exptimes_become_absolute() {
        assert_eq!(expiry(0, NOW), Expiry::Never);
        assert_eq!(expiry(10, NOW), Expiry::At(NOW + 10));
        assert_eq!(expiry(-1, NOW), Expiry::At(1));
    }
}
