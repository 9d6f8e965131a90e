//! Showing untrusted bytes in messages: user keys, hashes and object names come from backups
//! and stores we do not control, so nothing here ever writes a control character to a terminal
//! or a log line.

use std::borrow::Cow;

/// Lower-case hex (revision keys, hashes, binary user keys).
pub(crate) fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// An etcd key: quoted text when it is printable UTF-8, else `0x…` hex.
pub(crate) fn key(k: &[u8]) -> String {
    match std::str::from_utf8(k) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => format!("0x{}", hex(k)),
    }
}

/// An object name or path from a store listing: unchanged when printable, else with control
/// characters escaped as Rust does (`\n`, `\u{1b}`), so a hostile name cannot rewrite the
/// terminal or forge a log line.
pub fn name(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(s.escape_debug().to_string())
    } else {
        Cow::Borrowed(s)
    }
}

/// An error and its causes on one line, `outer: cause: root`, each cause once. Many errors
/// (object_store's, ours with `{source}` in the message) already print their source, so
/// a plain walk of the chain (anyhow's `{:#}`) repeats the same text once per level; a cause
/// whose text is already on the line is left out.
pub fn causes<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
) -> String {
    let mut s = String::new();
    for c in chain {
        let text = c.to_string();
        if text.is_empty() || s.contains(&text) {
            continue;
        }
        if !s.is_empty() {
            s.push_str(": ");
        }
        s.push_str(&text);
    }
    s
}

/// [`causes`] of one error and its sources.
pub fn error(e: &(dyn std::error::Error + 'static)) -> String {
    causes(std::iter::successors(Some(e), |c| c.source()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_and_names_never_carry_control_characters() {
        assert_eq!(super::key(b"/registry/pods"), "\"/registry/pods\"");
        assert_eq!(super::key(b"a\x1b[2J"), "0x611b5b324a");
        assert_eq!(super::name("v2/Full-1"), "v2/Full-1");
        let hostile = super::name("v2/x\x1b[2J\nFAKE LOG LINE");
        assert!(!hostile.chars().any(char::is_control), "{hostile}");
        assert_eq!(hostile, "v2/x\\u{1b}[2J\\nFAKE LOG LINE");
    }
}
