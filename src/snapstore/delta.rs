//! Delta snapshot decoder.
//!
//! A delta object (after decompression) is Go `encoding/json` output of
//! `[{"etcdEvent":{"type":1,"kv":{...}},"time":"..."},...]` followed by the raw 32-byte SHA-256
//! of that JSON text (docs/formats.md; upstream `snapshotter.go` `TakeDeltaSnapshot`). The hash
//! is checked before the first event is handed out, so a consumer never sees part of a corrupt
//! object. Parsing walks the array with a borrowing serde visitor: key and value are
//! base64-decoded into two buffers reused for every event, nothing is allocated per event.

use crate::show::hex;

use std::fmt;

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Size of the SHA-256 trailer.
pub const HASH_LEN: usize = 32;

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits tolerated. The SIMD
/// engine picks AVX2/NEON at runtime (values are most of a delta's bytes).
static GO_STD_BASE64: std::sync::LazyLock<base64::engine::Simd> = std::sync::LazyLock::new(|| {
    base64::engine::Simd::standard(
        base64::engine::general_purpose::PAD.with_decode_allow_trailing_bits(true),
    )
});

/// A reusable decode buffer: grows, never shrinks, and is never zero-filled per event.
struct B64Buf {
    buf: Vec<u8>,
    len: usize,
}

impl B64Buf {
    fn new(capacity: usize) -> Self {
        B64Buf {
            buf: vec![0; capacity],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn decode(&mut self, text: &str) -> Result<(), String> {
        let need = base64::decoded_len_estimate(text.len());
        if self.buf.len() < need {
            self.buf.resize(need.next_power_of_two(), 0);
        }
        self.len = 0;
        self.len = GO_STD_BASE64
            .decode_slice(text, &mut self.buf)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum EventKind {
    Put,
    Delete,
}

/// One watch event of a delta snapshot. `key`/`value` are the decoded bytes; they are only
/// valid for the duration of the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub kind: EventKind,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
    /// When the backup sidecar received the event (RFC 3339); informational only.
    pub time: &'a str,
}

/// What a decoded delta contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeltaStats {
    pub events: u64,
    pub first_revision: Option<i64>,
    pub last_revision: Option<i64>,
    /// Length of the JSON text (object length minus the hash).
    pub json_bytes: u64,
}

/// Why a delta could not be decoded. `E` is the callback's own error.
#[derive(Debug, Error)]
pub enum DeltaError<E> {
    #[error(
        "{object}: {len} bytes is too short for a delta snapshot (JSON followed by a 32-byte SHA-256)"
    )]
    TooShort { object: String, len: u64 },
    #[error(
        "{object}: SHA-256 trailer at byte {offset} is {expected} but the JSON hashes to {actual}"
    )]
    Hash {
        object: String,
        offset: u64,
        expected: String,
        actual: String,
    },
    #[error("{object}: malformed delta JSON near byte {offset}: {detail}")]
    Json {
        object: String,
        offset: u64,
        detail: String,
    },
    #[error("{object}: event {index} near byte {offset}: bad base64 in kv.{field}: {detail}")]
    Base64 {
        object: String,
        index: u64,
        offset: u64,
        field: &'static str,
        detail: String,
    },
    #[error("{object}: event {index} near byte {offset}: {detail}")]
    Event {
        object: String,
        index: u64,
        offset: u64,
        detail: String,
    },
    /// The callback returned an error; decoding stopped there.
    #[error("{object}: event {index} (revision {revision}) was refused: {source}")]
    Callback {
        object: String,
        index: u64,
        revision: i64,
        #[source]
        source: E,
    },
}

impl<E> DeltaError<E> {
    /// The byte offset the error refers to, when it has one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            DeltaError::TooShort { .. } | DeltaError::Callback { .. } => None,
            DeltaError::Hash { offset, .. }
            | DeltaError::Json { offset, .. }
            | DeltaError::Base64 { offset, .. }
            | DeltaError::Event { offset, .. } => Some(*offset),
        }
    }

    /// Replaces the callback error type (for errors that did not come from the callback).
    pub fn map_callback<F>(self, f: impl FnOnce(E) -> F) -> DeltaError<F> {
        match self {
            DeltaError::TooShort { object, len } => DeltaError::TooShort { object, len },
            DeltaError::Hash {
                object,
                offset,
                expected,
                actual,
            } => DeltaError::Hash {
                object,
                offset,
                expected,
                actual,
            },
            DeltaError::Json {
                object,
                offset,
                detail,
            } => DeltaError::Json {
                object,
                offset,
                detail,
            },
            DeltaError::Base64 {
                object,
                index,
                offset,
                field,
                detail,
            } => DeltaError::Base64 {
                object,
                index,
                offset,
                field,
                detail,
            },
            DeltaError::Event {
                object,
                index,
                offset,
                detail,
            } => DeltaError::Event {
                object,
                index,
                offset,
                detail,
            },
            DeltaError::Callback {
                object,
                index,
                revision,
                source,
            } => DeltaError::Callback {
                object,
                index,
                revision,
                source: f(source),
            },
        }
    }
}

/// Splits off and checks the SHA-256 trailer, returning the JSON text.
pub fn verify_delta_hash<'b, E>(bytes: &'b [u8], object: &str) -> Result<&'b [u8], DeltaError<E>> {
    let Some(json_len) = bytes.len().checked_sub(HASH_LEN).filter(|&n| n > 0) else {
        return Err(DeltaError::TooShort {
            object: object.into(),
            len: bytes.len() as u64,
        });
    };
    let (json, trailer) = bytes.split_at(json_len);
    let actual = Sha256::digest(json);
    if actual.as_slice() != trailer {
        return Err(DeltaError::Hash {
            object: object.into(),
            offset: json_len as u64,
            expected: hex(trailer),
            actual: hex(&actual),
        });
    }
    Ok(json)
}

/// Verifies the hash of a delta object (JSON + SHA-256), then calls `f` for every event in file
/// order.
pub fn decode_delta<E, F>(
    bytes: &[u8],
    object_name: &str,
    mut f: F,
) -> Result<DeltaStats, DeltaError<E>>
where
    F: FnMut(&Event<'_>) -> Result<(), E>,
{
    let json = verify_delta_hash(bytes, object_name)?;
    decode_delta_json(json, object_name, &mut f)
}

/// Like [`decode_delta`] for JSON text whose hash was already checked (or that has none).
pub fn decode_delta_json<E, F>(
    json: &[u8],
    object_name: &str,
    f: &mut F,
) -> Result<DeltaStats, DeltaError<E>>
where
    F: FnMut(&Event<'_>) -> Result<(), E>,
{
    let mut ctx = Ctx {
        key: B64Buf::new(256),
        value: B64Buf::new(4096),
        time: String::new(),
        f,
        callback_error: None,
        failure: None,
        stats: DeltaStats {
            json_bytes: json.len() as u64,
            ..DeltaStats::default()
        },
    };
    let mut de = serde_json::Deserializer::from_slice(json);
    let result =
        de::Deserializer::deserialize_seq(&mut de, ArrayVisitor(&mut ctx)).and_then(|()| de.end());
    match result {
        Ok(()) => Ok(ctx.stats),
        Err(e) => {
            let offset = json_offset(json, &e);
            let index = ctx.stats.events;
            let object = object_name.to_string();
            if let Some(source) = ctx.callback_error.take() {
                return Err(DeltaError::Callback {
                    object,
                    index,
                    revision: ctx.stats.last_revision.unwrap_or_default(),
                    source,
                });
            }
            Err(match ctx.failure.take() {
                Some(Failure::Base64 { field, detail }) => DeltaError::Base64 {
                    object,
                    index,
                    offset,
                    field,
                    detail,
                },
                Some(Failure::Event(detail)) => DeltaError::Event {
                    object,
                    index,
                    offset,
                    detail,
                },
                None => DeltaError::Json {
                    object,
                    offset,
                    detail: json_detail(&e),
                },
            })
        }
    }
}

/// serde_json reports line and column (1-based, in bytes); turn them into a byte offset.
fn json_offset(json: &[u8], e: &serde_json::Error) -> u64 {
    if e.is_eof() {
        return json.len() as u64;
    }
    let (line, column) = (e.line(), e.column());
    let mut line_start = 0usize;
    if line > 1 {
        let mut seen = 1usize;
        for (i, &b) in json.iter().enumerate() {
            if b == b'\n' {
                seen += 1;
                if seen == line {
                    line_start = i + 1;
                    break;
                }
            }
        }
    }
    (line_start + column.saturating_sub(1)) as u64
}

/// serde_json's message without its " at line L column C" tail (we report the byte offset).
fn json_detail(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

enum Failure {
    Base64 { field: &'static str, detail: String },
    Event(String),
}

struct Ctx<'f, F, E> {
    key: B64Buf,
    value: B64Buf,
    time: String,
    f: &'f mut F,
    callback_error: Option<E>,
    failure: Option<Failure>,
    stats: DeltaStats,
}

impl<F, E> Ctx<'_, F, E> {
    fn fail<D: de::Error>(&mut self, failure: Failure) -> D {
        let msg = match &failure {
            Failure::Base64 { field, detail } => format!("bad base64 in {field}: {detail}"),
            Failure::Event(d) => d.clone(),
        };
        self.failure = Some(failure);
        D::custom(msg)
    }
}

struct ArrayVisitor<'c, 'f, F, E>(&'c mut Ctx<'f, F, E>);

impl<'de, F, E> Visitor<'de> for ArrayVisitor<'_, '_, F, E>
where
    F: FnMut(&Event<'_>) -> Result<(), E>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of delta events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(EventSeed(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

struct EventSeed<'c, 'f, F, E>(&'c mut Ctx<'f, F, E>);

impl<'de, F, E> DeserializeSeed<'de> for EventSeed<'_, '_, F, E>
where
    F: FnMut(&Event<'_>) -> Result<(), E>,
{
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(EventVisitor(self.0))
    }
}

/// Keys are matched like Go's `encoding/json`: exact first, then ASCII case-insensitively.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    EtcdEvent,
    Time,
    Type,
    Kv,
    Key,
    Value,
    CreateRevision,
    ModRevision,
    Version,
    Lease,
    Other,
}

fn key_of(s: &str) -> Field {
    match s {
        "etcdEvent" => return Field::EtcdEvent,
        "time" => return Field::Time,
        "type" => return Field::Type,
        "kv" => return Field::Kv,
        "key" => return Field::Key,
        "value" => return Field::Value,
        "create_revision" => return Field::CreateRevision,
        "mod_revision" => return Field::ModRevision,
        "version" => return Field::Version,
        "lease" => return Field::Lease,
        _ => {}
    }
    const KEYS: [(&str, Field); 10] = [
        ("etcdEvent", Field::EtcdEvent),
        ("time", Field::Time),
        ("type", Field::Type),
        ("kv", Field::Kv),
        ("key", Field::Key),
        ("value", Field::Value),
        ("create_revision", Field::CreateRevision),
        ("mod_revision", Field::ModRevision),
        ("version", Field::Version),
        ("lease", Field::Lease),
    ];
    for (name, k) in KEYS {
        if name.eq_ignore_ascii_case(s) {
            return k;
        }
    }
    Field::Other
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Field;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Field, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Field;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<Er: de::Error>(self, v: &str) -> Result<Field, Er> {
        Ok(key_of(v))
    }
}

#[derive(Default)]
struct Fields {
    kind: i64,
    has_kv: bool,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

/// Where this event's `time` text lives.
enum TimeText<'de> {
    Absent,
    Borrowed(&'de str),
    Owned,
}

struct EventVisitor<'c, 'f, F, E>(&'c mut Ctx<'f, F, E>);

impl<'de, F, E> Visitor<'de> for EventVisitor<'_, '_, F, E>
where
    F: FnMut(&Event<'_>) -> Result<(), E>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a delta event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ctx = self.0;
        ctx.key.clear();
        ctx.value.clear();
        let mut fields = Fields::default();
        let mut time = TimeText::Absent;
        while let Some(k) = map.next_key_seed(KeySeed)? {
            match k {
                Field::EtcdEvent => map.next_value_seed(EtcdEventSeed {
                    ctx: &mut *ctx,
                    fields: &mut fields,
                })?,
                Field::Time => {
                    time = map.next_value_seed(TimeSeed(&mut ctx.time))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let kind = match fields.kind {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            other => {
                return Err(ctx.fail(Failure::Event(format!(
                    "unknown event type {other} (expected 0 PUT or 1 DELETE)"
                ))));
            }
        };
        if !fields.has_kv {
            return Err(ctx.fail(Failure::Event("event has no kv".into())));
        }
        if ctx.key.len == 0 {
            return Err(ctx.fail(Failure::Event("event has an empty key".into())));
        }
        if fields.mod_revision <= 0 {
            return Err(ctx.fail(Failure::Event(format!(
                "mod_revision {} is not positive",
                fields.mod_revision
            ))));
        }
        if let Some(prev) = ctx.stats.last_revision
            && fields.mod_revision < prev
        {
            return Err(ctx.fail(Failure::Event(format!(
                "mod_revision {} is below the previous event's {prev}",
                fields.mod_revision
            ))));
        }
        let time_str: &str = match time {
            TimeText::Absent => "",
            TimeText::Borrowed(s) => s,
            TimeText::Owned => &ctx.time,
        };
        let event = Event {
            kind,
            key: ctx.key.bytes(),
            value: ctx.value.bytes(),
            create_revision: fields.create_revision,
            mod_revision: fields.mod_revision,
            version: fields.version,
            lease: fields.lease,
            time: time_str,
        };
        let outcome = (ctx.f)(&event);
        ctx.stats.last_revision = Some(fields.mod_revision);
        if ctx.stats.first_revision.is_none() {
            ctx.stats.first_revision = Some(fields.mod_revision);
        }
        match outcome {
            Ok(()) => {
                ctx.stats.events += 1;
                Ok(())
            }
            Err(e) => {
                ctx.callback_error = Some(e);
                Err(de::Error::custom("callback refused the event"))
            }
        }
    }
}

struct EtcdEventSeed<'c, 'f, 'x, F, E> {
    ctx: &'c mut Ctx<'f, F, E>,
    fields: &'x mut Fields,
}

impl<'de, F, E> DeserializeSeed<'de> for EtcdEventSeed<'_, '_, '_, F, E> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, F, E> Visitor<'de> for EtcdEventSeed<'_, '_, '_, F, E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an etcdEvent object")
    }
    fn visit_none<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_unit<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key_seed(KeySeed)? {
            match k {
                Field::Type => self.fields.kind = map.next_value::<Option<i64>>()?.unwrap_or(0),
                Field::Kv => map.next_value_seed(KvSeed {
                    ctx: &mut *self.ctx,
                    fields: &mut *self.fields,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct KvSeed<'c, 'f, 'x, F, E> {
    ctx: &'c mut Ctx<'f, F, E>,
    fields: &'x mut Fields,
}

impl<'de, F, E> DeserializeSeed<'de> for KvSeed<'_, '_, '_, F, E> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, F, E> Visitor<'de> for KvSeed<'_, '_, '_, F, E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a kv object")
    }
    fn visit_none<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_unit<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.fields.has_kv = true;
        let ctx = self.ctx;
        while let Some(k) = map.next_key_seed(KeySeed)? {
            match k {
                Field::Key => {
                    if let Err(detail) = map.next_value_seed(Base64Seed(&mut ctx.key))? {
                        return Err(ctx.fail(Failure::Base64 {
                            field: "key",
                            detail,
                        }));
                    }
                }
                Field::Value => {
                    if let Err(detail) = map.next_value_seed(Base64Seed(&mut ctx.value))? {
                        return Err(ctx.fail(Failure::Base64 {
                            field: "value",
                            detail,
                        }));
                    }
                }
                Field::CreateRevision => {
                    self.fields.create_revision = map.next_value::<Option<i64>>()?.unwrap_or(0)
                }
                Field::ModRevision => {
                    self.fields.mod_revision = map.next_value::<Option<i64>>()?.unwrap_or(0)
                }
                Field::Version => {
                    self.fields.version = map.next_value::<Option<i64>>()?.unwrap_or(0)
                }
                Field::Lease => self.fields.lease = map.next_value::<Option<i64>>()?.unwrap_or(0),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Decodes a base64 string (or `null`) into the buffer; a base64 error is returned as the
/// inner `Err` so the caller can attach the field name.
struct Base64Seed<'b>(&'b mut B64Buf);

impl<'de> DeserializeSeed<'de> for Base64Seed<'_> {
    type Value = Result<(), String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Base64Seed<'_> {
    type Value = Result<(), String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a base64 string")
    }
    fn visit_none<Er: de::Error>(self) -> Result<Self::Value, Er> {
        self.0.clear();
        Ok(Ok(()))
    }
    fn visit_unit<Er: de::Error>(self) -> Result<Self::Value, Er> {
        self.visit_none()
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
    fn visit_str<Er: de::Error>(self, v: &str) -> Result<Self::Value, Er> {
        Ok(self.0.decode(v))
    }
}

struct TimeSeed<'b>(&'b mut String);

impl<'de> DeserializeSeed<'de> for TimeSeed<'_> {
    type Value = TimeText<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for TimeSeed<'_> {
    type Value = TimeText<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 time string")
    }
    fn visit_none<Er: de::Error>(self) -> Result<Self::Value, Er> {
        Ok(TimeText::Absent)
    }
    fn visit_unit<Er: de::Error>(self) -> Result<Self::Value, Er> {
        Ok(TimeText::Absent)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
    fn visit_borrowed_str<Er: de::Error>(self, v: &'de str) -> Result<Self::Value, Er> {
        Ok(TimeText::Borrowed(v))
    }
    fn visit_str<Er: de::Error>(self, v: &str) -> Result<Self::Value, Er> {
        self.0.clear();
        self.0.push_str(v);
        Ok(TimeText::Owned)
    }
}

/// An owned copy of an event, for tests and overlap checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct OwnedEvent {
    pub kind: EventKind,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease: i64,
}

impl From<&Event<'_>> for OwnedEvent {
    fn from(e: &Event<'_>) -> Self {
        OwnedEvent {
            kind: e.kind,
            key: e.key.to_vec(),
            value: e.value.to_vec(),
            create_revision: e.create_revision,
            mod_revision: e.mod_revision,
            version: e.version,
            lease: e.lease,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

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
}
