//! A key's state as etcd reports it (`mvccpb.KeyValue` through etcdctl's JSON, keys and values
//! base64) and as the generator's oracle records it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One key at some revision. Values larger than the oracle's inline limit are recorded by
/// length and SHA-256 only (`value` empty, `value_len`/`value_sha256` set); [`KeyValue::same`]
/// understands both forms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    #[serde(default)]
    pub create_revision: i64,
    #[serde(default)]
    pub mod_revision: i64,
    #[serde(default)]
    pub version: i64,
    #[serde(default, with = "b64")]
    pub value: Vec<u8>,
    #[serde(default)]
    pub lease: i64,
    /// Set (with `value_sha256`) instead of `value` for large values in oracle files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_sha256: Option<String>,
}

impl KeyValue {
    /// Compares `self` (expected, possibly with a hashed value) with `actual` (full value).
    /// Returns a description of the first difference.
    pub fn diff(&self, actual: &KeyValue) -> Option<String> {
        let k = show_bytes(&self.key);
        if self.key != actual.key {
            return Some(format!("key {k} != {}", show_bytes(&actual.key)));
        }
        for (what, e, a) in [
            (
                "create_revision",
                self.create_revision,
                actual.create_revision,
            ),
            ("mod_revision", self.mod_revision, actual.mod_revision),
            ("version", self.version, actual.version),
            ("lease", self.lease, actual.lease),
        ] {
            if e != a {
                return Some(format!("key {k}: {what} expected {e}, got {a}"));
            }
        }
        match (&self.value_len, &self.value_sha256) {
            (Some(len), Some(sha)) => {
                let got = hex(&Sha256::digest(&actual.value));
                if *len != actual.value.len() as u64 || *sha != got {
                    return Some(format!(
                        "key {k}: value expected {len} bytes sha256 {sha}, got {} bytes sha256 {got}",
                        actual.value.len()
                    ));
                }
            }
            _ if self.value != actual.value => {
                return Some(format!(
                    "key {k}: value expected {}, got {}",
                    show_bytes(&self.value),
                    show_bytes(&actual.value)
                ));
            }
            _ => {}
        }
        None
    }

    pub fn same(&self, actual: &KeyValue) -> bool {
        self.diff(actual).is_none()
    }
}

/// Printable form of arbitrary bytes for messages: UTF-8 with escapes, shortened.
pub fn show_bytes(b: &[u8]) -> String {
    let s: String = b.escape_ascii().to_string();
    if s.len() > 80 {
        let cut = s.char_indices().nth(77).map(|(i, _)| i).unwrap_or(s.len());
        format!(
            "\"{}...\" ({} bytes)",
            s.get(..cut).unwrap_or_default(),
            b.len()
        )
    } else {
        format!("\"{s}\"")
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Serde helper: bytes as standard base64 with padding (Go's `[]byte` in encoding/json).
pub mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
