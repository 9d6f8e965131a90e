//! A member of a real 3-member etcd 3.5.1 cluster loses its data directory (wiped, or
//! corrupted) or is new (scale-up); `etcd-restore serve` is driven the way etcd-wrapper drives
//! etcdbrctl's server, etcd is started on the served `/config`, and the member must come back
//! the way etcd-backup-restore v0.43 brings it back: (removed and) added as a learner, promoted
//! once caught up, serving the same revision and HashKV as its peers — its data from the
//! leader, never from the backups (docs/serve.md "Joining a running cluster").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use testkit::cluster::assert_members_agree;
use testkit::wrapper::{Ready, Serve, metric};
use testkit::{ClusterSpec, EtcdBins, EtcdConfig, EtcdProcess, Fixture, free_port, tempfile};

const TOKEN: &str = "bootstrap-token";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_etcd-restore")
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as druid mounts them
/// (`/var/etcd/ssl/ca/ca.crt`, `/var/etcd/ssl/client/tls.{crt,key}`).
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let leaf = |sans: Vec<String>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (sc, sk) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
        let (cc, ck) = leaf(vec!["etcd-client".into()]);
        Pki {
            ca: write("ca.crt", ca_cert.pem()),
            server_cert: write("server.crt", sc),
            server_key: write("server.key", sk),
            client_cert: write("client.crt", cc),
            client_key: write("client.key", ck),
        }
    }
}

/// Members named `m1..mN` on free ports; with TLS each also listens on an https client port
/// that requires a client certificate (testkit keeps talking plain HTTP on the other one).
struct Scene {
    tmp: tempfile::TempDir,
    /// Every member the etcd config knows (also ones not started yet).
    members: Vec<EtcdConfig>,
    https_ports: Vec<u16>,
    pki: Option<Pki>,
}

impl Scene {
    fn new(names: &[&str], tls: bool) -> Scene {
        let tmp = tempfile::tempdir().unwrap();
        let spec = ClusterSpec::new(tmp.path(), names, TOKEN);
        let pki = tls.then(|| Pki::new(tmp.path()));
        let https_ports: Vec<u16> = names.iter().map(|_| free_port()).collect();
        let mut members = spec.members;
        if let Some(p) = &pki {
            for (m, port) in members.iter_mut().zip(&https_ports) {
                m.extra_args = vec![
                    format!(
                        "--listen-client-urls={},https://127.0.0.1:{port}",
                        m.client_url()
                    ),
                    format!("--cert-file={}", p.server_cert.display()),
                    format!("--key-file={}", p.server_key.display()),
                    format!("--trusted-ca-file={}", p.ca.display()),
                    "--client-cert-auth".into(),
                ];
            }
        }
        Scene {
            tmp,
            members,
            https_ports,
            pki,
        }
    }

    /// Starts the first `n` members as a cluster of those `n`.
    fn start(&self, n: usize, bins: &EtcdBins) -> Vec<EtcdProcess> {
        let initial = self.members[..n]
            .iter()
            .map(|c| format!("{}={}", c.name, c.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut procs: Vec<EtcdProcess> = self.members[..n]
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.initial_cluster = Some(initial.clone());
                EtcdProcess::spawn(bins, c).unwrap()
            })
            .collect();
        for p in &mut procs {
            p.wait_healthy(Duration::from_secs(30)).unwrap();
        }
        procs
    }

    /// The URL serve reaches member `i` at.
    fn client_url(&self, i: usize) -> String {
        match self.pki {
            Some(_) => format!("https://127.0.0.1:{}", self.https_ports[i]),
            None => self.members[i].client_url(),
        }
    }

    /// The cluster-wide etcd config as druid renders it, for member `i`'s pod (data dir and
    /// listen URLs are per pod; the URL maps and initial-cluster list every member).
    fn write_etcd_conf(&self, i: usize) -> PathBuf {
        let me = &self.members[i];
        let map = |f: &dyn Fn(&EtcdConfig) -> String| {
            self.members
                .iter()
                .map(|m| format!("  {}:\n  - {}\n", m.name, f(m)))
                .collect::<String>()
        };
        let mut text = format!(
            "name: etcd-main\nmember-name-prefix: ''\ndata-dir: {data}\n\
             listen-peer-urls: {peer}\ninitial-advertise-peer-urls:\n{peers}\
             advertise-client-urls:\n{clients}initial-cluster: {initial}\n\
             initial-cluster-token: {TOKEN}\ninitial-cluster-state: new\nlog-level: warn\n",
            data = me.data_dir.display(),
            peer = me.peer_url(),
            peers = map(&|m| m.peer_url()),
            clients = map(&|m| m.client_url()),
            initial = self
                .members
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url()))
                .collect::<Vec<_>>()
                .join(","),
        );
        match &self.pki {
            Some(p) => text.push_str(&format!(
                "listen-client-urls: {},https://127.0.0.1:{}\nclient-transport-security:\n  \
                 cert-file: {}\n  key-file: {}\n  trusted-ca-file: {}\n  client-cert-auth: true\n",
                me.client_url(),
                self.https_ports[i],
                p.server_cert.display(),
                p.server_key.display(),
                p.ca.display()
            )),
            None => text.push_str(&format!("listen-client-urls: {}\n", me.client_url())),
        }
        let path = self.tmp.path().join(format!("{}.etcd.conf.yaml", me.name));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `serve` in member `i`'s backup sidecar, with druid's connection flags: this member's
    /// endpoint, the others as service endpoints, and the client certificate under TLS.
    fn serve(&self, i: usize, store: Option<&Path>) -> Serve {
        let conf = self.write_etcd_conf(i);
        let me = &self.members[i];
        let mut args: Vec<String> = vec![
            format!("--data-dir={}", me.data_dir.display()),
            format!("--snapstore-temp-directory={}", self.tmp.path().display()),
            format!("--endpoints={}", self.client_url(i)),
            format!(
                "--service-endpoints={}",
                (0..self.members.len())
                    .map(|j| self.client_url(j))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            "--reelection-period=1s".into(),
        ];
        if let Some(s) = store {
            args.push(format!("--store={}", s.display()));
        }
        match &self.pki {
            Some(p) => args.extend([
                format!("--cacert={}", p.ca.display()),
                format!("--cert={}", p.client_cert.display()),
                format!("--key={}", p.client_key.display()),
                "--insecure-transport=false".into(),
                "--insecure-skip-tls-verify=false".into(),
            ]),
            None => args.extend([
                "--insecure-transport=true".into(),
                "--insecure-skip-tls-verify=true".into(),
            ]),
        }
        let conf_s = conf.display().to_string();
        Serve::spawn(
            bin(),
            &args,
            &[
                ("ETCD_CONF", conf_s.as_str()),
                ("POD_NAME", me.name.as_str()),
            ],
            &self.tmp.path().join(format!("{}.serve.log", me.name)),
            Ready::Healthz,
        )
    }

    /// etcd-wrapper's initialization loop, which must end `Successful`.
    fn initialize(&self, s: &Serve) {
        let seen = s.initialize(&self.tmp.path().join("exit_code"), Duration::from_secs(90));
        assert_eq!(
            seen.last().map(String::as_str),
            Some("Successful"),
            "{seen:?}: {}",
            s.log()
        );
    }

    /// etcd-wrapper after `Successful`: `/config`, etcd on it. Returns the served config's
    /// top-level scalars and the started member (not waited for).
    fn start_from_config(
        &self,
        i: usize,
        s: &Serve,
        bins: &EtcdBins,
    ) -> (Vec<(String, String)>, EtcdProcess) {
        let conf = s.config();
        let path = self
            .tmp
            .path()
            .join(format!("{}.served.yaml", self.members[i].name));
        std::fs::write(&path, &conf).unwrap();
        let mut cfg = self.members[i].clone();
        cfg.config_file = Some(path);
        let scalars = conf
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('-'))
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        (scalars, EtcdProcess::spawn(bins, cfg).unwrap())
    }
}

fn scalar<'a>(conf: &'a [(String, String)], key: &str) -> &'a str {
    conf.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in the served config: {conf:?}"))
}

/// Keys, overwrites and a delete, so the members share some history.
fn write_data(etcd: &EtcdProcess, tag: &str) {
    for i in 0..30 {
        etcd.put(&format!("/{tag}/k{:02}", i % 20), &format!("v{i}"))
            .unwrap();
    }
    etcd.etcdctl(&["del", &format!("/{tag}/k00")]).unwrap();
}

/// Waits until `name` is a voting member in `peer`'s member list.
fn wait_promoted(peer: &EtcdProcess, name: &str, s: &Serve) {
    let t0 = Instant::now();
    loop {
        let list = peer.member_list().unwrap();
        if list.iter().any(|m| m.name == name && !m.is_learner) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "{name} not promoted: {list:?}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// After `serve` answered `Successful` for member `name`: the cluster lists it as a learner
/// (nameless, since it has not started yet) with its peer URL.
fn assert_learner_added(peer: &EtcdProcess, cfg: &EtcdConfig) {
    let list = peer.member_list().unwrap();
    let m = list
        .iter()
        .find(|m| m.peer_urls == [cfg.peer_url()])
        .unwrap_or_else(|| panic!("{} not in {list:?}", cfg.peer_url()));
    assert!(m.is_learner, "{list:?}");
    assert_eq!(m.name, "", "{list:?}");
}

/// The member rejoined: promoted by serve, then every member serves the same revision and
/// HashKV, before and after a write through the rejoined one.
fn assert_rejoined(mut procs: Vec<EtcdProcess>, name: &str, s: &Serve) {
    let idx = procs.len() - 1;
    procs[idx].wait_healthy(Duration::from_secs(60)).unwrap();
    wait_promoted(&procs[0], name, s);
    assert_members_agree(&procs);
    let status = procs[idx].status().unwrap();
    assert_ne!(status.leader, 0);
    write_data(&procs[idx], "after");
    assert_members_agree(&procs);
    let m = s.get("/metrics").body;
    assert_eq!(
        metric(
            &m,
            "etcdbr_member_promote_duration_seconds_count{succeeded=\"true\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "etcdbr_is_learner "), 0.0, "{m}");
}

#[test]
fn wiped_member_rejoins_over_tls_as_a_learner_and_is_promoted() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new(&["m1", "m2", "m3"], true);
    let mut procs = sc.start(3, &bins);
    write_data(&procs[0], "before");
    let before = procs[0].member_list().unwrap();
    let old_id = before.iter().find(|m| m.name == "m3").unwrap().id;
    // m3 dies and loses its volume.
    let mut m3 = procs.pop().unwrap();
    m3.stop().unwrap();
    drop(m3);
    std::fs::remove_dir_all(&sc.members[2].data_dir).unwrap();
    write_data(&procs[0], "while-down");

    // The store holds another cluster's backups: a restore from it could not join.
    let fixture = Fixture::load("3.5.1", "basic").unwrap();
    let s = sc.serve(2, Some(&fixture.store()));
    sc.initialize(&s);
    assert_learner_added(&procs[0], &sc.members[2]);
    let (conf, m3) = sc.start_from_config(2, &s, &bins);
    assert_eq!(scalar(&conf, "initial-cluster-state"), "existing");
    assert_eq!(scalar(&conf, "name"), "m3");
    assert_eq!(scalar(&conf, "initial-cluster").matches('=').count(), 3);
    let m = s.get("/metrics").body;
    assert_eq!(
        metric(
            &m,
            "etcd_restore_initializations_total{outcome=\"learner\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "etcdbr_member_remove_duration_seconds_count{succeeded=\"true\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "etcdbr_restoration_duration_seconds_count"), 0.0);
    let list = procs[0].member_list().unwrap();
    assert!(list.iter().all(|m| m.id != old_id), "{list:?}");
    procs.push(m3);
    assert_rejoined(procs, "m3", &s);
}

#[test]
fn corrupt_member_is_removed_and_re_added() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new(&["m1", "m2", "m3"], false);
    let mut procs = sc.start(3, &bins);
    write_data(&procs[0], "before");
    let mut m3 = procs.pop().unwrap();
    m3.stop().unwrap();
    drop(m3);
    // A torn database: full validation finds it corrupt.
    let db = sc.members[2].data_dir.join("member/snap/db");
    let len = std::fs::metadata(&db).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let s = sc.serve(2, None);
    // Before the member starts: the cluster holds a nameless learner with m3's peer URL.
    sc.initialize(&s);
    assert_learner_added(&procs[0], &sc.members[2]);
    assert!(!sc.members[2].data_dir.exists());
    let (conf, m3) = sc.start_from_config(2, &s, &bins);
    assert_eq!(scalar(&conf, "initial-cluster-state"), "existing");
    procs.push(m3);
    assert_rejoined(procs, "m3", &s);
}

#[test]
fn scale_up_adds_a_learner_and_trims_initial_cluster() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    // The config knows four members; two run; m3 is being added, m4 not yet.
    let sc = Scene::new(&["m1", "m2", "m3", "m4"], false);
    let mut procs = sc.start(2, &bins);
    write_data(&procs[0], "before");
    // Leftovers in m3's volume are not used: a scale-up starts empty.
    std::fs::create_dir_all(sc.members[2].data_dir.join("member/snap")).unwrap();
    std::fs::write(sc.members[2].data_dir.join("member/snap/db"), b"junk").unwrap();
    let s = sc.serve(2, None);
    sc.initialize(&s);
    assert_learner_added(&procs[0], &sc.members[2]);
    assert!(!sc.members[2].data_dir.exists());
    let (conf, m3) = sc.start_from_config(2, &s, &bins);
    assert_eq!(scalar(&conf, "initial-cluster-state"), "existing");
    let want: Vec<String> = sc.members[..3]
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    assert_eq!(scalar(&conf, "initial-cluster"), want.join(","));
    let m = s.get("/metrics").body;
    assert_eq!(
        metric(&m, "etcdbr_member_remove_duration_seconds_count"),
        0.0
    );
    assert_eq!(
        metric(&m, "etcdbr_is_learner_count_total{succeeded=\"true\"}"),
        1.0,
        "{m}"
    );
    procs.push(m3);
    assert_rejoined(procs, "m3", &s);
}

#[test]
fn fresh_cluster_bootstraps_as_new_when_no_etcd_answers() {
    let Some(bins) = EtcdBins::get("3.5.1") else {
        return;
    };
    let sc = Scene::new(&["m1", "m2", "m3"], false);
    let serves: Vec<Serve> = (0..3).map(|i| sc.serve(i, None)).collect();
    // The pods of a new StatefulSet initialize at once; nobody answers the probe, so each
    // falls back to validation: no data directory, nothing to restore.
    std::thread::scope(|t| {
        for s in &serves {
            t.spawn(|| sc.initialize(s));
        }
    });
    let mut procs = Vec::new();
    for (i, s) in serves.iter().enumerate() {
        let (conf, p) = sc.start_from_config(i, s, &bins);
        assert_eq!(scalar(&conf, "initial-cluster-state"), "new");
        assert_eq!(scalar(&conf, "initial-cluster").matches('=').count(), 3);
        let m = s.get("/metrics").body;
        assert_eq!(
            metric(&m, "etcd_restore_initializations_total{outcome=\"empty\"}"),
            1.0,
            "{m}"
        );
        assert_eq!(metric(&m, "etcdbr_is_learner_count_total"), 0.0, "{m}");
        procs.push(p);
    }
    for p in &mut procs {
        p.wait_healthy(Duration::from_secs(60)).unwrap();
    }
    write_data(&procs[0], "fresh");
    assert_members_agree(&procs);
    assert!(
        procs[0]
            .member_list()
            .unwrap()
            .iter()
            .all(|m| !m.is_learner)
    );
}
