//! testkit's own checks against real etcd: start, query, stop by PID (also on panic),
//! snapshot restore.

use testkit::{ETCD_VERSIONS, EtcdBins, EtcdConfig, EtcdMatrix, EtcdProcess, pids};

#[test]
fn start_query_stop_each_version() {
    let matrix = EtcdMatrix::new(&ETCD_VERSIONS);
    for bins in matrix.bins() {
        let v = bins.version.as_str();
        let dir = tempfile::tempdir().unwrap();
        let mut etcd = EtcdProcess::start(bins, EtcdConfig::new(dir.path().join("d"))).unwrap();
        let pid = etcd.pid();
        assert!(pids::registered().contains(&pid), "{v}: pid not registered");

        let r1 = etcd.put("a", "1").unwrap();
        let r2 = etcd.put("b", "").unwrap();
        assert_eq!(r2, r1 + 1);
        let all = etcd.get_all(None).unwrap();
        assert_eq!(all.revision, r2);
        assert_eq!(all.kvs.len(), 2);
        assert_eq!(all.kvs[0].key, b"a");
        assert_eq!(all.kvs[0].value, b"1");
        assert_eq!(all.kvs[1].value, b"", "empty value");
        assert_eq!(all.kvs[1].create_revision, r2);
        let old = etcd.get_all(Some(r1)).unwrap();
        assert_eq!(old.kvs.len(), 1, "{v}: historical read at {r1}");

        let st = etcd.status().unwrap();
        assert_eq!(st.revision, r2);
        assert!(
            st.version.starts_with(&v[..3]),
            "{v}: status version {}",
            st.version
        );
        let h1 = etcd.hashkv(Some(r1)).unwrap();
        let h2 = etcd.hashkv(Some(r2)).unwrap();
        assert_ne!(h1.hash, h2.hash);
        assert_eq!(etcd.hashkv(Some(r1)).unwrap(), h1, "hashkv is stable");
        let members = etcd.member_list().unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].name, "default");
        assert_eq!(members[0].peer_urls, vec![etcd.config().peer_url()]);

        etcd.stop().unwrap();
        assert!(
            !pids::is_alive(pid),
            "{v}: etcd {pid} still alive after stop"
        );
        assert!(!pids::registered().contains(&pid));
        matrix.ran(bins);
    }
    matrix.assert_each_ran(1);
}

#[test]
fn panicking_test_still_stops_etcd() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d");
    let pid = std::sync::Mutex::new(0);
    let r = std::panic::catch_unwind(|| {
        let etcd = EtcdProcess::start(&bins, EtcdConfig::new(&path)).unwrap();
        *pid.lock().unwrap() = etcd.pid();
        panic!("test failure while etcd runs");
    });
    assert!(r.is_err());
    let pid = *pid.lock().unwrap();
    assert!(pid != 0);
    assert!(!pids::is_alive(pid), "etcd {pid} survived the panic");
    assert!(!pids::registered().contains(&pid));
}

#[test]
fn snapshot_save_restore_start() {
    let matrix = EtcdMatrix::new(&ETCD_VERSIONS);
    for bins in matrix.bins() {
        let dir = tempfile::tempdir().unwrap();
        let etcd = EtcdProcess::start(bins, EtcdConfig::new(dir.path().join("src"))).unwrap();
        let rev = etcd.put("k", "v").unwrap();
        let snap = dir.path().join("snap.db");
        etcd.etcdctl(&["snapshot".as_ref(), "save".as_ref(), snap.as_os_str()])
            .unwrap();
        drop(etcd);
        let st = bins.snapshot_status(&snap).unwrap();
        assert_eq!(st.revision, rev);

        let cfg = EtcdConfig::new(dir.path().join("restored"));
        bins.snapshot_restore(&snap, &cfg, false).unwrap();
        let etcd = EtcdProcess::start(bins, cfg).unwrap();
        let got = etcd.get("k", None).unwrap().expect("key k restored");
        assert_eq!(got.value, b"v");
        assert_eq!(got.mod_revision, rev);
        matrix.ran(bins);
    }
    matrix.assert_each_ran(1);
}

/// The Go oracle on a db that a real etcd wrote (and has closed): bbolt's own check passes and
/// the dump shows etcd's buckets and the revisions just written.
#[test]
fn go_oracle_checks_a_live_etcd_db() {
    let Some(go) = testkit::GoOracle::get() else {
        return;
    };
    let matrix = EtcdMatrix::new(&ETCD_VERSIONS);
    for bins in matrix.bins() {
        let v = bins.version.as_str();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        let mut etcd = EtcdProcess::start(bins, EtcdConfig::new(&data)).unwrap();
        let mut last = 0;
        for i in 0..50 {
            last = etcd.put(&format!("k{i:02}"), &"v".repeat(i * 40)).unwrap();
        }
        etcd.stop().unwrap();
        let db = data.join("member/snap/db");
        let report = go.check(&db).unwrap();
        assert!(report.ok, "{v}: {}", report.output);
        assert_eq!(report.output.trim(), "OK");
        let dump = String::from_utf8(go.dump(&db).unwrap()).unwrap();
        // Top-level bucket "key" (a2V5), then its entries; the newest is revision `last`.
        assert!(
            dump.contains(r#"{"path":[],"bucket":"a2V5","sequence":0}"#),
            "{v}"
        );
        let newest = dump
            .lines()
            .filter(|l| l.starts_with(r#"{"path":["a2V5"],"key":""#))
            .count();
        assert_eq!(
            newest as i64,
            last - 1,
            "{v}: one key-bucket entry per revision 2..={last}"
        );
        matrix.ran(bins);
    }
    matrix.assert_each_ran(1);
}
