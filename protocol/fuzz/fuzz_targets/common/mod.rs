//! Checks shared by the fuzz targets.

use std::fmt::Debug;

/// Asserts that `value` encodes to bytes that `parse` turns back into
/// `value`, using all of them, and that encoding the parsed value again gives
/// the same bytes. `parse` returns the value and the bytes it used, or a
/// description of what it decoded instead.
pub fn assert_encoding_roundtrips<T: PartialEq + Debug>(
    value: &T,
    encode: impl Fn(&T, &mut Vec<u8>),
    parse: impl Fn(&[u8]) -> Result<(T, usize), String>,
) {
    let mut encoded = Vec::new();
    encode(value, &mut encoded);
    let (again, used) = parse(&encoded).unwrap_or_else(|other| {
        panic!(
            "encoding {:?} of {value:?} parsed as {other}",
            Escaped(&encoded)
        )
    });
    assert_eq!(
        &again,
        value,
        "parse(encode(x)) != x; encoded {:?}",
        Escaped(&encoded)
    );
    assert_eq!(
        used,
        encoded.len(),
        "encoding {:?} not all used",
        Escaped(&encoded)
    );
    let mut twice = Vec::new();
    encode(&again, &mut twice);
    assert_eq!(Escaped(&twice), Escaped(&encoded), "encoding not stable");
}

/// Shows bytes as an escaped byte string.
#[derive(PartialEq)]
pub struct Escaped<'a>(pub &'a [u8]);

impl Debug for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}
