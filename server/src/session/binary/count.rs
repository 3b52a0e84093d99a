//! memcached's counters for binary commands, from each write's outcome, as
//! memcached 1.6.18's binary handlers and the item functions they call
//! count them. Where they differ from the text commands:
//!
//! - incr/decr that creates the item counts no miss (memcached counts
//!   `incr_misses` only when it answers "Not found"), and links an item
//!   (`total_items`); one whose number outgrew its item links a new item
//!   too;
//! - a refused too-large store counts nothing (no `cmd_set`, no
//!   `store_too_large`: those are the text protocol's).
//!
//! Reads count where they run (`cmd_get`, `get_hits`, ...), and requests
//! count `cmd_set`, `cmd_touch`, `cmd_flush` when they arrive.

use std::sync::atomic::{AtomicU64, Ordering};

use mcstore_protocol::binary::Opcode;
use mcstore_storage::ops::Outcome;

use super::render::Answer;
use crate::stats::Counters;

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counts one write's outcome.
pub fn outcome(c: &Counters, answer: &Answer, outcome: &Outcome) {
    use Opcode::*;
    match (answer.opcode, outcome) {
        (Delete | DeleteQ, Outcome::Deleted) => bump(&c.delete_hits),
        (Delete | DeleteQ, Outcome::NotFound) => bump(&c.delete_misses),
        (Increment | IncrementQ | Decrement | DecrementQ, outcome) => {
            let increment = matches!(answer.opcode, Increment | IncrementQ);
            match outcome {
                Outcome::Counter(result) if result.created => bump(&c.total_items),
                Outcome::Counter(result) => {
                    bump(if increment {
                        &c.incr_hits
                    } else {
                        &c.decr_hits
                    });
                    if !result.in_place {
                        bump(&c.total_items);
                    }
                }
                Outcome::NotFound => bump(if increment {
                    &c.incr_misses
                } else {
                    &c.decr_misses
                }),
                _ => {}
            }
        }
        (Touch | Gat | GatQ | GatK | GatKQ, Outcome::Fetched(_)) => bump(&c.touch_hits),
        (Touch | Gat | GatQ | GatK | GatKQ, Outcome::NotFound) => bump(&c.touch_misses),
        (_, Outcome::Stored { .. }) => {
            if answer.cas_store {
                bump(&c.cas_hits);
            }
            bump(&c.total_items);
        }
        (_, Outcome::Exists) if answer.cas_store => bump(&c.cas_badval),
        (_, Outcome::NotFound) if answer.cas_store => bump(&c.cas_misses),
        _ => {}
    }
}
