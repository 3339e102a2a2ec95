//! Writes a `.tar.gz` (or `.tar.zst`) in one streaming pass: walk, tar, compress and hash as
//! the bytes go, never re-reading the output.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

mod tree;

use tree::ExactReader;

use crate::archive::compress::Encoder;
use crate::archive::hash::HashingWriter;
use crate::archive::manifest::{MANIFEST_NAME, Manifest};
use crate::archive::seal::Sealed;
use crate::archive::{Compression, GzipEffort};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;

/// Options for writing an archive.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ArchiveOptions {
    /// The compression.
    pub compression: Compression,
    /// How hard gzip works (ignored for zstd).
    pub gzip_effort: GzipEffort,
    /// Compression threads; 0 (the default): one per core the process may use (a CPU quota
    /// counts). At most one per CPU it may run on: a quota of 1.5 cores may have 2. With one,
    /// gzip is a single plain stream.
    pub threads: usize,
    /// What a restore of the archive will accept: the writer refuses to go past it, so a
    /// finished archive always restores (default: [`crate::archive::Limits::default`], what
    /// restores use).
    pub limits: crate::archive::Limits,
    /// Encrypt the compressed stream to these age recipients (the file is then an age file;
    /// its sha256 is that of the encrypted bytes).
    pub recipients: Option<crate::archive::Recipients>,
}

impl ArchiveOptions {
    /// Options with this compression.
    pub fn with_compression(compression: Compression) -> Self {
        ArchiveOptions {
            compression,
            ..Default::default()
        }
    }
}

/// What writing an archive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Entries written (manifest included).
    pub entries: u64,
    /// Regular files among them.
    pub files: u64,
    /// Bytes of file content read.
    pub input_bytes: u64,
    /// Bytes of compressed output.
    pub bytes_written: u64,
    /// SHA-256 of the compressed output, lowercase hex (what `sha256sum` prints).
    pub sha256: String,
    /// Non-fatal problems, e.g. `file changed as we read it: /etc/x`.
    pub warnings: Vec<String>,
    /// The manifest written as the first entry.
    pub manifest: Manifest,
}

/// Size of the parts a stream of unknown length is cut into (see
/// [`ArchiveWriter::append_unsized`]): two are in memory at a time.
pub const STREAM_PART: usize = 8 << 20;

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(data: &mut dyn Read, buf: &mut [u8], name: &str) -> Result<usize> {
    crate::archive::fill(data, buf).map_err(|e| {
        Error::new(
            ErrorKind::SourceFailed,
            format!("cannot read the data for {name}"),
        )
        .with_source(e)
    })
}

/// A tar stream being written, compressed and hashed.
///
/// The output must be `Send + 'static` because gzip runs on every core: compression threads
/// own the output while the caller walks and reads files.
pub struct ArchiveWriter<W: Write + Send + 'static> {
    tar: tar::Builder<Encoder<Sealed<HashingWriter<W>>>>,
    stats: ArchiveStats,
    links: HashMap<(u64, u64), PathBuf>,
    limits: crate::archive::Limits,
}

impl<W: Write + Send + 'static> std::fmt::Debug for ArchiveWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("stats", &self.stats)
            .finish()
    }
}

/// `ENOSPC`: no space left on device.
const ENOSPC: i32 = 28;

fn write_err(e: io::Error) -> Error {
    let full = e.raw_os_error() == Some(ENOSPC)
        || matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        );
    let msg = if full {
        "the target filesystem is full: free space there or choose another target"
    } else {
        "cannot write the archive"
    };
    Error::new(ErrorKind::Other, msg).with_source(e)
}

impl<W: Write + Send + 'static> ArchiveWriter<W> {
    /// Starts an archive on `out` and writes `manifest` as its first entry.
    ///
    /// # Errors
    /// When the output cannot be written.
    pub fn create(out: W, manifest: &Manifest, options: &ArchiveOptions) -> Result<Self> {
        let sealed =
            Sealed::new(HashingWriter::new(out), options.recipients.as_ref()).map_err(write_err)?;
        let enc = Encoder::new(
            sealed,
            options.compression,
            options.gzip_effort,
            options.threads,
        )
        .map_err(write_err)?;
        let mut tar = tar::Builder::new(enc);
        tar.mode(tar::HeaderMode::Complete);
        tar.follow_symlinks(false);
        let mut w = ArchiveWriter {
            tar,
            stats: ArchiveStats {
                manifest: manifest.clone(),
                ..ArchiveStats::default()
            },
            links: HashMap::new(),
            limits: options.limits,
        };
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| {
            Error::new(ErrorKind::Other, "cannot encode the manifest").with_source(e)
        })?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o600);
        h.set_size(json.len() as u64);
        h.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
        w.tar
            .append_data(&mut h, MANIFEST_NAME, json.as_slice())
            .map_err(write_err)?;
        w.stats.entries += 1;
        Ok(w)
    }

    /// Appends one stream of known size as a regular file named `name` (e.g. a database dump
    /// whose size was measured first).
    ///
    /// # Errors
    /// When reading `data` or writing the archive fails, or `data` ends early.
    pub fn append_stream(
        &mut self,
        name: &str,
        size: u64,
        mode: u32,
        data: &mut dyn Read,
    ) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
        let mut r = ExactReader {
            inner: data,
            left: size,
            short: false,
            read_failed: false,
        };
        if let Err(e) = self.tar.append_data(&mut h, name, &mut r) {
            return Err(if r.read_failed {
                Error::new(
                    ErrorKind::SourceFailed,
                    format!("cannot read the data for {name}"),
                )
                .with_source(e)
            } else {
                write_err(e)
            });
        }
        if r.short {
            return Err(Error::new(
                ErrorKind::SourceFailed,
                format!("the data for {name} ended before its announced {size} bytes"),
            ));
        }
        self.stats.entries += 1;
        self.stats.files += 1;
        self.stats.input_bytes += size;
        Ok(())
    }

    /// Appends a stream of unknown length (a database dump as it is produced) without staging
    /// it: the stream is cut into parts of [`STREAM_PART`] bytes held in memory one at a time.
    /// A stream that fits in one part becomes one entry `name`; a longer one becomes
    /// `name.000000`, `name.000001`, … in order (`cat name.* > name` joins them). Returns the
    /// stream's length.
    ///
    /// # Errors
    /// When reading `data` or writing the archive fails.
    pub fn append_unsized(
        &mut self,
        name: &str,
        mode: u32,
        data: &mut dyn Read,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let mut buf = vec![0u8; STREAM_PART];
        let mut next = vec![0u8; STREAM_PART];
        let mut len = read_full(data, &mut buf, name)?;
        let mut part = 0u32;
        let mut total = 0u64;
        loop {
            let more = if len == STREAM_PART {
                read_full(data, &mut next, name)?
            } else {
                0
            };
            let entry = if part == 0 && more == 0 {
                name.to_string()
            } else {
                format!("{name}.{part:06}")
            };
            self.append_stream(&entry, len as u64, mode, &mut &buf[..len])?;
            total += len as u64;
            progress.bytes_done(self.stats.input_bytes, None);
            if more == 0 {
                return Ok(total);
            }
            std::mem::swap(&mut buf, &mut next);
            len = more;
            part += 1;
        }
    }

    /// Appends an entry read from another tar stream (such as `pg_basebackup`'s) under a new
    /// name, keeping its type, mode, owner and mtime. Regular files, directories and symlinks
    /// are taken; other kinds are refused.
    ///
    /// # Errors
    /// When `data` cannot be read, the archive cannot be written, or the entry is of a
    /// refused kind.
    pub fn append_entry(
        &mut self,
        header: &tar::Header,
        name: &Path,
        data: &mut dyn Read,
    ) -> Result<()> {
        use tar::EntryType as T;
        let kind = header.entry_type();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(header.mode().unwrap_or(0o600));
        h.set_uid(header.uid().unwrap_or(0));
        h.set_gid(header.gid().unwrap_or(0));
        h.set_mtime(header.mtime().unwrap_or(0));
        let bad = |what: &str| {
            Error::new(
                ErrorKind::SourceFailed,
                format!("the source's tar stream has {what} at {}", name.display()),
            )
        };
        let res = match kind {
            T::Regular | T::Continuous => {
                let size = header.size().map_err(|_| bad("a bad size"))?;
                h.set_entry_type(T::Regular);
                h.set_size(size);
                self.stats.files += 1;
                self.stats.input_bytes += size;
                self.tar.append_data(&mut h, name, data)
            }
            T::Directory => {
                h.set_size(0);
                self.tar.append_data(&mut h, name, io::empty())
            }
            T::Symlink => {
                h.set_size(0);
                let target = header
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| bad("a symlink without a target"))?
                    .into_owned();
                self.tar.append_link(&mut h, name, target)
            }
            _ => return Err(bad("an entry of a kind we do not archive")),
        };
        res.map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::new(
                    ErrorKind::SourceFailed,
                    format!("the source's stream ended inside {}", name.display()),
                )
                .with_source(e)
            } else {
                write_err(e)
            }
        })?;
        self.stats.entries += 1;
        Ok(())
    }

    /// Bytes of content appended so far.
    pub fn input_bytes(&self) -> u64 {
        self.stats.input_bytes
    }

    /// Records a warning (the archive is complete, but something in it may be inconsistent)
    /// and reports it.
    pub fn warn(&mut self, progress: &dyn Progress, message: String) {
        progress.warn(&message);
        self.stats.warnings.push(message);
    }

    /// Ends the tar stream and the compression, and returns the output and what was written.
    ///
    /// # Errors
    /// When the output cannot be written.
    pub fn finish(self) -> Result<(W, ArchiveStats)> {
        let mut stats = self.stats;
        let enc = self.tar.into_inner().map_err(write_err)?;
        let hashing = enc.finish().and_then(Sealed::finish).map_err(write_err)?;
        let (mut out, sha256, bytes) = hashing.finish();
        out.flush().map_err(write_err)?;
        stats.sha256 = sha256;
        stats.bytes_written = bytes;
        Ok((out, stats))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Read;

    /// The archive of one 3 MiB entry written with `threads`, and the tar inside it.
    fn archive(threads: usize) -> (Vec<u8>, Vec<u8>) {
        let data: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        let options = ArchiveOptions {
            threads,
            ..ArchiveOptions::default()
        };
        let mut w = ArchiveWriter::create(Vec::new(), &Manifest::default(), &options).unwrap();
        w.append_stream("data.bin", data.len() as u64, 0o600, &mut data.as_slice())
            .unwrap();
        let (gz, _) = w.finish().unwrap();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        (gz, tar)
    }

    /// Empty stored blocks, which end each independently compressed block of parallel gzip
    /// (a sync flush) and which one plain stream has none of.
    fn sync_flushes(gz: &[u8]) -> usize {
        gz.windows(4).filter(|w| *w == [0, 0, 0xff, 0xff]).count()
    }

    #[test]
    fn compression_threads_choose_plain_or_parallel_gzip() {
        let (one, tar_one) = archive(1);
        assert_eq!(sync_flushes(&one), 0, "one thread: one plain gzip stream");
        let (two, tar) = archive(2);
        assert!(
            sync_flushes(&two) >= 2,
            "two threads: 3 MiB in independent 1 MiB blocks"
        );
        assert_eq!(tar.len(), tar_one.len());
        // More threads than CPUs: as many as there are CPUs.
        assert_eq!(archive(10_000).1.len(), tar.len());
        assert!(
            crate::archive::compress::cpus() >= crate::archive::compress::cores(),
            "a quota never gives more cores than CPUs"
        );
        let mut entries = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = entries
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names.last().map(String::as_str), Some("data.bin"));
    }
}
