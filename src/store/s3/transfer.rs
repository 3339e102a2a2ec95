//! Reading and writing one object of any bucket (see [`super::objects`]): a GET streamed as
//! it arrives, a large object read range by range, and a PUT checked against its MD5 (in
//! parts for a large one).

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::S3Store;
use super::objects::{
    ObjectHeaders, RANGE_BYTES, SINGLE_PUT_MAX, Signer, TRIES, retrying, status_kind, unquote,
};
use super::signed::tag;
use crate::error::{Error, ErrorKind, Result};

/// A response body, read as it arrives.
struct BodyReader {
    rt: Arc<tokio::runtime::Runtime>,
    stream: BoxStream<'static, std::result::Result<Bytes, object_store::client::HttpError>>,
    chunk: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            let _g = self.rt.enter();
            match self.rt.block_on(self.stream.next()) {
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

/// An object's headers from a GET or HEAD answer; the size is the answer's
/// `Content-Length` (else `listed_size`).
fn headers_of(h: &http::HeaderMap, listed_size: Option<u64>) -> Result<ObjectHeaders> {
    let text = |name: &str| {
        h.get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let size = text("content-length")
        .and_then(|s| s.trim().parse().ok())
        .or(listed_size)
        .ok_or_else(|| Error::new(ErrorKind::Other, "the server gave no object size"))?;
    Ok(ObjectHeaders {
        content_type: text("content-type"),
        metadata: h
            .iter()
            .filter_map(|(k, v)| {
                let name = k.as_str().strip_prefix("x-amz-meta-")?;
                Some((
                    name.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                ))
            })
            .collect(),
        etag: text("etag").map(|e| unquote(&e)).unwrap_or_default(),
        size,
    })
}

/// A large object read range by range, each range a request of its own on the same version.
struct RangedReader {
    rt: Arc<tokio::runtime::Runtime>,
    signer: Signer,
    url: String,
    what: String,
    etag: String,
    size: u64,
    pos: u64,
    body: Option<BodyReader>,
    /// Ranges reopened after a broken read.
    resumed: u32,
}

impl RangedReader {
    /// Opens the range from `pos`, retrying.
    fn open_range(&mut self) -> std::io::Result<()> {
        let end = (self.pos + RANGE_BYTES).min(self.size) - 1;
        let headers = vec![
            ("range".to_string(), format!("bytes={}-{end}", self.pos)),
            ("if-match".to_string(), format!("\"{}\"", self.etag)),
        ];
        let mut attempt = 0;
        loop {
            attempt += 1;
            let _g = self.rt.enter();
            let r = self.rt.block_on(self.signer.send(
                http::Method::GET,
                &self.url,
                &[],
                &headers,
                Bytes::new(),
            ));
            match r {
                Ok(resp) if resp.status().is_success() => {
                    self.body = Some(BodyReader {
                        rt: self.rt.clone(),
                        stream: resp.into_body().bytes_stream(),
                        chunk: Bytes::new(),
                    });
                    return Ok(());
                }
                Ok(resp) if resp.status().as_u16() == 412 => {
                    return Err(std::io::Error::other(format!(
                        "{}: it changed while it was read",
                        self.what
                    )));
                }
                Ok(resp) if !resp.status().is_server_error() || attempt >= TRIES => {
                    return Err(std::io::Error::other(format!(
                        "{}: HTTP {}",
                        self.what,
                        resp.status()
                    )));
                }
                Err(e) if attempt >= TRIES => return Err(std::io::Error::other(e)),
                _ => std::thread::sleep(std::time::Duration::from_millis(200 << attempt)),
            }
        }
    }
}

impl Read for RangedReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos >= self.size {
                return Ok(0);
            }
            if self.body.is_none() {
                self.open_range()?;
            }
            let n = match self.body.as_mut().map_or(Ok(0), |b| b.read(out)) {
                Ok(n) => n,
                // A broken connection: reopen from where it broke, a bounded number of times.
                Err(e) if self.resumed < TRIES => {
                    let _ = e;
                    self.resumed += 1;
                    self.body = None;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if n == 0 {
                // This range is done (or broke off early: the next one starts where it ended).
                self.body = None;
                continue;
            }
            self.pos += n as u64;
            return Ok(n);
        }
    }
}

impl S3Store {
    /// Opens object `key` of `bucket` (listed as `listed_size` bytes): its headers, and its
    /// bytes as they arrive. An object up to [`RANGE_BYTES`] is one GET; a larger one is read
    /// in ranges of that size, all of the version first seen (`If-Match` its ETag), each
    /// retried on its own.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when it is gone; otherwise when it cannot be read.
    pub fn get_object(
        &self,
        bucket: &str,
        key: &str,
        listed_size: u64,
    ) -> Result<(ObjectHeaders, Box<dyn Read + Send>)> {
        let what = format!("cannot read {key} from bucket {bucket}");
        let url = self.url_of(Some(bucket), Some(key));
        let signer = self.signer();
        if listed_size > RANGE_BYTES {
            let (h, _) = self.call(
                &what,
                http::Method::HEAD,
                url.clone(),
                &[],
                &[],
                Bytes::new(),
            )?;
            let headers = headers_of(&h, None)?;
            let reader = RangedReader {
                rt: self.rt.clone(),
                signer,
                url,
                what,
                etag: headers.etag.clone(),
                size: headers.size,
                pos: 0,
                body: None,
                resumed: 0,
            };
            return Ok((headers, Box::new(reader)));
        }
        let resp = self.rt.block_on(retrying(
            TRIES,
            async || {
                signer
                    .send(http::Method::GET, &url, &[], &[], Bytes::new())
                    .await
            },
            |resp| resp.status().is_server_error(),
        ))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Error::new(
                status_kind(status),
                format!("{what}: HTTP {status}"),
            ));
        }
        let headers = headers_of(resp.headers(), Some(listed_size))?;
        let reader = BodyReader {
            rt: self.rt.clone(),
            stream: resp.into_body().bytes_stream(),
            chunk: Bytes::new(),
        };
        Ok((headers, Box::new(reader)))
    }

    /// Writes object `key` of `bucket` from `data` (`size` bytes) with `headers`' content type
    /// and metadata: one PUT up to [`SINGLE_PUT_MAX`], else a multipart upload holding one
    /// part in memory at a time (aborted when it fails). Each request carries its body's
    /// `Content-MD5`, and the whole object must have the MD5 `expected_md5` (hex) before it is
    /// made visible. Returns the new ETag.
    ///
    /// # Errors
    /// [`ErrorKind::Integrity`] when `data` does not have `expected_md5` (nothing is then
    /// visible under the key); otherwise when the store refuses or `data` cannot be read.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        size: u64,
        data: &mut dyn Read,
        expected_md5: &str,
    ) -> Result<String> {
        use md5::Digest as _;
        let mut whole = md5::Md5::new();
        let mismatch = |got: &str| {
            Error::new(
                ErrorKind::Integrity,
                format!(
                    "cannot write {key} to bucket {bucket}: its data has MD5 {got}, not the \
                     {expected_md5} recorded for it"
                ),
            )
        };
        let what = format!("cannot write {key} to bucket {bucket}");
        let mut head: Vec<(String, String)> = headers
            .metadata
            .iter()
            .map(|(k, v)| (format!("x-amz-meta-{k}"), v.clone()))
            .collect();
        if let Some(ct) = &headers.content_type {
            head.push(("content-type".into(), ct.clone()));
        }
        let url = self.url_of(Some(bucket), Some(key));
        let read_part = |data: &mut dyn Read, len: u64| -> Result<Bytes> {
            let mut buf = Vec::with_capacity(len as usize);
            data.take(len).read_to_end(&mut buf).map_err(|e| {
                Error::new(ErrorKind::Integrity, format!("{what}: its data broke off"))
                    .with_source(e)
            })?;
            if buf.len() as u64 != len {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!("{what}: its data ended early"),
                ));
            }
            Ok(Bytes::from(buf))
        };
        let content_md5 = |body: &Bytes| -> (String, String) {
            (
                "content-md5".to_string(),
                crate::encoding::base64(&md5::Md5::digest(body)),
            )
        };
        if size <= SINGLE_PUT_MAX {
            let body = read_part(data, size)?;
            whole.update(&body);
            let got = crate::archive::hex(&whole.finalize());
            if got != expected_md5 {
                return Err(mismatch(&got));
            }
            head.push(content_md5(&body));
            let (h, _) = self.call(&what, http::Method::PUT, url, &[], &head, body)?;
            return Ok(h
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .map(unquote)
                .unwrap_or_default());
        }
        let (_, xml) = self.call(
            &what,
            http::Method::POST,
            url.clone(),
            &[("uploads", "")],
            &head,
            Bytes::new(),
        )?;
        let upload = tag(&xml, "UploadId")
            .ok_or_else(|| Error::new(ErrorKind::Other, format!("{what}: no upload id")))?;
        let parts = (|| {
            let mut etags = Vec::new();
            let mut left = size;
            let mut n = 1u32;
            while left > 0 {
                let len = left.min(super::PART_BYTES as u64);
                let body = read_part(data, len)?;
                whole.update(&body);
                let number = n.to_string();
                let (h, _) = self.call(
                    &what,
                    http::Method::PUT,
                    url.clone(),
                    &[("partNumber", &number), ("uploadId", &upload)],
                    &[content_md5(&body)],
                    body,
                )?;
                etags.push(
                    h.get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .unwrap_or_default(),
                );
                left -= len;
                n += 1;
            }
            let got = crate::archive::hex(&whole.clone().finalize());
            if got != expected_md5 {
                return Err(mismatch(&got));
            }
            let mut xml = String::from("<CompleteMultipartUpload>");
            for (i, e) in etags.iter().enumerate() {
                xml.push_str(&format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                    i + 1,
                    e.replace('&', "&amp;").replace('<', "&lt;")
                ));
            }
            xml.push_str("</CompleteMultipartUpload>");
            let (_, answer) = self.call(
                &what,
                http::Method::POST,
                url.clone(),
                &[("uploadId", &upload)],
                &[],
                Bytes::from(xml),
            )?;
            // A completion can fail with status 200 and an error in its body.
            if answer.contains("<Error>") {
                return Err(Error::new(
                    ErrorKind::Other,
                    format!("{what}: {}", tag(&answer, "Code").unwrap_or_default()),
                ));
            }
            Ok(tag(&answer, "ETag")
                .map(|e| unquote(&e))
                .unwrap_or_default())
        })();
        if parts.is_err() {
            let _ = self.call(
                &what,
                http::Method::DELETE,
                url,
                &[("uploadId", &upload)],
                &[],
                Bytes::new(),
            );
        }
        parts
    }
}
