//! Datagram framing and authentication.
//!
//! ```text
//! datagram = magic "mC" | version:u8 (1) | flags:u8 | kind:u8 | body | [tag]
//! flags    bit 0: a tag follows the body (the sender has a cluster secret)
//! kind     0: foca packet   body = a foca packet (see `codec`)
//!          1: hello         body = the sender's identity
//!          2: hello reply   body = the replier's identity
//!          3: down sync     body = count:u16, then that many members
//! tag      HMAC-SHA256(secret, every byte before the tag), 32 bytes
//! ```
//!
//! A node with a secret accepts only tagged datagrams whose tag verifies; a
//! node without one accepts only untagged datagrams (a tagged datagram means
//! a misconfigured peer, and it could not be checked anyway). The tag covers
//! the header, so the kind and flags cannot be altered either.
//!
//! Pure functions, no I/O.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"mC";

/// The wire format version in every datagram.
pub const WIRE_VERSION: u8 = 1;

/// Bytes before the body.
pub const HEADER_LEN: usize = 5;

/// Length of the authentication tag.
pub const TAG_LEN: usize = 32;

const FLAG_TAGGED: u8 = 1;

/// What a datagram carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A foca packet.
    Foca,
    /// "Who are you?", sent to seed addresses.
    Hello,
    /// The answer to a hello.
    HelloReply,
    /// Members the sender knows to be down.
    DownSync,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Foca => 0,
            Kind::Hello => 1,
            Kind::HelloReply => 2,
            Kind::DownSync => 3,
        }
    }

    fn from_code(code: u8) -> Option<Kind> {
        Some(match code {
            0 => Kind::Foca,
            1 => Kind::Hello,
            2 => Kind::HelloReply,
            3 => Kind::DownSync,
            _ => return None,
        })
    }
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Not an mcstore gossip datagram, or a corrupt one.
    Malformed,
    /// A missing, unexpected or wrong tag.
    Auth,
}

/// The keyed HMAC state of the cluster secret.
#[derive(Clone)]
pub(crate) struct Authenticator {
    mac: Hmac<Sha256>,
}

impl Authenticator {
    /// Keys an authenticator with `secret`.
    pub(crate) fn new(secret: &[u8]) -> Authenticator {
        Authenticator {
            // HMAC takes keys of any length.
            mac: Hmac::new_from_slice(secret).expect("HMAC accepts any key length"),
        }
    }

    fn tag(&self, bytes: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(bytes);
        mac.verify_slice(tag).is_ok()
    }
}

/// Writes a whole datagram of `kind` around `body` into `out` (cleared
/// first), tagged when `auth` is given.
pub(crate) fn seal(kind: Kind, body: &[u8], auth: Option<&Authenticator>, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(WIRE_VERSION);
    out.push(if auth.is_some() { FLAG_TAGGED } else { 0 });
    out.push(kind.code());
    out.extend_from_slice(body);
    if let Some(auth) = auth {
        let tag = auth.tag(out);
        out.extend_from_slice(&tag);
    }
}

/// Checks a received datagram and returns its kind and body.
pub(crate) fn open<'a>(
    datagram: &'a [u8],
    auth: Option<&Authenticator>,
) -> Result<(Kind, &'a [u8]), Reject> {
    if datagram.len() < HEADER_LEN || datagram[..2] != MAGIC || datagram[2] != WIRE_VERSION {
        return Err(Reject::Malformed);
    }
    let flags = datagram[3];
    if flags & !FLAG_TAGGED != 0 {
        return Err(Reject::Malformed);
    }
    let tagged = flags & FLAG_TAGGED != 0;
    let signed = match (auth, tagged) {
        (Some(auth), true) => {
            if datagram.len() < HEADER_LEN + TAG_LEN {
                return Err(Reject::Auth);
            }
            let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
            if !auth.verify(signed, tag) {
                return Err(Reject::Auth);
            }
            signed
        }
        (None, false) => datagram,
        _ => return Err(Reject::Auth),
    };
    let kind = Kind::from_code(signed[4]).ok_or(Reject::Malformed)?;
    Ok((kind, &signed[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    //! Framing round trips; every tampering is caught.

    use super::*;

    #[test]
    fn untagged_round_trip() {
        let mut out = Vec::new();
        seal(Kind::Hello, b"body", None, &mut out);
        assert_eq!(&out[..HEADER_LEN], b"mC\x01\x00\x01");
        assert_eq!(open(&out, None), Ok((Kind::Hello, &b"body"[..])));
    }

    #[test]
    fn tagged_round_trip_and_tampering() {
        let auth = Authenticator::new(b"s3cret");
        let mut out = Vec::new();
        seal(Kind::Foca, b"payload", Some(&auth), &mut out);
        assert_eq!(out.len(), HEADER_LEN + 7 + TAG_LEN);
        assert_eq!(open(&out, Some(&auth)), Ok((Kind::Foca, &b"payload"[..])));
        for i in 0..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x20;
            assert!(open(&bad, Some(&auth)).is_err(), "flipped byte {i}");
        }
        for cut in 0..out.len() {
            assert!(open(&out[..cut], Some(&auth)).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn secrets_must_match_and_be_present_on_both_sides() {
        let good = Authenticator::new(b"one");
        let wrong = Authenticator::new(b"two");
        let mut tagged = Vec::new();
        seal(Kind::Foca, b"x", Some(&good), &mut tagged);
        let mut plain = Vec::new();
        seal(Kind::Foca, b"x", None, &mut plain);
        assert_eq!(open(&tagged, Some(&wrong)), Err(Reject::Auth));
        assert_eq!(open(&tagged, None), Err(Reject::Auth));
        assert_eq!(open(&plain, Some(&good)), Err(Reject::Auth));
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(open(b"", None), Err(Reject::Malformed));
        assert_eq!(open(b"get foo\r\n", None), Err(Reject::Malformed));
        assert_eq!(open(b"mC\x02\x00\x00", None), Err(Reject::Malformed));
        assert_eq!(open(b"mC\x01\x80\x00", None), Err(Reject::Malformed));
        assert_eq!(open(b"mC\x01\x00\x09", None), Err(Reject::Malformed));
    }
}
