//! The S3 store: any S3-compatible object store (AWS S3, Ceph RGW, MinIO, SeaweedFS) through
//! `object_store`. The public API stays synchronous: the store keeps a small tokio runtime of
//! its own, whose one worker thread sends the requests. Uploads stream in multipart parts as
//! the archive is produced, each part going out while the next is compressed; memory is
//! bounded by part size × parts in flight.
//!
//! Keys: the relation's `path` is the prefix of every key, kept as the operator typed it
//! (see [`S3Options::key_prefix`] for the few things a key cannot hold). Keys are given to
//! `object_store` as they are, never percent-encoded by it, so what is written is what is
//! listed and what other S3 tools show.
//!
//! Versioned buckets: a delete removes every version and delete marker of the key, so a
//! deleted backup leaves nothing behind.

mod attributes;
mod io;
mod objects;
mod options;
mod signed;
mod transfer;

use std::io::Read;
use std::sync::{Arc, OnceLock};
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
use io::{S3Reader, S3Writer};
pub use objects::{ListedObject, ObjectHeaders, RANGE_BYTES, SINGLE_PUT_MAX, addressable};
pub use options::S3Options;
use options::{endpoint_for, normalize_key};
pub use signed::Versioning;

/// Size of each multipart part.
pub const PART_BYTES: usize = 16 << 20;
/// Parts uploaded at once.
pub const PARTS_IN_FLIGHT: usize = 2;

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
    /// For the requests `object_store` does not make (open uploads, versions).
    http: object_store::client::HttpClient,
    options: S3Options,
    /// What the relation's `attributes` ask for.
    attributes: attributes::RequestAttributes,
    /// The bucket's versioning, once asked (`None`: the server could not say).
    versioning: OnceLock<Option<Versioning>>,
}

impl S3Store {
    /// The headers of an archive upload: the relation's storage class (`storage-class`, or
    /// `x-amz-storage-class` in its `attributes`) and the object headers of its `attributes`.
    fn upload_options(&self) -> object_store::PutMultipartOptions {
        let mut o = object_store::PutMultipartOptions {
            attributes: self.attributes.object_attributes(),
            ..Default::default()
        };
        let class = match self.options.storage_class.trim() {
            "" => self.attributes.storage_class.as_deref().unwrap_or(""),
            class => class,
        };
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
    /// [`ErrorKind::InvalidInput`] for a missing bucket or credentials, a bad CA chain, or
    /// settings [`S3Options::validate`] refuses.
    pub fn open(options: &S3Options) -> Result<Self> {
        let missing = options.missing();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "the s3-parameters relation lacks {}: set them on the s3-integrator",
                missing.join(", ")
            )));
        }
        options.validate()?;
        let attributes = options.request_attributes()?;
        let mut options = options.clone();
        // `HTTPS://` is valid too; the checks below look for the lowercase scheme.
        if let Some((scheme, rest)) = options.endpoint.split_once("://") {
            options.endpoint = format!("{}://{rest}", scheme.to_ascii_lowercase());
        }
        let options = &options;
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
        b = attributes.configure(b);
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
            attributes,
            versioning: OnceLock::new(),
        })
    }

    /// Whether the bucket keeps old versions of objects (`GetBucketVersioning`).
    ///
    /// # Errors
    /// When the server cannot be asked or refuses (the credentials may lack
    /// `s3:GetBucketVersioning`).
    pub fn versioning(&self) -> Result<Versioning> {
        let v = self.rt.block_on(self.get_versioning());
        if let Ok(v) = &v {
            let _ = self.versioning.set(Some(*v));
        }
        v
    }

    /// The prefix of every key (the relation's `path`, see [`S3Options::key_prefix`]).
    fn prefix(&self) -> String {
        self.options.key_prefix()
    }

    /// The `<prefix>/` that listed keys start with, or nothing.
    fn strip(&self) -> String {
        let p = self.prefix();
        if p.is_empty() { p } else { format!("{p}/") }
    }

    /// The key in the bucket for `key`, as a string: the prefix and `key`, both normalized.
    fn full_key(&self, key: &str) -> String {
        normalize_key(&format!("{}/{key}", self.prefix()))
    }

    /// The key in the bucket for `key`, written as it is (`object_store` encodes nothing).
    fn full(&self, key: &str) -> Result<ObjectPath> {
        let full = self.full_key(key);
        ObjectPath::parse(&full).map_err(|e| {
            Error::invalid(format!("{key:?} cannot be a key in an S3 bucket")).with_source(e)
        })
    }

    /// Removes every version and delete marker of `key` from a versioned bucket. When some
    /// cannot be removed the key is still deleted (hidden behind a delete marker), and the
    /// error says what is left.
    async fn delete_versions(&self, path: &ObjectPath, key: &str) -> Result<()> {
        let b = &self.options.bucket;
        let left = match self.versions_of(path).await {
            Ok(versions) => {
                let mut left = Vec::new();
                for v in versions {
                    if let Err(e) = self.delete_version(path, &v.version_id).await {
                        left.push((v.version_id, e));
                    }
                }
                if left.is_empty() {
                    return Ok(());
                }
                left
            }
            Err(e) => {
                self.delete_current(path, key).await?;
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "deleted {key} from versioned bucket {b}, but its old versions may be \
                         left: {e}; allow s3:ListBucketVersions and s3:DeleteObjectVersion to \
                         these credentials, or remove the versions of {path} by hand"
                    ),
                ));
            }
        };
        self.delete_current(path, key).await?;
        let ids: Vec<&str> = left.iter().map(|(id, _)| id.as_str()).collect();
        Err(Error::new(
            left[0].1.kind(),
            format!(
                "deleted {key} from versioned bucket {b}, but {} old version(s) of {path} are left \
                 ({}: {}); allow s3:DeleteObjectVersion to these credentials, or remove them by \
                 hand",
                left.len(),
                left[0].1,
                ids.join(", ")
            ),
        ))
    }

    /// Deletes the current version of `key` (absent is fine).
    async fn delete_current(&self, path: &ObjectPath, key: &str) -> Result<()> {
        match self.s3.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(
                &format!("cannot delete {key} from bucket {}", self.options.bucket),
                e,
            )),
        }
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
        format!("/{}backup/", self.strip())
    }
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{}", self.options.bucket, self.full_key(key))
    }
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        let _g = self.rt.enter();
        let upload: Box<dyn MultipartUpload> = self
            .rt
            .block_on(
                self.s3
                    .put_multipart_opts(&self.full(key)?, self.upload_options()),
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
    /// One PUT. Small sidecars stay in the default storage class, so reading them to list
    /// backups stays cheap (and possible) whatever class the archives use.
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let opts = object_store::PutOptions {
            attributes: self.attributes.object_attributes(),
            ..Default::default()
        };
        let payload = object_store::PutPayload::from(bytes::Bytes::copy_from_slice(data));
        self.rt
            .block_on(self.s3.put_opts(&self.full(key)?, payload, opts))
            .map(drop)
            .map_err(|e| {
                map_err(
                    &format!("cannot write {key} to bucket {}", self.options.bucket),
                    e,
                )
            })
    }
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.full(key)?;
        let r = self.rt.block_on(self.s3.get(&path)).map_err(|e| {
            map_err(
                &format!("cannot read {key} from bucket {}", self.options.bucket),
                e,
            )
        })?;
        Ok(Box::new(S3Reader {
            rt: self.rt.clone(),
            s3: self.s3.clone(),
            path,
            key: key.to_string(),
            size: r.meta.size,
            etag: r.meta.e_tag.clone(),
            stream: r.into_stream(),
            chunk: bytes::Bytes::new(),
            pos: 0,
            resumed: 0,
        }))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let strip = self.strip();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            // A prefix that is not a folder (`wal/1/00000001/<segment>-`): object_store lists
            // folders only, so the request is made here.
            let full = format!("{strip}{prefix}");
            let mut out: Vec<ObjectMeta> = self
                .list_objects_prefixed(&self.options.bucket, &full)?
                .into_iter()
                .map(|o| ObjectMeta {
                    key: o.key.strip_prefix(&strip).unwrap_or(&o.key).to_string(),
                    size: o.size,
                    modified: o.modified,
                })
                .collect();
            out.sort_by(|a, b| a.key.cmp(&b.key));
            return Ok(out);
        }
        let full = self.full(prefix)?;
        // The prefix as the keys have it: normalized, keeping a trailing `/`.
        let prefix = match normalize_key(prefix) {
            p if prefix.ends_with('/') && !p.is_empty() => format!("{p}/"),
            p => p,
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
                key.starts_with(&prefix).then_some(ObjectMeta {
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
        let path = self.full(key)?;
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
        let path = self.full(key)?;
        // A server that cannot say (not every S3-compatible one has `?versioning`) is taken
        // as keeping no versions.
        let versioning = *self
            .versioning
            .get_or_init(|| self.rt.block_on(self.get_versioning()).ok());
        self.rt.block_on(async {
            match versioning {
                Some(Versioning::Enabled | Versioning::Suspended) => {
                    self.delete_versions(&path, key).await
                }
                _ => self.delete_current(&path, key).await,
            }
        })
    }
}

#[cfg(test)]
mod tests;
