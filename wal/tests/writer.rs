//! The WAL writer: cuts, naming, CRC chain across segments, preallocation, atomic
//! creation, and behaviour under injected IO faults.

use std::path::Path;

use prost::Message;
use wal::decoder::Tail;
use wal::proto::{Entry, EntryType, HardState, Metadata, WalSnapshot};
use wal::verify::WalStatus;
use wal::{FaultFs, Faults, Fs, OsFs, WalError, WalWriter, WriterOptions};

fn metadata() -> Vec<u8> {
    Metadata {
        node_id: 0x8e9e05c52164694d,
        cluster_id: 0xcdf818194e3a8c32,
    }
    .encode_to_vec()
}

fn entry(index: u64, len: usize) -> Entry {
    Entry {
        r#type: EntryType::EntryNormal as i32,
        term: 2,
        index,
        data: Some(vec![(index % 251) as u8; len]),
    }
}

/// Writes `n` entries of `len` bytes, one Save each, with the given segment size.
fn write_wal(fs: &dyn Fs, dir: &Path, n: u64, len: usize, opts: WriterOptions) {
    let mut w = WalWriter::create(fs, dir, &metadata(), opts).expect("create");
    for i in 1..=n {
        w.save(
            &HardState {
                term: 2,
                vote: 7,
                commit: i,
            },
            &[entry(i, len)],
        )
        .expect("save");
    }
    w.close().expect("close");
}

/// The cut layout (segment names, truncation at the cut, crc + metadata + state at the start
/// of each segment) is the one wal/tests/live_etcd.rs reads from real etcd's WAL; here it is
/// checked on our writer's output alone.
#[test]
fn cuts_name_and_chain_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let opts = WriterOptions {
        segment_size: 64 * 1024,
        preallocate: true,
    };
    write_wal(&OsFs, &dir, 300, 1000, opts);
    let listing = wal::list_segments(&OsFs, &dir).unwrap();
    assert!(listing.segments.len() >= 4, "{:?}", listing.segments);
    assert!(listing.tmp.is_empty() && listing.ignored.is_empty());
    let report = wal::verify_wal_dir(&OsFs, &dir, None).unwrap();
    assert!(report.is_ok(), "{}", report.to_text());
    assert_eq!(report.first_index, Some(1));
    assert_eq!(report.last_index, Some(300));
    assert_eq!(report.hard_state.unwrap().commit, 300);
    assert_eq!(report.counts.crc as usize, listing.segments.len());
    assert_eq!(report.counts.metadata as usize, listing.segments.len());
    let records: Vec<_> = wal::dump::records(&OsFs, &dir)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (k, seg) in listing.segments.iter().enumerate() {
        assert_eq!(seg.seq, k as u64);
        let size = std::fs::metadata(dir.join(seg.file_name())).unwrap().len();
        let rep = &report.segments[k];
        if k + 1 < listing.segments.len() {
            // Cut segments are truncated at their end, at or past the segment size.
            assert_eq!(size, rep.end_offset);
            assert!(size >= opts.segment_size);
            // The next one is named after the entry that follows the last one here.
            let last_index = records
                .iter()
                .filter(|r| r.segment == *seg && r.rec_type == 2)
                .map(|r| Entry::decode(r.data.as_deref().unwrap()).unwrap().index)
                .max()
                .unwrap();
            assert_eq!(listing.segments[k + 1].index, last_index + 1);
            let head: Vec<i64> = records
                .iter()
                .filter(|r| r.segment == listing.segments[k + 1])
                .take(3)
                .map(|r| r.rec_type)
                .collect();
            assert_eq!(head, vec![4, 1, 3]);
        } else {
            assert_eq!(size, opts.segment_size, "the tail is preallocated");
        }
    }
    // ReadAll from the start and from a later snapshot-less index both work.
    let all = wal::read_all(&OsFs, &dir, 0, 0).unwrap();
    assert_eq!(all.entries.len(), 300);
    assert_eq!(all.end.tail, Tail::Clean);
    assert!(all.entries.iter().zip(1..).all(|(e, i)| e.index == i));
}

#[test]
fn read_all_overrides_entries_and_needs_the_snapshot_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = WalWriter::create(&OsFs, &dir, &metadata(), WriterOptions::default()).unwrap();
    let hs = |c| HardState {
        term: 2,
        vote: 1,
        commit: c,
    };
    w.save(&hs(2), &[entry(1, 10), entry(2, 10), entry(3, 10)])
        .unwrap();
    // A new leader replaces the uncommitted entry 3 and appends 4.
    let mut e3 = entry(3, 20);
    e3.term = 3;
    w.save(&hs(3), &[e3.clone(), entry(4, 5)]).unwrap();
    w.save_snapshot(&WalSnapshot {
        index: 2,
        term: 2,
        conf_state: Some(Default::default()),
    })
    .unwrap();
    w.close().unwrap();
    let all = wal::read_all(&OsFs, &dir, 0, 0).unwrap();
    let idx: Vec<u64> = all.entries.iter().map(|e| e.index).collect();
    assert_eq!(idx, vec![1, 2, 3, 4]);
    assert_eq!(all.entries[2], e3);
    assert_eq!(all.hard_state.commit, 3);
    let from2 = wal::read_all(&OsFs, &dir, 2, 2).unwrap();
    assert_eq!(
        from2.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert!(matches!(
        wal::read_all(&OsFs, &dir, 2, 9),
        Err(WalError::Damaged { .. })
    ));
    assert!(matches!(
        wal::read_all(&OsFs, &dir, 1, 2),
        Err(WalError::SnapshotNotFound { .. })
    ));
    let snaps = wal::valid_snapshot_entries(&OsFs, &dir).unwrap();
    assert_eq!(
        snaps.iter().map(|s| (s.index, s.term)).collect::<Vec<_>>(),
        vec![(0, 0), (2, 2)]
    );
    let report = wal::verify_wal_dir(&OsFs, &dir, None).unwrap();
    assert!(report.is_ok());
    assert_eq!(report.overwritten_entries, 1);
}

#[test]
fn create_refuses_an_existing_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    write_wal(&OsFs, &dir, 1, 1, WriterOptions::default());
    assert!(matches!(
        WalWriter::create(&OsFs, &dir, &metadata(), WriterOptions::default()),
        Err(WalError::Exists { .. })
    ));
}

/// Short writes are retried: the result is the same as without faults.
#[test]
fn short_writes_give_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = WriterOptions {
        segment_size: 16 * 1024,
        preallocate: false,
    };
    write_wal(&OsFs, &tmp.path().join("a"), 50, 700, opts);
    let fs = FaultFs::new(Faults {
        max_write_chunk: Some(3),
        ..Faults::default()
    });
    write_wal(&fs, &tmp.path().join("b"), 50, 700, opts);
    let a = wal::list_segments(&OsFs, &tmp.path().join("a")).unwrap();
    let b = wal::list_segments(&OsFs, &tmp.path().join("b")).unwrap();
    assert_eq!(a, b);
    for s in &a.segments {
        assert_eq!(
            std::fs::read(tmp.path().join("a").join(s.file_name())).unwrap(),
            std::fs::read(tmp.path().join("b").join(s.file_name())).unwrap()
        );
    }
}

/// Any failure while creating leaves neither the WAL directory nor its `.tmp` behind.
#[test]
fn failed_create_leaves_nothing() {
    let faults = [
        Faults {
            write_budget: Some(10),
            ..Faults::default()
        },
        Faults {
            fail_file_sync: true,
            ..Faults::default()
        },
        Faults {
            fail_rename: true,
            ..Faults::default()
        },
        Faults {
            fail_preallocate: true,
            ..Faults::default()
        },
    ];
    for f in faults {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let fs = FaultFs::new(f.clone());
        let err = match WalWriter::create(&fs, &dir, &metadata(), WriterOptions::default()) {
            Err(e) => e,
            Ok(_) => panic!("{f:?}: create succeeded"),
        };
        assert!(matches!(err, WalError::Io { .. }), "{f:?}: {err}");
        assert!(!dir.exists(), "{f:?}");
        assert!(!tmp.path().join("wal.tmp").exists(), "{f:?}");
    }
}

/// ENOSPC in the middle of a save: the error names the segment, and what is on disk is
/// still a readable WAL (at worst with a torn tail, which repair removes).
#[test]
fn enospc_during_save_is_reported_and_recoverable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let fs = FaultFs::default();
    let mut w = WalWriter::create(&fs, &dir, &metadata(), WriterOptions::default()).unwrap();
    for i in 1..=10 {
        w.save(
            &HardState {
                term: 1,
                vote: 1,
                commit: i,
            },
            &[entry(i, 100)],
        )
        .unwrap();
    }
    fs.set(Faults {
        write_budget: Some(150),
        ..Faults::default()
    });
    let err = w
        .save(
            &HardState {
                term: 1,
                vote: 1,
                commit: 11,
            },
            &[entry(11, 100), entry(12, 100)],
        )
        .unwrap_err();
    match &err {
        WalError::Io { path, source } => {
            assert!(path.ends_with("0000000000000000-0000000000000000.wal"));
            assert_eq!(source.raw_os_error(), Some(28));
        }
        e => panic!("{e}"),
    }
    drop(w);
    let report = wal::verify_wal_dir(&OsFs, &dir, None).unwrap();
    assert!(report.is_usable(), "{}", report.to_text());
    if let WalStatus::Repairable(_) = report.status {
        wal::repair(&OsFs, &dir).unwrap();
    }
    let all = wal::read_all(&OsFs, &dir, 0, 0).unwrap();
    assert!(all.entries.len() >= 10);
    assert_eq!(all.end.tail, Tail::Clean);
}

#[test]
fn repair_failure_leaves_the_segment_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    write_wal(
        &OsFs,
        &dir,
        5,
        100,
        WriterOptions {
            preallocate: false,
            ..WriterOptions::default()
        },
    );
    let seg = dir.join("0000000000000000-0000000000000000.wal");
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut f = OsFs.open_rw(&seg).unwrap();
    f.set_len(len - 20).unwrap();
    drop(f);
    let before = std::fs::read(&seg).unwrap();
    let fs = FaultFs::new(Faults {
        fail_set_len: true,
        ..Faults::default()
    });
    assert!(matches!(wal::repair(&fs, &dir), Err(WalError::Io { .. })));
    assert_eq!(std::fs::read(&seg).unwrap(), before);
    // A second, successful repair keeps the first .broken copy.
    let out = wal::repair(&OsFs, &dir).unwrap();
    match out {
        wal::RepairOutcome::Repaired { broken_copy, .. } => {
            assert!(broken_copy.to_string_lossy().ends_with(".wal.broken.1"));
            assert_eq!(std::fs::read(&broken_copy).unwrap(), before);
        }
        o => panic!("{o:?}"),
    }
    assert!(wal::verify_wal_dir(&OsFs, &dir, None).unwrap().is_ok());
}
