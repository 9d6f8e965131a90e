//! The dump format shared with the Go oracle (docs/testing.md): JSON lines, depth first in
//! key order; a bucket line precedes the bucket's contents; names, keys and values are
//! standard base64 with padding; `path` lists the enclosing bucket names.

use std::io::Write;

use crate::bucket::Bucket;
use crate::db::Db;
use crate::error::{Corruption, Error, Result};
use crate::tx::ReadTx;

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends standard base64 (with padding) of `data` to `out`.
pub fn base64_into(out: &mut Vec<u8>, data: &[u8]) {
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        out.extend_from_slice(&[
            B64[(n >> 18) as usize & 63],
            B64[(n >> 12) as usize & 63],
            B64[(n >> 6) as usize & 63],
            B64[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                b'=',
                b'=',
            ]);
        }
        [a, b] => {
            let n = (u32::from(a) << 16) | (u32::from(b) << 8);
            out.extend_from_slice(&[
                B64[(n >> 18) as usize & 63],
                B64[(n >> 12) as usize & 63],
                B64[(n >> 6) as usize & 63],
                b'=',
            ]);
        }
        _ => {}
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Io {
        path: "<dump output>".into(),
        op: "write",
        offset: 0,
        source: e,
    }
}

/// Writes the dump of everything `tx` sees.
pub fn write_dump_tx(tx: &ReadTx<'_>, out: &mut impl Write) -> Result<()> {
    let mut line = Vec::with_capacity(1024);
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut roots = vec![tx.meta().root];
    dump_bucket(&tx.root(), &mut path, &mut roots, &mut line, out)
}

/// Writes the dump of the database's current state.
pub fn write_dump(db: &Db, out: &mut impl Write) -> Result<()> {
    let tx = db.begin_read();
    write_dump_tx(&tx, out)
}

fn path_json(line: &mut Vec<u8>, path: &[Vec<u8>]) {
    line.extend_from_slice(b"{\"path\":[");
    for (i, p) in path.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.push(b'"');
        base64_into(line, p);
        line.push(b'"');
    }
    line.push(b']');
}

/// A damaged file can make a bucket contain itself or repeat keys (a page reachable twice);
/// both are refused so a dump is never larger than the file's contents.
fn dump_bucket(
    b: &Bucket<'_>,
    path: &mut Vec<Vec<u8>>,
    roots: &mut Vec<u64>,
    line: &mut Vec<u8>,
    out: &mut impl Write,
) -> Result<()> {
    let here = roots.last().copied().unwrap_or(0);
    if path.len() > crate::page::MAX_DEPTH {
        return Err(Error::corrupt(
            here,
            0,
            Corruption::TooDeep(crate::page::MAX_DEPTH),
        ));
    }
    let mut c = b.cursor();
    let mut e = c.first()?;
    let mut prev: Option<&[u8]> = None;
    while let Some(x) = e {
        if prev.is_some_and(|p| x.key <= p) {
            return Err(Error::corrupt(here, 0, Corruption::KeyOrder { index: 0 }));
        }
        prev = Some(x.key);
        line.clear();
        path_json(line, path);
        if x.is_bucket() {
            let child = b.bucket_at(&x)?;
            line.extend_from_slice(b",\"bucket\":\"");
            base64_into(line, x.key);
            line.extend_from_slice(format!("\",\"sequence\":{}}}\n", child.sequence()).as_bytes());
            out.write_all(line).map_err(io)?;
            if let Some(r) = child.root_page() {
                if roots.contains(&r) {
                    return Err(Error::corrupt(r, 0, Corruption::SharedPage));
                }
                roots.push(r);
            }
            path.push(x.key.to_vec());
            dump_bucket(&child, path, roots, line, out)?;
            path.pop();
            if child.root_page().is_some() {
                roots.pop();
            }
        } else {
            line.extend_from_slice(b",\"key\":\"");
            base64_into(line, x.key);
            line.extend_from_slice(b"\",\"value\":\"");
            base64_into(line, x.value);
            line.extend_from_slice(b"\"}\n");
            out.write_all(line).map_err(io)?;
        }
        e = c.next()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut v = Vec::new();
            super::base64_into(&mut v, i.as_bytes());
            assert_eq!(v, o.as_bytes());
        }
    }
}
