//! S3 buckets as a data source (Deis keeps its database WAL and its registry in buckets of a
//! Ceph RGW gateway): every object streamed into the archive, with no local staging, and put
//! back by a restore.
//!
//! In the archive each object is the entry `.charm-backup/s3/<bucket>/<key>` (see
//! [`entry_name`] for the few keys a tar name cannot hold as they are), so `tar tzf` lists
//! them; the last entry, `.charm-backup/s3-index.json`, records each object's exact key, size,
//! ETag, MD5, content type and user metadata. Small objects are fetched by several threads at
//! once, ahead of the archive writer; a large one streams straight through it. Memory stays
//! bounded by [`SMALL`] × [`AHEAD`] plus one part of a large object.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use md5::Digest as _;
use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveWriter, SideSink, SourceInfo, hex};
use crate::error::{Error, ErrorKind, Result, chain};
use crate::progress::Progress;
use crate::store::{ListedObject, ObjectHeaders, S3Store};

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
    /// Every bucket the credentials can list (`*`).
    All,
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
        Buckets::All => options.client.list_buckets()?,
        Buckets::Named(n) => n.clone(),
    };
    let mut out = Listed::default();
    for b in names {
        let objects = options.client.list_objects(&b)?;
        out.buckets.push((b, objects));
    }
    Ok(out)
}

/// An object read ahead: its headers and bytes.
type Fetched = Result<Option<(ObjectHeaders, Vec<u8>)>>;

/// Reads `key` whole; `None` when it was deleted since the listing.
fn fetch_small(client: &S3Store, bucket: &str, key: &str) -> Fetched {
    match client.get_object(bucket, key) {
        Ok((h, mut r)) => {
            let mut buf = Vec::with_capacity(h.size as usize);
            r.read_to_end(&mut buf).map_err(|e| {
                Error::new(
                    ErrorKind::Connect,
                    format!("cannot read {key} from bucket {bucket}"),
                )
                .with_source(e)
            })?;
            Ok(Some((h, buf)))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Small objects fetched ahead of the writer, in listing order, by a pool of threads.
struct ReadAhead {
    results: Mutex<HashMap<usize, Fetched>>,
    ready: Condvar,
    /// The writer's position: nothing further than [`AHEAD`] small objects past it is fetched.
    consumed: Mutex<usize>,
    room: Condvar,
    next: AtomicUsize,
    stop: AtomicBool,
}

/// Writes every listed object into `w`, then the index; objects that changed or were deleted
/// since the listing are warnings, as files that change during a backup are.
///
/// # Errors
/// When an object cannot be read or the archive cannot be written.
pub fn write<W: Write + Send + 'static>(
    options: &S3SourceOptions,
    listed: &Listed,
    w: &mut ArchiveWriter<W>,
    progress: &dyn Progress,
) -> Result<S3Index> {
    let all: Vec<(&str, &ListedObject)> = listed
        .buckets
        .iter()
        .flat_map(|(b, objects)| objects.iter().map(move |o| (b.as_str(), o)))
        .collect();
    let ahead = ReadAhead {
        results: Mutex::new(HashMap::new()),
        ready: Condvar::new(),
        consumed: Mutex::new(0),
        room: Condvar::new(),
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    };
    let client = options.client.as_ref();
    let mut index = S3Index {
        endpoint: options.endpoint.clone(),
        buckets: listed.buckets.iter().map(|(b, _)| b.clone()).collect(),
        objects: Vec::with_capacity(all.len()),
    };
    progress.step(&format!(
        "archiving {} objects of {} bucket(s) from {}",
        all.len(),
        index.buckets.len(),
        options.endpoint
    ));
    let result = std::thread::scope(|scope| {
        for _ in 0..options.parallel.max(1) {
            scope.spawn(|| {
                loop {
                    let i = ahead.next.fetch_add(1, Ordering::SeqCst);
                    if i >= all.len() || ahead.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let (bucket, o) = all[i];
                    if o.size > SMALL {
                        continue;
                    }
                    {
                        let mut c = ahead.consumed.lock().unwrap_or_else(|p| p.into_inner());
                        while i >= *c + AHEAD && !ahead.stop.load(Ordering::SeqCst) {
                            c = ahead.room.wait(c).unwrap_or_else(|p| p.into_inner());
                        }
                    }
                    if ahead.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let got = fetch_small(client, bucket, &o.key);
                    ahead
                        .results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(i, got);
                    ahead.ready.notify_all();
                }
            });
        }
        let written = (|| {
            for (i, (bucket, listed_o)) in all.iter().enumerate() {
                let appended = if listed_o.size > SMALL {
                    match client.get_object(bucket, &listed_o.key) {
                        Ok((h, r)) => {
                            append(w, bucket, listed_o, h, r, &mut index)?;
                            true
                        }
                        Err(e) if e.kind() == ErrorKind::NotFound => false,
                        Err(e) => return Err(e),
                    }
                } else {
                    let fetched = {
                        let mut results = ahead.results.lock().unwrap_or_else(|p| p.into_inner());
                        loop {
                            if let Some(r) = results.remove(&i) {
                                break r;
                            }
                            results = ahead.ready.wait(results).unwrap_or_else(|p| p.into_inner());
                        }
                    };
                    match fetched? {
                        Some((h, bytes)) => {
                            let r = Box::new(std::io::Cursor::new(bytes));
                            append(w, bucket, listed_o, h, r, &mut index)?;
                            true
                        }
                        None => false,
                    }
                };
                *ahead.consumed.lock().unwrap_or_else(|p| p.into_inner()) = i + 1;
                ahead.room.notify_all();
                if !appended {
                    w.warn(
                        progress,
                        format!(
                            "s3://{bucket}/{} was deleted during the backup: left out",
                            listed_o.key
                        ),
                    );
                    continue;
                }
                if let Some(last) = index.objects.last()
                    && last.etag != listed_o.etag
                    && !listed_o.etag.is_empty()
                {
                    w.warn(
                        progress,
                        format!(
                            "s3://{bucket}/{} changed during the backup: the archive holds it as \
                             it was when read",
                            listed_o.key
                        ),
                    );
                }
                progress.bytes_done(w.input_bytes(), None);
            }
            Ok::<(), Error>(())
        })();
        ahead.stop.store(true, Ordering::SeqCst);
        ahead.room.notify_all();
        written
    });
    result?;
    let json = serde_json::to_vec(&index)
        .map_err(|e| Error::new(ErrorKind::Other, "cannot encode the S3 index").with_source(e))?;
    w.append_stream(
        &format!(".charm-backup/{INDEX_ENTRY}"),
        json.len() as u64,
        0o600,
        &mut json.as_slice(),
    )?;
    Ok(index)
}

/// Reads `data` through an MD5.
struct Md5Reader<R> {
    inner: R,
    md5: md5::Md5,
}

impl<R: Read> Read for Md5Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        Ok(n)
    }
}

/// Appends one object and records it in the index.
fn append<W: Write + Send + 'static>(
    w: &mut ArchiveWriter<W>,
    bucket: &str,
    listed: &ListedObject,
    h: ObjectHeaders,
    data: Box<dyn Read + Send>,
    index: &mut S3Index,
) -> Result<()> {
    let entry = entry_name(bucket, &listed.key);
    let mut r = Md5Reader {
        inner: data,
        md5: md5::Md5::new(),
    };
    w.append_stream(&format!(".charm-backup/{entry}"), h.size, 0o600, &mut r)?;
    index.objects.push(IndexedObject {
        bucket: bucket.to_string(),
        key: listed.key.clone(),
        entry,
        size: h.size,
        etag: h.etag,
        md5: hex(&r.md5.finalize()),
        content_type: h.content_type,
        metadata: h.metadata,
    });
    Ok(())
}

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
            if seen.md5.get(&o.entry) != Some(&o.md5) {
                return Err(Error::new(
                    ErrorKind::Integrity,
                    format!(
                        "the archive's copy of s3://{bucket}/{} does not match its index",
                        o.key
                    ),
                ));
            }
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
            .put_object(&o.bucket, &o.key, &headers_of(o), o.size, data)?;
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
