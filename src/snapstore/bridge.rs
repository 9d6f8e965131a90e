//! Turns an object's bytes into a blocking `Read` for the (synchronous) decompressors: a local
//! store's file is read directly; a remote object's async byte stream goes through a small
//! bounded queue, so a slow consumer slows the download instead of buffering the object in
//! memory.

use std::fs::File;
use std::io::{self, Read};

use bytes::{Buf, Bytes};
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;

/// Chunks queued between the network task and the reader (object_store yields chunks of
/// 8 KiB to a few MiB, so this bounds memory to a few MiB per open object).
const QUEUE: usize = 16;

/// An object's bytes as the store hands them over.
pub enum Body {
    /// A local store's file. Read directly in large blocking reads: object_store streams a
    /// local file in 8 KiB chunks, each a round trip through tokio's blocking pool, which cost
    /// a restore more CPU than hashing its inputs.
    File(FileRange),
    Stream(BoxStream<'static, object_store::Result<Bytes>>),
}

impl Body {
    /// A blocking reader over the bytes. Call it on the runtime (a stream is pulled by a task
    /// spawned there) and read from a blocking thread.
    pub fn into_reader(self) -> BodyReader {
        match self {
            Body::File(range) => BodyReader::File(RangeReader { range, pos: 0 }),
            Body::Stream(s) => BodyReader::Stream(StreamReader::spawn(s)),
        }
    }
}

/// A byte range of a local file, read with `pread` so that readers never share a cursor.
pub struct FileRange {
    pub file: File,
    pub start: u64,
    pub len: u64,
}

impl FileRange {
    /// Reads from `pos` bytes into the range.
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.len.saturating_sub(pos);
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        match buf.get_mut(..n) {
            Some(b) if n > 0 => self.file.read_at(b, self.start + pos),
            _ => Ok(0),
        }
    }

    /// A reader from the range's first byte.
    pub fn reader(&self) -> RangeReader<&FileRange> {
        RangeReader {
            range: self,
            pos: 0,
        }
    }
}

/// Reads a [`FileRange`], owned or borrowed, front to back.
pub struct RangeReader<R> {
    range: R,
    pos: u64,
}

impl<R: std::borrow::Borrow<FileRange>> Read for RangeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.range.borrow().read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// [`Body::into_reader`].
pub enum BodyReader {
    File(RangeReader<FileRange>),
    Stream(StreamReader),
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BodyReader::File(f) => f.read(buf),
            BodyReader::Stream(s) => s.read(buf),
        }
    }
}

/// A blocking reader fed by a tokio task. Use it from `spawn_blocking`, never on a runtime
/// thread.
pub struct StreamReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    current: Bytes,
    done: bool,
}

impl StreamReader {
    /// Starts pulling `stream` on the current tokio runtime.
    pub fn spawn(mut stream: BoxStream<'static, object_store::Result<Bytes>>) -> StreamReader {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            while let Some(item) = stream.next().await {
                let item = item.map_err(io::Error::other);
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        StreamReader {
            rx,
            current: Bytes::new(),
            done: false,
        }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        self.current
            .copy_to_slice(buf.get_mut(..n).unwrap_or_default());
        Ok(n)
    }
}
