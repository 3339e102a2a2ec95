//! Streaming an object in and out: the writer uploads parts as they fill, the reader hands
//! the body on as it arrives.

use std::io::{Read, Write};
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};

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

/// Times a dropped read is resumed before the read fails.
pub(super) const RESUMES: usize = 5;

/// An object's body as it arrives. A connection that drops (an error, or the body ending
/// before the object's size) is resumed with a ranged GET from the offset reached, on the
/// same version of the object (`If-Match` its ETag), up to [`RESUMES`] times.
pub(super) struct S3Reader {
    pub(super) rt: Arc<tokio::runtime::Runtime>,
    pub(super) s3: Arc<AmazonS3>,
    pub(super) path: ObjectPath,
    pub(super) key: String,
    pub(super) stream: futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    pub(super) chunk: bytes::Bytes,
    pub(super) pos: u64,
    pub(super) size: u64,
    pub(super) etag: Option<String>,
    pub(super) resumed: usize,
}

impl S3Reader {
    /// Reopens the body at the offset reached, after `why`.
    fn resume(&mut self, why: &str) -> std::io::Result<()> {
        loop {
            if self.resumed >= RESUMES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    format!(
                        "reading {} from S3 failed at byte {} of {} after {RESUMES} resumed reads ({why}): check the network to the S3 server and try again",
                        self.key, self.pos, self.size
                    ),
                ));
            }
            self.resumed += 1;
            std::thread::sleep(std::time::Duration::from_millis(250 << self.resumed.min(4)));
            let options = GetOptions {
                range: Some(GetRange::Offset(self.pos)),
                if_match: self.etag.clone(),
                ..Default::default()
            };
            let _g = self.rt.enter();
            match self.rt.block_on(self.s3.get_opts(&self.path, options)) {
                Ok(r) => {
                    self.stream = r.into_stream();
                    return Ok(());
                }
                // Changed meanwhile: what was read cannot be continued.
                Err(e @ object_store::Error::Precondition { .. }) => {
                    return Err(std::io::Error::other(format!(
                        "{} changed in the bucket while it was read: {e}",
                        self.key
                    )));
                }
                Err(_) => {}
            }
        }
    }
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => self.resume(&e.to_string())?,
                None if self.pos < self.size => self.resume("the body ended early")?,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        self.pos += n as u64;
        Ok(n)
    }
}
