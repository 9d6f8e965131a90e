//! Turns an object's async byte stream into a blocking `Read` for the (synchronous)
//! decompressors, with a small bounded queue in between so a slow consumer slows the download
//! instead of buffering the object in memory.

use std::io::{self, Read};

use bytes::{Buf, Bytes};
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::mpsc;

/// Chunks queued between the network task and the reader (object_store yields chunks of
/// 8 KiB to a few MiB, so this bounds memory to a few MiB per open object).
const QUEUE: usize = 16;

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
