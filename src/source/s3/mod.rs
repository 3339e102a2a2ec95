//! S3 buckets as a data source (Deis keeps its database WAL and its registry in buckets of a
//! Ceph RGW gateway): every object streamed into the archive, with no local staging, and put
//! back by a restore.
//!
//! In the archive each object is the entry `.charm-backup/s3/<bucket>/<key>` (see
//! [`entry_name`] for the few keys a tar name cannot hold as they are), so `tar tzf` lists
//! them; the last entry, `.charm-backup/s3-index.json`, records each object's exact key, size,
//! ETag, MD5, content type and user metadata. Small objects are fetched by several threads at
//! once, ahead of the archive writer; a large one streams straight through it. Memory stays
//! bounded by [`SMALL`] × [`AHEAD`] plus one range of a large object.
//!
//! [`backup`] writes them; [`restore`] checks them and puts them back.

pub mod backup;
pub mod restore;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use md5::Digest as _;
use serde::{Deserialize, Serialize};

use crate::archive::SourceInfo;
use crate::error::Result;
use crate::store::{ListedObject, S3Store};

pub use backup::write;
pub use restore::{
    Collect, RestorePlan, S3RestoreStats, S3RestoreTarget, Seen, check_index, plan_restore,
    put_back,
};

/// The source's kind in manifests.
pub const KIND: &str = "s3";
/// Where objects sit in an archive, relative to `.charm-backup/`.
pub const ENTRY_PREFIX: &str = "s3/";
/// The index entry, relative to `.charm-backup/`.
pub const INDEX_ENTRY: &str = "s3-index.json";
/// Objects up to this size are fetched (and put back) in parallel, whole in memory.
pub const SMALL: u64 = 1 << 20;
/// How many small objects may be held ahead of the archive writer.
pub const AHEAD: usize = 32;

/// Which buckets to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Buckets {
    /// Every bucket the credentials can list (`*`), but these (the backup store's own).
    All {
        /// Buckets left out.
        except: Vec<String>,
    },
    /// These.
    Named(Vec<String>),
}

/// The gateway and buckets to back up.
#[derive(Debug, Clone)]
pub struct S3SourceOptions {
    /// The gateway, with the credentials (its own bucket setting is not used).
    pub client: Arc<S3Store>,
    /// Its endpoint, for the record.
    pub endpoint: String,
    /// The buckets.
    pub buckets: Buckets,
    /// Transfers at once for small objects.
    pub parallel: usize,
}

/// One object as the archive holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct IndexedObject {
    /// The bucket.
    pub bucket: String,
    /// The exact key.
    pub key: String,
    /// The entry holding its bytes, relative to `.charm-backup/`.
    pub entry: String,
    /// Its size.
    pub size: u64,
    /// Its ETag when it was read.
    pub etag: String,
    /// The MD5 of its bytes, lowercase hex.
    pub md5: String,
    /// Its `Content-Type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Its user metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// What the archive holds of the S3 source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct S3Index {
    /// The gateway it came from.
    pub endpoint: String,
    /// The buckets backed up (an empty bucket too).
    pub buckets: Vec<String>,
    /// Every object.
    pub objects: Vec<IndexedObject>,
}

/// The archive entry of `key` in `bucket`: `s3/<bucket>/<key>`, with `%` written `%25`, an
/// empty segment (`a//b`, a folder marker's trailing `/`) written `%`, and `.` and `..`
/// segments written `%2E` and `%2E%2E`, so every key has a name a tar reader accepts.
pub fn entry_name(bucket: &str, key: &str) -> String {
    let segments: Vec<String> = key
        .split('/')
        .map(|s| match s {
            "" => "%".to_string(),
            "." => "%2E".to_string(),
            ".." => "%2E%2E".to_string(),
            s => s.replace('%', "%25"),
        })
        .collect();
    format!("{ENTRY_PREFIX}{bucket}/{}", segments.join("/"))
}

/// The buckets and objects to back up, listed before the archive is started.
#[derive(Debug, Clone, Default)]
pub struct Listed {
    /// Each bucket with its objects.
    pub buckets: Vec<(String, Vec<ListedObject>)>,
    /// Objects that cannot be backed up (`s3://bucket/key` of a key with a `.` or `..`
    /// segment, which no URL can address), reported as warnings.
    pub skipped: Vec<String>,
}

impl Listed {
    /// The manifest's record of the source.
    pub fn source_info(&self, endpoint: &str) -> SourceInfo {
        let mut details = BTreeMap::new();
        details.insert("endpoint".to_string(), endpoint.to_string());
        details.insert(
            "buckets".to_string(),
            self.buckets
                .iter()
                .map(|(b, _)| b.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
        let objects: Vec<&ListedObject> = self.buckets.iter().flat_map(|(_, o)| o).collect();
        details.insert("objects".to_string(), objects.len().to_string());
        details.insert(
            "bytes".to_string(),
            objects.iter().map(|o| o.size).sum::<u64>().to_string(),
        );
        SourceInfo {
            kind: KIND.into(),
            details,
            ..Default::default()
        }
    }
}

/// Lists the buckets (`*`: every one the credentials can list) and their objects.
///
/// # Errors
/// When a bucket cannot be listed (a named bucket that does not exist included).
pub fn list(options: &S3SourceOptions) -> Result<Listed> {
    let names = match &options.buckets {
        Buckets::All { except } => options
            .client
            .list_buckets()?
            .into_iter()
            .filter(|b| !except.contains(b))
            .collect(),
        Buckets::Named(n) => n.clone(),
    };
    let mut out = Listed::default();
    for b in names {
        let (objects, odd): (Vec<ListedObject>, Vec<ListedObject>) = options
            .client
            .list_objects(&b)?
            .into_iter()
            .partition(|o| crate::store::addressable(&o.key));
        out.skipped
            .extend(odd.iter().map(|o| format!("s3://{b}/{}", o.key)));
        out.buckets.push((b, objects));
    }
    Ok(out)
}

/// Reads `data` through an MD5.
pub(crate) struct Md5Reader<R> {
    pub(crate) inner: R,
    pub(crate) md5: md5::Md5,
}

impl<R: Read> Read for Md5Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::entry_name;

    #[test]
    fn every_key_has_a_name_a_tar_reader_accepts() {
        assert_eq!(entry_name("b", "a/b.txt"), "s3/b/a/b.txt");
        assert_eq!(entry_name("b", "folder/"), "s3/b/folder/%");
        assert_eq!(entry_name("b", "a//b"), "s3/b/a/%/b");
        assert_eq!(entry_name("b", "/lead"), "s3/b/%/lead");
        assert_eq!(entry_name("b", "./x/../y"), "s3/b/%2E/x/%2E%2E/y");
        assert_eq!(entry_name("b", "100%"), "s3/b/100%25");
        // Distinct keys, distinct names.
        assert_ne!(entry_name("b", "%"), entry_name("b", ""));
        assert_ne!(entry_name("b", "%2E"), entry_name("b", "."));
    }
}
