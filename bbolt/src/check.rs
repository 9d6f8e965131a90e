//! Structural checker. Verifies what Go's `tx.Check()` verifies — every page below the
//! high-water mark is reachable exactly once or free, no reachable page is free, page types,
//! pages below the high-water mark, key order inside pages and against the parents' branch
//! keys — and what Go misses: both meta pages, inline buckets, element bounds inside a page,
//! freelist ids in range, runs beyond the end of the file, bucket values. It never stops at the
//! first problem and never panics; memory is two bits per page plus the tree path, and mapped
//! pages are dropped from resident memory as the walk goes on.

use std::fmt;
use std::fs::File;
use std::path::Path;

use crate::bitmap::Bitmap;
use crate::error::{Corruption, Error, Result};
use crate::file::MappedFile;
use crate::meta::{self, Meta};
use crate::page::{self, BUCKET_HEADER_SIZE, Page};

/// Kinds of findings. `as_str` gives stable names for machine-readable output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FindingKind {
    /// A meta page fails validation (the other one may still be usable).
    MetaInvalid,
    /// Neither meta page is usable; nothing else was checked.
    NoValidMeta,
    /// The file is shorter than the high-water mark says.
    FileTruncated,
    /// A page run reaches the high-water mark or lies beyond the end of the file.
    OutOfBounds,
    /// A page is referenced more than once (or a cycle).
    MultipleReferences,
    /// A page has the wrong type, or its header names another id.
    InvalidType,
    /// An element array, key or value lies outside its page, or a key is empty.
    ElementBounds,
    /// Keys are not strictly increasing, or fall outside the parent's branch keys.
    KeyOrder,
    /// A bucket value (header or inline page) is malformed.
    BadBucket,
    /// The freelist page is unreadable or lists ids outside [2, HWM).
    FreelistInvalid,
    /// A page id is listed twice in the freelist.
    AlreadyFreed,
    /// A page is both reachable and listed as free.
    ReachableFreed,
    /// A page below the high-water mark is neither reachable nor free.
    UnreachableUnfreed,
    /// The tree is deeper than any real tree can be.
    TooDeep,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::MetaInvalid => "meta_invalid",
            FindingKind::NoValidMeta => "no_valid_meta",
            FindingKind::FileTruncated => "file_truncated",
            FindingKind::OutOfBounds => "out_of_bounds",
            FindingKind::MultipleReferences => "multiple_references",
            FindingKind::InvalidType => "invalid_type",
            FindingKind::ElementBounds => "element_bounds",
            FindingKind::KeyOrder => "key_order",
            FindingKind::BadBucket => "bad_bucket",
            FindingKind::FreelistInvalid => "freelist_invalid",
            FindingKind::AlreadyFreed => "already_freed",
            FindingKind::ReachableFreed => "reachable_freed",
            FindingKind::UnreachableUnfreed => "unreachable_unfreed",
            FindingKind::TooDeep => "too_deep",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub page: Option<u64>,
    pub kind: FindingKind,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.page {
            Some(p) => write!(f, "page {p}: {}: {}", self.kind, self.message),
            None => write!(f, "{}: {}", self.kind, self.message),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Findings beyond this many are counted in `suppressed` but not kept.
    pub max_findings: usize,
    /// Bytes of mapped pages touched before they are dropped (0 = never).
    pub mapped_budget: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_findings: 10_000,
            mapped_budget: 8 << 20,
        }
    }
}

/// Everything the checker found, plus what it looked at.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub findings: Vec<Finding>,
    /// Findings not kept because of `max_findings`.
    pub suppressed: u64,
    pub page_size: u32,
    /// The meta that was checked (the current one), if any is valid.
    pub meta: Option<Meta>,
    pub file_len: u64,
    /// Branch and leaf pages visited (runs count once).
    pub pages_visited: u64,
    pub buckets: u64,
    pub keys: u64,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.suppressed == 0
    }
}

/// Checks the database file at `path`. Errors only when the file cannot be opened or
/// mapped; everything wrong inside it is a finding.
pub fn check_file(path: &Path, opts: &CheckOptions) -> Result<CheckReport> {
    let io = |op| {
        move |source| Error::Io {
            path: path.to_path_buf(),
            op,
            offset: 0,
            source,
        }
    };
    let file = File::open(path).map_err(io("open"))?;
    let map = MappedFile::map(&file, opts.mapped_budget).map_err(io("mmap"))?;
    let r = check_inner(map.bytes(), Some(&map), opts);
    map.release();
    Ok(r)
}

/// Checks a database image in memory.
pub fn check_bytes(data: &[u8], opts: &CheckOptions) -> CheckReport {
    check_inner(data, None, opts)
}

struct Checker<'a> {
    data: &'a [u8],
    ps: usize,
    hwm: u64,
    touch: Option<&'a MappedFile>,
    reachable: Bitmap,
    freed: Bitmap,
    report: CheckReport,
    max: usize,
}

/// A page being walked, with the key range its keys must fall in.
struct Frame<'a> {
    page: Page<'a>,
    lo: Option<&'a [u8]>,
    hi: Option<&'a [u8]>,
    next: usize,
    prev: Option<&'a [u8]>,
    depth: usize,
}

fn kind_of(c: &Corruption) -> FindingKind {
    match c {
        Corruption::BeyondEof { .. } | Corruption::BeyondHwm { .. } => FindingKind::OutOfBounds,
        Corruption::MetaId | Corruption::IdMismatch { .. } | Corruption::BadType { .. } => {
            FindingKind::InvalidType
        }
        Corruption::ElementArray { .. }
        | Corruption::ElementBounds { .. }
        | Corruption::EmptyKey { .. }
        | Corruption::EmptyBranch => FindingKind::ElementBounds,
        Corruption::BucketValue { .. } | Corruption::BucketRoot { .. } | Corruption::Inline(_) => {
            FindingKind::BadBucket
        }
        Corruption::TooDeep(_) => FindingKind::TooDeep,
        Corruption::SharedPage => FindingKind::MultipleReferences,
        Corruption::Freelist(_) => FindingKind::FreelistInvalid,
        Corruption::DoubleFree(_) => FindingKind::AlreadyFreed,
        Corruption::KeyOrder { .. } => FindingKind::KeyOrder,
        Corruption::ValueKind { .. } => FindingKind::BadBucket,
    }
}

/// Byte-wise comparison with an 8-byte big-endian prefix step (most keys differ there).
#[inline]
fn fast_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if let (Some(x), Some(y)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
    }
    a.cmp(b)
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b.iter().take(64) {
        s.push_str(&format!("{x:02x}"));
    }
    if b.len() > 64 {
        s.push('…');
    }
    s
}

impl<'a> Checker<'a> {
    fn add(&mut self, page: Option<u64>, kind: FindingKind, message: String) {
        if self.report.findings.len() < self.max {
            self.report.findings.push(Finding {
                page,
                kind,
                message,
            });
        } else {
            self.report.suppressed += 1;
        }
    }

    fn add_err(&mut self, e: Error) {
        match e {
            Error::Corrupt { page, offset, kind } => {
                let k = kind_of(&kind);
                self.add(Some(page), k, format!("{kind} (byte offset {offset})"))
            }
            other => self.add(None, FindingKind::ElementBounds, other.to_string()),
        }
    }

    /// Marks a page run as reachable; false when it was already (do not descend again).
    fn mark(&mut self, id: u64, overflow: u32, from: Option<u64>) -> bool {
        let mut fresh = true;
        for p in id..=id.saturating_add(u64::from(overflow)) {
            if p >= self.hwm {
                break;
            }
            if self.reachable.set(p) {
                fresh = false;
                let via = from
                    .map(|f| format!(" (again from page {f})"))
                    .unwrap_or_default();
                self.add(
                    Some(p),
                    FindingKind::MultipleReferences,
                    format!("multiple references{via}"),
                );
            }
            if self.freed.get(p) {
                self.add(
                    Some(p),
                    FindingKind::ReachableFreed,
                    "reachable but listed in the freelist".into(),
                );
            }
        }
        fresh
    }

    fn check_freelist(&mut self, meta: &Meta) {
        let id = meta.freelist;
        match page::page_run(self.data, self.ps, id, self.hwm) {
            Err(e) => self.add_err(e),
            Ok((h, bytes)) => {
                self.mark(id, h.overflow, None);
                if let Some(t) = self.touch {
                    t.touch_slice(bytes);
                }
                match page::freelist_ids(bytes, &h) {
                    Err(what) => self.add(Some(id), FindingKind::FreelistInvalid, what.to_string()),
                    Ok(ids) => {
                        let run_end = id + u64::from(h.overflow);
                        for fid in ids {
                            if fid < 2 || fid >= self.hwm {
                                self.add(
                                    Some(id),
                                    FindingKind::FreelistInvalid,
                                    format!("lists page {fid}, outside [2, {})", self.hwm),
                                );
                            } else if (id..=run_end).contains(&fid) {
                                self.add(
                                    Some(fid),
                                    FindingKind::FreelistInvalid,
                                    "the freelist lists its own page".into(),
                                );
                            } else if self.freed.set(fid) {
                                self.add(
                                    Some(fid),
                                    FindingKind::AlreadyFreed,
                                    "listed twice in the freelist".into(),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    fn open_page(&mut self, id: u64, from: Option<u64>, depth: usize) -> Option<Page<'a>> {
        if depth > page::MAX_DEPTH {
            self.add(
                Some(id),
                FindingKind::TooDeep,
                format!("tree deeper than {} levels", page::MAX_DEPTH),
            );
            return None;
        }
        // Mark before validating the contents so a bad page is not also "unreachable".
        let header = page::page_run(self.data, self.ps, id, self.hwm);
        match header {
            Err(e) => {
                if let Error::Corrupt {
                    kind: Corruption::IdMismatch { .. } | Corruption::BeyondHwm { .. },
                    ..
                } = &e
                    && id < self.hwm
                    && id >= 2
                {
                    self.mark(id, 0, from);
                }
                self.add_err(e);
                None
            }
            Ok((h, _)) => {
                if !self.mark(id, h.overflow, from) {
                    return None;
                }
                match Page::node(self.data, self.ps, id, self.hwm) {
                    Ok(p) => {
                        self.report.pages_visited += 1;
                        if let Some(t) = self.touch {
                            t.touch_slice(p.bytes);
                        }
                        Some(p)
                    }
                    Err(e) => {
                        self.add_err(e);
                        None
                    }
                }
            }
        }
    }

    fn key_order(
        &mut self,
        p: &Page<'a>,
        i: usize,
        key: &'a [u8],
        prev: Option<&'a [u8]>,
        lo: Option<&'a [u8]>,
        hi: Option<&'a [u8]>,
    ) {
        let what = if p.is_leaf() { "leaf" } else { "branch" };
        let mut broken = false;
        if let Some(pk) = prev {
            if fast_cmp(key, pk).is_le() {
                broken = true;
                self.add(
                    Some(p.id),
                    FindingKind::KeyOrder,
                    format!(
                        "{what} key[{i}]={} is not greater than key[{}]={}",
                        hex(key),
                        i - 1,
                        hex(pk)
                    ),
                );
            }
        } else if let Some(l) = lo
            && key < l
        {
            self.add(
                Some(p.id),
                FindingKind::KeyOrder,
                format!(
                    "{what} key[{i}]={} is below the parent's branch key {}",
                    hex(key),
                    hex(l)
                ),
            );
        }
        // Keys in order inside the page are all below `hi` when the last one is.
        if let Some(h) = hi
            && (broken || i + 1 == p.len())
            && fast_cmp(key, h).is_ge()
        {
            self.add(
                Some(p.id),
                FindingKind::KeyOrder,
                format!(
                    "{what} key[{i}]={} is not below the next branch key {} of the parent",
                    hex(key),
                    hex(h)
                ),
            );
        }
    }

    /// Checks the tree of one bucket, and (depth first) the buckets in it.
    fn walk_tree(&mut self, root: u64, from: Option<u64>, nesting: usize) {
        if nesting > page::MAX_DEPTH {
            self.add(
                Some(root),
                FindingKind::TooDeep,
                "buckets nested too deeply".into(),
            );
            return;
        }
        self.report.buckets += 1;
        let Some(p) = self.open_page(root, from, 0) else {
            return;
        };
        let mut stack = vec![Frame {
            page: p,
            lo: None,
            hi: None,
            next: 0,
            prev: None,
            depth: 0,
        }];
        while let Some(top) = stack.last_mut() {
            let p = top.page;
            let i = top.next;
            if i >= p.len() {
                stack.pop();
                continue;
            }
            top.next += 1;
            let (lo, hi, prev, depth) = (top.lo, top.hi, top.prev, top.depth);
            if p.is_leaf() {
                match p.leaf(i) {
                    Err(e) => self.add_err(e),
                    Ok(e) => {
                        if let Some(t) = stack.last_mut() {
                            t.prev = Some(e.key);
                        }
                        self.key_order(&p, i, e.key, prev, lo, hi);
                        if e.is_bucket() {
                            self.check_bucket_value(&p, i, e.value, nesting);
                        } else {
                            self.report.keys += 1;
                        }
                    }
                }
            } else {
                match p.branch(i) {
                    Err(e) => self.add_err(e),
                    Ok(e) => {
                        if let Some(t) = stack.last_mut() {
                            t.prev = Some(e.key);
                        }
                        self.key_order(&p, i, e.key, prev, lo, hi);
                        // The child's range: [this key, next key) (or the parent's bound).
                        let next_key = if i + 1 < p.len() {
                            p.branch(i + 1).ok().map(|b| b.key)
                        } else {
                            hi
                        };
                        let next_key = next_key.or(hi);
                        if let Some(c) = self.open_page(e.pgid, Some(p.id), depth + 1) {
                            stack.push(Frame {
                                page: c,
                                lo: Some(e.key),
                                hi: next_key,
                                next: 0,
                                prev: None,
                                depth: depth + 1,
                            });
                        }
                    }
                }
            }
        }
    }

    fn check_bucket_value(&mut self, p: &Page<'a>, i: usize, value: &'a [u8], nesting: usize) {
        let Some((root, _seq, inline)) = page::bucket_value(value) else {
            self.add(
                Some(p.id),
                FindingKind::BadBucket,
                format!(
                    "element {i}: bucket value of {} bytes is shorter than its header",
                    value.len()
                ),
            );
            return;
        };
        match inline {
            None => {
                if value.len() != BUCKET_HEADER_SIZE {
                    self.add(
                        Some(p.id),
                        FindingKind::BadBucket,
                        format!(
                            "element {i}: paged bucket value has {} bytes, not 16",
                            value.len()
                        ),
                    );
                }
                if root < 2 || root >= self.hwm {
                    self.add(
                        Some(p.id),
                        FindingKind::BadBucket,
                        format!(
                            "element {i}: bucket root page {root} outside [2, {})",
                            self.hwm
                        ),
                    );
                    return;
                }
                self.walk_tree(root, Some(p.id), nesting + 1);
            }
            Some(bytes) => {
                self.report.buckets += 1;
                let off = p.file_off
                    + (bytes.as_ptr() as usize).saturating_sub(p.bytes.as_ptr() as usize) as u64;
                let ip = match Page::inline(bytes, p.id, off) {
                    Ok(ip) => ip,
                    Err(e) => {
                        self.add_err(e);
                        return;
                    }
                };
                let mut prev: Option<&[u8]> = None;
                for j in 0..ip.len() {
                    match ip.leaf(j) {
                        Err(e) => self.add_err(e),
                        Ok(e) => {
                            if prev.is_some_and(|pk| e.key <= pk) {
                                self.add(Some(p.id), FindingKind::KeyOrder, format!("inline bucket in element {i}: key[{j}]={} is not greater than the previous key", hex(e.key)));
                            }
                            prev = Some(e.key);
                            if e.is_bucket() {
                                self.add(
                                    Some(p.id),
                                    FindingKind::BadBucket,
                                    format!(
                                        "inline bucket in element {i} contains a bucket (key {})",
                                        hex(e.key)
                                    ),
                                );
                            } else {
                                self.report.keys += 1;
                            }
                        }
                    }
                }
            }
        }
    }
}

fn check_inner(data: &[u8], touch: Option<&MappedFile>, opts: &CheckOptions) -> CheckReport {
    let (ps, m0, m1) = meta::load(data);
    let mut report = CheckReport {
        page_size: ps,
        file_len: data.len() as u64,
        ..Default::default()
    };
    let mut c = Checker {
        data,
        ps: ps as usize,
        hwm: 0,
        touch,
        reachable: Bitmap::new(0),
        freed: Bitmap::new(0),
        report: std::mem::take(&mut report),
        max: opts.max_findings.max(1),
    };
    for (i, m) in [&m0, &m1].into_iter().enumerate() {
        if let Err(e) = m {
            c.add(
                Some(i as u64),
                FindingKind::MetaInvalid,
                format!("meta {i}: {e}"),
            );
        }
    }
    let meta = match meta::choose(m0, m1) {
        Ok(m) => m,
        Err(_) => {
            c.add(
                None,
                FindingKind::NoValidMeta,
                "neither meta page is valid; nothing else was checked".into(),
            );
            return c.report;
        }
    };
    c.report.meta = Some(meta);
    c.hwm = meta.pgid;
    let need = meta.pgid.saturating_mul(u64::from(ps));
    if (data.len() as u64) < need {
        c.add(
            None,
            FindingKind::FileTruncated,
            format!(
                "file has {} bytes but the high-water mark {} needs {need}",
                data.len(),
                meta.pgid
            ),
        );
    }
    // Only pages inside the file can be reached (others fail as out of bounds), so the
    // bitmaps cover the file even when a damaged meta claims a huge high-water mark.
    let file_pages = (data.len() as u64 / u64::from(ps)).max(2);
    let bits = meta.pgid.min(file_pages);
    c.reachable = Bitmap::new(bits);
    c.reachable.set(0);
    c.reachable.set(1);
    let synced = meta.has_freelist();
    c.freed = Bitmap::new(if synced { bits } else { 0 });
    if synced {
        c.check_freelist(&meta);
    }
    c.walk_tree(meta.root, None, 0);
    c.report.buckets = c.report.buckets.saturating_sub(1);
    if synced {
        let upto = meta.pgid.min(bits);
        for id in 2..upto {
            if !c.reachable.get(id) && !c.freed.get(id) {
                c.add(
                    Some(id),
                    FindingKind::UnreachableUnfreed,
                    "neither reachable nor in the freelist".into(),
                );
            }
        }
    }
    c.report
}
