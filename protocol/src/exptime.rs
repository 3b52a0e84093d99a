//! Expiration times: how the `exptime` a client sends becomes an absolute
//! unix time, with memcached's rules.
//!
//! - `0`: never expires;
//! - `1 ..= 2_592_000` (30 days): seconds from now;
//! - larger: an absolute unix time (in the past: already expired);
//! - negative: already expired.

/// memcached's `REALTIME_MAXDELTA`: exptimes up to 30 days are relative.
pub const MAX_RELATIVE_EXPTIME: i64 = 60 * 60 * 24 * 30;

/// When an item expires, as an absolute unix time in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expiry {
    /// The item does not expire.
    Never,
    /// The item is invisible from this unix second on.
    At(u64),
}

impl Expiry {
    /// Converts a wire exptime, given the current unix time.
    pub fn from_exptime(exptime: i64, now: u64) -> Expiry {
        match exptime {
            0 => Expiry::Never,
            // Already expired: memcached maps these to the distant past.
            e if e < 0 => Expiry::At(1),
            e if e <= MAX_RELATIVE_EXPTIME => Expiry::At(now + e as u64),
            e => Expiry::At(e as u64),
        }
    }

    /// From the stored form, where 0 means "never".
    pub fn from_stored(value: u64) -> Expiry {
        if value == 0 {
            Expiry::Never
        } else {
            Expiry::At(value)
        }
    }

    /// The stored form, where 0 means "never".
    pub fn to_stored(self) -> u64 {
        match self {
            Expiry::Never => 0,
            Expiry::At(at) => at.max(1),
        }
    }

    /// Whether an item with this expiry is invisible at `now`.
    pub fn is_expired(self, now: u64) -> bool {
        match self {
            Expiry::Never => false,
            Expiry::At(at) => at <= now,
        }
    }

    /// Seconds left at `now`, as the meta protocol's `t` flag reports it
    /// (`-1` for an item that never expires).
    pub fn ttl_remaining(self, now: u64) -> i64 {
        match self {
            Expiry::Never => -1,
            Expiry::At(at) => at.saturating_sub(now) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memcached_rules() {
        let now = 1_700_000_000;
        assert_eq!(Expiry::from_exptime(0, now), Expiry::Never);
        assert_eq!(Expiry::from_exptime(10, now), Expiry::At(now + 10));
        assert_eq!(
            Expiry::from_exptime(MAX_RELATIVE_EXPTIME, now),
            Expiry::At(now + MAX_RELATIVE_EXPTIME as u64)
        );
        assert_eq!(
            Expiry::from_exptime(MAX_RELATIVE_EXPTIME + 1, now),
            Expiry::At(MAX_RELATIVE_EXPTIME as u64 + 1)
        );
        assert!(Expiry::from_exptime(MAX_RELATIVE_EXPTIME + 1, now).is_expired(now));
        assert!(Expiry::from_exptime(-1, now).is_expired(now));
        assert!(!Expiry::from_exptime(now as i64 + 5, now).is_expired(now));
        assert!(Expiry::from_exptime(now as i64, now).is_expired(now));
    }
}
