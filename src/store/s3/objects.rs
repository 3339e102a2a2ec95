//! Buckets and objects as other tools wrote them, for S3 as a data source: every bucket the
//! credentials can list, and every object in one under its exact key (folder markers ending in
//! `/`, empty segments and all), read with its content type and user metadata and written back
//! with them. Sent as signed requests through `object_store`'s HTTP client and signer, since
//! its own API cannot address such keys.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::S3Store;
use super::options::endpoint_for;
use super::signed::{decode_xml, elements, tag};
use crate::encoding::aws_encode;
use crate::error::{Error, ErrorKind, Result};

/// One object as a bucket listing gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedObject {
    /// Its exact key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag, without quotes.
    pub etag: String,
}

/// What an object carries besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-<name>`), by name.
    pub metadata: BTreeMap<String, String>,
    /// The ETag, without quotes.
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Objects larger than this are written in parts of [`super::PART_BYTES`].
pub const SINGLE_PUT_MAX: u64 = super::PART_BYTES as u64;

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_string()
}

/// A key as a URL path: each segment encoded, a lone `.` or `..` too, so no client folds it.
fn key_path(key: &str) -> String {
    key.split('/')
        .map(|s| match s {
            "." => "%2E".to_string(),
            ".." => "%2E%2E".to_string(),
            s => aws_encode(s),
        })
        .collect::<Vec<_>>()
        .join("/")
}

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

impl S3Store {
    /// The URL of `bucket` (or of the service, for `None`), then `/` and the key's path.
    fn url_of(&self, bucket: Option<&str>, key: Option<&str>) -> String {
        let o = &self.options;
        let region = self.region();
        let mut url = match bucket {
            None if o.endpoint.is_empty() => format!("https://s3.{region}.amazonaws.com"),
            None => o.endpoint.trim_end_matches('/').to_string(),
            Some(b) => {
                let mut for_bucket = o.clone();
                for_bucket.bucket = b.to_string();
                match (o.endpoint.is_empty(), o.uri_style == "host") {
                    (true, true) => format!("https://{b}.s3.{region}.amazonaws.com"),
                    (true, false) => format!("https://s3.{region}.amazonaws.com/{b}"),
                    (false, true) => endpoint_for(&for_bucket),
                    (false, false) => format!("{}/{b}", endpoint_for(&for_bucket)),
                }
            }
        };
        url.push('/');
        if let Some(k) = key {
            url.push_str(&key_path(k));
        }
        url
    }

    /// Sends a signed request; fails only when no answer came back.
    async fn send(
        &self,
        method: http::Method,
        url: String,
        query: &[(&str, &str)],
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<object_store::client::HttpResponse> {
        let fail =
            |what: String| Error::new(ErrorKind::Connect, format!("cannot reach S3: {what}"));
        let q: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", aws_encode(k), aws_encode(v)))
            .collect();
        let url = if q.is_empty() {
            url
        } else {
            format!("{url}?{}", q.join("&"))
        };
        let mut b = http::Request::builder().method(method).uri(url.as_str());
        for (k, v) in headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let mut req = b
            .body(object_store::client::HttpRequestBody::from(body))
            .map_err(|e| fail(format!("bad request ({e})")))?;
        let credential = object_store::aws::AwsCredential {
            key_id: self.options.access_key.clone(),
            secret_key: self.options.secret_key.clone(),
            token: None,
        };
        let region = self.region();
        object_store::aws::AwsAuthorizer::new(&credential, "s3", &region)
            .with_sign_payload(self.options.endpoint.starts_with("http://"))
            .try_authorize(&mut req, None)
            .map_err(|e| fail(e.to_string()))?;
        self.http
            .execute(req)
            .await
            .map_err(|e| fail(crate::error::chain(&e)))
    }

    /// Sends a request and reads its whole (small) answer; a failure status is an error
    /// saying `what` failed.
    fn call(
        &self,
        what: &str,
        method: http::Method,
        url: String,
        query: &[(&str, &str)],
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<(http::HeaderMap, String)> {
        self.rt.block_on(async {
            let resp = self.send(method, url, query, headers, body).await?;
            let status = resp.status();
            let head = resp.headers().clone();
            let body = resp.into_body().bytes().await.map_err(|e| {
                Error::new(
                    ErrorKind::Connect,
                    format!("{what}: the answer broke off ({e})"),
                )
            })?;
            let text = String::from_utf8_lossy(&body).into_owned();
            if !status.is_success() {
                let code = tag(&text, "Code").unwrap_or_else(|| format!("HTTP {status}"));
                let kind = match status.as_u16() {
                    401 | 403 => ErrorKind::PermissionDenied,
                    404 => ErrorKind::NotFound,
                    _ => ErrorKind::Other,
                };
                return Err(Error::new(kind, format!("{what}: {code}")));
            }
            Ok((head, text))
        })
    }

    /// The buckets the credentials can list (`ListBuckets`).
    ///
    /// # Errors
    /// When the server refuses or cannot be reached.
    pub fn list_buckets(&self) -> Result<Vec<String>> {
        let (_, xml) = self.call(
            "cannot list the buckets",
            http::Method::GET,
            self.url_of(None, None),
            &[],
            &[],
            Bytes::new(),
        )?;
        let mut out: Vec<String> = elements(&xml, "Bucket")
            .into_iter()
            .filter_map(|b| tag(b, "Name"))
            .collect();
        out.sort();
        Ok(out)
    }

    /// Creates `bucket` unless it exists; returns whether it was created.
    ///
    /// # Errors
    /// When it does not exist and cannot be created.
    pub fn ensure_bucket(&self, bucket: &str) -> Result<bool> {
        let exists = self.call(
            &format!("cannot read bucket {bucket}"),
            http::Method::HEAD,
            self.url_of(Some(bucket), None),
            &[],
            &[],
            Bytes::new(),
        );
        match exists {
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.call(
            &format!("cannot create bucket {bucket}"),
            http::Method::PUT,
            self.url_of(Some(bucket), None),
            &[],
            &[],
            Bytes::new(),
        )?;
        Ok(true)
    }

    /// Every object in `bucket`, by key (`ListObjectsV2`, page by page).
    ///
    /// # Errors
    /// When the bucket cannot be listed.
    pub fn list_objects(&self, bucket: &str) -> Result<Vec<ListedObject>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("list-type", "2")];
            if !token.is_empty() {
                query.push(("continuation-token", token.as_str()));
            }
            let (_, xml) = self.call(
                &format!("cannot list bucket {bucket}"),
                http::Method::GET,
                self.url_of(Some(bucket), None),
                &query,
                &[],
                Bytes::new(),
            )?;
            for c in elements(&xml, "Contents") {
                out.push(ListedObject {
                    key: tag(c, "Key").map(|k| decode_xml(&k)).unwrap_or_default(),
                    size: tag(c, "Size").and_then(|s| s.parse().ok()).unwrap_or(0),
                    etag: tag(c, "ETag")
                        .map(|e| unquote(&decode_xml(&e)))
                        .unwrap_or_default(),
                });
            }
            match tag(&xml, "NextContinuationToken") {
                Some(t) if tag(&xml, "IsTruncated").as_deref() == Some("true") => {
                    token = decode_xml(&t);
                }
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Opens object `key` of `bucket`: its headers, and its bytes as they arrive.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when it is gone; otherwise when it cannot be read.
    pub fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectHeaders, Box<dyn Read + Send>)> {
        let what = format!("cannot read {key} from bucket {bucket}");
        let resp = self.rt.block_on(self.send(
            http::Method::GET,
            self.url_of(Some(bucket), Some(key)),
            &[],
            &[],
            Bytes::new(),
        ))?;
        let status = resp.status();
        if !status.is_success() {
            let kind = if status.as_u16() == 404 {
                ErrorKind::NotFound
            } else {
                ErrorKind::Other
            };
            return Err(Error::new(kind, format!("{what}: HTTP {status}")));
        }
        let h = resp.headers();
        let text = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let headers = ObjectHeaders {
            content_type: text("content-type"),
            metadata: h
                .iter()
                .filter_map(|(k, v)| {
                    let name = k.as_str().strip_prefix("x-amz-meta-")?;
                    Some((name.to_string(), v.to_str().ok()?.to_string()))
                })
                .collect(),
            etag: text("etag").map(|e| unquote(&e)).unwrap_or_default(),
            size: text("content-length")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        };
        let reader = BodyReader {
            rt: self.rt.clone(),
            stream: resp.into_body().bytes_stream(),
            chunk: Bytes::new(),
        };
        Ok((headers, Box::new(reader)))
    }

    /// Writes object `key` of `bucket` from `data` (`size` bytes) with `headers`' content type
    /// and metadata: one PUT up to [`SINGLE_PUT_MAX`], else a multipart upload holding one
    /// part in memory at a time (aborted when it fails). Returns the new ETag.
    ///
    /// # Errors
    /// When the store refuses or `data` cannot be read.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<String> {
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
        if size <= SINGLE_PUT_MAX {
            let body = read_part(data, size)?;
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
            .map(|u| decode_xml(&u))
            .ok_or_else(|| Error::new(ErrorKind::Other, format!("{what}: no upload id")))?;
        let parts = (|| {
            let mut etags = Vec::new();
            let mut left = size;
            let mut n = 1u32;
            while left > 0 {
                let len = left.min(super::PART_BYTES as u64);
                let body = read_part(data, len)?;
                let number = n.to_string();
                let (h, _) = self.call(
                    &what,
                    http::Method::PUT,
                    url.clone(),
                    &[("partNumber", &number), ("uploadId", &upload)],
                    &[],
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
                .map(|e| unquote(&decode_xml(&e)))
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
