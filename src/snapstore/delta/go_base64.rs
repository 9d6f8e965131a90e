//! Go's `base64.StdEncoding` decoding into buffers reused for every event.

use base64::Engine as _;

/// Go's `base64.StdEncoding`: padding required, non-zero trailing bits tolerated. The SIMD
/// engine picks AVX2/NEON at runtime (values are most of a delta's bytes).
static GO_STD_BASE64: std::sync::LazyLock<base64::engine::Simd> = std::sync::LazyLock::new(|| {
    base64::engine::Simd::standard(
        base64::engine::general_purpose::PAD.with_decode_allow_trailing_bits(true),
    )
});

/// A reusable decode buffer: grows, never shrinks, and is never zero-filled per event.
pub(super) struct B64Buf {
    buf: Vec<u8>,
    pub(super) len: usize,
}

impl B64Buf {
    pub(super) fn new(capacity: usize) -> Self {
        B64Buf {
            buf: vec![0; capacity],
            len: 0,
        }
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    pub(super) fn decode(&mut self, text: &str) -> Result<(), String> {
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
