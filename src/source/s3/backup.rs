//! Writing the buckets' objects into an archive.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use md5::Digest as _;

use super::{
    AHEAD, INDEX_ENTRY, IndexedObject, Listed, Md5Reader, S3Index, S3SourceOptions, SMALL,
    entry_name,
};
use crate::archive::{ArchiveWriter, hex};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::store::{ListedObject, ObjectHeaders, S3Store};

/// An object read ahead.
enum Ahead {
    /// Its headers and bytes.
    Data(ObjectHeaders, Vec<u8>),
    /// Deleted since the listing.
    Gone,
    /// Grown past [`SMALL`] since the listing: the writer streams it itself.
    Large,
}

/// Reads a small object whole (never more than [`SMALL`] bytes into memory).
fn fetch_small(client: &S3Store, bucket: &str, o: &ListedObject) -> Result<Ahead> {
    match client.get_object(bucket, &o.key, o.size) {
        Ok((h, _)) if h.size > SMALL => Ok(Ahead::Large),
        Ok((h, r)) => {
            let mut buf = Vec::with_capacity(h.size as usize);
            r.take(SMALL + 1).read_to_end(&mut buf).map_err(|e| {
                Error::new(
                    ErrorKind::Connect,
                    format!("cannot read {} from bucket {bucket}", o.key),
                )
                .with_source(e)
            })?;
            Ok(Ahead::Data(h, buf))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Ahead::Gone),
        Err(e) => Err(e),
    }
}

/// Small objects fetched ahead of the writer, in listing order, by a pool of threads.
struct ReadAhead {
    results: Mutex<HashMap<usize, Result<Ahead>>>,
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
    for s in &listed.skipped {
        w.warn(
            progress,
            format!("{s} has a `.` or `..` segment, which no S3 request can address: left out"),
        );
    }
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
                    // A panic is reported as this object's failure, so the writer never waits on
                    // an object nobody fetches.
                    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        fetch_small(client, bucket, o)
                    }))
                    .unwrap_or_else(|_| {
                        Err(Error::new(
                            ErrorKind::Other,
                            format!("reading {} from bucket {bucket} panicked", o.key),
                        ))
                    });
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
                let stream = |w: &mut ArchiveWriter<W>, index: &mut S3Index| match client
                    .get_object(bucket, &listed_o.key, listed_o.size)
                {
                    Ok((h, r)) => append(w, bucket, listed_o, h, r, index).map(|()| true),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(e),
                };
                let appended = if listed_o.size > SMALL {
                    stream(w, &mut index)?
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
                        Ahead::Data(h, bytes) => {
                            let r = Box::new(std::io::Cursor::new(bytes));
                            append(w, bucket, listed_o, h, r, &mut index)?;
                            true
                        }
                        Ahead::Gone => false,
                        Ahead::Large => stream(w, &mut index)?,
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
        {
            // Under the lock the workers check it with, so none misses the wake-up.
            let _c = ahead.consumed.lock().unwrap_or_else(|p| p.into_inner());
            ahead.stop.store(true, Ordering::SeqCst);
            ahead.room.notify_all();
        }
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
