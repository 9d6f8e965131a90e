//! Codecs against Go's own compress/* bytes (the Go oracle), and corrupted inputs built from the
//! real-etcd fixtures: every corruption must end in a typed error that names the object, never
//! in a panic or in silently different events.

use std::convert::Infallible;
use std::path::Path;

use etcd_restore::snapstore::{
    CodecError, Compression, DeltaError, FetchError, Kind, PlanOptions, Prefetcher, Snapshot,
    Store, StoreArgs, decode_delta, decompress_vec, fetch_full, plan,
};
use testkit::objstore::MotoServer;
use testkit::{ETCD_VERSIONS, Fixture, GoOracle};

fn go_name(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "gzip",
        Compression::Zlib => "zlib",
        Compression::Lzw => "lzw",
        _ => unreachable!(),
    }
}

/// Inputs that stress each codec differently: empty, one byte, text, incompressible, long runs
/// (LZW table resets), and a real delta.
fn codec_inputs() -> Vec<(String, Vec<u8>)> {
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut random = vec![0u8; 300_000];
    for b in random.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    let text: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("/registry/pods/ns-{}/pod-{i}\n", i % 13).into_bytes())
        .collect();
    let f = Fixture::load(ETCD_VERSIONS[0], "basic").unwrap();
    let delta = f
        .oracle
        .objects
        .iter()
        .find(|o| !o.is_full() && o.compression == "none")
        .unwrap();
    vec![
        ("empty".into(), Vec::new()),
        ("one byte".into(), vec![42]),
        ("text".into(), text),
        ("random".into(), random),
        ("zeros".into(), vec![0u8; 5_000_000]),
        ("delta".into(), std::fs::read(f.object_path(delta)).unwrap()),
    ]
}

#[test]
fn go_compressed_bytes_decode() {
    let Some(go) = GoOracle::get() else { return };
    for (what, data) in codec_inputs() {
        for c in [Compression::Gzip, Compression::Zlib, Compression::Lzw] {
            let z = go.compress(go_name(c), &data).unwrap();
            let back = decompress_vec(c, &z, "o").unwrap_or_else(|e| panic!("{what} {c}: {e}"));
            assert!(back == data, "{what} {c}: differs");
        }
    }
    // Go's gzip reader accepts concatenated members; so must we.
    let mut two = go.compress("gzip", b"first ").unwrap();
    two.extend(go.compress("gzip", b"second").unwrap());
    assert_eq!(
        decompress_vec(Compression::Gzip, &two, "o").unwrap(),
        b"first second"
    );
}

#[test]
fn our_compressed_bytes_decode_in_go() {
    let Some(go) = GoOracle::get() else { return };
    for (what, data) in codec_inputs() {
        for c in [Compression::Gzip, Compression::Zlib, Compression::Lzw] {
            let z = etcd_restore::snapstore::compress_to(c, data.as_slice(), Vec::new()).unwrap();
            let back = go.decompress(go_name(c), &z).unwrap();
            assert!(back == data, "{what} {c}: Go reads something else");
        }
    }
}

#[test]
fn go_rejects_what_we_reject_on_truncated_lzw() {
    let Some(go) = GoOracle::get() else { return };
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 7) as u8).collect();
    let z = go.compress("lzw", &data).unwrap();
    let cut = &z[..z.len() - 3];
    assert!(decompress_vec(Compression::Lzw, cut, "o").is_err());
    assert!(
        go.decompress("lzw", cut).is_err(),
        "Go accepted a truncated stream"
    );
}

fn local_store(dir: &Path) -> Store {
    let args = StoreArgs {
        store: Some(dir.display().to_string()),
        ..StoreArgs::default()
    };
    Store::open(&args.resolve_with(&|_| None).unwrap()).unwrap()
}

/// What the restore pipeline makes of a delta file: its events, or the error text.
fn delta_outcome(
    path: &Path,
    name: &str,
    compression: Compression,
) -> Result<Vec<etcd_restore::snapstore::OwnedEvent>, String> {
    let raw = std::fs::read(path).unwrap();
    let data = match decompress_vec(compression, &raw, name) {
        Ok(d) => d,
        Err(e) => {
            assert!(matches!(e, CodecError::Corrupt { .. }), "{e}");
            return Err(e.to_string());
        }
    };
    let mut events = Vec::new();
    match decode_delta(&data, name, |e| {
        events.push(etcd_restore::snapstore::OwnedEvent::from(e));
        Ok::<(), Infallible>(())
    }) {
        Ok(_) => Ok(events),
        Err(e) => {
            assert!(e.offset().is_some() || matches!(e, DeltaError::TooShort { .. }));
            Err(e.to_string())
        }
    }
}

fn snapshot_of(store: &Store, rt: &tokio::runtime::Runtime, path: &str) -> Snapshot {
    let listing = rt.block_on(store.list_snapshots()).unwrap();
    listing
        .snapshots
        .into_iter()
        .find(|s| s.path == path)
        .unwrap()
}

fn positions(len: usize) -> Vec<usize> {
    let mut v = vec![
        0,
        1,
        2,
        5,
        10,
        len / 4,
        len / 3,
        len / 2,
        2 * len / 3,
        len - 40,
        len - 33,
    ];
    v.extend([len - 32, len - 20, len - 2, len - 1]);
    v.retain(|&p| p < len);
    v.sort();
    v.dedup();
    v
}

#[test]
fn corrupted_deltas_are_named_errors() {
    let f = Fixture::load(ETCD_VERSIONS[0], "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = std::collections::BTreeSet::new();
    for o in f.oracle.objects.iter().filter(|o| !o.is_full()) {
        let c = match o.compression.as_str() {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "zlib" => Compression::Zlib,
            "lzw" => Compression::Lzw,
            other => panic!("{other}"),
        };
        if !checked.insert(c.as_str()) {
            continue;
        }
        let original = std::fs::read(f.object_path(o)).unwrap();
        let name = o.path.as_str();
        let good = delta_outcome(&f.object_path(o), name, c).unwrap();
        let bad = tmp.path().join("bad");
        // Flipped bytes everywhere: in the compressed stream, the JSON, the hash. Either a
        // named error, or (for bytes no checksum covers, such as gzip's MTIME header field)
        // exactly the original events.
        let mut errors = 0;
        for pos in positions(original.len()) {
            for mask in [0x01u8, 0x80] {
                let mut b = original.clone();
                b[pos] ^= mask;
                std::fs::write(&bad, &b).unwrap();
                match delta_outcome(&bad, name, c) {
                    Err(err) => {
                        errors += 1;
                        assert!(err.contains(name), "{err}");
                    }
                    Ok(events) => assert!(
                        events == good,
                        "{name}: flip at {pos} changed the events without an error"
                    ),
                }
            }
        }
        assert!(errors > 20, "{name}: only {errors} flips detected");
        // Truncation at every interesting length, including empty.
        for len in [
            0usize,
            1,
            10,
            31,
            32,
            33,
            original.len() / 2,
            original.len() - 1,
        ] {
            std::fs::write(&bad, &original[..len]).unwrap();
            let err = delta_outcome(&bad, name, c)
                .err()
                .unwrap_or_else(|| panic!("{name}: truncation to {len} went unnoticed"));
            assert!(err.contains(name), "{err}");
        }
    }
    assert_eq!(
        checked.len(),
        4,
        "basic covers none, gzip, zlib and lzw deltas"
    );
}

#[test]
fn hash_and_json_errors_are_typed() {
    let f = Fixture::load(ETCD_VERSIONS[0], "basic").unwrap();
    let o = f
        .oracle
        .objects
        .iter()
        .find(|o| !o.is_full() && o.compression == "none")
        .unwrap();
    let original = std::fs::read(f.object_path(o)).unwrap();
    let n = original.len();
    // A flipped hash byte: Hash, offset = start of the trailer.
    let mut b = original.clone();
    b[n - 1] ^= 1;
    match decode_delta(&b, &o.path, |_| Ok::<(), Infallible>(())) {
        Err(DeltaError::Hash { offset, object, .. }) => {
            assert_eq!(offset, (n - 32) as u64);
            assert_eq!(object, o.path);
        }
        other => panic!("{other:?}"),
    }
    // A flipped JSON byte with the hash recomputed: the JSON error names the byte.
    let json = &original[..n - 32];
    let pos = json.iter().position(|&c| c == b':').unwrap();
    let mut j = json.to_vec();
    j[pos] = b';';
    let mut with = j.clone();
    with.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(&j));
    match decode_delta(&with, &o.path, |_| Ok::<(), Infallible>(())) {
        Err(DeltaError::Json { offset, .. }) => assert_eq!(offset, pos as u64),
        other => panic!("{other:?}"),
    }
    // Bad base64 with the hash recomputed.
    let key_at = json.windows(7).position(|w| w == b"\"key\":\"").unwrap() + 7;
    let mut j = json.to_vec();
    j[key_at] = b'!';
    let mut with = j.clone();
    with.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(&j));
    match decode_delta(&with, &o.path, |_| Ok::<(), Infallible>(())) {
        Err(DeltaError::Base64 { field, offset, .. }) => {
            assert_eq!(field, "key");
            assert!(offset as usize >= key_at && (offset as usize) < key_at + 2000);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn corrupted_full_snapshots_fail_cleanly() {
    let f = Fixture::load(ETCD_VERSIONS[0], "basic").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for o in f.oracle.objects.iter().filter(|o| o.is_full()) {
        let original = std::fs::read(f.object_path(o)).unwrap();
        let store_dir = tmp.path().join("store");
        let v2 = store_dir.join(Path::new(&o.path).parent().unwrap());
        std::fs::create_dir_all(&v2).unwrap();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for pos in [original.len() / 2, original.len() - 1, original.len() - 20] {
            let mut b = original.clone();
            b[pos] ^= 0x10;
            cases.push((format!("flip at {pos}"), b));
        }
        cases.push((
            "truncated".into(),
            original[..original.len() * 2 / 3].to_vec(),
        ));
        cases.push(("empty".into(), Vec::new()));
        for (what, bytes) in cases {
            std::fs::write(store_dir.join(&o.path), &bytes).unwrap();
            let store = local_store(&store_dir);
            let snap = snapshot_of(&store, &rt, &o.path);
            let dest = tmp.path().join("db");
            let res = rt.block_on(fetch_full(&store, &snap, &dest, true));
            let err = match res {
                Err(e) => e,
                // LZW has no checksum of its own, but the db's SHA-256 still catches it:
                // a success here would be a silent corruption.
                Ok(_) => panic!("{} {what}: accepted", o.path),
            };
            assert!(
                matches!(
                    err,
                    FetchError::Codec(_)
                        | FetchError::HashMismatch { .. }
                        | FetchError::MissingHash { .. }
                ),
                "{} {what}: {err}",
                o.path
            );
            assert!(err.to_string().contains(&o.path), "{err}");
            assert!(!dest.exists(), "partial db left behind");
        }
        std::fs::remove_dir_all(&store_dir).unwrap();
    }
}

#[test]
fn prefetcher_stops_at_the_first_bad_delta() {
    let f = Fixture::load(ETCD_VERSIONS[0], "basic").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    for o in &f.oracle.objects {
        let dest = store_dir.join(&o.path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(f.object_path(o), dest).unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = local_store(&store_dir);
    let listing = rt.block_on(store.list_snapshots()).unwrap();
    let p = plan(&listing.snapshots, PlanOptions::default()).unwrap();
    assert!(p.deltas.len() >= 3);
    // Break the second delta's compressed bytes (truncate it).
    let victim = &p.deltas[1].snapshot;
    let path = store_dir.join(&victim.path);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let spool = tmp.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    rt.block_on(async {
        let mut opts = etcd_restore::snapstore::PrefetchOptions::new(4, spool.clone());
        opts.spool_threshold = 0;
        let mut pf = Prefetcher::new(store.clone(), p.deltas.clone(), opts);
        let first = pf.next().await.unwrap().unwrap();
        assert_eq!(first.planned.snapshot.path, p.deltas[0].snapshot.path);
        let second = pf.next().await.unwrap();
        let err = match second {
            // Uncompressed objects reach the decoder, which must refuse them.
            Ok(d) => {
                assert_eq!(victim.compression(), Compression::None);
                decode_delta(d.bytes(), &victim.path, |_| Ok::<(), Infallible>(()))
                    .unwrap_err()
                    .to_string()
            }
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&victim.path), "{err}");
        drop(pf);
    });
    // Dropping the prefetcher aborts the downloads still running and deletes their spools.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
}

#[test]
fn hostile_object_names_are_ignored() {
    let f = Fixture::load(ETCD_VERSIONS[0], "covered-844").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    for o in &f.oracle.objects {
        let dest = root.join(&o.path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(f.object_path(o), dest).unwrap();
    }
    let v2 = root.join("v2");
    for name in [
        "Full-00000000-99999999-1.gz.exe",
        "Full-00000000-99999999-1 ",
        "Full--00000000-99999999-1",
        "Full-00000000-99999999-99999999999999999999",
        "Incr-00000100-00000050-1",
        "..Full-00000000-99999999-1",
        "Full-00000000-99999999-1.gz.final.final",
        "Full-\u{202e}00000000-99999999-1",
    ] {
        std::fs::write(v2.join(name), b"x").unwrap();
    }
    std::fs::create_dir_all(v2.join("Full-00000000-99999999-1")).unwrap();
    std::fs::write(v2.join("Full-00000000-99999999-1").join("0000000001"), b"x").unwrap();
    std::fs::write(
        v2.join("Full-00000000-99999999-1").join("../../escape"),
        b"x",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("v1/..weird/deeper")).unwrap();
    std::fs::write(
        root.join("v1/..weird/deeper/Full-00000000-99999999-1"),
        b"x",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = local_store(&root);
    let listing = rt.block_on(store.list_snapshots()).unwrap();
    let paths: Vec<&str> = listing.snapshots.iter().map(|s| s.path.as_str()).collect();
    let expected: Vec<&str> = {
        let mut v: Vec<&str> = f.oracle.objects.iter().map(|o| o.path.as_str()).collect();
        v.sort();
        v
    };
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(sorted, expected);
    assert_eq!(listing.chunks, 1);
    assert!(listing.ignored.len() >= 8, "{:?}", listing.ignored);
    let p = plan(&listing.snapshots, PlanOptions::default()).unwrap();
    assert_eq!(p.base.kind(), Kind::Full);
    assert_eq!(p.base.path, f.oracle.latest_full().unwrap().path);
}

#[test]
fn hostile_keys_in_s3_are_ignored_or_refused_by_name() {
    let Some(moto) = MotoServer::start().unwrap() else {
        return;
    };
    moto.create_bucket("hostile").unwrap();
    let f = Fixture::load(ETCD_VERSIONS[0], "covered-844").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut expected: Vec<&str> = f.oracle.objects.iter().map(|o| o.path.as_str()).collect();
    expected.sort();
    // Each hostile key under its own prefix, next to a real backup.
    let keys = [
        ("v2/../Full-00000000-99999999-1", true),
        ("v2/./Full-00000000-99999999-2", true),
        ("v2//Full-00000000-99999999-3", true),
        ("v2/Full-00000000-99999999-4/../../x", true),
        ("v1/Backup-1/../../Full-00000000-99999999-6", true),
        ("v2/Full-00000000-99999999-5%2F..", false),
        ("v2/Full-00000000-99999999-7 .gz", false),
        ("v2/Full-00000000-99999999-8/0000000001", false),
    ];
    for (i, (key, unsafe_path)) in keys.into_iter().enumerate() {
        let prefix = format!("p{i}");
        moto.upload_dir("hostile", &prefix, &f.store()).unwrap();
        moto.put_object("hostile", &format!("{prefix}/{key}"), b"x")
            .unwrap();
        let args = StoreArgs {
            store: Some(format!("s3://hostile/{prefix}")),
            store_endpoint_override: Some(moto.endpoint()),
            ..StoreArgs::default()
        };
        let mut config = args.resolve_with(&|_| None).unwrap();
        if let etcd_restore::snapstore::Backend::S3(s3) = &mut config.backend {
            s3.access_key_id = Some("k".into());
            s3.secret_access_key = Some("s".into());
        }
        let store = Store::open(&config).unwrap();
        match rt.block_on(store.list_snapshots()) {
            Ok(listing) => {
                assert!(!unsafe_path, "{key}: listed without complaint");
                let mut paths: Vec<&str> =
                    listing.snapshots.iter().map(|s| s.path.as_str()).collect();
                paths.sort();
                assert_eq!(paths, expected, "{key}: ignored {:?}", listing.ignored);
            }
            Err(e) => {
                assert!(unsafe_path, "{key}: {e}");
                assert!(
                    matches!(e, etcd_restore::snapstore::StoreError::UnsafeKey { .. }),
                    "{key}: {e}"
                );
                let msg = e.to_string();
                assert!(
                    msg.contains(&prefix) && msg.contains("not a safe path"),
                    "{msg}"
                );
            }
        }
    }
    moto.stop().unwrap();
}
