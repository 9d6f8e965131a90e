//! JSON string quoting exactly as Go's `encoding/json` (`json.Marshal`, HTML escaping on)
//! does it, so membership JSON and the v2 store JSON are byte-identical to etcd's.

/// Appends `s` as a quoted JSON string to `out`.
///
/// Go rules: `"` and `\` escaped; `\n`, `\r`, `\t` short forms; other bytes below 0x20
/// and `<`, `>`, `&` as `\u00xx` (lower-case hex); U+2028/U+2029 as `\u2028`/`\u2029`.
/// (Go ≥ 1.22 writes `\b` and `\f` short forms; etcd 3.4/3.5 were built with older Go,
/// which writes `\u0008`/`\u000c` as here.) Invalid UTF-8 cannot occur in `&str`.
pub fn quote_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => {
                let b = c as u32 as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a quoted JSON string.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    out
}

/// A JSON array of strings (`[]` when empty, as Go writes a non-nil empty slice).
pub fn string_array(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote_into(&mut out, s);
    }
    out.push(']');
    out
}
