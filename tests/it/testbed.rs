//! The test bed checks itself: the committed backups under testdata/backups are what
//! etcd-backup-restore writes and what real etcd answers. Every check goes through an
//! independent route — Go's compress/* and encoding/json (the Go oracle), Go's bbolt, and real
//! etcd 3.5.1 / 3.4.23 — never through this project's own code.

use std::path::Path;

use testkit::{base64, serde_json, tempfile};

use testkit::kv::{hex, sha256};
use testkit::oracle::ObjectRecord;
use testkit::{
    ETCD_VERSIONS, EtcdBins, EtcdConfig, EtcdMatrix, EtcdProcess, Fixture, GoOracle, pids,
};

const SCENARIOS: [&str; 6] = [
    "basic",
    "v1",
    "overlap-1043",
    "base-newer-1044",
    "covered-844",
    "lease-expired-1045",
];

fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for v in ETCD_VERSIONS {
        for s in SCENARIOS {
            out.push(Fixture::load(v, s).unwrap_or_else(|e| panic!("fixture {v}/{s}: {e}")));
        }
    }
    out
}

fn sample() -> Fixture {
    Fixture::sample().expect("sample fixture")
}

/// An object name parsed by etcd-backup-restore's rules (pkg/snapstore/snapshot.go
/// `ParseSnapshot`): exactly four `-` tokens; the last split on `.` into the unix time, an
/// optional compression suffix and an optional trailing `final`.
#[derive(Debug, PartialEq)]
struct Name {
    kind: String,
    start: i64,
    last: i64,
    created: i64,
    suffix: String,
    is_final: bool,
}

fn parse_name(name: &str) -> Option<Name> {
    let tok: Vec<&str> = name.split('-').collect();
    if tok.len() != 4 {
        return None;
    }
    let parts: Vec<&str> = tok[3].split('.').collect();
    let suffix = match parts.get(1) {
        Some(&"final") | None => String::new(),
        Some(s) => format!(".{s}"),
    };
    Some(Name {
        kind: tok[0].to_string(),
        start: tok[1].parse().ok()?,
        last: tok[2].parse().ok()?,
        created: parts[0].parse().ok()?,
        suffix,
        is_final: parts.len() >= 2 && parts.last() == Some(&"final"),
    })
}

fn suffix_of(compression: &str) -> &'static str {
    match compression {
        "gzip" => ".gz",
        "zlib" => ".zlib",
        "lzw" => ".Z",
        "none" => "",
        other => panic!("unknown compression {other}"),
    }
}

/// The uncompressed body of an object, decompressed by Go's compress/* (the Go oracle).
fn body(go: &GoOracle, fx: &Fixture, o: &ObjectRecord) -> Vec<u8> {
    fx.object_body(go, o)
        .unwrap_or_else(|e| panic!("{}/{}: {}: {e}", fx.version, fx.scenario, o.path))
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read store dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("under store");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn object_names_layout_and_chains_follow_upstream_rules() {
    for fx in fixtures().into_iter().chain([sample()]) {
        let o = &fx.oracle;
        let what = format!("{}/{}", fx.version, fx.scenario);
        assert_eq!(o.etcd_version, fx.version, "{what}");
        let mut listed: Vec<String> = o.objects.iter().map(|x| x.path.clone()).collect();
        listed.sort();
        assert_eq!(
            files_under(&fx.store()),
            listed,
            "{what}: store files vs oracle"
        );
        for x in &o.objects {
            let (layout, name) = match x.path.split('/').collect::<Vec<_>>().as_slice() {
                ["v2", name] => ("v2", *name),
                ["v1", dir, name] => {
                    assert!(dir.starts_with("Backup-"), "{what}: {}", x.path);
                    ("v1", *name)
                }
                _ => panic!("{what}: unexpected path {}", x.path),
            };
            assert_eq!(layout, o.layout, "{what}: {}", x.path);
            let n = parse_name(name).unwrap_or_else(|| panic!("{what}: bad name {name}"));
            assert_eq!(
                n,
                Name {
                    kind: x.kind.clone(),
                    start: x.start_revision,
                    last: x.last_revision,
                    created: x.created_on,
                    suffix: suffix_of(&x.compression).to_string(),
                    is_final: x.is_final,
                },
                "{what}: {name}"
            );
            // %08d: at least eight digits.
            let tok: Vec<&str> = name.split('-').collect();
            assert!(tok[1].len() >= 8 && tok[2].len() >= 8, "{what}: {name}");
            if x.is_full() {
                assert_eq!(x.start_revision, 0, "{what}: {name}");
                let db = x.db_revision.expect("full has db_revision");
                assert!(
                    db >= x.last_revision,
                    "{what}: {name}: db {db} older than name"
                );
            } else {
                assert!(!x.is_final, "{what}: deltas are never final");
                assert!(x.start_revision <= x.last_revision, "{what}: {name}");
            }
        }
        // v1: each delta lives in the directory of the full it follows.
        if o.layout == "v1" {
            let mut dir_of_full = String::new();
            for x in &o.objects {
                let dir = x.path.split('/').nth(1).unwrap_or_default().to_string();
                if x.is_full() {
                    assert_eq!(
                        dir,
                        format!("Backup-{}", x.created_on),
                        "{what}: {}",
                        x.path
                    );
                    dir_of_full = dir;
                } else {
                    assert_eq!(dir, dir_of_full, "{what}: {}", x.path);
                }
            }
        }
        // The restore chain: latest full, then its deltas, contiguous from name + 1.
        let latest = o.latest_full().expect("a full snapshot");
        let mut deltas: Vec<&ObjectRecord> = o
            .objects
            .iter()
            .filter(|x| !x.is_full() && x.last_revision > latest.last_revision)
            .collect();
        deltas.sort_by_key(|x| (x.last_revision, x.created_on));
        let last = deltas
            .last()
            .map_or(latest.db_revision.unwrap_or(0), |d| d.last_revision);
        assert_eq!(
            last, o.final_revision,
            "{what}: chain end vs final_revision"
        );
        if fx.scenario != "overlap-1043" {
            let mut next = latest.last_revision + 1;
            for d in &deltas {
                assert_eq!(d.start_revision, next, "{what}: {} not contiguous", d.path);
                next = d.last_revision + 1;
            }
        }
        // Dumps exist where restore tests need them.
        assert!(
            o.dump_at(o.final_revision).is_some(),
            "{what}: no final dump"
        );
        assert!(
            o.dump_at(latest.db_revision.unwrap_or(-1)).is_some(),
            "{what}: no dump at base"
        );
        assert!(o.dumps.len() >= 2, "{what}");
    }
}

#[test]
fn scenarios_have_the_shapes_they_claim() {
    for v in ETCD_VERSIONS {
        let basic = Fixture::load(v, "basic").unwrap().oracle;
        for kind in ["Full", "Incr"] {
            for c in ["none", "gzip", "zlib", "lzw"] {
                assert!(
                    basic
                        .objects
                        .iter()
                        .any(|o| o.kind == kind && o.compression == c),
                    "{v}/basic: no {kind} with {c}"
                );
            }
        }
        assert!(
            basic.objects.iter().any(|o| o.is_final),
            "{v}/basic: no .final"
        );
        assert!(basic.final_revision >= 1900, "{v}/basic: ~2k revisions");
        assert!(basic.compact_revision > 0, "{v}/basic: compacted");
        let latest = basic.latest_full().unwrap();
        assert!(latest.is_final);
        assert!(basic.compact_revision <= latest.db_revision.unwrap());
        assert!(!basic.leases.expired.is_empty() && !basic.leases.revoked.is_empty());
        assert!(!basic.auth.users.is_empty() && !basic.auth.roles.is_empty());
        assert!(
            basic
                .objects
                .iter()
                .any(|o| o.is_full() && o.db_revision.unwrap() > o.last_revision),
            "{v}/basic: a full whose db is newer than its name"
        );
        let final_dump = basic.dump_at(basic.final_revision).unwrap();
        assert!(
            final_dump
                .kvs
                .iter()
                .any(|kv| std::str::from_utf8(&kv.key).is_err()),
            "{v}/basic: binary keys"
        );
        assert!(
            final_dump.kvs.iter().any(|kv| kv.lease != 0),
            "{v}/basic: leased keys"
        );
        assert!(
            basic
                .dumps
                .iter()
                .flat_map(|d| &d.kvs)
                .any(|kv| kv.value_len == Some(512 << 10)),
            "{v}/basic: a 512 KiB value"
        );

        let v1 = Fixture::load(v, "v1").unwrap().oracle;
        assert_eq!(v1.layout, "v1");

        let o = Fixture::load(v, "overlap-1043").unwrap().oracle;
        let d: Vec<_> = o.objects.iter().filter(|x| !x.is_full()).collect();
        assert!(
            d.len() >= 3
                && d[0].start_revision == d[1].start_revision
                && d[1].last_revision > d[0].last_revision,
            "{v}/overlap-1043"
        );

        let o = Fixture::load(v, "base-newer-1044").unwrap().oracle;
        let base = o.latest_full().unwrap();
        let d: Vec<_> = o.objects.iter().filter(|x| !x.is_full()).collect();
        assert!(
            base.db_revision.unwrap() > d[0].last_revision,
            "{v}/base-newer-1044"
        );
        assert!(
            base.db_revision.unwrap() < d[1].last_revision,
            "{v}/base-newer-1044"
        );

        let o = Fixture::load(v, "covered-844").unwrap().oracle;
        let base = o.latest_full().unwrap();
        let d: Vec<_> = o.objects.iter().filter(|x| !x.is_full()).collect();
        assert_eq!(
            base.db_revision.unwrap(),
            d[0].last_revision,
            "{v}/covered-844"
        );

        let o = Fixture::load(v, "lease-expired-1045").unwrap().oracle;
        let l = o
            .leases
            .expired
            .first()
            .expect("{v}/lease-expired-1045: expired lease");
        assert!(l.ended_revision > o.final_revision);
        assert!(l.granted_revision <= o.latest_full().unwrap().db_revision.unwrap());
        let held = o
            .dump_at(o.final_revision)
            .unwrap()
            .kvs
            .iter()
            .filter(|kv| kv.lease == l.id)
            .count();
        assert!(
            held >= 1,
            "{v}/lease-expired-1045: keys attached at final revision"
        );
    }
}

#[test]
fn every_object_has_a_valid_sha256_trailer_and_go_json() {
    let Some(go) = GoOracle::get() else { return };
    for fx in fixtures().into_iter().chain([sample()]) {
        for o in &fx.oracle.objects {
            let what = format!("{}/{}: {}", fx.version, fx.scenario, o.path);
            let b = body(&go, &fx, o);
            assert!(b.len() > 32, "{what}: too short");
            let (content, trailer) = b.split_at(b.len() - 32);
            assert_eq!(sha256(content), trailer, "{what}: sha256 trailer");
            assert_eq!(
                hex(&sha256(content)),
                o.body_sha256,
                "{what}: oracle body_sha256"
            );
            if o.is_full() {
                // etcd's own "has hash" rule (snapshot restore: size % 512 == 32).
                assert_eq!(b.len() % 512, 32, "{what}: full snapshot length");
                continue;
            }
            let again = go.reencode_delta(content).expect("reencode-delta");
            assert!(
                again == content,
                "{what}: Go's encoding/json writes it differently:\n ours: {}\n Go's: {}",
                String::from_utf8_lossy(&content[..content.len().min(400)]),
                String::from_utf8_lossy(&again[..again.len().min(400)])
            );
            let events: serde_json::Value = serde_json::from_slice(content).expect("delta JSON");
            let events = events.as_array().expect("delta is a JSON array");
            assert_eq!(Some(events.len() as u64), o.events, "{what}: event count");
            let mut prev = o.start_revision;
            for e in events {
                let ev = &e["etcdEvent"];
                let kv = &ev["kv"];
                let rev = kv["mod_revision"].as_i64().expect("mod_revision");
                assert!(rev >= prev, "{what}: events out of order");
                prev = rev;
                match ev.get("type") {
                    None => assert!(
                        kv.get("create_revision").is_some() && kv.get("version").is_some(),
                        "{what}: PUT {e}"
                    ),
                    Some(t) => {
                        assert_eq!(t, 1, "{what}: type");
                        let fields: Vec<&String> = kv.as_object().unwrap().keys().collect();
                        assert_eq!(fields, ["key", "mod_revision"], "{what}: DELETE {e}");
                    }
                }
                assert!(
                    e["time"].as_str().is_some_and(|t| t.starts_with("2024-")),
                    "{what}: time {e}"
                );
            }
            assert_eq!(
                prev, o.last_revision,
                "{what}: last event is the name's last revision"
            );
        }
    }
}

/// Restored history must come from etcd's own db: check each full's db with Go's bbolt and read
/// the newest revision from its `key` bucket.
#[test]
fn go_bbolt_checks_every_full_snapshot_db() {
    let Some(go) = GoOracle::get() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for fx in fixtures().into_iter().chain([sample()]) {
        for o in fx.oracle.objects.iter().filter(|o| o.is_full()) {
            let what = format!("{}/{}: {}", fx.version, fx.scenario, o.path);
            let b = body(&go, &fx, o);
            let db = tmp.path().join("db");
            std::fs::write(&db, &b[..b.len() - 32]).unwrap();
            let report = go.check(&db).expect("bboltoracle check");
            assert!(report.ok, "{what}: bbolt check: {}", report.output);
            let dump = go.dump(&db).expect("bboltoracle dump");
            let mut newest = 0i64;
            for line in dump.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_slice(line).expect("dump line");
                if v["path"] == serde_json::json!(["a2V5"]) {
                    use base64::Engine;
                    let k = base64::engine::general_purpose::STANDARD
                        .decode(v["key"].as_str().unwrap())
                        .unwrap();
                    let main = i64::from_be_bytes(k[..8].try_into().unwrap());
                    newest = newest.max(main);
                }
            }
            assert_eq!(
                Some(newest),
                o.db_revision,
                "{what}: newest revision in the key bucket"
            );
        }
    }
}

/// Restores `fx`'s latest full with `bins`' own snapshot restore, starts that etcd on it and
/// compares with the oracle at the db's revision.
fn restore_and_compare(bins: &EtcdBins, fx: &Fixture, go: &GoOracle, tmp: &Path) {
    let latest = fx.oracle.latest_full().expect("latest full");
    let b = body(go, fx, latest);
    let name = format!("{}-{}-on-{}", fx.version, fx.scenario, bins.version);
    let snap = tmp.join(format!("{name}.snapshot"));
    std::fs::write(&snap, &b).unwrap();
    let cfg = EtcdConfig::new(tmp.join(format!("{name}.etcd")));
    // With the trailer, restore verifies it (no --skip-hash-check).
    bins.snapshot_restore(&snap, &cfg, false)
        .unwrap_or_else(|e| panic!("{name}: snapshot restore: {e}"));
    let mut etcd = EtcdProcess::start(bins, cfg).unwrap_or_else(|e| panic!("{name}: start: {e}"));
    let pid = etcd.pid();
    let db_rev = latest.db_revision.expect("db_revision");
    fx.oracle.assert_matches(&etcd, db_rev);
    let members = etcd.member_list().unwrap();
    assert_eq!(members.len(), 1, "{name}");
    assert_eq!(
        members[0].peer_urls,
        vec![etcd.config().peer_url()],
        "{name}"
    );
    etcd.stop().unwrap();
    assert!(!pids::is_alive(pid), "{name}: etcd {pid} still running");
}

fn restore_all_with(version: &str) {
    let Some(go) = GoOracle::get() else { return };
    let Some(bins) = EtcdBins::get(version) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for s in SCENARIOS {
        let fx = Fixture::load(version, s).unwrap();
        restore_and_compare(&bins, &fx, &go, tmp.path());
    }
}

#[test]
fn restore_latest_full_with_etcd_3_5_1() {
    restore_all_with("3.5.1");
}

#[test]
fn restore_latest_full_with_etcd_3_4_23() {
    restore_all_with("3.4.23");
}

/// The other version's fixture restored and served by each etcd (3.4.23 reads a 3.5.1 db and
/// vice versa).
#[test]
fn restore_basic_across_versions() {
    let Some(go) = GoOracle::get() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let matrix = EtcdMatrix::new(&ETCD_VERSIONS);
    for bins in matrix.bins() {
        // The fixture made by the other version.
        let other = ETCD_VERSIONS.iter().find(|v| **v != bins.version).unwrap();
        let fx = Fixture::load(other, "basic").unwrap();
        restore_and_compare(bins, &fx, &go, tmp.path());
        matrix.ran(bins);
    }
    matrix.assert_each_ran(1);
}
