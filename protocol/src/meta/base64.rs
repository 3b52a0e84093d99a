//! Base64 keys (`b` flag): memcached's standard padded alphabet, with its
//! decoder's leniency.

use bytes::{BufMut, Bytes};

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The value of a base64 digit; `=` counts as a digit worth 0, as in
/// memcached's decode table.
fn base64_digit(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Encodes `data` in standard padded base64, as memcached encodes binary
/// keys in replies.
pub fn encode_base64(data: &[u8], out: &mut impl BufMut) {
    let digit = |index: u8| BASE64_ALPHABET[usize::from(index & 0x3f)];
    let mut chunks = data.chunks_exact(3);
    for chunk in &mut chunks {
        out.put_slice(&[
            digit(chunk[0] >> 2),
            digit((chunk[0] << 4) | (chunk[1] >> 4)),
            digit((chunk[1] << 2) | (chunk[2] >> 6)),
            digit(chunk[2]),
        ]);
    }
    match *chunks.remainder() {
        [a] => out.put_slice(&[digit(a >> 2), digit(a << 4), b'=', b'=']),
        [a, b] => out.put_slice(&[
            digit(a >> 2),
            digit((a << 4) | (b >> 4)),
            digit(b << 2),
            b'=',
        ]),
        _ => {}
    }
}

/// [`encode_base64`] into a new `Bytes`.
pub fn base64_encoded(data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    encode_base64(data, &mut out);
    Bytes::from(out)
}

/// Decodes a base64 key exactly as memcached 1.6.18's `base64_decode` does:
/// bytes outside the alphabet are skipped, the digits (with `=`) must be a
/// non-zero multiple of four, decoding stops after the first group holding
/// padding, and a group with more than two `=` fails. `None` where memcached
/// fails (it also fails when nothing is decoded).
pub fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let digits = text.iter().filter(|&&b| base64_digit(b).is_some()).count();
    if digits == 0 || digits % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(digits / 4 * 3);
    let mut group = [0u8; 4];
    let mut filled = 0;
    let mut padding = 0;
    for &byte in text {
        let Some(value) = base64_digit(byte) else {
            continue;
        };
        if byte == b'=' {
            padding += 1;
        }
        group[filled] = value;
        filled += 1;
        if filled == 4 {
            out.push((group[0] << 2) | (group[1] >> 4));
            out.push((group[1] << 4) | (group[2] >> 2));
            out.push((group[2] << 6) | group[3]);
            filled = 0;
            if padding > 0 {
                match padding {
                    1 | 2 => out.truncate(out.len() - padding),
                    _ => return None,
                }
                break;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}
