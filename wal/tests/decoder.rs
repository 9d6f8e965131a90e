//! Decoder properties on WALs we write: frame vectors from etcd output, every
//! truncation of the tail is repairable (or clean at a frame boundary), damage in an
//! earlier segment is corrupt, arbitrary mutations never panic.

use prost::Message;
use wal::decoder::{DecodedRecord, Tail, Visitor, decode_buffers};
use wal::proto::{Entry, HardState, Metadata};
use wal::record::{decode_length_word, encode_frame, encode_length_word, parse_record};
use wal::{Damage, DamageKind, Encoder, SegmentId};

struct Collect(Vec<(u64, i64)>);

impl Visitor for Collect {
    fn record(&mut self, r: &DecodedRecord<'_>) -> Result<(), Damage> {
        self.0.push((r.offset, r.record.rec_type));
        Ok(())
    }
}

/// A small segment like etcd's first one, followed by entries and states.
fn segment(entries: u64, data_len: usize) -> (Vec<u8>, Vec<u64>) {
    let mut enc = Encoder::new(0);
    let mut bounds = vec![0];
    let mut push = |enc: &mut Encoder, f: &dyn Fn(&mut Encoder)| {
        f(enc);
        bounds.push(enc.bytes().len() as u64);
    };
    push(&mut enc, &|e| e.append(wal::record::RecordType::Crc, None));
    let md = Metadata {
        node_id: 1,
        cluster_id: 2,
    }
    .encode_to_vec();
    push(&mut enc, &|e| {
        e.append(wal::record::RecordType::Metadata, Some(&md))
    });
    for i in 1..=entries {
        push(&mut enc, &|e| {
            e.append_entry(&Entry {
                r#type: 0,
                term: 1,
                index: i,
                data: Some(vec![i as u8 | 1; data_len]),
            })
        });
        push(&mut enc, &|e| {
            e.append_state(&HardState {
                term: 1,
                vote: 1,
                commit: i,
            })
        });
    }
    (enc.take(), bounds)
}

const SEG0: SegmentId = SegmentId { seq: 0, index: 0 };
const SEG1: SegmentId = SegmentId { seq: 1, index: 5 };

/// Length words as etcd writes them (docs/wal.md §Frame; etcd's `encodeFrameSize`).
#[test]
fn length_words_match_etcd() {
    assert_eq!(
        encode_length_word(4).to_le_bytes(),
        [0x04, 0, 0, 0, 0, 0, 0, 0x84]
    );
    assert_eq!(
        encode_length_word(32).to_le_bytes(),
        [0x20, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        encode_length_word(25).to_le_bytes(),
        [0x19, 0, 0, 0, 0, 0, 0, 0x87]
    );
    assert_eq!(decode_length_word(0x8700_0000_0000_0019), (25, 7));
    // Without bit 63 the pad bits are ignored, as in etcd's decodeFrameSize.
    assert_eq!(decode_length_word(0x0700_0000_0000_0019), (25, 0));
    // The first frame of every WAL etcd creates: crc record, crc 0.
    let mut out = Vec::new();
    encode_frame(&mut out, 4, 0, None);
    assert_eq!(
        out,
        [
            0x04, 0, 0, 0, 0, 0, 0, 0x84, 0x08, 0x04, 0x10, 0x00, 0, 0, 0, 0
        ]
    );
    // CRC chain vector from a restored etcd 3.5.1 WAL.
    let md = [
        0x08, 0xcd, 0xd2, 0x91, 0x8b, 0xd2, 0xb8, 0x81, 0xcf, 0x8e, 0x01, 0x10, 0xb2, 0x98, 0xea,
        0xf1, 0x94, 0x83, 0x86, 0xfc, 0xcd, 0x01,
    ];
    assert_eq!(crc32c::crc32c_append(0, &md), 0x5f91c0bb);
    assert_eq!(
        crc32c::crc32c_append(0x5f91c0bb, &[0x08, 0x00, 0x10, 0x00]),
        0xedb1dd94
    );
    let r = parse_record(&[0x08, 0x01, 0x10, 0xbb, 0x81, 0xc7, 0xfc, 0x05]).unwrap();
    assert_eq!((r.rec_type, r.crc, r.data), (1, 0x5f91c0bb, None));
}

#[test]
fn every_tail_truncation_is_repairable_or_clean() {
    let (seg, bounds) = segment(6, 700);
    let mut full = Collect(Vec::new());
    decode_buffers(&[(SEG0, &seg)], &mut full).unwrap();
    for cut in 0..=seg.len() {
        let mut c = Collect(Vec::new());
        let end = decode_buffers(&[(SEG0, &seg[..cut])], &mut c)
            .unwrap_or_else(|d| panic!("cut at {cut}: {d}"));
        let at_boundary = bounds.contains(&(cut as u64));
        match end.tail {
            Tail::Clean => assert!(at_boundary, "cut at {cut} read as clean"),
            Tail::Torn(ref d) => {
                assert!(!at_boundary, "cut at {cut}: {d}");
                assert_eq!(d.kind, DamageKind::Torn);
            }
        }
        // The records read are exactly those that fit.
        let fit = bounds.iter().filter(|b| **b <= cut as u64).count() - 1;
        assert_eq!(c.0.as_slice(), &full.0[..fit], "cut at {cut}");
        assert_eq!(end.last_valid_offset, bounds[fit]);
    }
}

#[test]
fn damage_before_the_last_segment_is_corrupt() {
    let (s0, b0) = segment(4, 300);
    // Segment 1 continues the chain.
    let mut full = Collect(Vec::new());
    let end0 = decode_buffers(&[(SEG0, &s0)], &mut full).unwrap();
    let mut enc = Encoder::new(end0.crc);
    enc.append(wal::record::RecordType::Crc, None);
    enc.append_state(&HardState {
        term: 1,
        vote: 1,
        commit: 4,
    });
    let s1 = enc.take();
    let mut c = Collect(Vec::new());
    let end = decode_buffers(&[(SEG0, &s0), (SEG1, &s1)], &mut c).unwrap();
    assert_eq!(end.tail, Tail::Clean);
    assert_eq!(end.last_segment, SEG1);

    // Truncated inside segment 0: corrupt, located.
    let cut = (b0[3] + 20) as usize;
    let d =
        decode_buffers(&[(SEG0, &s0[..cut]), (SEG1, &s1)], &mut Collect(Vec::new())).unwrap_err();
    assert_eq!(
        (d.kind, d.segment, d.offset),
        (DamageKind::Corrupt, SEG0, b0[3])
    );

    // A zeroed record in segment 0 is not "torn" there.
    let mut z = s0.clone();
    for b in &mut z[b0[2] as usize + 8..b0[3] as usize] {
        *b = 0;
    }
    let d = decode_buffers(&[(SEG0, &z), (SEG1, &s1)], &mut Collect(Vec::new())).unwrap_err();
    assert_eq!((d.kind, d.offset), (DamageKind::Corrupt, b0[2]));
    // ...but it is in the last segment.
    let end = decode_buffers(&[(SEG0, &z)], &mut Collect(Vec::new())).unwrap();
    assert!(matches!(end.tail, Tail::Torn(ref d) if d.offset == b0[2]));

    // A segment whose crc record does not continue the chain.
    let mut enc = Encoder::new(end0.crc ^ 1);
    enc.append(wal::record::RecordType::Crc, None);
    let bad1 = enc.take();
    let d = decode_buffers(&[(SEG0, &s0), (SEG1, &bad1)], &mut Collect(Vec::new())).unwrap_err();
    assert_eq!(
        (d.kind, d.segment, d.offset),
        (DamageKind::Corrupt, SEG1, 0)
    );
    // A flipped data byte in the last segment, with no zero sector: corrupt.
    let mut f = s0.clone();
    f[b0[4] as usize + 30] ^= 0x40;
    let d = decode_buffers(&[(SEG0, &f)], &mut Collect(Vec::new())).unwrap_err();
    assert_eq!((d.kind, d.offset), (DamageKind::Corrupt, b0[4]));
}

/// A tiny deterministic PRNG (xorshift) so the test needs no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutations_never_panic() {
    let (s0, _) = segment(5, 200);
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for _ in 0..20_000 {
        let mut m = s0.clone();
        for _ in 0..(rng.next() % 4 + 1) {
            let i = (rng.next() as usize) % m.len();
            m[i] = rng.next() as u8;
        }
        let cut = (rng.next() as usize) % (m.len() + 1);
        let _ = decode_buffers(&[(SEG0, &m[..cut])], &mut Collect(Vec::new()));
        let _ = decode_buffers(&[(SEG0, &m[..cut]), (SEG1, &s0)], &mut Collect(Vec::new()));
        let _ = wal::snap::decode_snap(&m[..cut]);
        let _ = wal::proto::entry_header(&m[..cut]);
    }
}
