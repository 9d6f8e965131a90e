//! `.snap` files: the read checks and the newest-matching selection of etcd's snapshotter
//! (server/etcdserver/api/snap/snapshotter.go `Read`, `LoadNewestAvailable`), reproduced here
//! on hand-made files; no etcd runs in this file. Real etcd reads our `.snap` files in
//! `wal/tests/restore_matches_etcdutl.rs` (byte-identical to etcdutl's) and whenever a restore
//! test starts etcd on a restored member.

use wal::proto::{Snapshot, SnapshotMetadata, WalSnapshot};
use wal::snap::{decode_snap, encode_snap, load_newest_available, snap_name, write_snap};
use wal::{OsFs, SnapErrorKind, WalError};

fn snapshot(term: u64, index: u64) -> Snapshot {
    Snapshot {
        data: Some(format!("{{\"CurrentIndex\":{index}}}").into_bytes()),
        metadata: SnapshotMetadata {
            conf_state: wal::proto::ConfState {
                voters: vec![1, 2],
                ..Default::default()
            },
            index,
            term,
        },
    }
}

/// The cases snapshotter.go `Read` rejects: an empty file, CRC 0 or empty data (empty), a
/// CRC that does not match, bytes that are no snappb.Snapshot.
#[test]
fn decode_rejects_empty_crc_mismatched_and_undecodable_snaps() {
    let s = snapshot(1, 5);
    let b = encode_snap(&s);
    assert_eq!(decode_snap(&b).unwrap(), s);
    assert_eq!(decode_snap(&[]), Err(SnapErrorKind::Empty));
    // crc field 0 and empty data count as an empty snapshot.
    assert_eq!(
        decode_snap(&[0x08, 0x00, 0x12, 0x01, 0x00]),
        Err(SnapErrorKind::Empty)
    );
    assert_eq!(decode_snap(&[0x08, 0x05]), Err(SnapErrorKind::Empty));
    let mut flipped = b.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(matches!(
        decode_snap(&flipped),
        Err(SnapErrorKind::CrcMismatch { .. })
    ));
    assert!(matches!(
        decode_snap(&[0xff, 0xff]),
        Err(SnapErrorKind::Decode(_))
    ));
}

#[test]
fn newest_loadable_matching_snap_is_chosen() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (t, i) in [(1, 10), (2, 20), (2, 30), (3, 40)] {
        write_snap(&OsFs, d, &snapshot(t, i)).unwrap();
    }
    // The newest is corrupt; the next one matches no committed WAL snapshot record.
    let newest = d.join(snap_name(3, 40));
    let mut b = std::fs::read(&newest).unwrap();
    let n = b.len();
    b[n - 3] ^= 0xff;
    std::fs::write(&newest, b).unwrap();
    let wal_snaps = [
        WalSnapshot {
            index: 10,
            term: 1,
            conf_state: None,
        },
        WalSnapshot {
            index: 20,
            term: 2,
            conf_state: None,
        },
    ];
    let sel = load_newest_available(&OsFs, d, &wal_snaps).unwrap();
    assert_eq!(sel.chosen.as_ref().unwrap().0, snap_name(2, 20));
    assert_eq!(sel.rejected.len(), 1);
    assert_eq!(sel.rejected[0].name, snap_name(3, 40));
    assert_eq!(sel.unmatched, vec![snap_name(2, 30)]);
    // No temp files are left and an existing file is not overwritten.
    assert!(matches!(
        write_snap(&OsFs, d, &snapshot(1, 10)),
        Err(WalError::Exists { .. })
    ));
    let names: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
}
