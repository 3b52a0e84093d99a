//! Number parsing with the exact semantics memcached gets from C's `strtol`
//! family (`safe_strtoul`, `safe_strtol`, `safe_strtoull` in memcached's
//! `util.c`, on a 64-bit Linux build).
//!
//! The quirks are visible on the wire, so they are kept on purpose:
//! leading whitespace and a sign are accepted, a trailing whitespace byte ends
//! the number, a `-` is accepted by the unsigned parsers unless the result
//! would look negative as a signed number, and the 32-bit variants parse 64
//! bits and then truncate (`set k 4294967297 0 1` stores flags `1`).

/// C's `isspace` in the "C" locale.
pub fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The result of C's `strtoull`/`strtoll` core: the sign, the magnitude,
/// whether it overflowed and where parsing stopped.
struct Scanned {
    negative: bool,
    magnitude: u64,
    overflow: bool,
    /// Index of the first byte not consumed; 0 when no digits were found.
    end: usize,
}

fn scan(text: &[u8]) -> Scanned {
    let mut i = 0;
    while i < text.len() && is_c_space(text[i]) {
        i += 1;
    }
    let mut negative = false;
    if i < text.len() && (text[i] == b'+' || text[i] == b'-') {
        negative = text[i] == b'-';
        i += 1;
    }
    let digits_start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    while i < text.len() && text[i].is_ascii_digit() {
        let digit = u64::from(text[i] - b'0');
        match magnitude.checked_mul(10).and_then(|m| m.checked_add(digit)) {
            Some(m) => magnitude = m,
            None => overflow = true,
        }
        i += 1;
    }
    let end = if i == digits_start { 0 } else { i };
    Scanned {
        negative,
        magnitude,
        overflow,
        end,
    }
}

/// Whether `text[end..]` is an acceptable tail: empty, or starting with a
/// whitespace byte (memcached's `xisspace(*endptr) || *endptr == '\0'`).
fn tail_ok(text: &[u8], end: usize) -> bool {
    end == text.len() || is_c_space(text[end])
}

/// `safe_strtoull`: an unsigned 64-bit number.
pub fn parse_u64(text: &[u8]) -> Option<u64> {
    let scanned = scan(text);
    if scanned.end == 0 || scanned.overflow || !tail_ok(text, scanned.end) {
        return None;
    }
    let value = if scanned.negative {
        scanned.magnitude.wrapping_neg()
    } else {
        scanned.magnitude
    };
    if (value as i64) < 0 && text.contains(&b'-') {
        return None;
    }
    Some(value)
}

/// `safe_strtoul` into a `uint32_t`: parsed as 64 bits, then truncated.
pub fn parse_u32(text: &[u8]) -> Option<u32> {
    parse_u64(text).map(|value| value as u32)
}

/// `safe_strtoll`: a signed 64-bit number.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let scanned = scan(text);
    if scanned.end == 0 || !tail_ok(text, scanned.end) {
        return None;
    }
    let limit = if scanned.negative {
        1u64 << 63
    } else {
        i64::MAX as u64
    };
    if scanned.overflow || scanned.magnitude > limit {
        return None;
    }
    Some(if scanned.negative {
        (scanned.magnitude as i64).wrapping_neg()
    } else {
        scanned.magnitude as i64
    })
}

/// `safe_strtol` into an `int32_t`: parsed as 64 bits, then truncated.
pub fn parse_i32(text: &[u8]) -> Option<i32> {
    parse_i64(text).map(|value| value as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_accepts_what_strtoull_accepts() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"+7"), Some(7));
        assert_eq!(parse_u64(b"\t7"), Some(7));
        assert_eq!(parse_u64(b"7\r"), Some(7));
        assert_eq!(parse_u64(b"-0"), Some(0));
        assert_eq!(parse_u64(b"-1"), None);
        // Small negative magnitudes wrap to huge values, which look negative.
        assert_eq!(parse_u64(b"-9223372036854775808"), None);
        // A large negative magnitude wraps to a small positive value.
        assert_eq!(parse_u64(b"-18446744073709551615"), Some(1));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-"), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"a12"), None);
        assert_eq!(parse_u64(b"1 2"), Some(1));
    }

    #[test]
    fn thirty_two_bit_variants_truncate() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967297"), Some(1));
        assert_eq!(parse_i32(b"-1"), Some(-1));
        assert_eq!(parse_i32(b"4294967297"), Some(1));
        assert_eq!(parse_i32(b"2147483648"), Some(i32::MIN));
    }

    #[test]
    fn signed_range() {
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"-9223372036854775809"), None);
        assert_eq!(parse_i64(b" -5"), Some(-5));
    }
}
