//! The log's framing, torn-tail recovery and segments, the change stream
//! reader, and retention with cursors.

use super::cursors::{retain, Cursors};
use super::stream::{ChangeReader, StreamError};
use super::*;

fn put(key: &str, value: &str) -> Change {
    Change::Put {
        key: Bytes::copy_from_slice(key.as_bytes()),
        record: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn client(change: &Change) -> (&Change, Accounting, Provenance) {
    (
        change,
        Accounting::default(),
        Provenance::of(Origin::Client),
    )
}

/// Where the frames of a segment end and its zero-filled space begins
/// (the test values never end in a zero byte).
fn frames_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

fn reopen(dir: &Path, after: u64) -> (Wal, Vec<LogEntry>) {
    let mut seen = Vec::new();
    let wal = Wal::open(dir, after, 1 << 20, |entry| seen.push(entry)).unwrap();
    (wal, seen)
}

fn first_segment(dir: &Path) -> PathBuf {
    let mut paths: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    paths.remove(0)
}

#[test]
fn segments_are_zero_filled_ahead_and_the_zeros_end_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), 0);
    wal.append([client(&put("a", "1"))]).unwrap();
    wal.sync().unwrap();
    let segment = first_segment(dir.path());
    assert!(fs::metadata(&segment).unwrap().len() >= PREALLOCATE_STEP);
    wal.append([client(&put("b", "2"))]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, seen) = reopen(dir.path(), 0);
    assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn appended_entries_replay_in_order_after_the_given_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, seen) = reopen(dir.path(), 0);
    assert!(seen.is_empty());
    let changes = [
        put("a", "1"),
        Change::Remove {
            key: Bytes::from_static(b"a"),
        },
        put("b", "2"),
    ];
    let accounting = Accounting {
        items: 1,
        bytes: 10,
        tombstones: -1,
    };
    let previous = Version {
        timestamp: Timestamp(77),
        node: NodeId(5),
    };
    let provenances = [
        Provenance::of(Origin::Client),
        Provenance {
            origin: Origin::Housekeeping,
            previous: Some(previous),
        },
        Provenance::of(Origin::Replica),
    ];
    let last = wal
        .append(
            changes
                .iter()
                .zip(provenances)
                .map(|(c, p)| (c, accounting, p)),
        )
        .unwrap();
    assert_eq!(last, 3);
    wal.sync().unwrap();
    drop(wal);
    let (wal, seen) = reopen(dir.path(), 1);
    assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(seen[1].change, changes[2]);
    assert_eq!(seen[1].accounting, accounting);
    assert_eq!(seen[0].origin, Origin::Housekeeping);
    assert_eq!(seen[0].previous, Some(previous));
    assert_eq!(seen[1].origin, Origin::Replica);
    assert_eq!(seen[1].previous, None);
    assert_eq!(wal.next_seq(), 4);
}

/// A frame as the release before this one wrote it (kinds 1-3, no
/// tombstone count).
fn legacy_frame(seq: u64, kind: u8, key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&seq.to_le_bytes());
    payload.push(kind);
    payload.extend_from_slice(&1i64.to_le_bytes());
    payload.extend_from_slice(&20i64.to_le_bytes());
    payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
    payload.extend_from_slice(key);
    payload.extend_from_slice(body);
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

#[test]
fn frames_of_the_previous_release_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = legacy_frame(1, KIND_LEGACY_PUT, b"k", b"record");
    bytes.extend(legacy_frame(2, KIND_LEGACY_DELETE, b"k", b""));
    let mut markers = [0u8; 16];
    markers[..8].copy_from_slice(&1_700_000_000_000_000_000u64.to_le_bytes());
    bytes.extend(legacy_frame(3, KIND_LEGACY_FLUSH, b"", &markers));
    fs::write(dir.path().join(format!("{:020}.wal", 1)), bytes).unwrap();
    let (wal, seen) = reopen(dir.path(), 0);
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].change, put("k", "record"));
    assert_eq!(seen[0].origin, Origin::Client);
    assert_eq!(
        seen[0].accounting,
        Accounting {
            items: 1,
            bytes: 20,
            tombstones: 0
        }
    );
    assert_eq!(
        seen[1].change,
        Change::Remove {
            key: Bytes::from_static(b"k")
        }
    );
    let Change::Flush(markers) = seen[2].change else {
        panic!("not a flush: {:?}", seen[2]);
    };
    assert_eq!(markers.flushed_through.millis(), 1_700_000_000_000);
    assert_eq!(wal.next_seq(), 4);
}

#[test]
fn a_torn_tail_is_cut_and_later_appends_follow_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), 0);
    wal.append([client(&put("a", "1"))]).unwrap();
    wal.append([client(&put("b", "2"))]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let segment = first_segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    // Tear the second frame: its last bytes never reached the disk.
    let end = frames_end(&bytes);
    bytes[end - 3..end].fill(0);
    fs::write(&segment, bytes).unwrap();
    let (mut wal, seen) = reopen(dir.path(), 0);
    assert_eq!(seen.len(), 1);
    wal.append([client(&put("c", "3"))]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    let (_, seen) = reopen(dir.path(), 0);
    let keys: Vec<_> = seen.iter().map(|e| e.seq).collect();
    assert_eq!(keys, vec![1, 2]);
}

#[test]
fn corruption_before_the_last_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = reopen(dir.path(), 0);
    wal.append([client(&put("a", "1"))]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    // A new segment starts on every open, so the first one is now old.
    let (wal, _) = reopen(dir.path(), 0);
    drop(wal);
    let first = first_segment(dir.path());
    let mut bytes = fs::read(&first).unwrap();
    let last = frames_end(&bytes) - 1;
    bytes[last] ^= 0xff;
    fs::write(&first, bytes).unwrap();
    let result = Wal::open(dir.path(), 0, 1 << 20, |_| {});
    assert!(matches!(result, Err(WalError::Corrupt { .. })));
}

#[test]
fn segments_roll_and_durable_ones_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), 0, 64, |_| {}).unwrap();
    for i in 0..10 {
        wal.append([client(&put(&format!("key{i}"), "value-value-value"))])
            .unwrap();
    }
    wal.sync().unwrap();
    let segments = wal.segments();
    let before = fs::read_dir(dir.path()).unwrap().count();
    assert!(before > 3, "expected several segments, got {before}");
    segments.remove_through(5).unwrap();
    drop(wal);
    let mut seen = Vec::new();
    Wal::open(dir.path(), 0, 64, |e| seen.push(e.seq)).unwrap();
    assert!(seen.first().copied().unwrap() <= 6, "{seen:?}");
    assert_eq!(seen.last().copied(), Some(10));
}

fn append_keys(wal: &mut Wal, range: std::ops::Range<u32>) -> u64 {
    let mut last = 0;
    for i in range {
        last = wal
            .append([client(&put(&format!("key{i}"), "value-value-value"))])
            .unwrap();
    }
    wal.sync().unwrap();
    wal.publish(last);
    last
}

#[test]
fn a_reader_yields_only_published_entries_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny segments: every few entries roll to a new file.
    let mut wal = Wal::open(dir.path(), 0, 100, |_| {}).unwrap();
    let mut reader = ChangeReader::new(wal.segments(), wal.published(), 0);
    assert!(reader.try_next().unwrap().is_none());
    // Written but not yet published: not visible.
    wal.append([client(&put("early", "x"))]).unwrap();
    assert!(reader.try_next().unwrap().is_none());
    wal.publish(1);
    assert_eq!(reader.try_next().unwrap().unwrap().seq, 1);
    append_keys(&mut wal, 0..30);
    let mut seqs = Vec::new();
    while let Some(entry) = reader.try_next().unwrap() {
        seqs.push(entry.seq);
    }
    assert_eq!(seqs, (2..=31).collect::<Vec<_>>());
    assert_eq!(reader.position(), 31);
    // A reader can start anywhere.
    let mut late = ChangeReader::new(wal.segments(), wal.published(), 20);
    assert_eq!(late.try_next().unwrap().unwrap().seq, 21);
}

#[tokio::test]
async fn a_waiting_reader_wakes_when_entries_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), 0, 1 << 20, |_| {}).unwrap();
    let mut reader = ChangeReader::new(wal.segments(), wal.published(), 0);
    let waiting = tokio::spawn(async move { reader.next().await.map(|entry| entry.seq) });
    tokio::task::yield_now().await;
    append_keys(&mut wal, 0..1);
    let seq = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("the reader woke")
        .unwrap()
        .unwrap();
    assert_eq!(seq, 1);
    // A reader whose log is gone learns that nothing more will come.
    let mut reader = ChangeReader::new(wal.segments(), wal.published(), 1);
    drop(wal);
    assert!(matches!(reader.next().await, Err(StreamError::Closed)));
}

#[test]
fn a_reader_past_removed_segments_fell_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), 0, 100, |_| {}).unwrap();
    append_keys(&mut wal, 0..30);
    wal.segments().remove_through(20).unwrap();
    let mut reader = ChangeReader::new(wal.segments(), wal.published(), 0);
    assert!(matches!(
        reader.try_next(),
        Err(StreamError::FellBehind { wanted: 1, .. })
    ));
}

#[test]
fn retention_keeps_segments_for_a_lagging_cursor_up_to_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), 0, 100, |_| {}).unwrap();
    let cursors = Cursors::load(dir.path()).unwrap();
    cursors.register("replica-a", 0).unwrap();
    cursors.register("replica-b", 0).unwrap();
    let last = append_keys(&mut wal, 0..40);
    // Everything is in a durable checkpoint, but the cursors still need it.
    let segments = wal.segments();
    let retained = retain(&segments, &cursors, last, u64::MAX).unwrap();
    assert_eq!(retained.removed, 0);
    assert_eq!(segments.oldest_seq(), Some(1));
    // One cursor catches up; the other still holds the log.
    cursors.advance("replica-a", last).unwrap();
    assert_eq!(
        retain(&segments, &cursors, last, u64::MAX).unwrap().removed,
        0
    );
    cursors.advance("replica-b", 20).unwrap();
    assert!(retain(&segments, &cursors, last, u64::MAX).unwrap().removed > 0);
    let oldest = segments.oldest_seq().unwrap();
    assert!(oldest <= 21, "{oldest}");
    let mut reader = ChangeReader::new(segments.clone(), wal.published(), 20);
    assert_eq!(reader.try_next().unwrap().unwrap().seq, 21);
    // Beyond the bound the log goes anyway, and the lagging cursor is told.
    let retained = retain(&segments, &cursors, last, 0).unwrap();
    assert_eq!(retained.fell_behind, vec!["replica-b".to_string()]);
    assert!(cursors.get("replica-b").unwrap().fell_behind);
    assert!(!cursors.get("replica-a").unwrap().fell_behind);
    // Positions and marks survive a restart once persisted.
    cursors.persist().unwrap();
    let reloaded = Cursors::load(dir.path()).unwrap();
    assert_eq!(reloaded.snapshot(), cursors.snapshot());
}

#[test]
fn retention_never_removes_what_the_engine_does_not_hold_durably() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), 0, 100, |_| {}).unwrap();
    let cursors = Cursors::load(dir.path()).unwrap();
    append_keys(&mut wal, 0..40);
    let segments = wal.segments();
    retain(&segments, &cursors, 0, 0).unwrap();
    assert_eq!(segments.oldest_seq(), Some(1));
}

#[test]
fn cursor_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = Cursors::load(dir.path()).unwrap();
    assert!(cursors.register("", 0).is_err());
    assert!(cursors.register("a\nb", 0).is_err());
    assert!(cursors.register("peer:127.0.0.1:11211", 5).is_ok());
    assert_eq!(
        cursors
            .register("peer:127.0.0.1:11211", 9)
            .unwrap()
            .position,
        5
    );
    assert!(matches!(
        cursors.advance("nobody", 1),
        Err(StreamError::UnknownCursor(_))
    ));
}

#[test]
fn cursors_written_from_several_threads_at_once_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let cursors = std::sync::Arc::new(Cursors::load(dir.path()).unwrap());
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let cursors = cursors.clone();
            std::thread::spawn(move || {
                for round in 0..50u64 {
                    let name = format!("cursor-{writer}");
                    cursors.register(&name, 0).unwrap();
                    cursors.advance(&name, round + 1).unwrap();
                    cursors.persist().expect("a concurrent persist");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let reloaded = Cursors::load(dir.path()).unwrap();
    assert_eq!(reloaded.snapshot(), cursors.snapshot());
    assert_eq!(reloaded.get("cursor-3").unwrap().position, 50);
}
