//! Reading the WAL of a real etcd (3.5.1 and 3.4.23) after enough writes for two
//! segments: CRC chain, contiguous indexes, commit index and IDs as etcd reports them,
//! `.snap` selection; then damage: a torn tail is repairable (and our repair agrees with
//! etcd's), a flipped byte in a middle record is corrupt and named.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{first_diff, run};
use testkit::{EtcdBins, EtcdConfig, EtcdProcess};
use wal::decoder::Tail;
use wal::dump::records;
use wal::verify::WalStatus;
use wal::{DamageKind, OsFs, RepairOutcome, SegmentId};

const PUTS: usize = 70;
const VALUE_LEN: usize = 1_000_000;

/// `etcdctl put KEY` with the value on stdin (1 MB does not fit in argv).
fn put_big(bins: &EtcdBins, endpoint: &str, key: &str, value_file: &Path) {
    let f = fs::File::open(value_file).expect("value file");
    run(Command::new(&bins.etcdctl)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=60s")
        .arg("put")
        .arg(key)
        .stdin(Stdio::from(f))
        .stdout(Stdio::null()));
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let t = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), &t).expect("copy");
        }
    }
}

struct Written {
    _tmp: tempfile::TempDir,
    bins: EtcdBins,
    data: PathBuf,
    commit: u64,
    member_id: u64,
    cluster_id: u64,
}

/// Starts etcd `version`, writes PUTS values of ~1 MB, checks the live WAL, stops etcd.
fn write_and_check_live(version: &str) -> Option<Written> {
    let bins = EtcdBins::get(version)?;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut cfg = EtcdConfig::new(&data);
    cfg.extra_args.push("--snapshot-count=20".into());
    let mut etcd = EtcdProcess::start(&bins, cfg).expect("start etcd");
    let value = tmp.path().join("value");
    for i in 0..PUTS {
        let v: Vec<u8> = (0..VALUE_LEN)
            .map(|j| b'a' + ((i * 7 + j) % 26) as u8)
            .collect();
        fs::write(&value, v).expect("write value");
        put_big(&bins, &etcd.endpoint(), &format!("key{i:03}"), &value);
    }
    // Let raft persist the last commit index, then read the live WAL.
    std::thread::sleep(Duration::from_millis(500));
    let status = etcd.status().expect("endpoint status");
    let wal_dir = data.join("member/wal");
    let report = wal::verify_data_dir(&OsFs, &data).expect("verify live WAL");
    assert_eq!(report.status, WalStatus::Ok, "{}", report.to_text());
    assert!(report.is_ok(), "{}", report.to_text());
    assert!(
        report.segments.len() >= 2,
        "expected >= 2 segments: {}",
        report.to_text()
    );
    assert_eq!(
        report.hard_state.expect("hard state").commit,
        status.raft_index,
        "{version}: last HardState commit vs etcd's raftIndex"
    );
    let md = report.metadata.expect("metadata");
    assert_eq!(md.node_id, status.member_id);
    assert_eq!(md.cluster_id, status.cluster_id);
    assert_eq!(report.first_index, Some(1));
    assert!(report.last_index.expect("last index") >= status.raft_index);
    assert!(
        !report.warnings.iter().any(|w| w.contains("follows index")),
        "index gap: {:?}",
        report.warnings
    );
    // The second segment is named after the first index it may hold (last entry of the
    // first segment + 1) and starts with crc, metadata, state: the layout our writer's
    // cut reproduces (tests/writer.rs).
    let seg1 = report.segments[1].id;
    assert_eq!(seg1.seq, 1);
    let all: Vec<_> = records(&OsFs, &wal_dir)
        .expect("records")
        .map(|r| r.expect("record"))
        .collect();
    let last_entry_seg0 = all
        .iter()
        .filter(|r| r.segment.seq == 0 && r.rec_type == 2)
        .filter_map(|r| {
            match wal::dump::decode_content(r.rec_type, r.data.as_deref().unwrap_or_default()) {
                wal::dump::RecordContent::Entry { entry, .. } => Some(entry.index),
                _ => None,
            }
        })
        .max()
        .expect("entries in segment 0");
    assert_eq!(seg1.index, last_entry_seg0 + 1);
    let head: Vec<i64> = all
        .iter()
        .filter(|r| r.segment == seg1)
        .take(3)
        .map(|r| r.rec_type)
        .collect();
    assert_eq!(
        head,
        vec![4, 1, 3],
        "crc, metadata, state at the start of a cut segment"
    );
    // Segment 0 was truncated at its end by the cut; the crc record of segment 1 carries
    // the CRC of segment 0's last record.
    assert_eq!(report.segments[0].size, report.segments[0].end_offset);
    let last0 = all
        .iter()
        .rfind(|r| r.segment.seq == 0)
        .expect("last of segment 0");
    let first1 = all
        .iter()
        .find(|r| r.segment == seg1)
        .expect("first of segment 1");
    assert_eq!(first1.crc, last0.crc);
    // etcd's start-up path: newest matching .snap, then ReadAll from it.
    let state = wal::load_member(&OsFs, &data).expect("load member");
    let (snap_name, snap) = state.snapshot.as_ref().expect("a .snap matches the WAL");
    assert!(
        report.selected_snap.as_deref() == Some(snap_name.as_str()),
        "verify and load agree on the .snap"
    );
    assert_eq!(state.start_index, snap.metadata.index);
    assert!(state.start_index > 0 && state.start_index <= status.raft_index);
    assert_eq!(state.committed_index(), status.raft_index);
    assert!(state.commit_in_range());
    for (k, e) in state.entries().iter().enumerate() {
        assert_eq!(
            e.index,
            state.start_index + 1 + k as u64,
            "contiguous entries"
        );
    }
    // The dump iterator sees every record the verifier counted.
    let mut n = 0u64;
    for r in records(&OsFs, &wal_dir).expect("records") {
        r.expect("record");
        n += 1;
    }
    let c = report.counts;
    assert_eq!(n, c.metadata + c.entry + c.state + c.crc + c.snapshot);
    assert_eq!(c.crc as usize, report.segments.len());
    etcd.stop().expect("stop etcd");
    // After a clean stop, still OK and the same commit.
    let after = wal::verify_data_dir(&OsFs, &data).expect("verify");
    assert!(after.is_ok(), "{}", after.to_text());
    assert_eq!(after.hard_state.map(|h| h.commit), Some(status.raft_index));
    Some(Written {
        _tmp: tmp,
        bins,
        data,
        commit: status.raft_index,
        member_id: status.member_id,
        cluster_id: status.cluster_id,
    })
}

fn last_segment(data: &Path) -> (SegmentId, PathBuf) {
    let wal_dir = data.join("member/wal");
    let l = wal::list_segments(&OsFs, &wal_dir).expect("list");
    let id = *l.segments.last().expect("segment");
    (id, wal_dir.join(id.file_name()))
}

/// Offset and frame length of the last record of the last segment (with `min_len`,
/// the last one at least that long).
fn last_record(data: &Path, min_len: u64) -> (u64, u64) {
    let wal_dir = data.join("member/wal");
    let (id, p) = last_segment(data);
    let f = fs::File::open(p).expect("open");
    let mut last = None;
    for r in records(&OsFs, &wal_dir).expect("records") {
        let r = r.expect("record");
        if r.segment != id {
            continue;
        }
        let mut w = [0u8; 8];
        f.read_exact_at(&mut w, r.offset).expect("read word");
        let (len, pad) = wal::record::decode_length_word(u64::from_le_bytes(w));
        if 8 + len + pad >= min_len {
            last = Some((r.offset, 8 + len + pad));
        }
    }
    last.expect("a record in the last segment")
}

fn tear_and_repair(w: &Written, version: &str) {
    // A torn tail: the last segment cut in the middle of its last record.
    let tmp = tempfile::tempdir().expect("tempdir");
    let torn = tmp.path().join("torn");
    copy_dir(&w.data, &torn);
    let (off, len) = last_record(&torn, 0);
    let (_, seg_path) = last_segment(&torn);
    let original = fs::read(&seg_path).expect("read");
    OpenOptions::new()
        .write(true)
        .open(&seg_path)
        .expect("open")
        .set_len(off + len / 2)
        .expect("truncate");
    let report = wal::verify_data_dir(&OsFs, &torn).expect("verify");
    match &report.status {
        WalStatus::Repairable(d) => {
            assert_eq!(d.offset, off, "{version}: torn record offset");
            assert_eq!(d.kind, DamageKind::Torn);
        }
        s => panic!("{version}: expected repairable, got {s:?}"),
    }
    assert!(!report.is_ok() && report.is_usable());
    // Read-only loading tolerates it like etcd and names the torn tail.
    let state = wal::load_member(&OsFs, &torn).expect("load torn");
    assert!(matches!(state.wal.end.tail, Tail::Torn(_)));

    // etcd repairs a copy itself and starts.
    let by_etcd = tmp.path().join("by_etcd");
    copy_dir(&torn, &by_etcd);
    let ours = torn;
    let outcome = wal::repair(&OsFs, &ours.join("member/wal")).expect("repair");
    let RepairOutcome::Repaired {
        truncated_to,
        broken_copy,
        ..
    } = outcome
    else {
        panic!("{version}: expected a repair, got {outcome:?}");
    };
    assert_eq!(truncated_to, off);
    assert_eq!(
        fs::read(&broken_copy).expect("broken copy").len() as u64,
        off + len / 2
    );
    let repaired = wal::verify_data_dir(&OsFs, &ours).expect("verify repaired");
    assert!(repaired.is_ok(), "{}", repaired.to_text());

    let mut cfg = EtcdConfig::new(&by_etcd);
    cfg.extra_args.push("--snapshot-count=20".into());
    let mut etcd = EtcdProcess::start(&w.bins, cfg).expect("etcd starts on the torn WAL");
    let status = etcd.status().expect("status");
    assert_eq!(status.member_id, w.member_id);
    etcd.stop().expect("stop");
    let (_, etcd_seg) = last_segment(&by_etcd);
    let etcd_bytes = fs::read(&etcd_seg).expect("read");
    let etcd_broken = fs::read(format!("{}.broken", etcd_seg.display())).expect("etcd's .broken");
    assert_eq!(
        etcd_broken.len() as u64,
        off + len / 2,
        "etcd's .broken copy"
    );
    // etcd kept exactly the bytes we kept and continued writing after them.
    assert_eq!(&etcd_bytes[..off as usize], &original[..off as usize]);
    let after = wal::verify_data_dir(&OsFs, &by_etcd).expect("verify after etcd");
    assert!(after.is_ok(), "{}", after.to_text());
    assert!(after.hard_state.expect("hs").commit >= w.commit - 1);
    // And etcd starts on our repair.
    let mut etcd = EtcdProcess::start(&w.bins, EtcdConfig::new(&ours)).expect("etcd on ours");
    assert_eq!(etcd.status().expect("status").cluster_id, w.cluster_id);
    etcd.stop().expect("stop");
}

fn zeroed_sector_is_torn(w: &Written, version: &str) {
    // A record whose last 512-byte sector never reached the disk (zeros). etcd calls this
    // torn in any record of the last segment, and drops everything from it on.
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("z");
    copy_dir(&w.data, &d);
    let (off, len) = last_record(&d, 4096);
    let (_, seg_path) = last_segment(&d);
    let end = off + len;
    let sector_start = (end - 1) / 512 * 512;
    let f = OpenOptions::new()
        .write(true)
        .open(&seg_path)
        .expect("open");
    f.write_all_at(&vec![0u8; (end - sector_start) as usize], sector_start)
        .expect("zero");
    let zeroed = fs::read(&seg_path).expect("read");
    let report = wal::verify_data_dir(&OsFs, &d).expect("verify");
    match &report.status {
        WalStatus::Repairable(dm) => assert_eq!(dm.offset, off),
        s => panic!("{version}: zeroed sector: expected repairable, got {s:?}"),
    }
    // Real etcd on a copy agrees: it starts, keeps the damaged segment as .broken and cuts
    // it exactly where we say the torn record begins.
    let by_etcd = tmp.path().join("by_etcd");
    copy_dir(&d, &by_etcd);
    let mut cfg = EtcdConfig::new(&by_etcd);
    cfg.extra_args.push("--snapshot-count=20".into());
    let mut etcd = EtcdProcess::start(&w.bins, cfg)
        .unwrap_or_else(|e| panic!("{version}: etcd on a zeroed last sector: {e}"));
    assert_eq!(etcd.status().expect("status").member_id, w.member_id);
    etcd.stop().expect("stop");
    let seg_name = seg_path
        .file_name()
        .expect("segment name")
        .to_string_lossy();
    let broken = by_etcd.join(format!("member/wal/{seg_name}.broken"));
    let etcd_broken = fs::read(&broken)
        .unwrap_or_else(|e| panic!("{version}: etcd kept no {}: {e}", broken.display()));
    assert_eq!(etcd_broken, zeroed, "{version}: etcd's .broken copy");
    let (_, etcd_seg) = last_segment(&by_etcd);
    let etcd_bytes = fs::read(&etcd_seg).expect("read");
    // etcd kept the records before the torn one, and not the torn one.
    let off = off as usize;
    assert_eq!(
        first_diff(&etcd_bytes[..off], &zeroed[..off]),
        None,
        "{version}: etcd changed records before the torn one"
    );
    assert_ne!(
        etcd_bytes.get(off..off + len as usize),
        zeroed.get(off..off + len as usize),
        "{version}: etcd kept the torn record"
    );
    let after = wal::verify_data_dir(&OsFs, &by_etcd).expect("verify after etcd");
    assert!(after.is_ok(), "{}", after.to_text());
}

fn flipped_byte_is_corrupt(w: &Written, version: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("flip");
    copy_dir(&w.data, &d);
    let wal_dir = d.join("member/wal");
    // The 20th entry record of the first segment.
    let rec = records(&OsFs, &wal_dir)
        .expect("records")
        .map(|r| r.expect("record"))
        .filter(|r| r.segment.seq == 0 && r.rec_type == 2)
        .nth(20)
        .expect("20 entries in segment 0");
    let p = wal_dir.join(rec.segment.file_name());
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open");
    let at = rec.offset + 100;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    b[0] ^= 0x10;
    f.write_all_at(&b, at).expect("write");
    let report = wal::verify_data_dir(&OsFs, &d).expect("verify");
    match &report.status {
        WalStatus::Corrupt(dm) => {
            assert_eq!(dm.segment, rec.segment, "{version}");
            assert_eq!(dm.offset, rec.offset, "{version}");
        }
        s => panic!("{version}: expected corrupt, got {s:?}"),
    }
    assert!(!report.is_usable());
    assert!(matches!(
        wal::repair(&OsFs, &wal_dir),
        Ok(RepairOutcome::Clean) | Err(_)
    ));
    // etcd refuses it too.
    let mut cfg = EtcdConfig::new(&d);
    cfg.extra_args.push("--snapshot-count=20".into());
    assert!(
        EtcdProcess::start(&w.bins, cfg).is_err(),
        "{version}: etcd must not start on a corrupt WAL"
    );
}

fn full(version: &str) {
    let Some(w) = write_and_check_live(version) else {
        return;
    };
    tear_and_repair(&w, version);
    zeroed_sector_is_torn(&w, version);
    flipped_byte_is_corrupt(&w, version);
}

#[test]
fn etcd_3_5_1_two_segments() {
    full("3.5.1");
}

#[test]
fn etcd_3_4_23_two_segments() {
    full("3.4.23");
}
