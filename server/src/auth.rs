//! Authentication: the password file of `--sasl-password-file`, and
//! memcached's two ways of checking it.
//!
//! The file is memcached's `-Y` file: one `user:password` per line (the
//! password is everything after the first `:` up to the end of the line or
//! a `\r`). With it set:
//!
//! - a binary connection must authenticate with SASL `PLAIN` (see
//!   `session::binary`), as memcached started with `-S` requires;
//! - a text connection must first send memcached's ascii authentication
//!   ([`AsciiAuth`]): a `set` whose data is `user password`, answered
//!   `STORED`; anything else is refused as memcached 1.6.18's
//!   `try_read_command_asciiauth` refuses it.
//!
//! Without it nothing is checked, as memcached without `-S` and `-Y`.
//!
//! Differences from memcached, on purpose: memcached silently uses only the
//! first 8 entries of the file and cuts lines at 255 bytes; every line is
//! used here. memcached buffers an ascii authentication's data of any
//! announced length; here a length beyond the item size limit closes the
//! connection, so that an unauthenticated client cannot make the node
//! buffer much.

use std::path::Path;

use bytes::{BufMut, BytesMut};
use mcstore_protocol::number::parse_u32;

/// The users of `--sasl-password-file`.
#[derive(Clone, Default)]
pub struct PasswordFile {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the passwords.
        f.debug_struct("PasswordFile")
            .field("users", &self.entries.len())
            .finish()
    }
}

/// Why a password file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordFileError {
    /// It cannot be read.
    #[error("cannot read the password file: {0}")]
    Read(#[from] std::io::Error),
    /// A line has no `:` (memcached: "has a malformed entry").
    #[error("line {0} of the password file is not `user:password`")]
    Malformed(usize),
    /// No user at all.
    #[error("the password file has no `user:password` line")]
    Empty,
}

impl PasswordFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordFileError> {
        PasswordFile::parse(&std::fs::read(path)?)
    }

    /// Parses the file's contents. Empty lines are skipped.
    pub fn parse(contents: &[u8]) -> Result<PasswordFile, PasswordFileError> {
        let mut entries = Vec::new();
        for (index, line) in contents.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() || line == b"\r" {
                continue;
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(PasswordFileError::Malformed(index + 1));
            };
            let user = &line[..colon];
            let rest = &line[colon + 1..];
            let password = rest.split(|&b| b == b'\r').next().unwrap_or_default();
            entries.push((user.to_vec(), password.to_vec()));
        }
        if entries.is_empty() {
            return Err(PasswordFileError::Empty);
        }
        Ok(PasswordFile { entries })
    }

    /// Whether `user` has `password` (compared without early exit).
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        self.entries
            .iter()
            .any(|(u, p)| same_bytes(u, user) & same_bytes(p, password))
    }
}

/// Equality that looks at every byte of equally long inputs.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What the node asks of its clients.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// `--sasl-password-file`, if set.
    pub passwords: Option<std::sync::Arc<PasswordFile>>,
}

impl Auth {
    /// Whether clients must authenticate.
    pub fn required(&self) -> bool {
        self.passwords.is_some()
    }
}

/// memcached's bound on an authentication line without a newline: past
/// it the connection is closed.
const MAX_AUTH_LINE: usize = 2048;

/// What one [`AsciiAuth::step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsciiStep {
    /// Needs more input (nothing was consumed or answered).
    NeedMore,
    /// Refused the input with a `CLIENT_ERROR` (not an authentication
    /// attempt memcached counts).
    Refused,
    /// A wrong user or password: `CLIENT_ERROR authentication failure`
    /// (memcached counts `auth_cmds` and `auth_errors`).
    Failed,
    /// Authenticated: `STORED`; the rest of the input is text commands
    /// (memcached counts `auth_cmds`).
    Authenticated,
    /// Close the connection without an answer.
    Close,
}

/// A text connection's authentication, as memcached 1.6.18's
/// `try_read_command_asciiauth`: the first line must be
/// `set <key> <flags> <exptime> <bytes>` (key, flags and exptime are
/// ignored) and its data `<user> <password>`.
#[derive(Debug, Default)]
pub struct AsciiAuth {
    /// Bytes of data (with its `\r\n`) still to come after a `set` line.
    data_len: Option<usize>,
}

impl AsciiAuth {
    /// Consumes what it can of `input`, answering into `out`.
    /// `max_data`: the longest data accepted (see the module documentation).
    ///
    /// memcached keeps one response for the whole authentication phase and
    /// overwrites it: of the answers given before it next writes (when the
    /// input runs dry), only the last is sent. An answer here replaces
    /// whatever `out` holds, so the caller gets the same by writing `out`
    /// only when it needs more input.
    pub fn step(
        &mut self,
        input: &mut BytesMut,
        passwords: &PasswordFile,
        max_data: usize,
        out: &mut BytesMut,
    ) -> AsciiStep {
        let data_len = match self.data_len {
            Some(len) => len,
            None => {
                if input.len() < 2 {
                    return AsciiStep::NeedMore;
                }
                let Some(newline) = input.iter().position(|&b| b == b'\n') else {
                    return if input.len() > MAX_AUTH_LINE {
                        AsciiStep::Close
                    } else {
                        AsciiStep::NeedMore
                    };
                };
                let line = input.split_to(newline + 1);
                let tokens = tokens(&line[..newline]);
                let size = match tokens.as_slice() {
                    [b"set", _, _, _, size, ..] => parse_u32(size),
                    _ => None,
                };
                let Some(size) = size else {
                    out.clear();
                    out.put_slice(b"CLIENT_ERROR unauthenticated\r\n");
                    return AsciiStep::Refused;
                };
                if size as usize > max_data {
                    return AsciiStep::Close;
                }
                let len = size as usize + 2;
                self.data_len = Some(len);
                len
            }
        };
        if input.len() < data_len {
            return AsciiStep::NeedMore;
        }
        self.data_len = None;
        let data = input.split_to(data_len);
        out.clear();
        if !data.ends_with(b"\r\n") {
            out.put_slice(b"CLIENT_ERROR bad command line termination\r\n");
            return AsciiStep::Refused;
        }
        let tokens = tokens(&data[..data_len - 2]);
        let [user, password, ..] = tokens.as_slice() else {
            out.put_slice(b"CLIENT_ERROR bad authentication token format\r\n");
            return AsciiStep::Refused;
        };
        if passwords.check(c_string(user), c_string(password)) {
            out.put_slice(b"STORED\r\n");
            AsciiStep::Authenticated
        } else {
            out.put_slice(b"CLIENT_ERROR authentication failure\r\n");
            AsciiStep::Failed
        }
    }
}

/// memcached's `tokenize_command`: split on spaces, empty tokens dropped.
fn tokens(line: &[u8]) -> Vec<&[u8]> {
    line.split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .collect()
}

/// A token as the C string memcached compares (up to a NUL).
fn c_string(token: &[u8]) -> &[u8] {
    token.split(|&b| b == 0).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> PasswordFile {
        PasswordFile::parse(b"alice:secret\n\nbob:pa:ss\r\n").expect("valid")
    }

    fn run(auth: &mut AsciiAuth, input: &mut BytesMut) -> (AsciiStep, String) {
        let mut out = BytesMut::new();
        let step = auth.step(input, &file(), 1 << 20, &mut out);
        (step, String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn password_files_parse_like_memcached() {
        let file = file();
        assert!(file.check(b"alice", b"secret"));
        assert!(file.check(b"bob", b"pa:ss"));
        assert!(!file.check(b"alice", b"secre"));
        assert!(!file.check(b"bob", b"pa:ss\r"));
        assert!(matches!(
            PasswordFile::parse(b"alice:x\nnocolon\n"),
            Err(PasswordFileError::Malformed(2))
        ));
        assert!(matches!(
            PasswordFile::parse(b"\n"),
            Err(PasswordFileError::Empty)
        ));
        assert!(!format!("{file:?}").contains("secret"));
    }

    #[test]
    fn ascii_auth_accepts_a_set_carrying_user_and_password() {
        let mut auth = AsciiAuth::default();
        let mut input = BytesMut::from(&b"set x 0 0 12\r\nalice secret\r\nget a\r\n"[..]);
        assert_eq!(
            run(&mut auth, &mut input),
            (AsciiStep::Authenticated, "STORED\r\n".into())
        );
        assert_eq!(&input[..], b"get a\r\n");
    }

    #[test]
    fn ascii_auth_refuses_like_memcached() {
        let mut auth = AsciiAuth::default();
        let mut input = BytesMut::from(&b"get a\r\n"[..]);
        assert_eq!(
            run(&mut auth, &mut input),
            (
                AsciiStep::Refused,
                "CLIENT_ERROR unauthenticated\r\n".into()
            )
        );
        let mut input = BytesMut::from(&b"set x 0 0 11\r\nalice wrong\r\n"[..]);
        assert_eq!(
            run(&mut auth, &mut input),
            (
                AsciiStep::Failed,
                "CLIENT_ERROR authentication failure\r\n".into()
            )
        );
        let mut input = BytesMut::from(&b"set x 0 0 5\r\nalice\r\n"[..]);
        assert_eq!(
            run(&mut auth, &mut input),
            (
                AsciiStep::Refused,
                "CLIENT_ERROR bad authentication token format\r\n".into()
            )
        );
        let mut input = BytesMut::from(&b"set x 0 0 3\r\nabcde"[..]);
        assert_eq!(
            run(&mut auth, &mut input),
            (
                AsciiStep::Refused,
                "CLIENT_ERROR bad command line termination\r\n".into()
            )
        );
        let mut input = BytesMut::from(&b"set x 0 0\r\n"[..]);
        assert_eq!(run(&mut auth, &mut input).0, AsciiStep::Refused);
    }

    #[test]
    fn only_the_last_answer_before_a_write_is_kept() {
        let mut auth = AsciiAuth::default();
        let mut input = BytesMut::from(&b"get a\r\nset x 0 0 11\r\nalice wrong\r\n"[..]);
        let mut out = BytesMut::new();
        assert_eq!(
            auth.step(&mut input, &file(), 1 << 20, &mut out),
            AsciiStep::Refused
        );
        assert_eq!(
            auth.step(&mut input, &file(), 1 << 20, &mut out),
            AsciiStep::Failed
        );
        assert_eq!(&out[..], b"CLIENT_ERROR authentication failure\r\n");
    }

    #[test]
    fn ascii_auth_waits_for_the_data_and_closes_on_junk() {
        let mut auth = AsciiAuth::default();
        let mut input = BytesMut::from(&b"set x 0 0 12\r\nalice"[..]);
        assert_eq!(run(&mut auth, &mut input).0, AsciiStep::NeedMore);
        input.extend_from_slice(b" secret\r\n");
        assert_eq!(run(&mut auth, &mut input).0, AsciiStep::Authenticated);
        let mut input = BytesMut::from(&[b'x'; 2049][..]);
        assert_eq!(run(&mut auth, &mut input).0, AsciiStep::Close);
        let mut input = BytesMut::from(&b"set x 0 0 4000000000\r\n"[..]);
        assert_eq!(run(&mut auth, &mut input).0, AsciiStep::Close);
    }
}
