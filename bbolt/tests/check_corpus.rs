//! The checker reports every corruption in a corpus built here (bit flips in each meta, in
//! leaf, branch and freelist pages; a truncated file; a child beyond the high-water mark; a
//! cycle; a page referenced twice) and never panics, on these and on thousands of random
//! mutations, whatever the readers do with the same bytes. Labels come from construction;
//! Go's own `tx.Check()` (bbolt 1.3.6, the Go oracle) is asked about every case too, and the
//! verdicts must agree: whatever Go rejects we report, and what Go accepts we flag only with
//! the kinds of finding Go 1.3.6 does not look for.

mod common;

use bbolt::check::{CheckOptions, FindingKind, check_bytes};
use bbolt::page::{self, Page};
use bbolt::{Db, OpenOptions};
use testkit::gooracle::{GoOracle, GoVerdict};

/// What bbolt 1.3.6's `tx.Check()` looks for (tx.go `check`/`checkBucket`): double frees,
/// reachable-and-free, unreachable-and-not-free, double references, ids beyond the
/// high-water mark and page types. Every other kind of ours (metas, truncation, element
/// bounds, key order, bucket values, freelist contents, depth) is beyond it, and so is part
/// of our `invalid_type` (see [`beyond_go`]).
const GO_CHECKS: [FindingKind; 6] = [
    FindingKind::AlreadyFreed,
    FindingKind::ReachableFreed,
    FindingKind::UnreachableUnfreed,
    FindingKind::MultipleReferences,
    FindingKind::OutOfBounds,
    FindingKind::InvalidType,
];

/// Whether `f` is a finding bbolt 1.3.6's check cannot make. Go calls a page's type invalid
/// only when it has neither the branch nor the leaf bit; we also when it has other bits
/// besides (a branch page with the leaf bit set is read as a leaf by bbolt's cursors, so Go's
/// check walks its children while its readers never would) or its header names another id.
fn beyond_go(f: &bbolt::check::Finding, bytes: &[u8]) -> bool {
    if !GO_CHECKS.contains(&f.kind) {
        return true;
    }
    f.kind == FindingKind::InvalidType
        && f.page.is_some_and(|p| {
            let off = p as usize * PAGE_SIZE + 8;
            bytes
                .get(off..off + 2)
                .is_some_and(|b| u16::from_le_bytes([b[0], b[1]]) & 0x03 != 0)
        })
}

/// Asks Go's check about each case and collects every verdict that disagrees with ours:
/// * Go rejects it (errors, refuses to open, panics, gives up) → we report something;
/// * Go accepts it → we report nothing, or at least one finding Go cannot make (which is
///   then why we differ; findings that follow from it, such as the pages below a page of
///   invalid type being unreachable, may come with it).
struct GoVerdicts {
    go: Option<GoOracle>,
    dir: tempfile::TempDir,
    asked: usize,
    rejected: usize,
    disagreements: Vec<String>,
}

impl GoVerdicts {
    fn new() -> GoVerdicts {
        GoVerdicts {
            go: GoOracle::get(),
            dir: tempfile::tempdir().unwrap(),
            asked: 0,
            rejected: 0,
            disagreements: Vec::new(),
        }
    }

    fn compare(&mut self, bytes: &[u8], what: &str) {
        let Some(go) = &self.go else { return };
        let path = self.dir.path().join("case.db");
        std::fs::write(&path, bytes).unwrap();
        let verdict = go.check_verdict(&path).expect("run bboltoracle check");
        let ours = findings(bytes);
        self.asked += 1;
        let problem = if verdict.accepts() {
            let explained = ours.iter().any(|f| beyond_go(f, bytes));
            (!ours.is_empty() && !explained)
                .then(|| format!("Go accepts it, we report only what Go checks: {ours:?}"))
        } else {
            self.rejected += 1;
            ours.is_empty()
                .then(|| format!("Go rejects it ({}), we report nothing", short(&verdict)))
        };
        if let Some(p) = problem {
            self.disagreements.push(format!("{what}: {p}"));
        }
    }

    /// Every verdict agreed, and Go was asked `min_asked` times at least (rejecting some):
    /// a comparison that compared nothing must not pass.
    fn assert_agree(&self, min_asked: usize) {
        if self.go.is_none() {
            return; // the skip was recorded by GoOracle::get
        }
        assert!(
            self.disagreements.is_empty(),
            "{} of {} cases: Go's tx.Check() and ours disagree:\n{}",
            self.disagreements.len(),
            self.asked,
            self.disagreements.join("\n")
        );
        assert!(
            self.asked >= min_asked && self.rejected > 0,
            "Go asked about {} cases (rejected {}), expected at least {min_asked}",
            self.asked,
            self.rejected
        );
        println!(
            "Go's tx.Check() agreed on {} cases ({} rejected)",
            self.asked, self.rejected
        );
    }
}

fn short(v: &GoVerdict) -> String {
    let s = format!("{v:?}");
    s.chars().take(200).collect()
}

/// The corpus's page size: small, so a few thousand keys make a three-level tree.
const PAGE_SIZE: usize = 1024;

/// A database with a 3-level `key` bucket, a nested paged bucket, inline buckets, values
/// spanning several pages, free pages, and (optionally) a synced freelist.
fn build(sync_freelist: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let db = Db::open(
        &path,
        OpenOptions {
            create: true,
            sync_freelist,
            no_sync: true,
            page_size: PAGE_SIZE as u32,
            ..Default::default()
        },
    )
    .unwrap();
    let mut tx = db.begin_write().unwrap();
    let mut key = tx.create_bucket(b"key").unwrap();
    for i in 0..6_000u64 {
        key.put(&(i * 2).to_be_bytes(), &[b'v'; 40]).unwrap();
    }
    let mut n = key.create_bucket(b"nested").unwrap();
    for i in 0..200u32 {
        n.put(&i.to_be_bytes(), b"nested value").unwrap();
    }
    let mut meta = tx.create_bucket(b"meta").unwrap();
    meta.put(b"big", &vec![7u8; 20_000]).unwrap();
    meta.put(b"small", b"1").unwrap();
    tx.create_bucket(b"tiny").unwrap().put(b"a", b"b").unwrap();
    tx.commit().unwrap();
    let mut tx = db.begin_write().unwrap();
    let mut key = tx.bucket_mut(b"key").unwrap().unwrap();
    for i in (0..6_000u64).step_by(7) {
        key.delete(&(i * 2).to_be_bytes()).unwrap();
    }
    tx.commit().unwrap();
    drop(db);
    let bytes = std::fs::read(&path).unwrap();
    assert!(check_bytes(&bytes, &CheckOptions::default()).is_clean());
    bytes
}

struct Layout {
    ps: usize,
    hwm: u64,
    freelist: u64,
    /// Root of the key bucket (a branch whose children are branches).
    key_root: u64,
    /// A branch below the root and one of its leaves.
    branch: u64,
    leaf: u64,
}

fn layout(bytes: &[u8]) -> Layout {
    let tx = bbolt::ReadTx::from_bytes(bytes).unwrap();
    let ps = tx.page_size();
    let m = *tx.meta();
    let key_root = tx.bucket(b"key").unwrap().unwrap().root_page().unwrap();
    let root = Page::node(bytes, ps, key_root, m.pgid).unwrap();
    assert!(!root.is_leaf());
    // Walk down child 1 until a leaf: `branch` is its parent, below the bucket root.
    let mut parent = key_root;
    let mut cur = root.branch(1).unwrap().pgid;
    loop {
        let p = Page::node(bytes, ps, cur, m.pgid).unwrap();
        if p.is_leaf() {
            break;
        }
        parent = cur;
        cur = p.branch(1).unwrap().pgid;
    }
    let (branch, leaf) = (parent, cur);
    assert_ne!(branch, key_root, "the key bucket has at least three levels");
    Layout {
        ps,
        hwm: m.pgid,
        freelist: m.freelist,
        key_root,
        branch,
        leaf,
    }
}

fn findings(bytes: &[u8]) -> Vec<bbolt::check::Finding> {
    check_bytes(bytes, &CheckOptions::default()).findings
}

fn expect(go: &mut GoVerdicts, bytes: &[u8], kind: FindingKind, what: &str) {
    let f = findings(bytes);
    assert!(
        f.iter().any(|x| x.kind == kind),
        "{what}: expected {kind}, got {f:#?}"
    );
    // Readers must not panic either.
    exercise_readers(bytes);
    go.compare(bytes, what);
}

/// Opens the bytes, dumps everything, runs stats: errors are fine, panics are not.
fn exercise_readers(bytes: &[u8]) {
    if let Ok(tx) = bbolt::ReadTx::from_bytes(bytes) {
        let _ = bbolt::dump::write_dump_tx(&tx, &mut std::io::sink());
        let _ = bbolt::stats::stats(&tx);
        if let Ok(Some(b)) = tx.bucket(b"key") {
            let mut c = b.cursor();
            let _ = c.last();
            for _ in 0..50 {
                if !matches!(c.prev(), Ok(Some(_))) {
                    break;
                }
            }
            let _ = c.seek(&[0x40]);
            let _ = b.get(&[0, 0, 0, 0, 0, 0, 0, 4]);
        }
    }
}

fn u64_at(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn branch_elem_off(l: &Layout, pgid: u64, i: usize) -> usize {
    pgid as usize * l.ps + page::PAGE_HEADER_SIZE + page::ELEM_SIZE * i
}

fn corpus(sync_freelist: bool) {
    let mut go = GoVerdicts::new();
    let base = build(sync_freelist);
    go.compare(&base, "the clean base");
    let l = layout(&base);
    let flip = |off: usize, bit: u8| {
        let mut b = base.clone();
        b[off] ^= 1 << bit;
        b
    };
    // Each meta: every bit of the meta struct (magic..checksum) is covered by the checksum.
    for m in 0..2usize {
        for off in 16..80 {
            for bit in 0..8 {
                let b = flip(m * l.ps + off, bit);
                let f = findings(&b);
                assert!(
                    f.iter()
                        .any(|x| x.kind == FindingKind::MetaInvalid && x.page == Some(m as u64)),
                    "meta {m} byte {off} bit {bit}: {f:?}"
                );
                // Go on one bit per byte: it falls back to the other meta (accepts) or, when
                // the flip hits the newest meta's fields, may open an older tree.
                if bit == 0 {
                    go.compare(&b, &format!("meta {m} byte {off} bit {bit}"));
                }
            }
        }
    }
    let mut both = flip(20, 0);
    both[l.ps + 20] ^= 1;
    expect(&mut go, &both, FindingKind::NoValidMeta, "both metas");

    // Leaf: header id, flags, element offsets, key order.
    let lo = l.leaf as usize * l.ps;
    for bit in 0..8 {
        expect(
            &mut go,
            &flip(lo, bit),
            FindingKind::InvalidType,
            "leaf id flip",
        );
    }
    for bit in [0, 2, 3, 4, 5, 6, 7] {
        expect(
            &mut go,
            &flip(lo + 8, bit),
            FindingKind::InvalidType,
            "leaf flags flip",
        );
    }
    expect(
        &mut go,
        &flip(lo + 16 + 4 + 3, 7),
        FindingKind::ElementBounds,
        "leaf pos flip",
    );
    expect(
        &mut go,
        &flip(lo + 16 + 8 + 3, 6),
        FindingKind::ElementBounds,
        "leaf ksize flip",
    );
    {
        // Raise key[0]'s first byte above key[1]'s.
        let p = Page::node(&base, l.ps, l.leaf, l.hwm).unwrap();
        let k0 = p.leaf(0).unwrap().key.as_ptr() as usize - base.as_ptr() as usize;
        let mut b = base.clone();
        b[k0] = 0xff;
        expect(&mut go, &b, FindingKind::KeyOrder, "leaf key order");
        // A later key dropping below the parent's branch key for this leaf.
        let k1 = p.leaf(1).unwrap().key.as_ptr() as usize - base.as_ptr() as usize;
        let mut b = base.clone();
        b[k1..k1 + 8].copy_from_slice(&[0; 8]);
        expect(
            &mut go,
            &b,
            FindingKind::KeyOrder,
            "leaf key below the branch key",
        );
    }
    // Branch: child pointers and keys.
    let e1 = branch_elem_off(&l, l.branch, 1);
    expect(
        &mut go,
        &flip(e1 + 8 + 6, 3),
        FindingKind::OutOfBounds,
        "branch child pgid high-bit flip",
    );
    {
        let mut b = base.clone();
        u64_at(&mut b, e1 + 8, l.hwm + 5);
        expect(
            &mut go,
            &b,
            FindingKind::OutOfBounds,
            "child beyond the high-water mark",
        );
        let mut b = base.clone();
        let sib = Page::node(&base, l.ps, l.branch, l.hwm)
            .unwrap()
            .branch(2)
            .unwrap()
            .pgid;
        u64_at(&mut b, e1 + 8, sib);
        expect(
            &mut go,
            &b,
            FindingKind::MultipleReferences,
            "a page referenced twice",
        );
        let mut b = base.clone();
        u64_at(&mut b, e1 + 8, l.key_root);
        expect(
            &mut go,
            &b,
            FindingKind::MultipleReferences,
            "a cycle to the bucket root",
        );
        let mut b = base.clone();
        u64_at(&mut b, e1 + 8, l.branch);
        expect(
            &mut go,
            &b,
            FindingKind::MultipleReferences,
            "a page pointing to itself",
        );
        let p = Page::node(&base, l.ps, l.branch, l.hwm).unwrap();
        let k = p.branch(1).unwrap().key.as_ptr() as usize - base.as_ptr() as usize;
        let mut b = base.clone();
        b[k] = 0xff;
        expect(&mut go, &b, FindingKind::KeyOrder, "branch key order");
    }
    expect(
        &mut go,
        &flip(l.branch as usize * l.ps + 8, 1),
        FindingKind::InvalidType,
        "branch flags flip",
    );
    let re = branch_elem_off(&l, l.key_root, 0);
    expect(
        &mut go,
        &flip(re + 3, 7),
        FindingKind::ElementBounds,
        "root branch pos flip",
    );

    // Freelist page.
    if sync_freelist {
        let fo = l.freelist as usize * l.ps;
        let count = u16::from_le_bytes([base[fo + 10], base[fo + 11]]);
        assert!(count > 0 && count < 0xffff, "the corpus has free pages");
        expect(
            &mut go,
            &flip(fo + 16 + 7, 7),
            FindingKind::FreelistInvalid,
            "freelist id beyond the HWM",
        );
        let mut b = base.clone();
        u64_at(&mut b, fo + 16, l.leaf);
        expect(
            &mut go,
            &b,
            FindingKind::ReachableFreed,
            "freelist lists a reachable page",
        );
        let mut b = base.clone();
        let second = u64::from_le_bytes(base[fo + 24..fo + 32].try_into().unwrap());
        u64_at(&mut b, fo + 16, second);
        expect(
            &mut go,
            &b,
            FindingKind::AlreadyFreed,
            "freelist lists a page twice",
        );
        expect(
            &mut go,
            &flip(fo + 8, 4),
            FindingKind::FreelistInvalid,
            "freelist flags flip",
        );
        let mut b = base.clone();
        b[fo + 10..fo + 12].copy_from_slice(&0xfffeu16.to_le_bytes());
        expect(
            &mut go,
            &b,
            FindingKind::FreelistInvalid,
            "freelist count beyond the page",
        );
        // A page dropped from the freelist is neither reachable nor free.
        let mut b = base.clone();
        b[fo + 10..fo + 12].copy_from_slice(&(count - 1).to_le_bytes());
        expect(
            &mut go,
            &b,
            FindingKind::UnreachableUnfreed,
            "page missing from the freelist",
        );
    }

    // Truncated file.
    let hwm_bytes = l.hwm as usize * l.ps;
    for cut in [hwm_bytes - l.ps, hwm_bytes / 2, 3 * l.ps] {
        expect(
            &mut go,
            &base[..cut],
            FindingKind::FileTruncated,
            "truncated file",
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        std::fs::write(&p, &base[..cut]).unwrap();
        let r = bbolt::check::check_file(&p, &CheckOptions::default()).unwrap();
        assert!(
            r.findings
                .iter()
                .any(|x| x.kind == FindingKind::FileTruncated)
        );
    }
    for cut in [0, 1, 100, l.ps, 2 * l.ps - 1] {
        let f = findings(&base[..cut]);
        assert!(!f.is_empty(), "cut at {cut}");
        go.compare(&base[..cut], &format!("cut at {cut}"));
    }
    go.assert_agree(150);
}

#[test]
fn corpus_with_synced_freelist() {
    corpus(true);
}

#[test]
fn corpus_without_freelist() {
    corpus(false);
}

/// Random mutations of structural and data bytes: the checker and the readers never panic,
/// and any finding names a real kind. Deterministic (xorshift).
#[test]
fn random_mutations_never_panic() {
    let base = build(true);
    let l = layout(&base);
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let n: usize = std::env::var("BBOLT_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    // Go judges the first few hundred too (a Go check costs a process start).
    let mut go = GoVerdicts::new();
    for i in 0..n {
        let mut b = base.clone();
        let pages = l.hwm as usize;
        for _ in 0..(1 + next() % 4) {
            let pg = (next() as usize) % pages;
            // Bias towards headers and element arrays, where the structure is.
            let within = if next() % 2 == 0 {
                (next() as usize) % 128
            } else {
                (next() as usize) % l.ps
            };
            let off = pg * l.ps + within;
            match next() % 3 {
                0 => b[off] ^= 1 << (next() % 8),
                1 => b[off] = next() as u8,
                _ => {
                    if off + 8 <= b.len() {
                        u64_at(&mut b, off, next() % (l.hwm + 10));
                    }
                }
            }
        }
        if next() % 10 == 0 {
            let cut = (next() as usize) % b.len();
            b.truncate(cut);
        }
        let _ = check_bytes(
            &b,
            &CheckOptions {
                max_findings: 100,
                ..Default::default()
            },
        );
        exercise_readers(&b);
        if i < GO_MUTATIONS {
            go.compare(&b, &format!("random mutation {i}"));
        }
    }
    go.assert_agree(GO_MUTATIONS.min(n));
}

/// Random mutations Go's check judges as well.
const GO_MUTATIONS: usize = 300;

/// Every branch element of the key bucket points at the same child on each level (a DAG),
/// with the shared leaf full or empty: the readers must stop with an error instead of
/// walking the exponentially many paths, and the checker reports the double references.
#[test]
fn shared_subtrees_do_not_blow_up() {
    let base = build(false);
    let l = layout(&base);
    for empty_leaf in [false, true] {
        let mut b = base.clone();
        let mut cur = l.key_root;
        loop {
            let p = Page::node(&base, l.ps, cur, l.hwm).unwrap();
            if p.is_leaf() {
                if empty_leaf {
                    let o = cur as usize * l.ps + 10;
                    b[o..o + 2].copy_from_slice(&0u16.to_le_bytes());
                }
                break;
            }
            let child = p.branch(0).unwrap().pgid;
            for i in 0..p.len() {
                u64_at(&mut b, branch_elem_off(&l, cur, i) + 8, child);
            }
            cur = child;
        }
        let start = std::time::Instant::now();
        let mut go = GoVerdicts::new();
        expect(
            &mut go,
            &b,
            FindingKind::MultipleReferences,
            "shared subtree",
        );
        go.assert_agree(1);
        let tx = bbolt::ReadTx::from_bytes(&b).unwrap();
        let mut out = Vec::new();
        let r = bbolt::dump::write_dump_tx(&tx, &mut out);
        // With keys the repetition is refused; with an empty shared leaf the walk is merely
        // bounded (the bucket reads as empty).
        if !empty_leaf {
            assert!(
                r.is_err(),
                "dump of {} lines succeeded",
                out.split(|&c| c == b'\n').count()
            );
        }
        assert!(bbolt::stats::stats(&tx).is_err());
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "took {:?}",
            start.elapsed()
        );
    }
}
