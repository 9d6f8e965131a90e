//! The format end to end: upstream's measured bytes decoded, our encoder's bytes compared, every
//! error kind with its offset.

use super::*;
use sha2::{Digest, Sha256};
use std::convert::Infallible;
use thiserror::Error;

fn with_hash(json: &str) -> Vec<u8> {
    let mut v = json.as_bytes().to_vec();
    let d = Sha256::digest(&v);
    v.extend_from_slice(&d);
    v
}

fn collect(bytes: &[u8]) -> Result<Vec<(OwnedEvent, String)>, DeltaError<Infallible>> {
    let mut out = Vec::new();
    decode_delta(bytes, "Incr-test", |e: &Event<'_>| {
        out.push((OwnedEvent::from(e), e.time.to_string()));
        Ok::<(), Infallible>(())
    })?;
    Ok(out)
}

/// The exact lines measured from etcd-backup-restore's encoder (reference notes §2.2).
const MEASURED: &str = concat!(
    r#"[{"etcdEvent":{"kv":{"key":"L3JlZ2lzdHJ5L2Zvbw==","create_revision":5,"mod_revision":7,"version":2,"value":"YmFy"}},"time":"2024-05-06T07:08:09.123456789Z"},"#,
    r#"{"etcdEvent":{"type":1,"kv":{"key":"L3JlZ2lzdHJ5L2Zvbw==","mod_revision":8}},"time":"2024-05-06T07:08:09.123456789Z"},"#,
    r#"{"etcdEvent":{"kv":{"key":"aw==","create_revision":9,"mod_revision":9,"version":1,"lease":7587}},"time":"2024-05-06T07:08:10+02:00"}]"#
);

#[test]
fn decodes_the_measured_upstream_encoding() {
    let events = collect(&with_hash(MEASURED)).unwrap();
    assert_eq!(events.len(), 3);
    let (put, t) = &events[0];
    assert_eq!(put.kind, EventKind::Put);
    assert_eq!(put.key, b"/registry/foo");
    assert_eq!(put.value, b"bar");
    assert_eq!(
        (
            put.create_revision,
            put.mod_revision,
            put.version,
            put.lease
        ),
        (5, 7, 2, 0)
    );
    assert_eq!(t, "2024-05-06T07:08:09.123456789Z");
    let (del, _) = &events[1];
    assert_eq!(del.kind, EventKind::Delete);
    assert_eq!(del.key, b"/registry/foo");
    assert!(del.value.is_empty());
    assert_eq!(del.mod_revision, 8);
    let (lease, t) = &events[2];
    assert_eq!(lease.lease, 7587);
    assert!(lease.value.is_empty());
    assert_eq!(t, "2024-05-06T07:08:10+02:00");
}

#[test]
fn our_encoder_matches_the_measured_bytes() {
    let events = collect(&with_hash(MEASURED)).unwrap();
    let pairs: Vec<(OwnedEvent, &str)> = events
        .iter()
        .map(|(e, t)| (e.clone(), t.as_str()))
        .collect();
    assert_eq!(encode_delta(&pairs), with_hash(MEASURED));
}

#[test]
fn stats_and_empty_array() {
    let stats = decode_delta(&with_hash(MEASURED), "o", |_| Ok::<(), Infallible>(())).unwrap();
    assert_eq!(stats.events, 3);
    assert_eq!(stats.first_revision, Some(7));
    assert_eq!(stats.last_revision, Some(9));
    assert_eq!(stats.json_bytes, MEASURED.len() as u64);
    let stats = decode_delta(&with_hash("[]"), "o", |_| Ok::<(), Infallible>(())).unwrap();
    assert_eq!(stats.events, 0);
}

#[test]
fn hash_is_checked_before_any_event() {
    let mut bytes = with_hash(MEASURED);
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    let mut calls = 0;
    let err = decode_delta(&bytes, "Incr-x", |_| {
        calls += 1;
        Ok::<(), Infallible>(())
    })
    .unwrap_err();
    assert_eq!(calls, 0);
    assert!(matches!(err, DeltaError::Hash { offset, .. } if offset == (n - 32) as u64));
    // A flipped JSON byte also breaks the hash, again before any callback.
    let mut bytes = with_hash(MEASURED);
    bytes[200] ^= 0x01;
    assert!(matches!(collect(&bytes), Err(DeltaError::Hash { .. })));
}

#[test]
fn too_short_and_truncated() {
    for len in [0usize, 1, 31, 32] {
        let bytes = vec![b'['; len];
        assert!(
            matches!(collect(&bytes), Err(DeltaError::TooShort { len: l, .. }) if l == len as u64),
            "{len}"
        );
    }
    let full = with_hash(MEASURED);
    let cut = &full[..full.len() - 10];
    assert!(matches!(collect(cut), Err(DeltaError::Hash { .. })));
}

#[test]
fn malformed_json_with_valid_hash_names_the_offset() {
    // Truncated JSON, re-hashed: the hash is fine, the JSON is not.
    let truncated = &MEASURED[..150];
    let err = collect(&with_hash(truncated)).unwrap_err();
    match &err {
        DeltaError::Json { object, offset, .. } => {
            assert_eq!(object, "Incr-test");
            assert_eq!(*offset, 150);
        }
        other => panic!("{other}"),
    }
    // Trailing garbage after the array.
    let err = collect(&with_hash(&format!("{MEASURED}x"))).unwrap_err();
    assert!(
        matches!(err, DeltaError::Json { offset, .. } if offset as usize == MEASURED.len()),
        "{err}"
    );
    // Not an array.
    assert!(matches!(
        collect(&with_hash("{}")),
        Err(DeltaError::Json { .. })
    ));
    // A string where a number belongs.
    let bad = MEASURED.replacen("\"mod_revision\":7", "\"mod_revision\":\"7\"", 1);
    let err = collect(&with_hash(&bad)).unwrap_err();
    assert!(matches!(err, DeltaError::Json { .. }), "{err}");
}

#[test]
fn bad_base64_is_typed() {
    let bad = MEASURED.replacen("YmFy", "YmF!", 1);
    let err = collect(&with_hash(&bad)).unwrap_err();
    match &err {
        DeltaError::Base64 {
            index,
            field,
            offset,
            ..
        } => {
            assert_eq!(*index, 0);
            assert_eq!(*field, "value");
            let pos = bad.find("YmF!").unwrap() as u64;
            assert!(*offset >= pos && *offset <= pos + 6, "{offset} vs {pos}");
        }
        other => panic!("{other}"),
    }
    // Missing padding is an error in Go's StdEncoding too.
    let bad = MEASURED.replacen("aw==", "aw", 1);
    assert!(matches!(
        collect(&with_hash(&bad)),
        Err(DeltaError::Base64 {
            index: 2,
            field: "key",
            ..
        })
    ));
}

#[test]
fn semantic_errors() {
    let cases = [
        (
            MEASURED.replacen("\"type\":1", "\"type\":2", 1),
            "unknown event type",
        ),
        (r#"[{"etcdEvent":{},"time":"t"}]"#.to_string(), "no kv"),
        (r#"[{"time":"t"}]"#.to_string(), "no kv"),
        (
            r#"[{"etcdEvent":{"kv":{"mod_revision":3}}}]"#.to_string(),
            "empty key",
        ),
        (
            r#"[{"etcdEvent":{"kv":{"key":"aw=="}}}]"#.to_string(),
            "not positive",
        ),
        (
            MEASURED.replacen("\"mod_revision\":8", "\"mod_revision\":6", 1),
            "below the previous",
        ),
    ];
    for (json, want) in cases {
        let err = collect(&with_hash(&json)).unwrap_err();
        assert!(
            matches!(err, DeltaError::Event { .. }) && err.to_string().contains(want),
            "{json}: {err}"
        );
    }
}

#[test]
fn tolerates_what_go_tolerates() {
    // Unknown fields, prev_kv, null values, whitespace, escaped time, case-folded keys.
    let json = r#" [ {"etcdEvent" : {"type":null,"kv":{"KEY":"aw==","mod_revision":4,"value":null,"extra":[1,{"a":2}]},"prev_kv":{"key":"aw=="}},"time":"2024\u002d01","other":1} ] "#;
    let events = collect(&with_hash(json)).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0.key, b"k");
    assert_eq!(events[0].0.kind, EventKind::Put);
    assert_eq!(events[0].1, "2024-01");
    // Go's decoder ignores non-zero trailing bits ("aX==" decodes like "aQ==").
    let json = r#"[{"etcdEvent":{"kv":{"key":"aX==","mod_revision":4}}}]"#;
    assert_eq!(collect(&with_hash(json)).unwrap()[0].0.key, b"i");
}

#[test]
fn buffers_are_reset_between_events() {
    let json = r#"[{"etcdEvent":{"kv":{"key":"aw==","mod_revision":4,"value":"dg=="}}},{"etcdEvent":{"kv":{"key":"aw==","mod_revision":5}}}]"#;
    let events = collect(&with_hash(json)).unwrap();
    assert_eq!(events[0].0.value, b"v");
    assert!(events[1].0.value.is_empty());
}

#[test]
fn callback_error_stops_decoding() {
    #[derive(Debug, Error)]
    #[error("stop")]
    struct Stop;
    let mut seen = 0;
    let err = decode_delta(&with_hash(MEASURED), "o", |_| {
        seen += 1;
        if seen == 2 { Err(Stop) } else { Ok(()) }
    })
    .unwrap_err();
    assert_eq!(seen, 2);
    assert!(
        matches!(
            err,
            DeltaError::Callback {
                index: 1,
                revision: 8,
                ..
            }
        ),
        "{err}"
    );
}
