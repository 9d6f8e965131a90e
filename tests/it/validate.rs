//! `etcd-restore validate` on a corruption corpus made from a real restored data directory
//! (basic fixture of etcd 3.5.1). Every case is labelled by its construction, and the label is
//! grounded by starting real etcd 3.5.1 on a copy: corrupt ⇒ etcd fails, serves another revision
//! or cannot write; stale ⇒ etcd serves a revision below the store's; valid or repairable ⇒
//! etcd starts, serves the expected revision and accepts a write. Plus: the offline HashKV in
//! `validate --json` equals `etcdctl endpoint hashkv`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::{Cli, EtcdBins, EtcdConfig, EtcdProcess, Fixture, tempfile};

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));

fn validate(dir: &Path, store: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = CLI
        .command()
        .args(["validate", "--json", "--data-dir"])
        .arg(dir)
        .arg("--store")
        .arg(store)
        .args(extra)
        .env_remove("POD_NAMESPACE")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validate output: {e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn flip(path: &Path, offset: u64, mask: u8) {
    let mut b = std::fs::read(path).unwrap();
    let i = usize::try_from(offset).unwrap();
    b[i] ^= mask;
    std::fs::write(path, b).unwrap();
}

fn page_size(db: &[u8]) -> usize {
    u32::from_le_bytes(db[24..28].try_into().unwrap()) as usize
}

/// Page ids of a given type (bbolt page flags), scanning every page header below EOF.
fn pages_of(db: &[u8], flag: u16) -> Vec<(u64, u16)> {
    let ps = page_size(db);
    let mut out = Vec::new();
    let mut id = 2;
    while (id + 1) * ps <= db.len() {
        let p = &db[id * ps..];
        let pid = u64::from_le_bytes(p[0..8].try_into().unwrap());
        let flags = u16::from_le_bytes(p[8..10].try_into().unwrap());
        let count = u16::from_le_bytes(p[10..12].try_into().unwrap());
        let overflow = u32::from_le_bytes(p[12..16].try_into().unwrap()) as usize;
        if pid == id as u64 && flags == flag {
            out.push((pid, count));
        }
        id += 1 + if pid == id as u64 { overflow } else { 0 };
    }
    out
}

fn wal_segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// Offsets of the WAL records of a segment (8-byte length word, padded frames), until the
/// first zero length word.
fn wal_records(seg: &Path) -> Vec<(u64, u64)> {
    let b = std::fs::read(seg).unwrap();
    let mut out = Vec::new();
    let mut off = 0usize;
    while off + 8 <= b.len() {
        let w = u64::from_le_bytes(b[off..off + 8].try_into().unwrap());
        if w == 0 {
            break;
        }
        let len = w & 0x00ff_ffff_ffff_ffff;
        let pad = if w >> 63 == 1 { (w >> 56) & 0x7 } else { 0 };
        out.push((off as u64, len + pad));
        off += 8 + (len + pad) as usize;
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Valid,
    Repairable,
    Stale,
    Corrupt,
}

impl Label {
    fn verdict(self) -> &'static str {
        match self {
            Label::Valid => "valid",
            Label::Repairable => "repairable",
            Label::Stale => "stale",
            Label::Corrupt => "corrupt",
        }
    }
    fn exit(self) -> i32 {
        match self {
            Label::Valid => 0,
            Label::Repairable => 4,
            Label::Stale => 5,
            Label::Corrupt => 3,
        }
    }
}

/// What real etcd makes of a directory.
#[derive(Debug)]
enum Etcd {
    // Read through Debug, in the failure report.
    #[allow(dead_code)]
    Fails(String),
    Serves {
        revision: i64,
        put_ok: bool,
        /// `endpoint hashkv` reads every page of the key bucket, so a damaged page etcd's
        /// start-up did not touch shows here.
        hashkv_ok: bool,
    },
}

fn run_etcd(bins: &EtcdBins, dir: &Path) -> Etcd {
    let mut p = match EtcdProcess::spawn(bins, EtcdConfig::new(dir)) {
        Ok(p) => p,
        Err(e) => return Etcd::Fails(e.to_string()),
    };
    if let Err(e) = p.wait_healthy(Duration::from_secs(15)) {
        let _ = p.stop();
        return Etcd::Fails(e.to_string().chars().take(600).collect());
    }
    let revision = p.status().map(|s| s.revision).unwrap_or(-1);
    let hashkv_ok = p.hashkv(None).is_ok();
    let put_ok = p
        .etcdctl(&["--command-timeout=5s", "put", "validate-probe", "x"])
        .is_ok();
    let _ = p.stop();
    Etcd::Serves {
        revision,
        put_ok,
        hashkv_ok,
    }
}

/// Is etcd's behaviour the one the label promises?
fn grounded(label: Label, etcd: &Etcd, expected_rev: i64) -> bool {
    match (label, etcd) {
        (
            Label::Valid | Label::Repairable,
            Etcd::Serves {
                revision,
                put_ok,
                hashkv_ok,
            },
        ) => *revision == expected_rev && *put_ok && *hashkv_ok,
        (Label::Stale, Etcd::Serves { revision, .. }) => *revision < expected_rev,
        (Label::Corrupt, Etcd::Fails(_)) => true,
        (
            Label::Corrupt,
            Etcd::Serves {
                revision,
                put_ok,
                hashkv_ok,
            },
        ) => *revision != expected_rev || !*put_ok || !*hashkv_ok,
        _ => false,
    }
}

type Mutate = Box<dyn Fn(&Path)>;

/// Damage etcd 3.5.1 starts and even writes on, but only by luck: with a persisted freelist
/// that runs past its page, bbolt hands out garbage page ids, and a later write can land on a
/// live page. These labels are grounded by Go's `tx.Check()` (the reference checker) instead.
const GROUNDED_BY_GO_CHECK: &[&str] = &["freelist_flip"];

fn db_of(dir: &Path) -> PathBuf {
    dir.join("member/snap/db")
}

/// Go's `tx.Check()` rejects `db` (`Some(true)`), accepts it (`Some(false)`), or cannot be
/// asked (`None`: the oracle is missing and skipping is allowed; the skip is recorded). Never
/// a guess: a case that nothing grounded must not count as confirmed.
fn go_check_fails(db: &Path) -> Option<bool> {
    let go = testkit::GoOracle::get()?;
    let report = go.check(db).map(|r| !r.ok);
    // Exit 2 (cannot open) is a rejection too.
    Some(report.unwrap_or(true))
}

fn corpus(template: &Path, store: &Path, tmp: &Path) -> Vec<(&'static str, Label, Mutate)> {
    let db = |d: &Path| d.join("member/snap/db");
    let bytes = std::fs::read(db(template)).unwrap();
    let ps = page_size(&bytes) as u64;
    let leaf = pages_of(&bytes, 0x02)
        .into_iter()
        .find(|(_, c)| *c > 0)
        .map(|(id, _)| id);
    let seg = wal_segments(template);
    let last_seg_name = seg.last().unwrap().file_name().unwrap().to_owned();
    let recs = wal_records(seg.last().unwrap());
    let mut v: Vec<(&'static str, Label, Mutate)> = vec![
        ("clean", Label::Valid, Box::new(|_: &Path| {})),
        // The checksum of meta 0 / meta 1: bbolt falls back to the other page.
        // meta 0 holds the newest transaction here: bbolt falls back to meta 1, whose
        // consistent_index is ahead of the WAL commit (etcd starts but cannot write).
        (
            "meta0_flip",
            Label::Corrupt,
            Box::new(move |d: &Path| flip(&db(d), 16 + 56, 0x01)),
        ),
        (
            "meta1_flip",
            Label::Valid,
            Box::new(move |d: &Path| flip(&db(d), ps + 16 + 56, 0x01)),
        ),
        (
            "both_meta_flip",
            Label::Corrupt,
            Box::new(move |d: &Path| {
                flip(&db(d), 16 + 56, 0x01);
                flip(&db(d), ps + 16 + 56, 0x01);
            }),
        ),
        (
            "truncated_db",
            Label::Corrupt,
            Box::new(move |d: &Path| {
                let f = std::fs::OpenOptions::new().write(true).open(db(d)).unwrap();
                f.set_len(4 * ps).unwrap();
            }),
        ),
        (
            "missing_member_dir",
            Label::Corrupt,
            Box::new(|d: &Path| std::fs::remove_dir_all(d.join("member")).unwrap()),
        ),
    ];
    if let Some(leaf) = leaf {
        // High byte of the first element's key size: the key leaves the page.
        v.push((
            "leaf_flip",
            Label::Corrupt,
            Box::new(move |d: &Path| flip(&db(d), leaf * ps + 16 + 11, 0x80)),
        ));
    }
    // The key bucket's root, when it is a branch page (etcd reads the whole bucket at start).
    let key_root = {
        let d = bbolt::Db::open(db(template), bbolt::OpenOptions::read_only()).unwrap();
        let tx = d.begin_read();
        let root = tx.bucket(b"key").unwrap().and_then(|b| b.root_page());
        root.filter(|r| pages_of(&bytes, 0x01).iter().any(|(id, _)| id == r))
    };
    if let Some(br) = key_root {
        // Bit 16 of the first element's child pgid: the child lies 65,536 pages further,
        // beyond the file. (A flip in the high byte would not do: Go's `id * pageSize`
        // wraps around to the original page, and etcd reads on unharmed.)
        v.push((
            "branch_flip",
            Label::Corrupt,
            Box::new(move |d: &Path| flip(&db(d), br * ps + 16 + 10, 0x01)),
        ));
    }
    // A database with a persisted freelist (bbolt's default; etcd's files have none, but
    // older ones and other writers' do), then its count's high byte flipped: the list runs
    // past its page.
    v.push((
        "freelist_flip",
        Label::Corrupt,
        Box::new(move |d: &Path| {
            let path = db(d);
            let b = bbolt::Db::open(
                &path,
                bbolt::OpenOptions {
                    sync_freelist: true,
                    ..Default::default()
                },
            )
            .unwrap();
            b.update(|_| Ok(())).unwrap();
            drop(b);
            let bytes = std::fs::read(&path).unwrap();
            let (fl, _) = *pages_of(&bytes, 0x10)
                .first()
                .expect("a freelist page after a synced commit");
            flip(&path, fl * ps + 11, 0x40);
        }),
    ));
    if let Some((fl, _)) = pages_of(&bytes, 0x10).first().copied() {
        // High byte of the freelist's count: it lists ids beyond its page.
        v.push((
            "freelist_flip_template",
            Label::Corrupt,
            Box::new(move |d: &Path| flip(&db(d), fl * ps + 11, 0x40)),
        ));
    }
    // The root pgid in both metas raised beyond the high-water mark (checksums fixed).
    v.push((
        "pgid_beyond_hwm",
        Label::Corrupt,
        Box::new(move |d: &Path| {
            let path = db(d);
            let mut b = std::fs::read(&path).unwrap();
            for m in [0usize, ps as usize] {
                let hwm = u64::from_le_bytes(b[m + 56..m + 64].try_into().unwrap());
                b[m + 32..m + 40].copy_from_slice(&(hwm + 5).to_le_bytes());
                let sum = fnv1a64(&b[m + 16..m + 72]);
                b[m + 72..m + 80].copy_from_slice(&sum.to_le_bytes());
            }
            std::fs::write(&path, b).unwrap();
        }),
    ));
    if recs.len() >= 3 {
        let (mid, len) = recs[recs.len() / 2];
        let name = last_seg_name.clone();
        v.push((
            "wal_middle_flip",
            Label::Corrupt,
            Box::new(move |d: &Path| {
                flip(&d.join("member/wal").join(&name), mid + 8 + len / 2, 0x10)
            }),
        ));
        let (last, len) = *recs.last().unwrap();
        let name = last_seg_name.clone();
        // A torn write: the file ends inside the last record.
        v.push((
            "wal_torn_tail",
            Label::Repairable,
            Box::new(move |d: &Path| {
                let p = d.join("member/wal").join(&name);
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(last + 8 + len / 2).unwrap();
            }),
        ));
        let name = last_seg_name.clone();
        v.push((
            "wal_zeroed_tail",
            Label::Repairable,
            Box::new(move |d: &Path| {
                let p = d.join("member/wal").join(&name);
                let mut b = std::fs::read(&p).unwrap();
                for x in &mut b[(last + 8) as usize..(last + 8 + len) as usize] {
                    *x = 0;
                }
                std::fs::write(&p, b).unwrap();
            }),
        ));
    }
    // etcd skips a .snap it cannot load and replays the WAL from its start instead.
    v.push((
        "snap_bad_crc",
        Label::Valid,
        Box::new(|d: &Path| {
            let snap = std::fs::read_dir(d.join("member/snap"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "snap"))
                .unwrap();
            let n = std::fs::metadata(&snap).unwrap().len();
            flip(&snap, n - 3, 0x04);
        }),
    ));
    // Restored to an earlier revision: behind the store.
    let older = tmp.join("older.etcd");
    let ls = CLI
        .command()
        .args(["ls", "--json", "--store"])
        .arg(store)
        .output()
        .unwrap();
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    // A store holding only the oldest full snapshot: its restore is behind the real store.
    let oldest = ls["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["kind"]
                .as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case("full"))
        })
        .min_by_key(|s| s["last_revision"].as_i64())
        .unwrap()["path"]
        .as_str()
        .unwrap()
        .to_string();
    let small = tmp.join("oldest-store");
    let target = small.join(&oldest);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(store.join(&oldest), &target).unwrap();
    CLI.restore(&small, &older, &[]);
    v.push((
        "stale_revision",
        Label::Stale,
        Box::new(move |d: &Path| {
            std::fs::remove_dir_all(d).unwrap();
            copy_dir(&older, d);
        }),
    ));
    v.push((
        "consistent_index_ahead",
        Label::Corrupt,
        Box::new(move |d: &Path| {
            let db = bbolt::Db::open(db(d), bbolt::OpenOptions::default()).unwrap();
            db.update(|tx| {
                let mut m = tx.bucket_mut(b"meta")?.unwrap();
                m.put(b"consistent_index", &1000u64.to_be_bytes())
            })
            .unwrap();
        }),
    ));
    v
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[test]
fn corruption_corpus_is_classified_as_real_etcd_behaves() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let template = tmp.path().join("template.etcd");
    CLI.restore(&f.store(), &template, &[]);
    let expected_rev = f.oracle.final_revision;
    let mut failures = Vec::new();
    let mut ungrounded = Vec::new();
    let cases = corpus(&template, &f.store(), tmp.path());
    for (name, label, mutate) in &cases {
        let dir = tmp.path().join(format!("{name}.etcd"));
        copy_dir(&template, &dir);
        mutate(&dir);
        let (code, report) = validate(&dir, &f.store(), &["--mode", "full"]);
        let verdict = report["verdict"].as_str().unwrap_or("?").to_string();
        // Real etcd runs on its own copy (it repairs and rewrites what it opens).
        let probe = tmp.path().join(format!("{name}.probe.etcd"));
        copy_dir(&dir, &probe);
        let etcd = run_etcd(&bins, &probe);
        // The reference verdict: real etcd's behaviour, or Go's tx.Check() for the cases etcd
        // survives only by luck.
        let (ok_reference, reference) = if GROUNDED_BY_GO_CHECK.contains(name) {
            match go_check_fails(&db_of(&dir)) {
                Some(fails) => (
                    fails == (*label == Label::Corrupt),
                    format!(
                        "Go tx.Check() {}",
                        if fails { "rejects" } else { "accepts" }
                    ),
                ),
                None => {
                    ungrounded.push(*name);
                    (true, "Go tx.Check() not asked (skip recorded)".to_string())
                }
            }
        } else {
            (
                grounded(*label, &etcd, expected_rev),
                format!("etcd: {etcd:?}"),
            )
        };
        let ok_ours = verdict == label.verdict() && code == label.exit();
        eprintln!("{name}: label {label:?}, ours {verdict} (exit {code}), {reference}");
        if !ok_reference || !ok_ours {
            failures.push(format!(
                "{name}: label {label:?}; validate said {verdict} (exit {code}) {} [{}]; {reference} [{}]",
                report["findings"],
                if ok_ours { "agrees" } else { "DISAGREES" },
                if ok_reference { "agrees" } else { "DISAGREES" },
            ));
        }
        let _ = std::fs::remove_dir_all(&probe);
    }
    assert!(cases.len() >= 16, "corpus too small: {}", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Only a recorded skip (no Go oracle, skipping allowed) leaves a case ungrounded.
    if !ungrounded.is_empty() {
        println!("not grounded (Go oracle missing, skip recorded): {ungrounded:?}");
    }
}

#[test]
fn hashkv_in_the_report_equals_etcds() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    for scenario in ["basic", "overlap-1043", "lease-expired-1045"] {
        let f = Fixture::load("3.5.1", scenario).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d.etcd");
        CLI.restore(&f.store(), &dir, &[]);
        let (code, report) = validate(&dir, &f.store(), &["--mode", "full"]);
        assert_eq!(code, 0, "{scenario}: {report}");
        let etcd = EtcdProcess::start(&bins, EtcdConfig::new(&dir)).unwrap();
        let h = etcd.hashkv(None).unwrap();
        assert_eq!(
            (
                report["hashkv"]["hash"].as_u64().unwrap() as u32,
                report["hashkv"]["compact_revision"].as_i64().unwrap()
            ),
            (h.hash, h.compact_revision),
            "{scenario}"
        );
    }
}

#[test]
fn auto_mode_follows_exit_code_and_repair_keeps_a_copy() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d.etcd");
    CLI.restore(&f.store(), &dir, &[]);
    let (_, r) = validate(&dir, &f.store(), &["--mode", "auto"]);
    assert_eq!(r["mode"], "full");
    std::fs::write(dir.join("exit_code"), "terminated\n").unwrap();
    let (code, r) = validate(&dir, &f.store(), &["--mode", "auto"]);
    assert_eq!((code, r["mode"].as_str()), (0, Some("sanity")), "{r}");
    assert!(r["hashkv"].is_null());

    // A torn tail: reported, untouched; --repair cuts it and keeps the segment as *.broken.
    let seg = wal_segments(&dir).pop().unwrap();
    let (last, len) = *wal_records(&seg).last().unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    b.truncate((last + 8 + len / 2) as usize);
    std::fs::write(&seg, &b).unwrap();
    let (code, _) = validate(&dir, &f.store(), &["--mode", "full"]);
    assert_eq!(code, 4);
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        b,
        "validate without --repair wrote"
    );
    let (code, r) = validate(&dir, &f.store(), &["--mode", "full", "--repair"]);
    assert_eq!(code, 0, "{r}");
    let mut broken = seg.clone().into_os_string();
    broken.push(".broken");
    assert_eq!(std::fs::read(&broken).unwrap(), b);
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), last);

    // safe_guard naming another namespace: wrong volume.
    std::fs::write(tmp.path().join("safe_guard"), "other-ns").unwrap();
    let (code, _) = validate(&dir, &f.store(), &["--namespace", "my-ns"]);
    assert_eq!(code, 6);
}

/// Behind the store: a single member is stale (exit 5); a member of a three-member cluster is
/// not judged on its revision (it catches up from the leader), as etcdbrctl decides.
#[test]
fn staleness_is_only_judged_for_single_member_clusters() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let behind = (f.oracle.final_revision - 5).to_string();

    let single = tmp.path().join("single.etcd");
    CLI.restore(&f.store(), &single, &["--to-revision", &behind]);
    let (code, report) = validate(&single, &f.store(), &["--mode", "sanity"]);
    assert_eq!(code, 5, "{report}");

    let cluster = "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2381,m3=http://127.0.0.1:2382";
    let template = tmp.path().join("{name}.etcd");
    CLI.restore(
        &f.store(),
        &tmp.path().join("unused"),
        &[
            "--to-revision",
            &behind,
            "--initial-cluster",
            cluster,
            "--name",
            "m1",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--data-dir-template",
            template.to_str().unwrap(),
        ],
    );
    let (code, report) = validate(
        &tmp.path().join("m2.etcd"),
        &f.store(),
        &["--mode", "sanity"],
    );
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["cluster_size"], 3, "{report}");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["reason"]
                .as_str()
                .unwrap_or("")
                .contains("catches up from the leader")),
        "{report}"
    );
}
