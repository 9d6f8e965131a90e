//! The compacted snapshot as other readers see it. `compact` compresses on every core: gzip as
//! one member per chunk, zstd as one frame per chunk (src/snapstore/codec.rs). These tests
//! hold that output to
//!
//! * Go's `compress/gzip`, read exactly as etcdbrctl restores a full snapshot
//!   (`bboltoracle verify-snapshot`: `gzip.NewReader`, whose multistream default reads every
//!   member, then etcd's trailer rule: size % 512 == 32, sha256 of the rest), and bbolt
//!   1.3.6's `tx.Check()` of the database Go decompressed;
//! * our restore of it, served by a real etcd 3.5.1 with the oracle's key space;
//! * the same bytes whatever the number of threads;
//! * `--compression-level`, checked per codec before any work.
//!
//! The committed fixtures are small, so the hidden `--compression-chunk 4096` cuts them into
//! dozens of members (the default is 1 MiB); each check also runs on a broken copy to show
//! that it can fail.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use testkit::{Cli, EtcdBins, EtcdConfig, EtcdProcess, Fixture, GoOracle, tempfile};

const CLI: Cli = Cli(env!("CARGO_BIN_EXE_etcd-restore"));
const CHUNK: u64 = 4096;

fn store_copy(f: &Fixture, dir: &Path) -> PathBuf {
    let dst = dir.join("store");
    testkit::tree::copy_dir(&f.store(), &dst).unwrap();
    dst
}

fn compact(store: &Path, temp: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    CLI.compact(store, temp, extra)
}

/// A compaction that must succeed; returns the report and the object's path.
#[track_caller]
fn compact_ok(store: &Path, temp: &Path, extra: &[&str]) -> (serde_json::Value, PathBuf) {
    let (code, r, err) = compact(store, temp, extra);
    assert_eq!(code, 0, "compact {extra:?}: {err}");
    assert_eq!(r["verified"], true, "{r}");
    let object = store.join(r["object"].as_str().expect("object"));
    (r, object)
}

/// `bboltoracle verify-snapshot FILE [DBOUT]`: (exit code, JSON, stderr).
fn go_verify(
    go: &GoOracle,
    object: &Path,
    db_out: Option<&Path>,
) -> (i32, serde_json::Value, String) {
    let mut c = Command::new(go.path());
    c.arg("verify-snapshot").arg(object);
    if let Some(d) = db_out {
        c.arg(d);
    }
    let out = c.output().expect("run bboltoracle");
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn v2_names(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join("v2"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn go_reads_the_multi_member_gzip_snapshot_as_etcdbrctl_restores_it_and_etcd_serves_it() {
    let Some(go) = GoOracle::get() else {
        return;
    };
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_copy(&f, tmp.path());
    let chunk = CHUNK.to_string();
    let (r, object) = compact_ok(
        &store,
        &tmp.path().join("work"),
        &[
            "--compression",
            "gzip",
            "--compression-chunk",
            &chunk,
            "--compression-threads",
            "3",
        ],
    );
    assert_eq!(r["compression_threads"], 3);
    let bytes = std::fs::read(&object).unwrap();
    assert_eq!(r["object_bytes"], bytes.len() as u64);
    assert_eq!(
        r["object_sha256"],
        sha256_hex(&bytes),
        "object hash taken while writing"
    );

    // Go, as etcdbrctl: every member read, the trailer matches the db it decompressed.
    let go_db = tmp.path().join("go.db");
    let (code, v, err) = go_verify(&go, &object, Some(&go_db));
    assert_eq!(code, 0, "Go refused our gzip snapshot: {err}");
    let db_bytes = r["fold"]["bytes_out"].as_u64().unwrap();
    assert_eq!(v["codec"], "gzip");
    assert_eq!(v["db_bytes"], db_bytes);
    assert_eq!(v["sha256"], r["db_sha256"]);
    let members = (db_bytes + 32).div_ceil(CHUNK);
    assert!(
        members > 10,
        "only {members} members: the test proves nothing"
    );
    assert_eq!(v["gzip_members"], members);
    let check = go.check(&go_db).unwrap();
    assert!(
        check.ok,
        "bbolt 1.3.6 tx.Check() of the db Go decompressed: {}",
        check.output
    );

    // The same check refuses broken copies, so the pass above is not vacuous.
    let broken = |name: &str, data: &[u8]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, data).unwrap();
        go_verify(&go, &p, None)
    };
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let (code, _, err) = broken("flipped.gz", &flipped);
    assert_eq!(code, 1, "a flipped byte went unnoticed: {err}");
    let (code, _, err) = broken("cut.gz", &bytes[..bytes.len() - 40]);
    assert_eq!(code, 1, "a cut-off last member went unnoticed: {err}");
    // A well-formed multi-member stream whose trailer is not the db's hash.
    let mut plain = Vec::new();
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .read_to_end(&mut plain)
        .unwrap();
    let last = plain.len() - 1;
    plain[last] ^= 1;
    let par = etcd_restore::snapstore::codec::Parallelism {
        threads: 2,
        chunks_in_flight: 4,
        chunk: CHUNK as usize,
    };
    let wrong = etcd_restore::snapstore::codec::compress_parallel(
        etcd_restore::snapstore::Compression::Gzip,
        None,
        &plain[..],
        Vec::new(),
        par,
    )
    .unwrap();
    let (code, _, err) = broken("wrong-trailer.gz", &wrong);
    assert_eq!(code, 1, "a wrong trailer went unnoticed");
    assert!(err.contains("expected sha256"), "{err}");

    // Our restore picks the new snapshot; real etcd serves the oracle's key space from it,
    // compacted at the last revision, with the HashKV we compute offline.
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let dir = tmp.path().join("restored.etcd");
    let out = CLI.restore(&store, &dir, &["--keep-unknown-leases", "--json"]);
    let rr: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let name = r["object"].as_str().unwrap().trim_start_matches("v2/");
    assert!(
        rr["replay"]["base"]
            .as_str()
            .unwrap_or_default()
            .ends_with(name),
        "restore did not pick the compacted snapshot {name}: {}",
        rr["replay"]["base"]
    );
    let (ours, _) = CLI.hashkv(&dir);
    let etcd = EtcdProcess::start(&bins, EtcdConfig::new(&dir)).unwrap();
    f.oracle
        .assert_matches_compacted(&etcd, f.oracle.final_revision);
    assert_eq!(
        etcd.hashkv(None).unwrap().hash,
        ours,
        "HashKV: etcd vs ours"
    );
}

#[test]
fn output_bytes_do_not_depend_on_the_number_of_threads() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let chunk = CHUNK.to_string();
    for codec in ["gzip", "zstd"] {
        let mut objects = Vec::new();
        for threads in ["1", "2", "5"] {
            let dir = tmp.path().join(format!("{codec}-{threads}"));
            let store = store_copy(&f, &dir);
            let (r, object) = compact_ok(
                &store,
                &dir.join("work"),
                &[
                    "--compression",
                    codec,
                    "--compression-chunk",
                    &chunk,
                    "--compression-threads",
                    threads,
                ],
            );
            // Small chunks: the memory bound leaves every thread asked for.
            assert_eq!(r["compression_threads"].to_string(), threads);
            objects.push(std::fs::read(object).unwrap());
        }
        assert!(objects[0].len() as u64 > 3 * CHUNK / 4);
        assert!(
            objects.iter().all(|o| *o == objects[0]),
            "{codec}: the object's bytes depend on the thread count"
        );
    }
}

#[test]
fn zstd_frames_restore_and_go_says_it_cannot_read_them() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let gz_store = store_copy(&f, &tmp.path().join("gz"));
    compact_ok(
        &gz_store,
        &tmp.path().join("gz/work"),
        &["--compression", "gzip"],
    );
    let zst_store = store_copy(&f, &tmp.path().join("zst"));
    let chunk = CHUNK.to_string();
    let (r, object) = compact_ok(
        &zst_store,
        &tmp.path().join("zst/work"),
        &[
            "--compression",
            "zstd",
            "--compression-level",
            "19",
            "--compression-chunk",
            &chunk,
        ],
    );
    assert_eq!(r["compression"], "zstd");
    assert_eq!(r["compression_level"], 19);
    assert!(object.to_string_lossy().ends_with(".zst"));
    // etcdbrctl has no zstd; the oracle says so rather than passing or failing it.
    if let Some(go) = GoOracle::get() {
        let (code, _, err) = go_verify(&go, &object, None);
        assert_eq!(code, 4, "{err}");
    }
    // An independent zstd decoder, when installed: every frame read, the trailer is the db's.
    if let Ok(out) = Command::new("zstd").arg("-dc").arg(&object).output() {
        assert!(
            out.status.success(),
            "zstd -dc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (db, trailer) = out.stdout.split_at(out.stdout.len() - 32);
        assert_eq!(out.stdout.len() % 512, 32);
        assert_eq!(sha256_hex(db), r["db_sha256"]);
        assert_eq!(
            sha256_hex(db),
            trailer
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }
    // Our restore reads the frames into the same database the gzip snapshot gives.
    let a = tmp.path().join("gz.etcd");
    let b = tmp.path().join("zst.etcd");
    CLI.restore(&gz_store, &a, &["--keep-unknown-leases"]);
    CLI.restore(&zst_store, &b, &["--keep-unknown-leases"]);
    assert_eq!(CLI.hashkv(&a), CLI.hashkv(&b));
    assert_eq!(
        CLI.hashkv(&b).1,
        f.oracle.final_revision,
        "compacted at the last revision"
    );
}

#[test]
fn compression_levels_are_checked_per_codec_before_any_work() {
    let f = Fixture::load("3.5.1", "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_copy(&f, tmp.path());
    let before = v2_names(&store);
    let work = tmp.path().join("work");
    for (extra, why) in [
        (
            vec!["--compression", "gzip", "--compression-level", "10"],
            "gzip is 0..=9",
        ),
        (
            vec!["--compression", "zlib", "--compression-level", "-1"],
            "zlib is 0..=9",
        ),
        (
            vec!["--compression", "zstd", "--compression-level", "23"],
            "zstd tops at 22",
        ),
        (
            vec!["--compression", "lzw", "--compression-level", "1"],
            "lzw has no levels",
        ),
        (
            vec!["--compression", "none", "--compression-level", "1"],
            "none has no levels",
        ),
        // The codec comes from the plan (the fixture's last delta is zlib): checked all the same.
        (
            vec!["--compression-level", "12"],
            "the plan's zlib is 0..=9",
        ),
    ] {
        let (code, _, err) = compact(&store, &work, &extra);
        assert_eq!(code, 2, "{why}: {extra:?}: {err}");
        assert!(err.contains("compression level"), "{why}: {err}");
        assert_eq!(v2_names(&store), before, "{why}: something was uploaded");
    }
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "a refused level must not leave work behind"
    );
    // Valid levels are used: level 1 and level 9 give different objects, both restorable.
    // The plan's codec here is zlib, a single stream: one thread.
    let mut sizes = Vec::new();
    for level in ["1", "9"] {
        let dir = tmp.path().join(format!("l{level}"));
        let store = store_copy(&f, &dir);
        let (r, object) = compact_ok(&store, &dir.join("work"), &["--compression-level", level]);
        assert_eq!(r["compression"], "zlib");
        assert_eq!(r["compression_threads"], 1);
        assert_eq!(r["compression_level"].to_string(), level);
        sizes.push(std::fs::metadata(object).unwrap().len());
        let out = dir.join("restored.etcd");
        CLI.restore(&store, &out, &["--keep-unknown-leases"]);
        assert_eq!(CLI.hashkv(&out).1, f.oracle.final_revision);
    }
    assert!(
        sizes[1] < sizes[0],
        "level 9 ({}) not smaller than level 1 ({})",
        sizes[1],
        sizes[0]
    );
}

/// The check that replaced the read-back: an upload whose bytes are not what the compressor
/// wrote is aborted before it completes, so nothing appears under the name; the right bytes
/// complete.
#[test]
fn an_upload_that_reads_other_bytes_than_were_written_creates_nothing() {
    use etcd_restore::snapstore::store::Expected;
    use etcd_restore::snapstore::{Store, StoreError};
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("packed");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let sha: [u8; 32] = Sha256::digest(&data).into();
    let store = Store::from_object_store(
        std::sync::Arc::new(object_store::memory::InMemory::new()),
        "p",
        "memory",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut other = sha;
        other[0] ^= 1;
        for (name, expected) in [
            (
                "v2/wrong-hash",
                Expected {
                    bytes: data.len() as u64,
                    sha256: other,
                },
            ),
            (
                "v2/wrong-size",
                Expected {
                    bytes: data.len() as u64 + 1,
                    sha256: sha,
                },
            ),
        ] {
            let e = store
                .put_multipart_file_expecting(name, &file, 1 << 20, 2, &expected)
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::Unexpected { .. }), "{name}: {e}");
            assert!(!store.exists(name).await.unwrap(), "{name} was created");
        }
        let right = Expected {
            bytes: data.len() as u64,
            sha256: sha,
        };
        let n = store
            .put_multipart_file_expecting("v2/right", &file, 1 << 20, 2, &right)
            .await
            .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(
            store.head("v2/right").await.unwrap().size,
            data.len() as u64
        );
    });
}
