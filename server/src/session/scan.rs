//! `mcstore_scan <limit> [<after>]`: one bounded page of the live items this
//! node stores (wire format in [`mcstore_protocol::scan`]). It reads the
//! engine directly, like a `get`, and is never forwarded: in a cluster
//! each node lists its own copies, replicas of other owners' keys included.

use bytes::BytesMut;
use mcstore_protocol::scan::{encode_scan_end, encode_scan_item, Scan, SCAN_PAGE_BYTES};
use mcstore_protocol::Reply;
use mcstore_storage::{Expiry, Store};

/// Writes the reply to `scan` into `out`.
pub fn render(store: &Store, scan: &Scan, out: &mut BytesMut) {
    let limit = usize::try_from(scan.limit).unwrap_or(usize::MAX);
    match store.scan_live(scan.after.as_deref(), limit, SCAN_PAGE_BYTES) {
        Ok(page) => {
            for (key, record) in &page.items {
                let exptime = match record.expiry {
                    Expiry::Never => 0,
                    Expiry::At(at) => at,
                };
                encode_scan_item(out, key, record.flags, exptime, record.cas, &record.value);
            }
            encode_scan_end(out, page.next.as_deref());
        }
        Err(err) => Reply::ServerError(err.to_string().into()).encode(out),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use mcstore_protocol::scan::{parse_scan_reply, ScanReply};
    use mcstore_protocol::Decoded;
    use mcstore_storage::clock::ManualClock;

    use super::super::test_support::{meta, node, open};
    use super::*;

    fn page(store: &Store, limit: u32, after: Option<&[u8]>) -> (Vec<Bytes>, Option<Bytes>) {
        let mut out = BytesMut::new();
        let scan = Scan {
            limit,
            after: after.map(Bytes::copy_from_slice),
        };
        render(store, &scan, &mut out);
        let mut input = &out[..];
        let mut keys = Vec::new();
        loop {
            let Decoded::Complete(reply, used) = parse_scan_reply(input) else {
                panic!("incomplete reply {out:?}");
            };
            input = &input[used..];
            match reply {
                ScanReply::Item(item) => keys.push(item.key),
                ScanReply::Next(cursor) => return (keys, Some(cursor)),
                ScanReply::End => return (keys, None),
                ScanReply::Other(reply) => panic!("{reply:?}"),
            }
        }
    }

    #[tokio::test]
    async fn pages_list_live_items_only_and_follow_the_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::at_secs(1_700_000_000));
        let store = open(dir.path(), &clock);
        let session = node(&store);
        for key in ["a", "b", "c", "d", "e"] {
            meta(&session, &format!("ms {key} 1 T0\r\nx\r\n")).await;
        }
        meta(&session, "md b\r\n").await;
        meta(&session, "ms d 1 T1\r\nx\r\n").await;
        clock.advance_secs(2);
        let (first, cursor) = page(&store, 3, None);
        assert_eq!(first, ["a", "c"], "b deleted");
        let cursor = cursor.expect("more keys");
        assert_eq!(cursor, "c");
        let (second, cursor) = page(&store, 3, Some(&cursor));
        assert_eq!(second, ["e"], "d expired");
        assert_eq!(cursor, None);
    }
}
