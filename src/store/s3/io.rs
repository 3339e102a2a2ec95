//! Streaming an object in and out: the writer uploads parts as they fill, the reader hands
//! the body on as it arrives.

use std::io::{Read, Write};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::WriteMultipart;

use super::{PARTS_IN_FLIGHT, map_err};
use crate::error::Result;
use crate::store::ObjectWriter;

pub(super) struct S3Writer {
    pub(super) rt: Arc<tokio::runtime::Runtime>,
    pub(super) upload: Option<WriteMultipart>,
    pub(super) key: String,
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(up) = self.upload.as_mut() else {
            return Err(std::io::Error::other("the upload was already finished"));
        };
        let _g = self.rt.enter();
        self.rt
            .block_on(up.wait_for_capacity(PARTS_IN_FLIGHT))
            .map_err(|e| {
                std::io::Error::other(format!(
                    "uploading {} to S3 failed ({e}): check that the S3 server is up and reachable, then run the action again",
                    self.key
                ))
            })?;
        up.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let Some(up) = self.upload.take() else {
            return Ok(());
        };
        let _g = self.rt.enter();
        self.rt
            .block_on(up.finish())
            .map(drop)
            .map_err(|e| map_err(&format!("cannot finish uploading {}", self.key), e))
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // Not committed: abort, so no orphan parts stay in the bucket.
        if let Some(up) = self.upload.take() {
            let _g = self.rt.enter();
            let _ = self.rt.block_on(up.abort());
        }
    }
}

pub(super) struct S3Reader {
    pub(super) rt: Arc<tokio::runtime::Runtime>,
    pub(super) stream: futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    pub(super) chunk: bytes::Bytes,
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(std::io::Error::other(e.to_string())),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}
