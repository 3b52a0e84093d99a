//! `mcstore_cluster`: mcstore's cluster administration commands (memcached
//! has none and answers them `ERROR`). They act on the node they are sent to
//! and are never forwarded.
//!
//! ```text
//! mcstore_cluster leave\r\n                 OK: the node hands its ranges over to the
//!                                           members that take them, announces `left`
//!                                           and exits (progress in `stats cluster`)
//! mcstore_cluster remove <host:port>\r\n    OK: the dead member is announced `left` on
//!                                           its behalf; the survivors re-replicate its ranges
//! ```
//!
//! Errors: `CLIENT_ERROR bad command line format` (an unknown subcommand, a
//! wrong token count), `CLIENT_ERROR cannot remove ...` (the member is
//! alive, unknown, or the node itself), `SERVER_ERROR ...` (the node is not
//! in a cluster, or is already leaving).

use bytes::BufMut;

/// The command name on the wire.
pub const CLUSTER_COMMAND: &str = "mcstore_cluster";

/// One `mcstore_cluster` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    /// `leave`: this node leaves the cluster, its data handed over first.
    Leave,
    /// `remove <host:port>`: the member advertised as this address, dead
    /// for good, is taken off the ring.
    Remove(String),
}

impl ClusterCommand {
    /// The subcommand of the tokens after `mcstore_cluster`; `None` when
    /// they make none.
    pub fn parse(tokens: &[&[u8]]) -> Option<ClusterCommand> {
        match tokens {
            [b"leave"] => Some(ClusterCommand::Leave),
            [b"remove", member] => std::str::from_utf8(member)
                .ok()
                .map(|member| ClusterCommand::Remove(member.to_string())),
            _ => None,
        }
    }

    /// Writes the request in wire format.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(CLUSTER_COMMAND.as_bytes());
        match self {
            ClusterCommand::Leave => out.put_slice(b" leave"),
            ClusterCommand::Remove(member) => {
                out.put_slice(b" remove ");
                out.put_slice(member.as_bytes());
            }
        }
        out.put_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_request, Decoded, Frame, Limits, Reply, Request};

    fn parse(line: &[u8]) -> Frame {
        match parse_request(line, &Limits::default()) {
            Decoded::Complete(frame, used) => {
                assert_eq!(used, line.len());
                frame
            }
            Decoded::Incomplete => panic!("incomplete: {line:?}"),
        }
    }

    #[test]
    fn subcommands_round_trip_and_bad_ones_are_client_errors() {
        for command in [
            ClusterCommand::Leave,
            ClusterCommand::Remove("127.0.0.1:11211".into()),
        ] {
            let mut wire = Vec::new();
            command.encode(&mut wire);
            assert_eq!(
                parse(&wire),
                Frame::Request(Request::Cluster(command.clone()))
            );
        }
        for bad in [
            &b"mcstore_cluster\r\n"[..],
            b"mcstore_cluster join\r\n",
            b"mcstore_cluster leave now\r\n",
            b"mcstore_cluster remove\r\n",
            b"mcstore_cluster remove a b\r\n",
        ] {
            match parse(bad) {
                Frame::Rejected {
                    reply: Reply::ClientError(_),
                    ..
                } => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
