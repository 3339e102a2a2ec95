//! Reads archives back: detects the compression, checks every entry against the safety rules,
//! and verifies the whole stream and its SHA-256 before anything is written anywhere.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::archive::Compression;
use crate::archive::extract::SideSink;
use crate::archive::hash::HashingReader;
use crate::archive::manifest::{FORMAT_VERSION, MANIFEST_NAME, Manifest};
use crate::archive::source::{
    ArchiveSource, FileSource, FromStart, finish_digest, open_stream, stream_err,
};
use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;

/// Limits an archive must stay within to be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries.
    pub max_entries: u64,
    /// Largest single entry, in bytes.
    pub max_entry_bytes: u64,
    /// Most content in all entries together, in bytes.
    pub max_total_bytes: u64,
    /// Accept symlinks whose targets lie outside the restored paths (system trees such as
    /// `/etc/ssl/certs` are full of them). Off by default: such a link in a hostile archive
    /// would let the restored application write outside its data. Entries beneath a symlink
    /// are refused either way, so extraction never writes through one.
    pub allow_external_symlinks: bool,
    /// Accept character and block device nodes (restored only as root). Off by default: a
    /// device node in a hostile archive could open a disk to every user.
    pub allow_devices: bool,
    /// Restore the data of a volume that was mounted at backup time, though nothing is
    /// mounted there now (onto the filesystem above it).
    pub allow_unmounted: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 10_000_000,
            max_entry_bytes: 1 << 40,
            max_total_bytes: 4 << 40,
            allow_external_symlinks: false,
            allow_devices: false,
            allow_unmounted: false,
        }
    }
}

/// Options for verifying an archive.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// The SHA-256 the archive must have (lowercase hex), if known.
    pub expected_sha256: Option<String>,
    /// Size limits.
    pub limits: Limits,
}

/// What verifying an archive found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// The manifest (first entry).
    pub manifest: Manifest,
    /// SHA-256 of the archive file, lowercase hex.
    pub sha256: String,
    /// Size of the archive file.
    pub bytes: u64,
    /// Entries, manifest included.
    pub entries: u64,
    /// Bytes of content in all entries.
    pub content_bytes: u64,
    /// The compression found.
    pub compression: Option<Compression>,
}

/// Entries under this folder carry sources' own data, not files of the unit.
const SIDE_DIR: &str = ".charm-backup";

fn integrity(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Integrity, msg)
}

/// The archive's entries checked one by one against the safety rules.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    roots: Vec<PathBuf>,
    seen: HashSet<PathBuf>,
    files: HashSet<PathBuf>,
    symlinks: HashSet<PathBuf>,
    entries: u64,
    total: u64,
    limits: Limits,
}

/// What an entry is, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Checked {
    /// The manifest entry.
    Manifest,
    /// A normal entry under `root` (index into the roots), named `name` (relative, clean).
    Entry { root: usize, name: PathBuf },
    /// A regular file under `.charm-backup/` carrying a source's data (e.g. an etcd
    /// snapshot), named relative to that folder.
    Side { name: PathBuf },
}

/// Lexically normalises a relative path; `None` if it climbs above its start.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl Rules {
    pub(crate) fn new(limits: Limits) -> Self {
        Rules {
            limits,
            ..Default::default()
        }
    }

    fn set_roots(&mut self, manifest: &Manifest) -> Result<()> {
        for r in manifest.roots() {
            let p = Path::new(&r);
            let rel = p.strip_prefix("/").ok().and_then(normalize);
            match rel {
                Some(rel) if p.is_absolute() && !rel.as_os_str().is_empty() => self.roots.push(rel),
                _ => {
                    return Err(integrity(format!(
                        "the archive's manifest names the path {r:?}, which is not a clean absolute path: refusing it"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The roots as absolute paths.
    pub(crate) fn roots(&self) -> Vec<PathBuf> {
        self.roots.iter().map(|r| Path::new("/").join(r)).collect()
    }

    fn root_of(&self, name: &Path) -> Option<usize> {
        self.roots.iter().position(|r| name.starts_with(r))
    }

    /// Checks one entry; `first` is whether it is the archive's first.
    pub(crate) fn check<R: Read>(&mut self, entry: &tar::Entry<'_, R>) -> Result<Checked> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(integrity(format!(
                "the archive has more than {} entries: refusing it",
                self.limits.max_entries
            )));
        }
        let raw = entry
            .path()
            .map_err(|e| integrity("an entry's name is not valid").with_source(e))?
            .into_owned();
        let shown = raw.display().to_string();
        if self.entries == 1 {
            if raw != Path::new(MANIFEST_NAME) {
                return Err(integrity(
                    "this is not a charm-backup archive (its first entry is not the manifest): \
                     restore only archives made by the snapshot or create-backup actions",
                ));
            }
            return Ok(Checked::Manifest);
        }
        if raw.is_absolute() {
            return Err(integrity(format!(
                "entry {shown:?} has an absolute path: refusing the archive"
            )));
        }
        if raw.components().any(|c| c == Component::ParentDir) {
            return Err(integrity(format!(
                "entry {shown:?} contains \"..\": refusing the archive"
            )));
        }
        let name = normalize(&raw).unwrap_or_default();
        if name.as_os_str().is_empty() {
            return Err(integrity(format!(
                "entry {shown:?} has an empty name: refusing the archive"
            )));
        }
        if let Ok(side) = name.strip_prefix(SIDE_DIR) {
            if !matches!(
                entry.header().entry_type(),
                tar::EntryType::Regular | tar::EntryType::Continuous
            ) {
                return Err(integrity(format!(
                    "entry {shown:?} is not a regular file: refusing the archive"
                )));
            }
            if !self.seen.insert(name.clone()) {
                return Err(integrity(format!(
                    "entry {shown:?} appears twice: refusing the archive"
                )));
            }
            self.total = self.total.saturating_add(entry.size());
            if entry.size() > self.limits.max_entry_bytes
                || self.total > self.limits.max_total_bytes
            {
                return Err(integrity(format!(
                    "entry {shown:?} is over the size limit: refusing the archive"
                )));
            }
            return Ok(Checked::Side {
                name: side.to_path_buf(),
            });
        }
        let Some(root) = self.root_of(&name) else {
            return Err(integrity(format!(
                "entry {shown:?} lies outside the paths the manifest lists: refusing the archive"
            )));
        };
        if let Some(link) = name
            .ancestors()
            .skip(1)
            .find(|a| self.symlinks.contains(*a))
        {
            return Err(integrity(format!(
                "entry {shown:?} lies beneath the symlink {:?}, so writing it would follow the link: refusing the archive",
                link.display().to_string()
            )));
        }
        if !self.seen.insert(name.clone()) {
            return Err(integrity(format!(
                "entry {shown:?} appears twice: refusing the archive"
            )));
        }
        let size = entry.size();
        if size > self.limits.max_entry_bytes {
            return Err(integrity(format!(
                "entry {shown:?} is {size} bytes, over the {}-byte limit: refusing the archive",
                self.limits.max_entry_bytes
            )));
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.limits.max_total_bytes {
            return Err(integrity(
                "the archive's entries add up to more than the size limit: refusing it",
            ));
        }
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Regular | T::Continuous => {
                self.files.insert(name.clone());
            }
            T::Directory => {}
            T::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| integrity("a symlink target is not valid").with_source(e))?
                    .ok_or_else(|| integrity(format!("symlink {shown:?} has no target")))?;
                let resolved = if target.is_absolute() {
                    target.strip_prefix("/").ok().and_then(normalize)
                } else {
                    normalize(&name.parent().unwrap_or(Path::new("")).join(&target))
                };
                if !self.limits.allow_external_symlinks
                    && resolved.is_none_or(|r| self.root_of(&r).is_none())
                {
                    return Err(integrity(format!(
                        "symlink {shown:?} points outside the restored paths (to {:?}): refusing the archive; if you trust it, restore again with allow-external-symlinks=true",
                        target.display().to_string()
                    )));
                }
                self.symlinks.insert(name.clone());
            }
            T::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| integrity("a hard link target is not valid").with_source(e))?
                    .ok_or_else(|| integrity(format!("hard link {shown:?} has no target")))?;
                let ok = !target.is_absolute()
                    && normalize(&target).is_some_and(|t| self.files.contains(&t));
                if !ok {
                    return Err(integrity(format!(
                        "hard link {shown:?} does not point to a file earlier in the archive (it points to {:?}): refusing the archive",
                        target.display().to_string()
                    )));
                }
            }
            T::Fifo => {}
            T::Char | T::Block if self.limits.allow_devices && crate::archive::is_root() => {}
            T::Char | T::Block => {
                return Err(integrity(format!(
                    "entry {shown:?} is a device file: refusing the archive; if you trust it, restore again as root with allow-devices=true"
                )));
            }
            other => {
                return Err(integrity(format!(
                    "entry {shown:?} is of a kind restore does not handle ({other:?}): refusing the archive"
                )));
            }
        }
        Ok(Checked::Entry { root, name })
    }

    pub(crate) fn content_bytes(&self) -> u64 {
        self.total
    }

    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }
}

/// Checks a digest against the expected one.
///
/// # Errors
/// [`ErrorKind::Integrity`] on a mismatch.
pub fn check_sha256(actual: &str, expected: Option<&str>) -> Result<()> {
    match expected {
        Some(e) if !e.eq_ignore_ascii_case(actual) => Err(integrity(format!(
            "checksum mismatch: the archive's sha256 is {actual} but {e} was expected; the file is damaged or not the one you meant"
        ))),
        _ => Ok(()),
    }
}

/// Reads the manifest entry's content.
pub(crate) fn read_manifest<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Manifest> {
    if entry.size() > 1 << 20 {
        return Err(integrity(
            "the archive's manifest is implausibly large: refusing it",
        ));
    }
    let mut buf = Vec::new();
    entry.read_to_end(&mut buf).map_err(stream_err)?;
    let m: Manifest = serde_json::from_slice(&buf)
        .map_err(|e| integrity("the archive's manifest is not valid").with_source(e))?;
    if m.format_version > FORMAT_VERSION {
        return Err(integrity(format!(
            "the archive has format version {}, newer than this charm reads ({FORMAT_VERSION}): upgrade the charm",
            m.format_version
        )));
    }
    Ok(m)
}

/// Verifies an archive without writing anything: the compression stream, every entry against
/// the safety rules, the manifest, and the SHA-256 of the whole file.
///
/// # Errors
/// [`ErrorKind::NotFound`] when the file does not exist; [`ErrorKind::Integrity`] for a wrong
/// checksum, a damaged, truncated or foreign archive, or an entry that breaks the rules.
pub fn verify(
    path: &Path,
    options: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<ArchiveInfo> {
    let source = FileSource::open(path)?;
    verify_source(&source, options, &mut (), progress).map_err(|e| e.with_path(path))
}

/// As [`verify`], on any source, read once from its start; sources' own data entries (under
/// `.charm-backup/`) are offered to `sink` to check (what it does not take is read and
/// dropped).
///
/// # Errors
/// As [`verify`], and whatever `sink` reports.
pub fn verify_source(
    source: &dyn ArchiveSource,
    options: &VerifyOptions,
    sink: &mut dyn SideSink,
    progress: &dyn Progress,
) -> Result<ArchiveInfo> {
    let (mut decoded, compression) = open_stream(source)?;
    let mut rules = Rules::new(options.limits);
    let mut manifest = None;
    {
        let mut archive = tar::Archive::new(&mut decoded);
        for entry in archive.entries().map_err(stream_err)? {
            let mut entry = entry.map_err(stream_err)?;
            match rules.check(&entry)? {
                Checked::Manifest => {
                    let m = read_manifest(&mut entry)?;
                    rules.set_roots(&m)?;
                    manifest = Some(m);
                }
                Checked::Side { name } => {
                    if !sink.entry(&name, &mut entry)? {
                        io::copy(&mut entry, &mut io::sink()).map_err(stream_err)?;
                    }
                }
                Checked::Entry { .. } => {
                    io::copy(&mut entry, &mut io::sink()).map_err(stream_err)?;
                }
            }
            progress.bytes_done(rules.content_bytes(), None);
        }
    }
    let manifest = manifest.ok_or_else(|| integrity("the archive holds no entries"))?;
    let entries = rules.entries;
    let content_bytes = rules.content_bytes();
    let (sha256, bytes) = finish_digest(decoded)?;
    check_sha256(&sha256, options.expected_sha256.as_deref())?;
    Ok(ArchiveInfo {
        manifest,
        sha256,
        bytes,
        entries,
        content_bytes,
        compression: Some(compression),
    })
}

impl Rules {
    pub(crate) fn with_manifest(limits: Limits, manifest: &Manifest) -> Result<Self> {
        let mut r = Rules::new(limits);
        r.set_roots(manifest)?;
        Ok(r)
    }
}

/// Reads only the manifest (the first entry) of the archive in `source`.
///
/// # Errors
/// [`ErrorKind::Integrity`] when the file is not a charm-backup archive or its manifest is not
/// valid.
pub fn read_manifest_only(source: &dyn ArchiveSource) -> Result<Manifest> {
    let (mut decoded, _) = open_stream(source)?;
    let mut archive = tar::Archive::new(&mut decoded);
    let mut entries = archive.entries().map_err(stream_err)?;
    let mut first = entries
        .next()
        .ok_or_else(|| integrity("the archive holds no entries"))?
        .map_err(stream_err)?;
    let name = first.path().map_err(stream_err)?.into_owned();
    if name != Path::new(MANIFEST_NAME) {
        return Err(integrity(
            "this is not a charm-backup archive (its first entry is not the manifest): \
             restore only archives made by the snapshot or create-backup actions",
        ));
    }
    read_manifest(&mut first)
}

/// The SHA-256 of a whole open file, from its start.
///
/// # Errors
/// When the file cannot be read.
pub fn sha256_of(file: &File) -> Result<String> {
    HashingReader::new(BufReader::with_capacity(1 << 20, FromStart::new(file)?))
        .finish()
        .map(|(d, _)| d)
        .map_err(stream_err)
}

/// A file's SHA-256 checked against the expected one on a thread of its own, so the check costs
/// no time before the work that reads the file next (hashing runs at several times the speed
/// of decompression, so a wrong file is known long before that work ends).
#[derive(Debug)]
pub struct ChecksumCheck {
    wrong: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Result<()>>,
}

impl ChecksumCheck {
    /// Starts hashing `file` from its start (with its own reads: the file's offset is not
    /// used, so others may read it meanwhile).
    ///
    /// # Errors
    /// When the file cannot be opened a second time.
    pub fn start(file: &File, expected: &str) -> Result<Self> {
        let file = file
            .try_clone()
            .map_err(|e| Error::new(ErrorKind::Other, "cannot read the archive").with_source(e))?;
        let expected = expected.to_string();
        let wrong = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = wrong.clone();
        let thread = std::thread::spawn(move || {
            let r = sha256_of(&file).and_then(|actual| check_sha256(&actual, Some(&expected)));
            if r.is_err() {
                flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            r
        });
        Ok(ChecksumCheck { wrong, thread })
    }

    /// A flag that turns true as soon as the file is known not to match (or cannot be read):
    /// work on the file may stop early.
    pub fn stop_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.wrong.clone()
    }

    /// Waits for the check to end.
    ///
    /// # Errors
    /// [`ErrorKind::Integrity`] with the two sums when they differ; a read error.
    pub fn wait(self) -> Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(integrity("the checksum could not be computed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_checksum_check_raises_its_stop_flag_only_for_the_wrong_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello\n").unwrap();
        let file = File::open(&path).unwrap();
        let right = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        let check = ChecksumCheck::start(&file, right).unwrap();
        let flag = check.stop_flag();
        check.wait().unwrap();
        assert!(!flag.load(std::sync::atomic::Ordering::Relaxed));
        let check = ChecksumCheck::start(&file, &"0".repeat(64)).unwrap();
        let flag = check.stop_flag();
        let err = check.wait().unwrap_err();
        assert!(err.to_string().contains(right), "{err}");
        assert!(flag.load(std::sync::atomic::Ordering::Relaxed));
    }

    #[test]
    fn two_readers_of_one_open_file_do_not_disturb_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        let data: Vec<u8> = (0..1_000_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(&data).unwrap();
        gz.finish().unwrap();
        let source = FileSource::open(&path).unwrap();
        let file = File::open(&path).unwrap();
        let (mut a, _) = open_stream(&source).unwrap();
        let (mut b, _) = open_stream(&source).unwrap();
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 65536];
        loop {
            let na = a.read(&mut buf).unwrap();
            out_a.extend_from_slice(&buf[..na]);
            let nb = b.read(&mut buf).unwrap();
            out_b.extend_from_slice(&buf[..nb]);
            if na == 0 && nb == 0 {
                break;
            }
        }
        assert!(
            out_a == data && out_b == data,
            "both readers see the whole stream"
        );
        assert_eq!(sha256_of(&file).unwrap().len(), 64);
    }
}
