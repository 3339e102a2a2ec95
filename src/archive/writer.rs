//! Writes a `.tar.gz` (or `.tar.zst`) in one streaming pass: walk, tar, compress and hash as
//! the bytes go, never re-reading the output.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::archive::hash::HashingWriter;
use crate::archive::manifest::{MANIFEST_NAME, Manifest};
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::progress::Progress;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// gzip (see [`GzipEffort`]): what `tar xzf` reads everywhere.
    #[default]
    Gzip,
    /// zstd, level 3: faster and smaller; `tar --zstd -xf` reads it.
    Zstd,
}

impl Compression {
    /// The file extension, without a leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
        }
    }

    /// The name used in config and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            other => Err(Error::invalid(format!(
                "unknown compression {other:?}: use gzip or zstd"
            ))),
        }
    }
}

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

/// The cores worth using for compression.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPUs this process may run on, whatever share of them a CPU quota allows: more
/// compression threads than that only add blocks held in memory.
fn cpus() -> usize {
    nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).map_or_else(
        |_| cores(),
        |set| {
            (0..nix::sched::CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count()
                .max(1)
        },
    )
}

/// The compressor: gzip on one thread, gzip in independent blocks (1 or 4 MiB, by
/// [`GzipEffort`]) on several (still one valid gzip stream, as pigz writes it), or zstd with its
/// own worker threads.
enum Encoder<W: Write + Send + 'static> {
    Gzip(flate2::write::GzEncoder<W>),
    ParGzip(gzp::par::compress::ParCompress<'static, gzp::deflate::Gzip, W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

fn gzp_err(e: gzp::GzpError) -> io::Error {
    match e {
        gzp::GzpError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// How hard gzip works. zlib-rs follows zlib-ng, whose levels differ from zlib's (GNU gzip,
/// pigz, pgBackRest): its level 6 is a faster "medium" strategy than the lazy matching zlib
/// runs at 6, and on database pages it is 7.5% larger; on mixed files the gap is under 1%.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GzipEffort {
    /// zlib-rs level 6: within 1% of `gzip -6`'s size on mixed files, about 2x its speed per
    /// core.
    #[default]
    Fast,
    /// zlib-rs level 7 (the lazy matching zlib runs at level 6, with about its settings) in
    /// 4 MiB parallel blocks: the size of `gzip -6` on any data, database pages included, at
    /// about 1.4x its speed per core.
    Dense,
}

impl GzipEffort {
    fn level(self) -> flate2::Compression {
        flate2::Compression::new(match self {
            GzipEffort::Fast => 6,
            GzipEffort::Dense => 7,
        })
    }

    /// Input per parallel gzip block. Each block ends with a flush and starts new Huffman
    /// tables, which costs most on data that compresses well (database pages): 1 MiB keeps
    /// mixed files within 1% of `gzip -6`; 4 MiB takes database pages to its size. Two blocks
    /// in flight per core bound memory either way.
    fn block(self) -> usize {
        match self {
            GzipEffort::Fast => 1 << 20,
            GzipEffort::Dense => 4 << 20,
        }
    }
}

impl<W: Write + Send + 'static> Encoder<W> {
    fn new(inner: W, c: Compression, effort: GzipEffort, threads: usize) -> io::Result<Self> {
        let threads = if threads == 0 {
            cores()
        } else {
            threads.min(cpus())
        };
        Ok(match c {
            Compression::Gzip if threads > 1 => Encoder::ParGzip(
                gzp::par::compress::ParCompressBuilder::<gzp::deflate::Gzip>::new()
                    .num_threads(threads)
                    .map_err(gzp_err)?
                    .buffer_size(effort.block())
                    .map_err(gzp_err)?
                    .compression_level(effort.level())
                    .from_writer(inner),
            ),
            Compression::Gzip => {
                Encoder::Gzip(flate2::write::GzEncoder::new(inner, effort.level()))
            }
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(inner, 3)?;
                if threads > 1 {
                    e.multithread(threads as u32)?;
                }
                Encoder::Zstd(e)
            }
        })
    }
    fn finish(self) -> io::Result<W> {
        use gzp::ZWriter;
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::ParGzip(mut e) => e.finish().map_err(gzp_err),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write + Send + 'static> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::ParGzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::ParGzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// Glob patterns left out of an archive, as GNU tar's `--exclude` reads them: a pattern that
/// starts with `/` matches the whole absolute path; any other matches at any depth (`*.sock`
/// any name, `cache/tmp` any path ending in those components). Names that are not UTF-8
/// match too (their odd bytes as `?` would).
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<(String, glob::Pattern)>,
}

const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl Excludes {
    /// Compiles the patterns.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] naming a pattern that is not a valid glob.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref();
            let trimmed = p.trim_end_matches('/');
            let anchored = if trimmed.starts_with('/') {
                trimmed.to_string()
            } else {
                format!("/**/{trimmed}")
            };
            let compiled = glob::Pattern::new(&anchored).map_err(|e| {
                Error::invalid(format!("exclude pattern {p:?} is not a valid glob: {e}"))
            })?;
            out.push((p.to_string(), compiled));
        }
        Ok(Excludes { patterns: out })
    }

    /// The patterns as given.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns.iter().map(|(s, _)| s.clone()).collect()
    }

    /// Whether `path` (absolute) is excluded.
    pub fn matches(&self, path: &Path) -> bool {
        let text = path.to_string_lossy();
        self.patterns
            .iter()
            .any(|(_, p)| p.matches_with(&text, MATCH))
    }

    /// The patterns that match nothing under `roots`, looking at no more than `budget`
    /// entries (a pattern not found within it is not reported).
    pub fn unmatched(&self, roots: &[std::path::PathBuf], budget: usize) -> Vec<String> {
        let mut left: Vec<&(String, glob::Pattern)> = self.patterns.iter().collect();
        let mut stack: Vec<std::path::PathBuf> = roots.to_vec();
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                seen += 1;
                if seen > budget {
                    return Vec::new();
                }
                let p = e.path();
                let text = p.to_string_lossy();
                left.retain(|(_, pat)| !pat.matches_with(&text, MATCH));
                if left.is_empty() {
                    return Vec::new();
                }
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(p);
                }
            }
        }
        left.into_iter().map(|(raw, _)| raw.clone()).collect()
    }
}

/// A reader that yields exactly `size` bytes: a file that shrank while being read is padded
/// with zeros (as GNU tar does), and extra bytes of one that grew are left out, so the tar
/// stream stays valid; either is reported.
struct ExactReader<R> {
    inner: R,
    left: u64,
    short: bool,
    read_failed: bool,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = if self.short {
            0
        } else {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => n,
                Err(e) => {
                    self.read_failed = true;
                    return Err(e);
                }
            }
        };
        let n = if n == 0 {
            self.short = true;
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.left -= n as u64;
        Ok(n)
    }
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
    tar: tar::Builder<Encoder<HashingWriter<W>>>,
    stats: ArchiveStats,
    links: HashMap<(u64, u64), PathBuf>,
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
        let enc = Encoder::new(
            HashingWriter::new(out),
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

    /// Appends a file, directory or symlink tree rooted at the absolute path `root`, leaving
    /// out what `exclude` matches. Entries are named by their absolute path without the
    /// leading `/`, as GNU tar names them. Modes, owners, mtimes, symlinks, hard links, empty
    /// directories, FIFOs and device nodes are kept; sockets are left out.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a relative root, [`ErrorKind::NotFound`] when the root
    /// does not exist, and any read or write failure (a file that vanishes during the walk is
    /// only a warning).
    pub fn append_tree(
        &mut self,
        root: &Path,
        exclude: &Excludes,
        progress: &dyn Progress,
    ) -> Result<()> {
        if !root.is_absolute() {
            return Err(Error::invalid(format!(
                "path {} is not absolute: give absolute paths in the paths option",
                root.display()
            )));
        }
        let meta = std::fs::symlink_metadata(root).at("cannot read the path to archive", root)?;
        let mut stack = vec![(root.to_path_buf(), meta)];
        while let Some((path, meta)) = stack.pop() {
            if path != root && exclude.matches(&path) {
                continue;
            }
            let name = path.strip_prefix("/").unwrap_or(&path).to_path_buf();
            let ft = meta.file_type();
            self.check_limits(&path, if ft.is_file() { meta.len() } else { 0 })?;
            if !ft.is_symlink() && !ft.is_socket() {
                self.append_attrs(&path, &meta)?;
            }
            if ft.is_dir() {
                self.append_header_only(&name, &meta, tar::EntryType::Directory)?;
                let mut children = Vec::new();
                let rd = match std::fs::read_dir(&path) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.warn(
                            progress,
                            format!("directory removed before we read it: {}", path.display()),
                        );
                        continue;
                    }
                    // As GNU tar does: a directory replaced while the backup runs is a
                    // warning, not a failed backup.
                    Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                        self.warn(
                            progress,
                            format!(
                                "directory replaced by a file before we read it (archived empty): {}",
                                path.display()
                            ),
                        );
                        continue;
                    }
                    Err(e) => return Err(Error::io("cannot list the directory", &path, e)),
                };
                for entry in rd {
                    let entry = entry.at("cannot list the directory", &path)?;
                    let p = entry.path();
                    match std::fs::symlink_metadata(&p) {
                        Ok(m) => children.push((p, m)),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            self.warn(
                                progress,
                                format!("file removed before we read it: {}", p.display()),
                            );
                        }
                        Err(e) => return Err(Error::io("cannot read", &p, e)),
                    }
                }
                // Reverse-sorted onto the stack so entries come out in name order.
                children.sort_by(|a, b| b.0.cmp(&a.0));
                stack.extend(children);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).at("cannot read the symlink", &path)?;
                let mut h = self.header(&meta, tar::EntryType::Symlink);
                self.tar
                    .append_link(&mut h, &name, &target)
                    .map_err(write_err)?;
                self.stats.entries += 1;
            } else if ft.is_file() {
                self.append_file(&path, &name, &meta, progress)?;
            } else if ft.is_fifo() {
                self.append_header_only(&name, &meta, tar::EntryType::Fifo)?;
            } else if ft.is_char_device() || ft.is_block_device() {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = self.header(&meta, kind);
                let rdev = meta.rdev();
                h.set_device_major(nix::sys::stat::major(rdev) as u32)
                    .and_then(|()| h.set_device_minor(nix::sys::stat::minor(rdev) as u32))
                    .map_err(write_err)?;
                self.tar
                    .append_data(&mut h, &name, io::empty())
                    .map_err(write_err)?;
                self.stats.entries += 1;
            }
            // Sockets are made by the programs that listen on them; a restore leaves the
            // existing ones in place.
        }
        Ok(())
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

    fn warn(&mut self, progress: &dyn Progress, message: String) {
        progress.warn(&message);
        self.stats.warnings.push(message);
    }

    fn header(&self, meta: &Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        h.set_entry_type(kind);
        if kind != tar::EntryType::Regular {
            h.set_size(0);
        }
        h
    }

    /// Refuses to write what a restore would refuse to read ([`Limits::default`]), so that a
    /// finished archive always restores.
    fn check_limits(&self, path: &Path, size: u64) -> Result<()> {
        let limits = crate::archive::Limits::default();
        let too = |what: String| {
            Err(Error::invalid(format!(
                "{what}, more than a restore accepts: exclude part of it or split the paths over several backups"
            )))
        };
        if self.stats.entries + 1 > limits.max_entries {
            return too(format!(
                "the paths hold more than {} entries",
                limits.max_entries
            ));
        }
        if size > limits.max_entry_bytes {
            return too(format!("{} is {size} bytes", path.display()));
        }
        if self.stats.input_bytes + size > limits.max_total_bytes {
            return too(format!(
                "the paths hold more than {} bytes",
                limits.max_total_bytes
            ));
        }
        Ok(())
    }

    /// Writes a PAX extended header with what the next entry's tar header cannot hold
    /// (sub-second mtime, ACLs, extended attributes), if there is any.
    fn append_attrs(&mut self, path: &Path, meta: &Metadata) -> Result<()> {
        let pax = crate::archive::attrs::Attrs::read(path, meta).pax(meta.mtime().max(0) as u64);
        if pax.is_empty() {
            return Ok(());
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_mode(0o644);
        h.set_size(pax.len() as u64);
        h.set_mtime(meta.mtime().max(0) as u64);
        self.tar
            .append_data(&mut h, "PaxHeaders/entry", pax.as_slice())
            .map_err(write_err)
    }

    fn append_header_only(
        &mut self,
        name: &Path,
        meta: &Metadata,
        kind: tar::EntryType,
    ) -> Result<()> {
        let mut h = self.header(meta, kind);
        self.tar
            .append_data(&mut h, name, io::empty())
            .map_err(write_err)?;
        self.stats.entries += 1;
        Ok(())
    }

    fn append_file(
        &mut self,
        path: &Path,
        name: &Path,
        meta: &Metadata,
        progress: &dyn Progress,
    ) -> Result<()> {
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1
            && let Some(first) = self.links.get(&key)
        {
            let first = first.clone();
            let mut h = self.header(meta, tar::EntryType::Link);
            self.tar
                .append_link(&mut h, name, &first)
                .map_err(write_err)?;
            self.stats.entries += 1;
            return Ok(());
        }
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.warn(
                    progress,
                    format!("file removed before we read it: {}", path.display()),
                );
                return Ok(());
            }
            Err(e) => return Err(Error::io("cannot open the file to archive", path, e)),
        };
        // Only a name whose data is in the archive can be a link's target: one that vanished
        // before it was opened would leave its twins linked to nothing.
        if meta.nlink() > 1 {
            self.links.insert(key, name.to_path_buf());
        }
        let size = meta.len();
        let mut h = self.header(meta, tar::EntryType::Regular);
        let mut r = ExactReader {
            inner: BufReader::with_capacity(256 * 1024, file),
            left: size,
            short: false,
            read_failed: false,
        };
        if let Err(e) = self.tar.append_data(&mut h, name, &mut r) {
            return Err(if r.read_failed {
                Error::io("cannot read the file to archive", path, e)
            } else {
                write_err(e)
            });
        }
        let changed = match std::fs::symlink_metadata(path) {
            Ok(after) => {
                after.len() != size
                    || after.mtime() != meta.mtime()
                    || after.mtime_nsec() != meta.mtime_nsec()
            }
            Err(_) => true,
        };
        if r.short {
            self.warn(
                progress,
                format!(
                    "file shrank while we read it (padded with zeros): {}",
                    path.display()
                ),
            );
        } else if changed {
            self.warn(
                progress,
                format!("file changed as we read it: {}", path.display()),
            );
        }
        self.stats.entries += 1;
        self.stats.files += 1;
        self.stats.input_bytes += size;
        progress.bytes_done(self.stats.input_bytes, None);
        Ok(())
    }

    /// Ends the tar stream and the compression, and returns the output and what was written.
    ///
    /// # Errors
    /// When the output cannot be written.
    pub fn finish(self) -> Result<(W, ArchiveStats)> {
        let mut stats = self.stats;
        let enc = self.tar.into_inner().map_err(write_err)?;
        let hashing = enc.finish().map_err(write_err)?;
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

    #[test]
    fn excludes_match_as_gnu_tar_does() {
        use std::os::unix::ffi::OsStrExt;
        let x = Excludes::new(&["*.sock", "cache/tmp", "/srv/app/logs/"]).unwrap();
        assert!(x.matches(Path::new("/srv/app/run/db.sock")));
        assert!(x.matches(Path::new("/srv/app/a/cache/tmp")));
        assert!(x.matches(Path::new("/srv/app/cache/tmp")));
        assert!(!x.matches(Path::new("/srv/app/cache/tmpfile")));
        assert!(x.matches(Path::new("/srv/app/logs")));
        assert!(!x.matches(Path::new("/srv/other/logs")));
        let odd = std::ffi::OsStr::from_bytes(b"/srv/app/caf\xe9.sock");
        assert!(x.matches(Path::new(odd)), "non-UTF-8 names match");

        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("a/cache/tmp")).unwrap();
        let x = Excludes::new(&["cache/tmp", "nothing-here", "*.missing"]).unwrap();
        assert_eq!(
            x.unmatched(&[tmp.path().to_path_buf()], 1000),
            ["nothing-here", "*.missing"]
        );
    }

    #[test]
    fn a_hard_link_whose_first_name_vanished_is_stored_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::write(&a, "twin data").unwrap();
        std::fs::hard_link(&a, &b).unwrap();
        // The walk saw `a` (two links), then `a` was deleted before it was opened.
        let meta_a = std::fs::symlink_metadata(&a).unwrap();
        std::fs::remove_file(&a).unwrap();
        let meta_b = std::fs::symlink_metadata(&b).unwrap();
        let mut w =
            ArchiveWriter::create(Vec::new(), &Manifest::default(), &ArchiveOptions::default())
                .unwrap();
        w.append_file(&a, Path::new("t/a"), &meta_a, &crate::progress::NoProgress)
            .unwrap();
        w.append_file(&b, Path::new("t/b"), &meta_b, &crate::progress::NoProgress)
            .unwrap();
        let (gz, stats) = w.finish().unwrap();
        assert_eq!(stats.warnings.len(), 1, "{:?}", stats.warnings);
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        let kinds: Vec<(String, tar::EntryType, u64)> = tar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    e.size(),
                )
            })
            .filter(|(n, _, _)| n.starts_with("t/"))
            .collect();
        assert_eq!(kinds, [("t/b".to_string(), tar::EntryType::Regular, 9)]);
    }

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
            cpus() >= cores(),
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
