//! The S3 store: any S3-compatible object store (AWS S3, Ceph RGW, MinIO, SeaweedFS) through
//! `object_store`. The public API stays synchronous: the store keeps a small tokio runtime of
//! its own, whose one worker thread sends the requests. Uploads stream in multipart parts as
//! the archive is produced, each part going out while the next is compressed; memory is
//! bounded by part size × parts in flight.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, RetryConfig,
    WriteMultipart,
};

use crate::error::{Error, ErrorKind, Result};
use crate::store::{ObjectMeta, ObjectWriter, Store};

/// Size of each multipart part.
pub const PART_BYTES: usize = 16 << 20;
/// Parts uploaded at once.
pub const PARTS_IN_FLIGHT: usize = 2;

/// Connection settings, as the s3-integrator charm publishes them.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Options {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL (empty: AWS).
    pub endpoint: String,
    /// Region (empty: `us-east-1`).
    pub region: String,
    /// Key prefix inside the bucket.
    pub path: String,
    /// Access key.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// `path` or `host` addressing.
    pub uri_style: String,
    /// PEM CA certificates to trust for this endpoint.
    pub ca_chain: Vec<String>,
    /// Storage class for uploads (unused by most S3-compatible servers).
    pub storage_class: String,
}

impl S3Options {
    /// The settings a usable bucket needs that are empty, by their relation names.
    pub fn missing(&self) -> Vec<&'static str> {
        [
            ("bucket", &self.bucket),
            ("access-key", &self.access_key),
            ("secret-key", &self.secret_key),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| k)
        .collect()
    }
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret key.
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path", &self.path)
            .field("uri_style", &self.uri_style)
            .finish_non_exhaustive()
    }
}

/// The endpoint URL to send requests to: with host-style addressing the bucket is part of the
/// host name (`https://<bucket>.<endpoint host>`), as s3-integrator's `endpoint` never has it.
fn endpoint_for(options: &S3Options) -> String {
    let endpoint = options.endpoint.trim_end_matches('/');
    if options.uri_style != "host" {
        return endpoint.to_string();
    }
    match endpoint.split_once("://") {
        Some((scheme, host)) if !host.starts_with(&format!("{}.", options.bucket)) => {
            format!("{scheme}://{}.{host}", options.bucket)
        }
        _ => endpoint.to_string(),
    }
}

/// Maps an object store error to the crate's kinds, with a hint; never includes credentials.
fn map_err(what: &str, e: object_store::Error) -> Error {
    let text = e.to_string();
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => ErrorKind::PermissionDenied,
        _ if text.contains("SignatureDoesNotMatch")
            || text.contains("InvalidAccessKeyId")
            || text.contains("AccessDenied")
            || text.contains("403") =>
        {
            ErrorKind::PermissionDenied
        }
        _ if text.contains("connect")
            || text.contains("Connection refused")
            || text.contains("error sending request") =>
        {
            ErrorKind::Connect
        }
        _ => ErrorKind::Other,
    };
    let hint = match kind {
        ErrorKind::PermissionDenied => ": check access-key and secret-key on the s3-integrator",
        ErrorKind::Connect => ": check the endpoint and that the S3 server is up",
        _ => "",
    };
    Error::new(kind, format!("{what}{hint}")).with_source(e)
}

/// A bucket (and prefix) of an S3-compatible store.
pub struct S3Store {
    rt: Arc<tokio::runtime::Runtime>,
    s3: Arc<AmazonS3>,
    /// For the one request `object_store` does not make (listing open uploads).
    http: object_store::client::HttpClient,
    options: S3Options,
}

impl S3Store {
    /// The relation's `storage-class`, sent as `x-amz-storage-class` when set.
    fn upload_options(&self) -> object_store::PutMultipartOptions {
        let mut o = object_store::PutMultipartOptions::default();
        let class = self.options.storage_class.trim();
        if !class.is_empty() {
            o.attributes.insert(
                object_store::Attribute::StorageClass,
                object_store::AttributeValue::from(class.to_string()),
            );
        }
        o
    }
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("options", &self.options)
            .finish()
    }
}

impl S3Store {
    /// Connects (lazily: nothing is sent until the first request).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a missing bucket or credentials, a bad CA chain or
    /// endpoint.
    pub fn open(options: &S3Options) -> Result<Self> {
        let missing = options.missing();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "the s3-parameters relation lacks {}: set them on the s3-integrator",
                missing.join(", ")
            )));
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut client = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(10))
            .with_timeout(Duration::from_secs(300));
        for pem in &options.ca_chain {
            for cert in object_store::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
                Error::invalid("tls-ca-chain holds a certificate that is not valid PEM")
                    .with_source(e)
            })? {
                client = client.with_root_certificate(cert);
            }
        }
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: Duration::from_secs(60),
        };
        let http = {
            use object_store::client::HttpConnector;
            object_store::client::ReqwestConnector::default()
                .connect(
                    &client
                        .clone()
                        .with_allow_http(options.endpoint.starts_with("http://")),
                )
                .map_err(|e| Error::invalid("the S3 settings are not usable").with_source(e))?
        };
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&options.bucket)
            .with_region(if options.region.is_empty() {
                "us-east-1"
            } else {
                &options.region
            })
            .with_access_key_id(&options.access_key)
            .with_secret_access_key(&options.secret_key)
            .with_virtual_hosted_style_request(options.uri_style == "host")
            .with_client_options(client)
            .with_retry(retry)
            // Over TLS the payload is already protected, so parts are not hashed a second
            // time for the signature (what AWS's own SDKs do over HTTPS); over plain HTTP the
            // signature covers it.
            .with_unsigned_payload(!options.endpoint.starts_with("http://"));
        if !options.endpoint.is_empty() {
            b = b
                .with_endpoint(endpoint_for(options))
                .with_allow_http(options.endpoint.starts_with("http://"));
        }
        let s3 = b
            .build()
            .map_err(|e| Error::invalid("the S3 settings are not usable").with_source(e))?;
        // Requests run on a worker thread of the runtime's own, so parts go out while the
        // archive goes on being compressed. (On a current-thread runtime they would make
        // progress only while the writer waits for room, adding each part's upload time to
        // the backup's.)
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("s3-client")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Other, "cannot start the S3 client").with_source(e)
            })?;
        Ok(S3Store {
            rt: Arc::new(rt),
            s3: Arc::new(s3),
            http,
            options: options.clone(),
        })
    }

    fn prefix(&self) -> String {
        self.options.path.trim_matches('/').to_string()
    }

    fn full(&self, key: &str) -> ObjectPath {
        let p = self.prefix();
        if p.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{p}/{key}"))
        }
    }
}

impl S3Store {
    /// The multipart uploads open for exactly `key`: `ListMultipartUploads`, which
    /// `object_store` does not offer, sent through its own client and signer.
    async fn open_uploads(&self, key: &ObjectPath) -> Result<Vec<String>> {
        let fail = |what: &str| {
            Error::new(
                ErrorKind::Connect,
                format!(
                    "cannot list the open uploads in bucket {}: {what}",
                    self.options.bucket
                ),
            )
        };
        let base = if self.options.endpoint.is_empty() {
            format!("https://s3.{}.amazonaws.com", self.region())
        } else {
            endpoint_for(&self.options)
        };
        let mut url = reqwest::Url::parse(&base).map_err(|_| fail("bad endpoint"))?;
        if self.options.uri_style != "host" || self.options.endpoint.is_empty() {
            url.path_segments_mut()
                .map_err(|()| fail("bad endpoint"))?
                .pop_if_empty()
                .push(&self.options.bucket);
        }
        url.query_pairs_mut()
            .append_pair("prefix", key.as_ref())
            .append_pair("uploads", "");
        let mut req = http::Request::builder()
            .method("GET")
            .uri(url.as_str())
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|_| fail("bad request"))?;
        let credential = object_store::aws::AwsCredential {
            key_id: self.options.access_key.clone(),
            secret_key: self.options.secret_key.clone(),
            token: None,
        };
        object_store::aws::AwsAuthorizer::new(&credential, "s3", &self.region())
            .try_authorize(&mut req, None)
            .map_err(|e| fail(&e.to_string()))?;
        let resp = self
            .http
            .execute(req)
            .await
            .map_err(|e| fail(&crate::error::chain(&e)))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .bytes()
            .await
            .map_err(|e| fail(&e.to_string()))?;
        if !status.is_success() {
            return Err(fail(&format!("HTTP {status}")));
        }
        let text = String::from_utf8_lossy(&body);
        let tag = |part: &str, name: &str| -> Option<String> {
            let start = part.find(&format!("<{name}>"))? + name.len() + 2;
            let end = part[start..].find(&format!("</{name}>"))?;
            Some(part[start..start + end].replace("&amp;", "&"))
        };
        Ok(text
            .split("<Upload>")
            .skip(1)
            .filter(|u| tag(u, "Key").as_deref() == Some(key.as_ref()))
            .filter_map(|u| tag(u, "UploadId"))
            .collect())
    }

    fn region(&self) -> String {
        if self.options.region.is_empty() {
            "us-east-1".into()
        } else {
            self.options.region.clone()
        }
    }
}

struct S3Writer {
    rt: Arc<tokio::runtime::Runtime>,
    upload: Option<WriteMultipart>,
    key: String,
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

struct S3Reader {
    rt: Arc<tokio::runtime::Runtime>,
    stream: futures_util::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
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

impl Store for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }
    fn name(&self) -> String {
        self.options.bucket.clone()
    }
    fn base_path(&self) -> String {
        let p = self.prefix();
        if p.is_empty() {
            "/backup/".into()
        } else {
            format!("/{p}/backup/")
        }
    }
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{}", self.options.bucket, self.full(key))
    }
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        let _g = self.rt.enter();
        // Archives get the relation's storage class; small sidecars stay in the default one,
        // so listing them stays cheap whatever class the bucket's archives use.
        let upload: Box<dyn MultipartUpload> = self
            .rt
            .block_on(
                self.s3
                    .put_multipart_opts(&self.full(key), self.upload_options()),
            )
            .map_err(|e| {
                map_err(
                    &format!("cannot start uploading to bucket {}", self.options.bucket),
                    e,
                )
            })?;
        Ok(Box::new(S3Writer {
            rt: self.rt.clone(),
            upload: Some(WriteMultipart::new_with_chunk_size(upload, PART_BYTES)),
            key: key.to_string(),
        }))
    }
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let r = self
            .rt
            .block_on(self.s3.get(&self.full(key)))
            .map_err(|e| {
                map_err(
                    &format!("cannot read {key} from bucket {}", self.options.bucket),
                    e,
                )
            })?;
        Ok(Box::new(S3Reader {
            rt: self.rt.clone(),
            stream: r.into_stream(),
            chunk: bytes::Bytes::new(),
        }))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full = self.full(prefix.trim_end_matches('/'));
        let strip = {
            let p = self.prefix();
            if p.is_empty() {
                String::new()
            } else {
                format!("{p}/")
            }
        };
        let items = self.rt.block_on(async {
            let mut out = Vec::new();
            let mut s = self.s3.list(Some(&full));
            while let Some(m) = s.next().await {
                let m = m?;
                out.push(m);
            }
            Ok::<_, object_store::Error>(out)
        });
        let items = items
            .map_err(|e| map_err(&format!("cannot list bucket {}", self.options.bucket), e))?;
        let mut out: Vec<ObjectMeta> = items
            .into_iter()
            .filter_map(|m| {
                let key = m.location.to_string();
                let key = key.strip_prefix(&strip).unwrap_or(&key).to_string();
                key.starts_with(prefix).then_some(ObjectMeta {
                    key,
                    size: m.size,
                    modified: jiff::Timestamp::from_second(m.last_modified.timestamp()).ok(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
    fn abort_incomplete(&self, key: &str) -> Result<usize> {
        let path = self.full(key);
        self.rt.block_on(async {
            let ids = self.open_uploads(&path).await?;
            for id in &ids {
                object_store::multipart::MultipartStore::abort_multipart(
                    self.s3.as_ref(),
                    &path,
                    id,
                )
                .await
                .map_err(|e| map_err(&format!("cannot abort the unfinished upload of {key}"), e))?;
            }
            Ok(ids.len())
        })
    }
    fn delete(&self, key: &str) -> Result<()> {
        match self.rt.block_on(self.s3.delete(&self.full(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(
                &format!("cannot delete {key} from bucket {}", self.options.bucket),
                e,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_style_puts_the_bucket_in_the_host() {
        let mut o = S3Options {
            bucket: "b".into(),
            endpoint: "https://s3.example.com:9000/".into(),
            uri_style: "host".into(),
            ..Default::default()
        };
        assert_eq!(endpoint_for(&o), "https://b.s3.example.com:9000");
        o.endpoint = "https://b.s3.example.com".into();
        assert_eq!(endpoint_for(&o), "https://b.s3.example.com");
        o.uri_style = "path".into();
        assert_eq!(endpoint_for(&o), "https://b.s3.example.com");
    }
}
