//! The batch file end to end: text in, a checked batch or every problem out.

use std::path::{Path, PathBuf};

use super::*;
use crate::snapstore::{Compression, StoreArgs};

fn parse(text: &str, purpose: Purpose) -> Result<Batch, BatchError> {
    Batch::parse(
        text,
        Path::new("b.yaml"),
        Path::new("/srv"),
        purpose,
        &StoreArgs::default(),
    )
}

fn problems(text: &str) -> Vec<Problem> {
    match parse(text, Purpose::Restore) {
        Err(BatchError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn defaults_merge_into_members_and_relative_paths_follow_the_file() {
    let b = parse(
        "defaults: {store: backups, compression: zlib, parallel: 3}\n\
         maintainOrder: true\n\
         members:\n\
         - {alias: a, prefix: a, dataDir: out/a.etcd, toRevision: 7}\n\
         - {alias: b, store: s3://bkt/x, dataDir: /d/b.etcd, compression: none, toTime: '2024-04-26T00:00:00Z'}\n",
        Purpose::Restore,
    )
    .unwrap();
    assert!(b.maintain_order);
    assert_eq!(b.parallel, Some(3));
    let [a, bb] = &b.members[..] else {
        panic!("{:?}", b.members)
    };
    assert_eq!(a.store_key, "file:///srv/backups/a");
    assert_eq!(a.targets.dirs(), vec![PathBuf::from("/srv/out/a.etcd")]);
    assert_eq!(a.plan.to_revision, Some(7));
    assert_eq!(a.compression, Some(Compression::Zlib));
    assert_eq!(bb.store_key, "s3://bkt/x");
    assert_eq!(bb.compression, Some(Compression::None));
    assert_eq!(bb.plan.to_time, Some(1714089600));
}

#[test]
fn unknown_keys_are_syntax_errors_with_a_location() {
    let e = parse("members:\n- {alias: a, dataDri: x}\n", Purpose::Restore).unwrap_err();
    let BatchError::Syntax { detail, .. } = e else {
        panic!("{e:?}")
    };
    assert!(
        detail.contains("dataDri") && detail.contains("line 2"),
        "{detail}"
    );
}

#[test]
fn every_problem_is_listed_at_once() {
    let p = problems(
        "defaults: {store: /b}\n\
         members:\n\
         - {alias: a, prefix: p1, dataDir: /d/a}\n\
         - {alias: a, prefix: p2, dataDir: /d/b}\n\
         - {alias: c, prefix: p1/, dataDir: /d/a}\n\
         - {alias: d, prefix: p4, dataDir: /d/b/inner}\n\
         - {alias: e, prefix: p5}\n\
         - {prefix: p6, dataDir: /d/f, toRevision: 3, toTime: 5}\n",
    );
    assert!(p.contains(&Problem::DuplicateAlias {
        alias: "a".into(),
        first: 1,
        second: 2
    }));
    assert!(p.contains(&Problem::DuplicateStore {
        member: "c".into(),
        other: "a".into(),
        store: "file:///b/p1".into()
    }));
    assert!(p.contains(&Problem::DuplicateDataDir {
        member: "c".into(),
        other: "a".into(),
        dir: "/d/a".into()
    }));
    assert!(p.contains(&Problem::NestedDataDir {
        member: "d".into(),
        other: "a".into(),
        inner: "/d/b/inner".into(),
        outer: "/d/b".into()
    }));
    assert!(p.contains(&Problem::NoTarget { member: "e".into() }));
    assert!(p.contains(&Problem::NoAlias {
        member: "member #6".into()
    }));
    assert!(p.contains(&Problem::BothPointsInTime {
        member: "member #6".into()
    }));
    assert_eq!(p.len(), 7, "{p:#?}");
}

#[test]
fn member_sets_are_checked_like_restore_flags() {
    let b = parse(
        "defaults: {store: /b}\nmembers:\n- alias: c\n  memberSet:\n    initialClusterToken: t\n    members:\n\
         \x20   - {name: m1, peerUrls: ['http://127.0.0.1:2380'], dataDir: /d/m1}\n\
         \x20   - {name: m2, peerUrls: ['http://127.0.0.1:2381'], dataDir: /d/m2}\n",
        Purpose::Restore,
    )
    .unwrap();
    let MemberTargets::Set { flags, dirs } = &b.members[0].targets else {
        panic!()
    };
    assert_eq!(
        flags.initial_cluster,
        "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2381"
    );
    assert_eq!(flags.initial_cluster_token, "t");
    assert_eq!(dirs.len(), 2);

    let p = problems(
        "defaults: {store: /b}\nmembers:\n- alias: c\n  memberSet:\n    members:\n\
         \x20   - {name: m1, dataDir: /d/m1}\n\
         \x20   - {name: m2, peerUrls: ['http://x:1']}\n",
    );
    assert_eq!(p.len(), 2, "{p:#?}");
}

#[test]
fn compact_needs_no_data_dir() {
    let b = parse(
        "defaults: {store: /b}\nmembers:\n- {alias: a, prefix: a}\n",
        Purpose::Compact,
    )
    .unwrap();
    assert!(matches!(b.members[0].targets, MemberTargets::None));
}
