use super::*;
use crate::show::hex;
use std::collections::BTreeMap;
use std::convert::Infallible;

#[derive(Default)]
struct MapSink {
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    ends: Vec<i64>,
}
impl RecordSink for MapSink {
    type Error = Infallible;
    fn put(&mut self, k: &[u8], v: &[u8]) -> Result<(), Infallible> {
        self.records.insert(k.to_vec(), v.to_vec());
        Ok(())
    }
    fn end_revision(&mut self, main: i64) -> Result<(), Infallible> {
        self.ends.push(main);
        Ok(())
    }
}
impl BaseLookup for MapSink {
    type Error = Infallible;
    fn get(&mut self, k: &[u8]) -> Result<Option<Vec<u8>>, Infallible> {
        Ok(self.records.get(k).cloned())
    }
}

fn put(key: &'static [u8], create: i64, rev: i64, version: i64) -> Event<'static> {
    Event {
        kind: EventKind::Put,
        key,
        value: b"v",
        create_revision: create,
        mod_revision: rev,
        version,
        lease: 0,
        time: "",
    }
}
fn del(key: &'static [u8], rev: i64) -> Event<'static> {
    Event {
        kind: EventKind::Delete,
        key,
        value: b"",
        create_revision: 0,
        mod_revision: rev,
        version: 0,
        lease: 0,
        time: "",
    }
}

/// Builds a base by applying events from revision 1 (an empty store).
fn base_of(events: &[Event<'static>]) -> (MapSink, i64) {
    let mut sink = MapSink::default();
    let mut a = Applier::new(1, LeasePolicy::default());
    for e in events {
        a.apply(e, &mut sink).unwrap();
    }
    a.finish(&mut sink).unwrap();
    let rev = a.current_revision();
    (sink, rev)
}

type Record = Result<(Vec<u8>, Vec<u8>), Infallible>;

fn records(s: &MapSink) -> Vec<Record> {
    s.records
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.clone())))
        .collect()
}

#[test]
fn writes_puts_tombstones_and_sub_revisions_like_etcd() {
    let (sink, rev) = base_of(&[
        put(b"a", 2, 2, 1),
        put(b"b", 3, 3, 1),
        put(b"c", 3, 3, 1), // same txn: sub 1
        put(b"a", 2, 4, 2),
        del(b"b", 5),
    ]);
    assert_eq!(rev, 5);
    assert_eq!(sink.ends, vec![2, 3, 4, 5]);
    let keys: Vec<String> = sink.records.keys().map(|k| hex(k)).collect();
    assert_eq!(
        keys,
        vec![
            "00000000000000025f0000000000000000",
            "00000000000000035f0000000000000000",
            "00000000000000035f0000000000000001",
            "00000000000000045f0000000000000000",
            "00000000000000055f000000000000000074",
        ]
    );
    let kv =
        KeyValue::decode(&sink.records[&Revision::new(4, 0).to_key(false).as_bytes().to_vec()])
            .unwrap();
    assert_eq!(
        (kv.key, kv.create_revision, kv.mod_revision, kv.version),
        (&b"a"[..], 2, 4, 2)
    );
    let t = &sink.records[&Revision::new(5, 0).to_key(true).as_bytes().to_vec()];
    assert_eq!(t, &vec![0x0a, 0x01, b'b']);
}

#[test]
fn detects_wrong_versions_gaps_and_double_deletes() {
    let mut s = MapSink::default();
    let mut a = Applier::new(1, LeasePolicy::default());
    a.apply(&put(b"a", 2, 2, 1), &mut s).unwrap();
    let e = a.apply(&put(b"a", 2, 3, 3), &mut s).unwrap_err();
    assert!(
        matches!(
            e,
            ApplyError::Inconsistent {
                field: "version",
                expected: 2,
                got: 3,
                ..
            }
        ),
        "{e}"
    );
    let e = a.apply(&put(b"x", 5, 5, 1), &mut s).unwrap_err();
    assert!(matches!(e, ApplyError::Gap { from: 3, to: 4, .. }), "{e}");
    a.apply(&del(b"a", 3), &mut s).unwrap();
    let e = a.apply(&del(b"a", 4), &mut s).unwrap_err();
    assert!(matches!(e, ApplyError::DeleteOfMissingKey { .. }), "{e}");
    let e = a.apply(&put(b"q", 2, 2, 1), &mut s).unwrap_err();
    assert!(
        matches!(e, ApplyError::OutOfOrder { .. }) || matches!(e, ApplyError::BaseDisagrees { .. }),
        "{e}"
    );
}

#[test]
fn events_covered_by_the_base_are_checked_and_skipped() {
    let (base, base_rev) = base_of(&[put(b"a", 2, 2, 1), put(b"b", 3, 3, 1), put(b"a", 2, 4, 2)]);
    let mut lookup = MapSink {
        records: base.records.clone(),
        ends: vec![],
    };
    let mut a = Applier::new(base_rev, LeasePolicy::default());
    // A delta that starts before the base's revision (upstream 1044): the overlap is skipped.
    a.apply(&put(b"b", 3, 3, 1), &mut lookup).unwrap();
    a.apply(&put(b"a", 2, 4, 2), &mut lookup).unwrap();
    a.apply(&put(b"a", 2, 5, 3), &mut lookup).unwrap();
    a.finish(&mut lookup).unwrap();
    assert_eq!(a.stats().events_skipped, 2);
    assert_eq!(a.stats().events_applied, 1);
    a.verify_base(records(&base)).unwrap();
    assert_eq!(a.stats().keys_verified_against_base, 1);

    // A covered event that disagrees with the base is refused.
    let mut a = Applier::new(base_rev, LeasePolicy::default());
    let mut wrong = put(b"b", 3, 3, 1);
    wrong.value = b"other";
    let e = a.apply(&wrong, &mut lookup).unwrap_err();
    assert!(matches!(e, ApplyError::BaseDisagrees { .. }), "{e}");
}

#[test]
fn base_state_assumed_by_the_deltas_is_verified() {
    let (base, base_rev) = base_of(&[put(b"a", 2, 2, 1), put(b"b", 3, 3, 1), del(b"b", 4)]);
    let lookup = MapSink {
        records: base.records.clone(),
        ends: vec![],
    };
    let run = |events: &[Event<'static>]| {
        let mut lookup = MapSink {
            records: lookup.records.clone(),
            ends: vec![],
        };
        let mut a = Applier::new(base_rev, LeasePolicy::default());
        for e in events {
            a.apply(e, &mut lookup)?;
        }
        a.verify_base(records(&base))
    };
    // Correct: "a" continues at version 2, "b" is re-created, "a" then deleted.
    run(&[put(b"a", 2, 5, 2), put(b"b", 6, 6, 1), del(b"a", 7)]).unwrap();
    // Wrong: the delta claims "a" was created at 3.
    assert!(matches!(
        run(&[put(b"a", 3, 5, 2)]),
        Err(ApplyError::BaseState { .. })
    ));
    // Wrong: "b" is not live in the base, yet the delta deletes it.
    assert!(matches!(
        run(&[del(b"b", 5)]),
        Err(ApplyError::BaseState { .. })
    ));
    // Wrong: "a" is live in the base, yet the delta creates it anew.
    assert!(matches!(
        run(&[put(b"a", 5, 5, 1)]),
        Err(ApplyError::BaseState { .. })
    ));
}

#[test]
fn unknown_leases_of_live_keys_are_reported_and_strip_all_removes_every_lease() {
    let mut out = MapSink::default();
    let policy = LeasePolicy {
        known: [7].into_iter().collect(),
        ..Default::default()
    };
    let mut a = Applier::new(1, policy);
    let with_lease = |e: Event<'static>, l: i64| Event { lease: l, ..e };
    a.apply(&with_lease(put(b"a", 2, 2, 1), 7), &mut out)
        .unwrap();
    a.apply(&with_lease(put(b"b", 3, 3, 1), 8), &mut out)
        .unwrap();
    // "c" held lease 9, then was deleted (its lease revoked): 9 is not granted again.
    a.apply(&with_lease(put(b"c", 4, 4, 1), 9), &mut out)
        .unwrap();
    a.apply(&del(b"c", 5), &mut out).unwrap();
    // "d" moved from lease 10 to lease 11.
    a.apply(&with_lease(put(b"d", 6, 6, 1), 10), &mut out)
        .unwrap();
    a.apply(&with_lease(put(b"d", 6, 7, 2), 11), &mut out)
        .unwrap();
    assert_eq!(a.stats().leases_stripped, 0);
    assert_eq!(
        a.unknown_leases().unwrap().into_iter().collect::<Vec<_>>(),
        vec![8, 11]
    );
    let leases: Vec<i64> = out
        .records
        .values()
        .map(|v| KeyValue::decode(v).unwrap().lease)
        .collect();
    assert_eq!(leases, vec![7, 8, 9, 0, 10, 11]);

    let mut out = MapSink::default();
    let mut a = Applier::new(
        1,
        LeasePolicy {
            strip_all: true,
            ..Default::default()
        },
    );
    a.apply(&with_lease(put(b"a", 2, 2, 1), 7), &mut out)
        .unwrap();
    assert_eq!(a.stats().leases_stripped, 1);
    assert!(a.unknown_leases().unwrap().is_empty());
    assert_eq!(
        KeyValue::decode(out.records.values().next().unwrap())
            .unwrap()
            .lease,
        0
    );
}
