//! When an item expires: an absolute unix second, never relative.
//!
//! Expiry is absolute so that every replica of an item expires it at the
//! same moment. Turning a client's relative `exptime` into this is the
//! wire's business (`mcstore_protocol::exptime::expires_at`).

/// When an item expires, as an absolute unix time in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expiry {
    /// The item does not expire.
    Never,
    /// The item is invisible from this unix second on.
    At(u64),
}

impl Expiry {
    /// From an optional deadline (`None`: never).
    pub fn from_deadline(deadline: Option<u64>) -> Expiry {
        match deadline {
            None => Expiry::Never,
            Some(at) => Expiry::At(at.max(1)),
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
    fn stored_form_and_expiry() {
        let now = 1_700_000_000;
        assert_eq!(
            Expiry::from_stored(Expiry::Never.to_stored()),
            Expiry::Never
        );
        assert_eq!(
            Expiry::from_stored(Expiry::At(5).to_stored()),
            Expiry::At(5)
        );
        assert_eq!(Expiry::from_deadline(Some(0)), Expiry::At(1));
        assert!(Expiry::At(now).is_expired(now));
        assert!(!Expiry::At(now + 1).is_expired(now));
        assert!(!Expiry::Never.is_expired(now));
        assert_eq!(Expiry::At(now + 7).ttl_remaining(now), 7);
        assert_eq!(Expiry::At(now - 7).ttl_remaining(now), 0);
        assert_eq!(Expiry::Never.ttl_remaining(now), -1);
    }
}
