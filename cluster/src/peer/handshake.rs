//! The peer handshake: how a node proves to another that it is a peer.
//!
//! Peer connections use the node's client port. The connecting node sends
//! [`PEER_MAGIC`], which no memcache client sends (its first byte, 0xF0, is
//! neither a text command nor the binary protocol's 0x80), then a nonce and
//! its advertised address. The accepting node answers with whether it
//! requires the cluster secret, its own nonce, and its proof; the connecting
//! node answers with its proof. A proof is HMAC-SHA256 over both nonces and
//! the prover's role, keyed with the shared secret: the secret itself never
//! crosses the wire, and a recorded proof is useless with other nonces.
//! Without a secret on both sides, proofs are zeros and every connection is
//! accepted; a node with a secret refuses a peer without one, and the other
//! way round.
//!
//! ```text
//! connector -> acceptor: F0 "MCSTORE-PEER" 01 | nonce[16] | len:u8 | advertise
//! acceptor -> connector: "MCPR" | secret:u8 (0/1) | nonce[16] | proof[32]
//! connector -> acceptor: proof[32]
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What a peer connection starts with.
pub const PEER_MAGIC: &[u8; 14] = b"\xF0MCSTORE-PEER\x01";

/// The first byte of [`PEER_MAGIC`]: a connection starting with it is a peer.
pub const PEER_FIRST_BYTE: u8 = 0xF0;

const ACCEPT_MAGIC: &[u8; 4] = b"MCPR";
const NONCE_LEN: usize = 16;
const PROOF_LEN: usize = 32;

/// Why a handshake failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The connection failed.
    #[error("peer handshake I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The other side is not an mcstore peer (or speaks another version).
    #[error("not an mcstore peer (bad handshake magic)")]
    BadMagic,
    /// The other side failed to prove the shared secret.
    #[error("the peer did not prove the cluster secret")]
    BadProof,
    /// One side has a cluster secret and the other has none.
    #[error("cluster secret mismatch: {0}")]
    SecretMismatch(&'static str),
    /// The advertised address is not valid UTF-8 or too long.
    #[error("bad advertised address in the peer handshake")]
    BadAdvertise,
}

fn proof(secret: Option<&[u8]>, role: &[u8], first: &[u8], second: &[u8]) -> [u8; PROOF_LEN] {
    let Some(secret) = secret else {
        return [0; PROOF_LEN];
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(role);
    mac.update(first);
    mac.update(second);
    mac.finalize().into_bytes().into()
}

fn verify(
    secret: Option<&[u8]>,
    role: &[u8],
    first: &[u8],
    second: &[u8],
    received: &[u8; PROOF_LEN],
) -> bool {
    let Some(secret) = secret else {
        return true;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(role);
    mac.update(first);
    mac.update(second);
    mac.verify_slice(received).is_ok()
}

/// A fresh nonce from the kernel's random source.
fn nonce() -> std::io::Result<[u8; NONCE_LEN]> {
    use std::io::Read;
    let mut out = [0u8; NONCE_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut out)?;
    Ok(out)
}

/// Runs the connecting side over `stream`, advertising `advertise`.
pub async fn connect(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    advertise: &str,
    secret: Option<&[u8]>,
) -> Result<(), HandshakeError> {
    if advertise.len() > 255 {
        return Err(HandshakeError::BadAdvertise);
    }
    let mine = nonce()?;
    let mut hello = Vec::with_capacity(PEER_MAGIC.len() + NONCE_LEN + 1 + advertise.len());
    hello.extend_from_slice(PEER_MAGIC);
    hello.extend_from_slice(&mine);
    hello.push(advertise.len() as u8);
    hello.extend_from_slice(advertise.as_bytes());
    stream.write_all(&hello).await?;
    let mut answer = [0u8; 4 + 1 + NONCE_LEN + PROOF_LEN];
    stream.read_exact(&mut answer).await?;
    if &answer[..4] != ACCEPT_MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let theirs: [u8; NONCE_LEN] = answer[5..5 + NONCE_LEN].try_into().expect("nonce");
    let their_proof: [u8; PROOF_LEN] = answer[5 + NONCE_LEN..].try_into().expect("proof");
    match (answer[4], secret.is_some()) {
        (0, true) => {
            return Err(HandshakeError::SecretMismatch(
                "the peer has no cluster secret",
            ))
        }
        (1, false) => {
            return Err(HandshakeError::SecretMismatch(
                "the peer requires a cluster secret",
            ))
        }
        _ => {}
    }
    if !verify(secret, b"acceptor", &mine, &theirs, &their_proof) {
        return Err(HandshakeError::BadProof);
    }
    stream
        .write_all(&proof(secret, b"connector", &theirs, &mine))
        .await?;
    stream.flush().await?;
    Ok(())
}

/// Runs the accepting side over `stream`, after the caller saw the first
/// byte (which is still to be read from `stream`). Returns the connector's
/// advertised address.
pub async fn accept(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    secret: Option<&[u8]>,
) -> Result<String, HandshakeError> {
    let mut magic = [0u8; PEER_MAGIC.len()];
    stream.read_exact(&mut magic).await?;
    if &magic != PEER_MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let mut theirs = [0u8; NONCE_LEN];
    stream.read_exact(&mut theirs).await?;
    let mut len = [0u8; 1];
    stream.read_exact(&mut len).await?;
    let mut advertise = vec![0u8; len[0] as usize];
    stream.read_exact(&mut advertise).await?;
    let advertise = String::from_utf8(advertise).map_err(|_| HandshakeError::BadAdvertise)?;
    let mine = nonce()?;
    let mut answer = Vec::with_capacity(4 + 1 + NONCE_LEN + PROOF_LEN);
    answer.extend_from_slice(ACCEPT_MAGIC);
    answer.push(u8::from(secret.is_some()));
    answer.extend_from_slice(&mine);
    answer.extend_from_slice(&proof(secret, b"acceptor", &theirs, &mine));
    stream.write_all(&answer).await?;
    stream.flush().await?;
    let mut their_proof = [0u8; PROOF_LEN];
    stream.read_exact(&mut their_proof).await?;
    if !verify(secret, b"connector", &mine, &theirs, &their_proof) {
        return Err(HandshakeError::BadProof);
    }
    Ok(advertise)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(
        connector_secret: Option<&'static [u8]>,
        acceptor_secret: Option<&'static [u8]>,
    ) -> (Result<(), HandshakeError>, Result<String, HandshakeError>) {
        let (mut a, mut b) = tokio::io::duplex(1024);
        tokio::join!(
            async move { connect(&mut a, "127.0.0.1:7000", connector_secret).await },
            async move { accept(&mut b, acceptor_secret).await }
        )
    }

    #[tokio::test]
    async fn peers_with_the_same_secret_or_none_are_admitted() {
        let (c, a) = pair(Some(b"s3cret"), Some(b"s3cret")).await;
        assert!(c.is_ok());
        assert_eq!(a.unwrap(), "127.0.0.1:7000");
        let (c, a) = pair(None, None).await;
        assert!(c.is_ok() && a.is_ok());
    }

    #[tokio::test]
    async fn a_wrong_or_missing_secret_is_refused() {
        let (c, a) = pair(Some(b"wrong"), Some(b"s3cret")).await;
        assert!(matches!(c, Err(HandshakeError::BadProof)), "{c:?}");
        assert!(a.is_err());
        let (c, _a) = pair(None, Some(b"s3cret")).await;
        assert!(matches!(c, Err(HandshakeError::SecretMismatch(_))));
        let (c, _a) = pair(Some(b"s3cret"), None).await;
        assert!(matches!(c, Err(HandshakeError::SecretMismatch(_))));
    }

    #[tokio::test]
    async fn garbage_is_not_a_peer() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(b"\xF0get foo\r\n and more bytes than that")
            .await
            .unwrap();
        assert!(matches!(
            accept(&mut b, None).await,
            Err(HandshakeError::BadMagic)
        ));
    }
}
