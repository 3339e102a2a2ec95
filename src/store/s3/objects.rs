//! Buckets and objects as other tools wrote them, for S3 as a data source: every bucket the
//! credentials can list, and every object in one under its exact key (folder markers ending in
//! `/`, empty segments and all), read with its content type and user metadata and written back
//! with them. Sent as signed requests through `object_store`'s HTTP client and signer, since
//! its own API cannot address such keys.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::S3Store;
use super::options::endpoint_for;
use super::signed::{elements, tag};
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
    /// When it was last written, as the server says.
    pub modified: Option<jiff::Timestamp>,
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

/// Objects larger than this are read in ranges of this size, each a request of its own (so no
/// one request outlives the client's timeout), all of the same version (`If-Match`).
pub const RANGE_BYTES: u64 = 64 << 20;

/// Attempts of a request that got no answer or a server error.
pub(super) const TRIES: u32 = 4;

/// The crate's kind for an S3 error status.
pub(super) fn status_kind(status: http::StatusCode) -> ErrorKind {
    match status.as_u16() {
        401 | 403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        412 => ErrorKind::Integrity,
        _ if status.is_server_error() => ErrorKind::Connect,
        _ => ErrorKind::Other,
    }
}

/// Runs `attempt` up to `tries` times, with a growing pause between: again while it fails
/// with no answer ([`ErrorKind::Connect`]) or `server_error` says the answer was a 5xx.
pub(super) async fn retrying<T>(
    tries: u32,
    mut attempt: impl AsyncFnMut() -> Result<T>,
    server_error: impl Fn(&T) -> bool,
) -> Result<T> {
    let mut n = 0;
    loop {
        n += 1;
        let r = attempt().await;
        let again = match &r {
            Err(e) => e.kind() == ErrorKind::Connect,
            Ok(t) => server_error(t),
        };
        if !again || n >= tries {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 << n)).await;
    }
}

/// Signs and sends requests: a copy of what an [`S3Store`] holds for it.
#[derive(Clone)]
pub(super) struct Signer {
    http: object_store::client::HttpClient,
    key_id: String,
    secret: String,
    region: String,
    sign_payload: bool,
}

impl Signer {
    /// Sends a signed request; fails only when no answer came back.
    pub(super) async fn send(
        &self,
        method: http::Method,
        url: &str,
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
            url.to_string()
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
            key_id: self.key_id.clone(),
            secret_key: self.secret.clone(),
            token: None,
        };
        object_store::aws::AwsAuthorizer::new(&credential, "s3", &self.region)
            .with_sign_payload(self.sign_payload)
            .try_authorize(&mut req, None)
            .map_err(|e| fail(e.to_string()))?;
        self.http
            .execute(req)
            .await
            .map_err(|e| fail(crate::error::chain(&e)))
    }
}

pub(super) fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_string()
}

/// A key as a URL path: each segment encoded.
fn key_path(key: &str) -> String {
    key.split('/').map(aws_encode).collect::<Vec<_>>().join("/")
}

/// Whether `key` can be sent in a URL as it is: a `.` or `..` segment is folded by every URL
/// parser on the way (`%2E` too), so such an object cannot be addressed.
pub fn addressable(key: &str) -> bool {
    !key.split('/').any(|s| s == "." || s == "..")
}

impl S3Store {
    /// The URL of `bucket` (or of the service, for `None`), then `/` and the key's path.
    pub(super) fn url_of(&self, bucket: Option<&str>, key: Option<&str>) -> String {
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

    /// What signs and sends requests, for readers that outlive this call.
    pub(super) fn signer(&self) -> Signer {
        Signer {
            http: self.http.clone(),
            key_id: self.options.access_key.clone(),
            secret: self.options.secret_key.clone(),
            region: self.region(),
            sign_payload: self.options.endpoint.starts_with("http://"),
        }
    }

    /// Sends a request and reads its whole (small) answer, retrying a request that got no
    /// answer or a server error ([`TRIES`] times in all, except a `POST`); a failure status is
    /// an error saying `what` failed.
    pub(super) fn call(
        &self,
        what: &str,
        method: http::Method,
        url: String,
        query: &[(&str, &str)],
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<(http::HeaderMap, String)> {
        let signer = self.signer();
        let tries = if method == http::Method::POST {
            1
        } else {
            TRIES
        };
        self.rt.block_on(async {
            let (status, head, text) = retrying(
                tries,
                async || {
                    let resp = signer
                        .send(method.clone(), &url, query, headers, body.clone())
                        .await?;
                    let status = resp.status();
                    let head = resp.headers().clone();
                    let body = resp.into_body().bytes().await.map_err(|e| {
                        Error::new(
                            ErrorKind::Connect,
                            format!("{what}: the answer broke off ({e})"),
                        )
                    })?;
                    Ok((status, head, String::from_utf8_lossy(&body).into_owned()))
                },
                |(status, _, _)| status.is_server_error(),
            )
            .await?;
            if !status.is_success() {
                let code = tag(&text, "Code").unwrap_or_else(|| format!("HTTP {status}"));
                return Err(Error::new(status_kind(status), format!("{what}: {code}")));
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
        // Outside us-east-1, S3 wants the region named in the request.
        let region = self.region();
        let body = if region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
            ))
        };
        self.call(
            &format!("cannot create bucket {bucket}"),
            http::Method::PUT,
            self.url_of(Some(bucket), None),
            &[],
            &[],
            body,
        )?;
        Ok(true)
    }

    /// Every object in `bucket`, by key (`ListObjectsV2`, page by page).
    ///
    /// # Errors
    /// When the bucket cannot be listed.
    pub fn list_objects(&self, bucket: &str) -> Result<Vec<ListedObject>> {
        self.list_objects_prefixed(bucket, "")
    }

    /// The objects of `bucket` whose keys start with `prefix` (any text, not only a folder),
    /// by key: one `ListObjectsV2` request per thousand.
    ///
    /// # Errors
    /// When the bucket cannot be listed.
    pub fn list_objects_prefixed(&self, bucket: &str, prefix: &str) -> Result<Vec<ListedObject>> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("list-type", "2")];
            if !prefix.is_empty() {
                query.push(("prefix", prefix));
            }
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
                    key: tag(c, "Key").unwrap_or_default(),
                    size: tag(c, "Size")
                        .and_then(|s| s.trim().parse().ok())
                        .ok_or_else(|| {
                            Error::new(
                                ErrorKind::Other,
                                format!("bucket {bucket}'s listing gives an object no size"),
                            )
                        })?,
                    etag: tag(c, "ETag").map(|e| unquote(&e)).unwrap_or_default(),
                    modified: tag(c, "LastModified").and_then(|t| t.trim().parse().ok()),
                });
            }
            if tag(&xml, "IsTruncated").as_deref().map(str::trim) != Some("true") {
                break;
            }
            // A truncated listing must say where to go on: never stop short silently.
            token = tag(&xml, "NextContinuationToken")
                .filter(|t| !t.is_empty() && *t != token)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Other,
                        format!(
                            "bucket {bucket}'s listing is cut short without a continuation \
                             token: the server's listing cannot be trusted"
                        ),
                    )
                })?;
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}
