//! Peer frames: `[payload length: u32 LE][crc32 of payload: u32 LE][payload]`.
//!
//! The length is checked against the bound before anything is buffered; the
//! checksum is checked before the payload is looked at. Pure functions and
//! an async reader over any `AsyncRead`.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes before a frame's payload.
pub const FRAME_HEADER: usize = 8;

/// Why a frame could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The connection failed or closed mid-frame.
    #[error("peer connection: {0}")]
    Io(#[from] std::io::Error),
    /// The header announces more than the bound.
    #[error("peer frame of {len} bytes is over the {limit}-byte bound")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The bound.
        limit: usize,
    },
    /// The payload does not match its checksum.
    #[error("peer frame checksum mismatch")]
    Checksum,
}

/// Appends one frame holding `payload` to `out`.
pub fn encode_frame(out: &mut BytesMut, payload: &[u8]) {
    out.reserve(FRAME_HEADER + payload.len());
    out.put_u32_le(payload.len() as u32);
    out.put_u32_le(crc32fast::hash(payload));
    out.put_slice(payload);
}

/// Reads one frame's payload; `Ok(None)` if the connection closed cleanly
/// before a frame began.
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    limit: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut header = [0u8; FRAME_HEADER];
    match reader.read_exact(&mut header[..1]).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    reader.read_exact(&mut header[1..]).await?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let mut payload = BytesMut::zeroed(len);
    reader.read_exact(&mut payload).await?;
    if crc32fast::hash(&payload) != crc {
        return Err(FrameError::Checksum);
    }
    Ok(Some(payload.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_refused() {
        let mut out = BytesMut::new();
        encode_frame(&mut out, b"hello");
        encode_frame(&mut out, b"");
        let mut reader = &out[..];
        assert_eq!(
            read_frame(&mut reader, 100).await.unwrap().unwrap(),
            "hello"
        );
        assert_eq!(read_frame(&mut reader, 100).await.unwrap().unwrap(), "");
        assert!(read_frame(&mut reader, 100).await.unwrap().is_none());

        // Over the bound: refused from the header, before the payload.
        let mut big = BytesMut::new();
        big.put_u32_le(1 << 30);
        big.put_u32_le(0);
        assert!(matches!(
            read_frame(&mut &big[..], 1 << 20).await,
            Err(FrameError::TooLarge { .. })
        ));
        // A flipped payload byte.
        let mut bad = BytesMut::new();
        encode_frame(&mut bad, b"payload");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            read_frame(&mut &bad[..], 100).await,
            Err(FrameError::Checksum)
        ));
        // Cut mid-frame.
        let mut cut = BytesMut::new();
        encode_frame(&mut cut, b"payload");
        assert!(matches!(
            read_frame(&mut &cut[..cut.len() - 2], 100).await,
            Err(FrameError::Io(_))
        ));
    }
}
