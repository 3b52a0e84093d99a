//! memcached's command counters, bumped from each write's outcome exactly
//! as memcached counts them (`cmd_*`, `*_hits`, `*_misses`, `cas_badval`,
//! `total_items`).

use std::sync::atomic::{AtomicU64, Ordering};

use mcstore_protocol::{MetaArithmeticMode, MetaRequest, StoreMode};
use mcstore_storage::ops::Outcome;

use super::ReplyKind;
use crate::stats::Counters;

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counts one write's outcome.
pub(crate) fn count_outcome(c: &Counters, kind: &ReplyKind, outcome: &Outcome) {
    let counter = match (kind, outcome) {
        (ReplyKind::Store { cas }, Outcome::Stored { .. }) => {
            if *cas {
                bump(&c.cas_hits);
            }
            &c.total_items
        }
        (ReplyKind::Store { cas: true }, Outcome::Exists) => &c.cas_badval,
        (ReplyKind::Store { cas: true }, Outcome::NotFound) => &c.cas_misses,
        (ReplyKind::Delete, Outcome::Deleted) => &c.delete_hits,
        (ReplyKind::Delete, Outcome::NotFound) => &c.delete_misses,
        (
            ReplyKind::Arithmetic {
                increment: true, ..
            },
            Outcome::NotFound,
        ) => &c.incr_misses,
        (
            ReplyKind::Arithmetic {
                increment: false, ..
            },
            Outcome::NotFound,
        ) => &c.decr_misses,
        (
            ReplyKind::Arithmetic {
                increment: true, ..
            },
            Outcome::Counter(_),
        ) => &c.incr_hits,
        (
            ReplyKind::Arithmetic {
                increment: false, ..
            },
            Outcome::Counter(_),
        ) => &c.decr_hits,
        (ReplyKind::Touch { .. } | ReplyKind::GatValue { .. }, Outcome::NotFound) => {
            &c.touch_misses
        }
        (ReplyKind::Touch { .. } | ReplyKind::GatValue { .. }, Outcome::Fetched(_)) => {
            &c.touch_hits
        }
        (ReplyKind::Meta(request), outcome) => {
            count_meta_outcome(c, request, outcome);
            return;
        }
        _ => return,
    };
    bump(counter);
}

/// Counts a meta write's outcome as memcached does.
fn count_meta_outcome(c: &Counters, request: &MetaRequest, outcome: &Outcome) {
    match request {
        MetaRequest::Get(get) => {
            // As memcached: a hit with `T` counts as a touch, a miss always
            // as a get miss.
            match outcome {
                Outcome::Fetched(item) => {
                    if get.touch.is_some() {
                        bump(&c.cmd_touch);
                        bump(&c.touch_hits);
                    } else {
                        bump(&c.cmd_get);
                        bump(&c.get_hits);
                    }
                    if item.created {
                        bump(&c.total_items);
                    }
                }
                _ => {
                    bump(&c.cmd_get);
                    bump(&c.get_misses);
                }
            }
        }
        MetaRequest::Set(set) => {
            let cas = matches!(set.store_mode(), StoreMode::Cas(_));
            match outcome {
                Outcome::Stored { .. } => {
                    bump(&c.total_items);
                    if cas {
                        bump(&c.cas_hits);
                    }
                }
                Outcome::Exists if cas => bump(&c.cas_badval),
                Outcome::NotFound if cas => bump(&c.cas_misses),
                _ => {}
            }
        }
        MetaRequest::Delete(delete) => {
            // `x` links a new, emptied item, which memcached counts.
            if delete.remove_value
                && matches!(outcome, Outcome::Deleted | Outcome::Invalidated { .. })
            {
                bump(&c.total_items);
            }
            match outcome {
                Outcome::Deleted if !delete.invalidate => bump(&c.delete_hits),
                Outcome::NotFound | Outcome::Exists => bump(&c.delete_misses),
                _ => {}
            }
        }
        MetaRequest::Arithmetic(arith) => {
            let increment = arith.mode == MetaArithmeticMode::Increment;
            match outcome {
                Outcome::Counter(result) if result.created => bump(&c.total_items),
                Outcome::Counter(_) => bump(if increment {
                    &c.incr_hits
                } else {
                    &c.decr_hits
                }),
                Outcome::NotFound => bump(if increment {
                    &c.incr_misses
                } else {
                    &c.decr_misses
                }),
                _ => {}
            }
        }
        MetaRequest::Noop | MetaRequest::Debug(_) => {}
    }
}
