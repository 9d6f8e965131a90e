//! The decoder: the SHA-256 trailer checked first, then a borrowing serde visitor walks the
//! array; key and value are base64-decoded into two buffers reused for every event.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

use crate::show::hex;

use super::error::DeltaError;
use super::event::{DeltaStats, Event, EventKind};
use super::go_base64::B64Buf;

/// Size of the SHA-256 trailer.
pub const HASH_LEN: usize = 32;

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
