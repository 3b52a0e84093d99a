//! memcached's command counters, shared by every connection and read by
//! `stats`: plain atomics bumped by whoever sees the event.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::access::AccessTable;
use crate::auth::Auth;
use crate::conns::Connections;
use crate::detail::PrefixStats;
use crate::watch::Watchers;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// memcached's resettable command counters.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        impl Counters {
            /// Name and value of every counter, in memcached's order.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }

            /// Zeroes every counter (`stats reset`).
            pub fn reset(&self) {
                $(self.$name.store(0, Ordering::Relaxed);)*
            }
        }
    };
}

counters! {
    /// Get requests (per key).
    cmd_get,
    /// Storage commands.
    cmd_set,
    /// flush_all commands.
    cmd_flush,
    /// touch commands and gat keys.
    cmd_touch,
    /// Keys found by get.
    get_hits,
    /// Keys not found by get.
    get_misses,
    /// Keys found expired by get.
    get_expired,
    /// Keys found flushed by get.
    get_flushed,
    /// delete of an absent key.
    delete_misses,
    /// delete of a present key.
    delete_hits,
    /// incr of an absent key.
    incr_misses,
    /// incr of a present key.
    incr_hits,
    /// decr of an absent key.
    decr_misses,
    /// decr of a present key.
    decr_hits,
    /// cas of an absent key.
    cas_misses,
    /// cas that stored.
    cas_hits,
    /// cas with a stale unique.
    cas_badval,
    /// touch of a present key.
    touch_hits,
    /// touch of an absent key.
    touch_misses,
    /// Storage commands refused as too large.
    store_too_large,
    /// Authentication attempts (SASL and ascii).
    auth_cmds,
    /// Failed authentication attempts.
    auth_errors,
    /// Bytes read from clients.
    bytes_read,
    /// Bytes written to clients.
    bytes_written,
    /// Items stored since start (or reset).
    total_items,
    /// Connections accepted since start (or reset).
    total_connections,
    /// Connections refused at the connection limit.
    rejected_connections,
}

/// What every connection of the node shares: memcached's counters, the
/// connection count, the meta protocol's access table and what clients
/// must authenticate with. (The storage
/// layer keeps its own figures: [`mcstore_storage::stats::StorageStats`].)
#[derive(Debug)]
pub struct Shared {
    /// Command counters.
    pub counters: Counters,
    /// Open client connections.
    pub curr_connections: AtomicU64,
    /// Fetched / last-access information (in memory only).
    pub access: AccessTable,
    /// `--sasl-password-file`: whether and how clients authenticate.
    pub auth: Auth,
    /// Open connections and the listener (`stats conns`).
    pub conns: Connections,
    /// Per-prefix counts (`stats detail`).
    pub detail: PrefixStats,
    /// `watch` connections.
    pub watchers: Watchers,
    /// `slabs automove` as last set (memcached's default 1); reported by
    /// `stats settings`, it changes nothing here: there are no slabs.
    pub slab_automove: AtomicU32,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            counters: Counters::default(),
            curr_connections: AtomicU64::new(0),
            access: AccessTable::default(),
            conns: Connections::default(),
            detail: PrefixStats::default(),
            watchers: Watchers::default(),
            slab_automove: AtomicU32::new(1),
            auth: Auth::default(),
        }
    }
}
