//! The data directory's states as etcd-wrapper meets them (empty, valid, corrupt, stale, on
//! the wrong volume), each initialized through the HTTP API as the wrapper does, with a real
//! etcd started on the result.

use super::*;

#[test]
fn empty_dir_with_backups_is_restored_and_etcd_starts_on_the_served_config() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new();
    let s = sc.server(&[], &[("POD_NAMESPACE", "ns-a")]);
    assert_eq!(s.get("/healthz").code, 200);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Successful"),
        "{seen:?}: {}",
        s.log()
    );
    // Read-once: the next reader sees New, as plain text without a newline.
    let a = s.get("/initialization/status");
    assert_eq!(a.body, "New");
    assert!(
        a.headers["content-type"].starts_with("text/plain"),
        "{:?}",
        a.headers
    );
    assert_eq!(
        std::fs::read_to_string(sc.tmp.path().join("safe_guard")).unwrap(),
        "ns-a"
    );
    let m = s.get("/metrics").body;
    assert_metric(
        &m,
        "etcdbr_restoration_duration_seconds_count{restore=\"single_node\",succeeded=\"true\"}",
        1.0,
    );
    assert_metric(
        &m,
        "etcd_restore_initializations_total{outcome=\"restored\"}",
        1.0,
    );
    // No staging directory left beside the data directory.
    let leftovers: Vec<_> = std::fs::read_dir(sc.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let etcd = sc.start_etcd_from_config(&s, &bins);
    sc.fixture
        .oracle
        .assert_matches(&etcd, sc.fixture.oracle.final_revision);
    let members = etcd.member_list().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].name, POD);
}

#[test]
fn valid_dir_is_untouched_in_both_modes_and_a_running_etcd_fails_it() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new();
    sc.restore_with_cli();
    let before = fingerprint(sc.data());
    let s = sc.server(&["--lock-timeout", "1"], &[]);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Successful");
    assert_eq!(
        fingerprint(sc.data()),
        before,
        "full mode changed the data dir"
    );
    std::fs::write(sc.exit_code(), "terminated\n").unwrap();
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Successful");
    assert_eq!(
        fingerprint(sc.data()),
        before,
        "sanity mode changed the data dir"
    );
    let m = s.get("/metrics").body;
    for mode in ["full", "sanity"] {
        assert_metric(
            &m,
            &format!("etcd_restore_validation_verdicts_total{{mode=\"{mode}\",verdict=\"valid\"}}"),
            1.0,
        );
    }
    assert_metric(&m, "etcdbr_restoration_duration_seconds_count", 0.0);

    let etcd = sc.start_etcd_from_config(&s, &bins);
    sc.fixture
        .oracle
        .assert_matches(&etcd, sc.fixture.oracle.final_revision);
    // etcd holds bbolt's lock: initialization fails and leaves everything alone (only the
    // database's identity is compared: etcd itself writes meanwhile).
    let ino = || {
        std::fs::metadata(sc.data().join("member/snap/db"))
            .unwrap()
            .ino()
    };
    let during = ino();
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Failed");
    assert!(
        s.log().contains("another process holds the lock"),
        "{}",
        s.log()
    );
    assert_eq!(ino(), during);
    assert!(etcd.put("after-failed-init", "x").is_ok());
}

#[test]
fn corrupted_dir_is_restored() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new();
    sc.restore_with_cli();
    // A torn database file: etcd cannot open it.
    let db = sc.data().join("member/snap/db");
    let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.set_len(16384).unwrap();
    drop(f);
    std::fs::write(sc.data().join("marker"), "old").unwrap();
    let s = sc.server(&[], &[]);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert!(
        !sc.data().join("marker").exists(),
        "the corrupt directory was not replaced"
    );
    sc.assert_restored_and_served(
        &s,
        &seen,
        "etcd_restore_validation_verdicts_total{mode=\"full\",verdict=\"corrupt\"}",
        &bins,
    );
}

#[test]
fn stale_dir_is_restored() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new();
    // A data directory from the oldest full snapshot alone: intact, but behind the store.
    let oldest = sc
        .fixture
        .oracle
        .objects
        .iter()
        .filter(|o| o.is_full())
        .min_by_key(|o| o.last_revision)
        .unwrap();
    assert!(oldest.last_revision < sc.fixture.oracle.final_revision);
    let small = sc.tmp.path().join("oldest-store");
    let target = small.join(&oldest.path);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::copy(sc.fixture.store().join(&oldest.path), &target).unwrap();
    sc.restore_from(&small);
    let s = sc.server(&[], &[]);
    std::fs::write(sc.exit_code(), "interrupt").unwrap();
    let seen = wrapper_initialize(&s, &sc.exit_code());
    sc.assert_restored_and_served(
        &s,
        &seen,
        "etcd_restore_validation_verdicts_total{mode=\"sanity\",verdict=\"stale\"}",
        &bins,
    );
}

#[test]
fn wrong_volume_fails_and_touches_nothing() {
    let sc = Scene::new();
    sc.restore_with_cli();
    // Then corrupt it: even a directory that would be restored must stay as it is.
    std::fs::remove_dir_all(sc.data().join("member/wal")).unwrap();
    std::fs::write(sc.tmp.path().join("safe_guard"), "other-namespace").unwrap();
    let before = fingerprint(sc.data());
    let s = sc.server(&[], &[("POD_NAMESPACE", "my-namespace")]);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Failed");
    assert_eq!(s.get("/initialization/status").body, "New");
    assert_eq!(fingerprint(sc.data()), before);
    assert_eq!(
        std::fs::read_to_string(sc.tmp.path().join("safe_guard")).unwrap(),
        "other-namespace"
    );
    assert!(s.log().contains("wrong volume"), "{}", s.log());
    let m = s.get("/metrics").body;
    assert_metric(
        &m,
        "etcdbr_validation_duration_seconds_count{succeeded=\"false\"}",
        1.0,
    );
    assert_metric(
        &m,
        "etcd_restore_initializations_total{outcome=\"failed\"}",
        1.0,
    );
}

#[test]
fn thousand_concurrent_requests_are_answered_while_an_initialization_runs() {
    let sc = Scene::new();
    sc.restore_with_cli();
    // Hold the database lock the way a running etcd does: the initialization stays in
    // Progress until it is released.
    let db = std::fs::File::open(sc.data().join("member/snap/db")).unwrap();
    db.lock().unwrap();
    let s = sc.server(&["--lock-timeout", "60"], &[]);
    assert_eq!(s.get("/initialization/start?mode=bogus").code, 200);
    assert_eq!(s.get("/healthz").code, 503);
    let addr = s.addr;
    // 1,000 status/healthz requests and 50 start requests, all in flight at once: one thread
    // each, released together.
    let n_threads = 1050;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n_threads));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..n_threads)
        .map(|i| {
            let barrier = std::sync::Arc::clone(&barrier);
            let path = match i % 21 {
                0 => "/initialization/start?mode=full",
                n if n % 2 == 0 => "/healthz",
                _ => "/initialization/status",
            };
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    barrier.wait();
                    (path, get(addr, path).map(|a| (a.code, a.body)))
                })
                .unwrap()
        })
        .collect();
    let mut n = 0;
    let mut starts = 0;
    for t in threads {
        let (path, a) = t.join().unwrap();
        let (code, body) = a.unwrap_or_else(|e| panic!("{path} was not answered: {e}"));
        match path {
            "/healthz" => assert_eq!((code, body.as_str()), (503, r#"{"health":false}"#)),
            "/initialization/status" => assert_eq!((code, body.as_str()), (200, "Progress")),
            _ => {
                assert_eq!(code, 200);
                starts += 1;
            }
        }
        n += 1;
    }
    let took = t0.elapsed();
    assert_eq!((n, starts), (1050, 50));
    eprintln!("{n} concurrent requests answered in {took:?}");
    db.unlock().unwrap();
    drop(db);
    let seen = wrapper_initialize(&s, &sc.exit_code());
    assert_ended(&s, &seen, "Successful");
    let m = s.get("/metrics").body;
    // 51 start requests, one initialization.
    assert_metric(&m, "etcd_restore_initializations_total", 1.0);
    assert_metric(
        &m,
        "etcd_restore_initialization_duration_seconds_count{mode=\"full\",result=\"successful\"}",
        1.0,
    );
}
