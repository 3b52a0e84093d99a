//! SASL over the binary protocol: the pieces that are about bytes.
//!
//! memcached (built with SASL and started with `-S`) lists its mechanisms
//! for [`super::Opcode::SaslListMechs`] as one space-separated value, and
//! takes [`super::Opcode::SaslAuth`] / [`super::Opcode::SaslStep`] with the
//! mechanism as the key and the mechanism's data as the value. It answers
//! "Authenticated" (status 0) on success, [`super::Status::AUTH_CONTINUE`]
//! with the server's challenge as the value for another step, and
//! [`super::Status::AUTH_ERROR`] ("Auth failure.") otherwise. Until a
//! connection has authenticated, every other command except `version` is
//! answered with [`super::Status::AUTH_ERROR`] and the connection closed.
//!
//! Without SASL (memcached's default, and the reference the differential
//! tests run), all three opcodes are answered "Unknown command" and the
//! value is discarded.
//!
//! Which users exist and whether a password is right is the server's
//! business; this module only splits the `PLAIN` mechanism's data
//! (RFC 4616: `[authzid] NUL authcid NUL passwd`).

/// The mechanism name of RFC 4616's `PLAIN`.
pub const PLAIN: &[u8] = b"PLAIN";

/// The longest mechanism name memcached accepts (`MAX_SASL_MECH_LEN`).
pub const MAX_SASL_MECHANISM_LEN: usize = 32;

/// The three fields of a `PLAIN` message, borrowed from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainCredentials<'a> {
    /// The authorization identity (usually empty: act as `user`).
    pub authzid: &'a [u8],
    /// The user name (the authentication identity); never empty.
    pub user: &'a [u8],
    /// The password; may be empty, never contains NUL.
    pub password: &'a [u8],
}

impl<'a> PlainCredentials<'a> {
    /// Splits `authzid NUL user NUL password`; `None` unless there are
    /// exactly two NUL bytes and the user is not empty.
    pub fn parse(data: &'a [u8]) -> Option<PlainCredentials<'a>> {
        let mut fields = data.splitn(3, |&b| b == 0);
        let authzid = fields.next()?;
        let user = fields.next()?;
        let password = fields.next()?;
        if user.is_empty() || password.contains(&0) {
            return None;
        }
        Some(PlainCredentials {
            authzid,
            user,
            password,
        })
    }

    /// Writes the message a client sends (for clients and tests).
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.authzid.len() + self.user.len() + self.password.len() + 2);
        out.extend_from_slice(self.authzid);
        out.push(0);
        out.extend_from_slice(self.user);
        out.push(0);
        out.extend_from_slice(self.password);
        out
    }
}
