//! The database: both meta pages and what etcd reads at start-up (sanity), or bbolt's complete
//! structural check (full).

use std::fs;
use std::io::Read as _;
use std::path::Path;

use bbolt::check::{CheckOptions, FindingKind, check_file};
use bbolt::{Db, OpenOptions};

use crate::backend::{KEY_BUCKET, META_BUCKET, read_base_state};
use crate::datadir::Layout;

use super::report::{Finding, Report, Verdict};

/// Both meta pages, then the database opens and yields its revision and consistent index.
pub(super) fn check_db_sanity(r: &mut Report, layout: &Layout) -> bool {
    let path = layout.db();
    let mut head = Vec::new();
    // Two metas of the largest page size bbolt accepts.
    let read = fs::File::open(&path).and_then(|f| f.take(2 * 65536).read_to_end(&mut head));
    if let Err(e) = read {
        r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
        return false;
    }
    let (ps, m0, m1) = bbolt::meta::load(&head);
    for (i, m) in [(0u64, &m0), (1, &m1)] {
        if let Err(e) = m {
            let usable = if i == 0 { m1.is_ok() } else { m0.is_ok() };
            r.add(Finding {
                check: "meta",
                verdict: if usable {
                    Verdict::Valid
                } else {
                    Verdict::Corrupt
                },
                file: Some(path.clone()),
                page: Some(i),
                offset: Some(i * u64::from(ps)),
                reason: if usable {
                    format!("meta page {i}: {e}; bbolt uses the other one")
                } else {
                    format!("meta page {i}: {e}")
                },
            });
        }
    }
    if m0.is_err() && m1.is_err() {
        return false;
    }
    let db = match Db::open(&path, OpenOptions::read_only()) {
        Ok(db) => db,
        Err(e) => {
            r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    };
    let tx = db.begin_read();
    match tx.bucket(KEY_BUCKET) {
        Ok(Some(_)) => {}
        Ok(None) => {
            r.problem("db_open", Verdict::Corrupt, &path, "no bucket `key`".into());
            return false;
        }
        Err(e) => {
            r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    }
    let ci = match tx.bucket(META_BUCKET) {
        Ok(Some(m)) => m.get(b"consistent_index"),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    match ci {
        Ok(Some(v)) => match <[u8; 8]>::try_from(v) {
            Ok(b) => r.consistent_index = Some(u64::from_be_bytes(b)),
            Err(_) => {
                r.problem(
                    "db_open",
                    Verdict::Corrupt,
                    &path,
                    format!("meta/consistent_index has {} bytes, not 8", v.len()),
                );
                return false;
            }
        },
        // etcd treats a missing index as 0 (a database that never applied an entry).
        Ok(None) => r.consistent_index = Some(0),
        Err(e) => {
            r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    }
    // etcdbrctl skips the revision comparison in a multi-member cluster: such a member
    // catches up from the leader, so being behind the backups is not a reason to restore it.
    let members = match tx.bucket(crate::restore::MEMBERS_BUCKET) {
        Ok(Some(b)) => count_entries(&b),
        _ => Ok(0),
    };
    match members {
        Ok(n) => r.cluster_size = Some(n),
        Err(e) => {
            r.problem("db_open", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    }
    drop(tx);
    match read_base_state(&db, &path.display().to_string()) {
        Ok(base) => r.db_revision = Some(base.revision),
        Err(e) => {
            r.problem("db_revision", Verdict::Corrupt, &path, e.to_string());
            return false;
        }
    }
    true
}

/// The complete structural check of the bbolt file (what `tx.Check()` does, and more).
pub(super) fn check_db_full(r: &mut Report, path: &Path) {
    match check_file(path, &CheckOptions::default()) {
        Ok(c) => {
            for f in &c.findings {
                // A single bad meta page was reported by the sanity check already; bbolt
                // falls back to the other one.
                if f.kind == FindingKind::MetaInvalid {
                    continue;
                }
                r.add(Finding {
                    check: "bbolt",
                    verdict: Verdict::Corrupt,
                    file: Some(path.to_path_buf()),
                    page: f.page,
                    offset: f.page.map(|p| p.saturating_mul(u64::from(c.page_size))),
                    reason: format!("{}: {}", f.kind.as_str(), f.message),
                });
            }
            if c.suppressed > 0 {
                r.problem(
                    "bbolt",
                    Verdict::Corrupt,
                    path,
                    format!("{} more findings not listed", c.suppressed),
                );
            }
        }
        Err(e) => r.problem("bbolt", Verdict::Corrupt, path, e.to_string()),
    }
}

fn count_entries(b: &bbolt::Bucket<'_>) -> Result<u64, bbolt::Error> {
    let mut c = b.cursor();
    let mut n = 0;
    let mut e = c.first()?;
    while e.is_some() {
        n += 1;
        e = c.next()?;
    }
    Ok(n)
}
