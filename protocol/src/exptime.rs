//! Expiration times: how the `exptime` a client sends becomes an absolute
//! unix time, with memcached's rules (its `realtime()`).
//!
//! - `0`: never expires;
//! - `1 ..= 2_592_000` (30 days): seconds from now;
//! - larger: an absolute unix time (in the past: already expired);
//! - negative: already expired.
//!
//! The absolute time is what a server stores; turning it back into a TTL
//! for a reply is the server's business.

/// memcached's `REALTIME_MAXDELTA`: exptimes up to 30 days are relative.
pub const MAX_RELATIVE_EXPTIME: i64 = 60 * 60 * 24 * 30;

/// The unix second from which an item with this wire `exptime`, written at
/// unix second `now`, is invisible; `None` if it never expires. An exptime
/// in the past gives `Some(1)`, the distant past, as memcached does.
pub fn expires_at(exptime: i64, now: u64) -> Option<u64> {
    match exptime {
        0 => None,
        e if e < 0 => Some(1),
        e if e <= MAX_RELATIVE_EXPTIME => Some(now + e as u64),
        e => Some((e as u64).max(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcached_rules() {
        let now = 1_700_000_000;
        assert_eq!(expires_at(0, now), None);
        assert_eq!(expires_at(10, now), Some(now + 10));
        assert_eq!(
            expires_at(MAX_RELATIVE_EXPTIME, now),
            Some(now + MAX_RELATIVE_EXPTIME as u64)
        );
        assert_eq!(
            expires_at(MAX_RELATIVE_EXPTIME + 1, now),
            Some(MAX_RELATIVE_EXPTIME as u64 + 1)
        );
        assert_eq!(expires_at(-1, now), Some(1));
        assert_eq!(expires_at(now as i64 + 5, now), Some(now + 5));
    }
}
