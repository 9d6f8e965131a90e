//! The encoder, for tests and benches that write deltas as etcd-backup-restore does.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::event::{EventKind, OwnedEvent};

/// Encodes events exactly like etcd-backup-restore (Go `encoding/json` with mvccpb's tags:
/// omitempty everywhere, PUT's `type` omitted) and appends the SHA-256 trailer.
pub fn encode_delta(events: &[(OwnedEvent, &str)]) -> Vec<u8> {
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut s = String::from("[");
    for (i, (e, time)) in events.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"etcdEvent\":{");
        if e.kind == EventKind::Delete {
            s.push_str("\"type\":1,");
        }
        s.push_str("\"kv\":{");
        let mut parts: Vec<String> = Vec::new();
        if !e.key.is_empty() {
            parts.push(format!("\"key\":\"{}\"", b64.encode(&e.key)));
        }
        for (name, v) in [
            ("create_revision", e.create_revision),
            ("mod_revision", e.mod_revision),
            ("version", e.version),
        ] {
            if v != 0 {
                parts.push(format!("\"{name}\":{v}"));
            }
        }
        if !e.value.is_empty() {
            parts.push(format!("\"value\":\"{}\"", b64.encode(&e.value)));
        }
        if e.lease != 0 {
            parts.push(format!("\"lease\":{}", e.lease));
        }
        s.push_str(&parts.join(","));
        s.push_str(&format!("}}}},\"time\":\"{time}\"}}"));
    }
    s.push(']');
    let mut out = s.into_bytes();
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}
