//! Checking an archive's objects and putting them back.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use md5::Digest as _;

use super::{AHEAD, ENTRY_PREFIX, INDEX_ENTRY, IndexedObject, S3Index, SMALL};
use crate::archive::{SideSink, hex};
use crate::error::{Error, ErrorKind, Result, chain};
use crate::progress::Progress;
use crate::store::{ListedObject, ObjectHeaders, S3Store};

/// What a restore's extraction saw of the S3 source: the index and each object entry's MD5.
/// Wraps the restore's own sink; object entries are read (and hashed) here, never written to
/// the unit's disk.
pub struct Collect<'a> {
    inner: &'a mut dyn SideSink,
    /// The index, once read.
    pub index: Option<S3Index>,
    /// Each object entry's MD5.
    pub md5: HashMap<String, String>,
    /// Each large object entry's ETag once put back in parts.
    pub part_etag: HashMap<String, String>,
}

impl<'a> Collect<'a> {
    /// A collector in front of `inner`.
    pub fn new(inner: &'a mut dyn SideSink) -> Self {
        Collect {
            inner,
            index: None,
            md5: HashMap::new(),
            part_etag: HashMap::new(),
        }
    }

    /// What was collected.
    pub fn finish(self) -> Seen {
        Seen {
            index: self.index,
            md5: self.md5,
            part_etag: self.part_etag,
        }
    }
}

/// The S3 part of an archive, as an extraction saw it.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The index.
    pub index: Option<S3Index>,
    /// Each object entry's MD5.
    pub md5: HashMap<String, String>,
    /// The ETag each object entry gets when [`put_back`] writes it in parts.
    pub part_etag: HashMap<String, String>,
}

/// Reads `data` whole, returning its MD5 and the ETag S3 gives it when it is uploaded in
/// parts of [`crate::store::PART_BYTES`] (the MD5 of the parts' MD5s, then `-<parts>`), for
/// an object over [`crate::store::SINGLE_PUT_MAX`].
fn digests(data: &mut dyn Read) -> std::io::Result<(String, Option<String>)> {
    let part = crate::store::PART_BYTES as u64;
    let mut whole = md5::Md5::new();
    let mut parts = Vec::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut current = md5::Md5::new();
    let mut in_part = 0u64;
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        whole.update(chunk);
        total += n as u64;
        while !chunk.is_empty() {
            let take = ((part - in_part) as usize).min(chunk.len());
            current.update(&chunk[..take]);
            in_part += take as u64;
            chunk = &chunk[take..];
            if in_part == part {
                parts.extend_from_slice(
                    &std::mem::replace(&mut current, md5::Md5::new()).finalize(),
                );
                in_part = 0;
            }
        }
    }
    if in_part > 0 {
        parts.extend_from_slice(&current.finalize());
    }
    let multipart = (total > crate::store::SINGLE_PUT_MAX)
        .then(|| format!("{}-{}", hex(&md5::Md5::digest(&parts)), parts.len() / 16));
    Ok((hex(&whole.finalize()), multipart))
}

impl SideSink for Collect<'_> {
    fn entry(&mut self, name: &Path, data: &mut dyn Read) -> Result<bool> {
        let text = name.to_string_lossy();
        if text == INDEX_ENTRY {
            let mut buf = Vec::new();
            data.read_to_end(&mut buf).map_err(|e| {
                Error::new(ErrorKind::Integrity, "cannot read the S3 index").with_source(e)
            })?;
            self.index = Some(serde_json::from_slice(&buf).map_err(|e| {
                Error::new(ErrorKind::Integrity, "the archive's S3 index is not valid")
                    .with_source(e)
            })?);
            return Ok(true);
        }
        if text.starts_with(ENTRY_PREFIX) {
            let (md5, parts) = digests(data).map_err(|e| {
                Error::new(ErrorKind::Integrity, format!("cannot read {text}")).with_source(e)
            })?;
            if let Some(p) = parts {
                self.part_etag.insert(text.to_string(), p);
            }
            self.md5.insert(text.into_owned(), md5);
            return Ok(true);
        }
        self.inner.entry(name, data)
    }
}

/// Where a restore puts the objects back.
#[derive(Debug, Clone)]
pub struct S3RestoreTarget {
    /// The gateway.
    pub client: Arc<S3Store>,
    /// Replace objects that exist with other content.
    pub overwrite: bool,
    /// Transfers at once for small objects.
    pub parallel: usize,
}

/// What a restore will write.
#[derive(Debug, Clone, Default)]
pub struct RestorePlan {
    /// Buckets to create.
    pub create: Vec<String>,
    /// Entries to put back.
    pub put: BTreeSet<String>,
    /// Objects already there with the same content.
    pub identical: usize,
    /// Objects there with other content, replaced.
    pub replaced: usize,
}

/// What putting the objects back did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3RestoreStats {
    /// Objects written.
    pub objects: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Objects already there with the same content.
    pub identical: usize,
    /// Objects replaced.
    pub replaced: usize,
    /// Buckets created.
    pub buckets_created: Vec<String>,
}

/// Checks what the extraction saw against the index (every object whole) and the gateway
/// (objects that exist with other content are refused, naming some, unless `overwrite`),
/// before anything is written.
///
/// # Errors
/// [`ErrorKind::Integrity`] for an archive whose objects do not match its index;
/// [`ErrorKind::InvalidInput`] for objects in the way.
pub fn plan_restore(
    seen: &Seen,
    target: &S3RestoreTarget,
    progress: &dyn Progress,
) -> Result<RestorePlan> {
    let index = seen.index.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Integrity,
            "the archive's S3 index is missing: it is not whole",
        )
    })?;
    let mut plan = RestorePlan::default();
    let mut conflicts = Vec::new();
    for bucket in &index.buckets {
        let existing: HashMap<String, ListedObject> = match target.client.list_objects(bucket) {
            Ok(l) => l.into_iter().map(|o| (o.key.clone(), o)).collect(),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                plan.create.push(bucket.clone());
                HashMap::new()
            }
            Err(e) => return Err(e),
        };
        for o in index.objects.iter().filter(|o| &o.bucket == bucket) {
            // The same bytes: as backed up, as a single PUT writes them, or as put_back
            // writes them in parts.
            let same = |etag: &str| {
                etag == o.md5
                    || etag == o.etag
                    || seen.part_etag.get(&o.entry).is_some_and(|p| p == etag)
            };
            match existing.get(&o.key) {
                Some(e) if e.size == o.size && same(&e.etag) => {
                    plan.identical += 1;
                }
                Some(_) => {
                    conflicts.push(format!("s3://{bucket}/{}", o.key));
                    plan.put.insert(o.entry.clone());
                }
                None => {
                    plan.put.insert(o.entry.clone());
                }
            }
        }
    }
    if !conflicts.is_empty() {
        if !target.overwrite {
            let shown: Vec<&str> = conflicts.iter().take(5).map(String::as_str).collect();
            return Err(Error::invalid(format!(
                "{} object(s) exist with other content than the backup's ({}{}): pass \
                 overwrite-objects=true to replace them",
                conflicts.len(),
                shown.join(", "),
                if conflicts.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            )));
        }
        plan.replaced = conflicts.len();
    }
    progress.step(&format!(
        "S3: {} object(s) to put back, {} already in place, {} to replace, {} bucket(s) to create",
        plan.put.len(),
        plan.identical,
        plan.replaced,
        plan.create.len()
    ));
    Ok(plan)
}

/// Checks that the archive holds every object its index lists, each with the recorded MD5,
/// and returns the index.
///
/// # Errors
/// [`ErrorKind::Integrity`] for a missing index, or an object missing or changed.
pub fn check_index(seen: &Seen) -> Result<&S3Index> {
    let index = seen.index.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Integrity,
            "the archive's S3 index is missing: it is not whole",
        )
    })?;
    for o in &index.objects {
        if seen.md5.get(&o.entry) != Some(&o.md5) {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "the archive's copy of s3://{}/{} does not match its index",
                    o.bucket, o.key
                ),
            ));
        }
    }
    Ok(index)
}

/// Puts the objects back as the archive streams past (small ones by several threads at once).
struct PutBack<'a> {
    plan: &'a RestorePlan,
    by_entry: HashMap<&'a str, &'a IndexedObject>,
    client: &'a S3Store,
    queue: Option<std::sync::mpsc::SyncSender<(&'a IndexedObject, Vec<u8>)>>,
    errors: Arc<Mutex<Vec<Error>>>,
    stats: S3RestoreStats,
}

fn headers_of(o: &IndexedObject) -> ObjectHeaders {
    ObjectHeaders {
        content_type: o.content_type.clone(),
        metadata: o.metadata.clone(),
        etag: String::new(),
        size: o.size,
    }
}

impl SideSink for PutBack<'_> {
    fn entry(&mut self, name: &Path, data: &mut dyn Read) -> Result<bool> {
        let text = name.to_string_lossy();
        if let Some(e) = self.errors.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Err(e);
        }
        let Some(o) = self.by_entry.get(text.as_ref()).copied() else {
            // Not an object, or one already in place: read past it.
            std::io::copy(data, &mut std::io::sink()).map_err(|e| {
                Error::new(ErrorKind::Integrity, format!("cannot read {text}")).with_source(e)
            })?;
            return Ok(true);
        };
        if !self.plan.put.contains(&o.entry) {
            std::io::copy(data, &mut std::io::sink()).map_err(|e| {
                Error::new(ErrorKind::Integrity, format!("cannot read {text}")).with_source(e)
            })?;
            return Ok(true);
        }
        self.stats.objects += 1;
        self.stats.bytes += o.size;
        if o.size <= SMALL
            && let Some(q) = &self.queue
        {
            let mut buf = Vec::with_capacity(o.size as usize);
            data.read_to_end(&mut buf).map_err(|e| {
                Error::new(ErrorKind::Integrity, format!("cannot read {text}")).with_source(e)
            })?;
            q.send((o, buf))
                .map_err(|_| Error::new(ErrorKind::Other, "the S3 uploads stopped"))?;
            return Ok(true);
        }
        self.client
            .put_object(&o.bucket, &o.key, &headers_of(o), o.size, data, &o.md5)?;
        Ok(true)
    }
}

/// Creates the missing buckets and puts back the objects `plan` names, reading the archive in
/// `source` once more (its checksum checked again on the way).
///
/// # Errors
/// When a bucket cannot be created, an object cannot be written, or the archive no longer
/// reads as it did.
pub fn put_back(
    source: &dyn crate::archive::ArchiveSource,
    expected_sha256: &str,
    seen: &Seen,
    plan: &RestorePlan,
    target: &S3RestoreTarget,
    limits: crate::archive::Limits,
    progress: &dyn Progress,
) -> Result<S3RestoreStats> {
    let parallel = target.parallel;
    let Some(index) = &seen.index else {
        return Ok(S3RestoreStats::default());
    };
    let client = target.client.as_ref();
    let mut created = Vec::new();
    for b in &plan.create {
        if client.ensure_bucket(b)? {
            created.push(b.clone());
        }
    }
    progress.step(&format!("putting {} S3 object(s) back", plan.put.len()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::sync_channel::<(&IndexedObject, Vec<u8>)>(AHEAD);
    let rx = Mutex::new(rx);
    let result = std::thread::scope(|scope| {
        for _ in 0..parallel.max(1) {
            let errors = errors.clone();
            let rx = &rx;
            scope.spawn(move || {
                loop {
                    let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((o, bytes)) = next else { return };
                    if let Err(e) = client.put_object(
                        &o.bucket,
                        &o.key,
                        &headers_of(o),
                        o.size,
                        &mut bytes.as_slice(),
                        &o.md5,
                    ) {
                        errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                    }
                }
            });
        }
        let mut sink = PutBack {
            plan,
            by_entry: index
                .objects
                .iter()
                .map(|o| (o.entry.as_str(), o))
                .collect(),
            client,
            queue: Some(tx),
            errors: errors.clone(),
            stats: S3RestoreStats::default(),
        };
        let verify = crate::archive::VerifyOptions {
            expected_sha256: Some(expected_sha256.to_string()),
            limits,
        };
        let read = crate::archive::verify_source(source, &verify, &mut sink, progress);
        // Closing the queue lets the uploaders finish what they hold, then stop.
        sink.queue = None;
        read.map(|_| sink.stats)
    });
    let mut stats = result?;
    if let Some(e) = errors.lock().unwrap_or_else(|p| p.into_inner()).pop() {
        return Err(Error::new(
            e.kind(),
            format!("putting the S3 objects back failed: {}", chain(&e)),
        ));
    }
    stats.identical = plan.identical;
    stats.replaced = plan.replaced;
    stats.buckets_created = created;
    Ok(stats)
}
