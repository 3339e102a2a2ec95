//! Walking a tree into the archive: each entry checked against what a restore accepts, with
//! the attributes its tar header cannot hold, hard links, and files that change as they are
//! read.

use std::fs::{File, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{ArchiveWriter, write_err};
use crate::archive::Excludes;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// A reader that yields exactly `size` bytes: a file that shrank while being read is padded
/// with zeros (as GNU tar does), and extra bytes of one that grew are left out, so the tar
/// stream stays valid; either is reported.
pub(super) struct ExactReader<R> {
    pub(super) inner: R,
    pub(super) left: u64,
    pub(super) short: bool,
    pub(super) read_failed: bool,
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

impl<W: Write + Send + 'static> ArchiveWriter<W> {
    /// Appends a file, directory or symlink tree rooted at the absolute path `root`, leaving
    /// out what `exclude` matches. Entries are named by their absolute path without the
    /// leading `/`, as GNU tar names them. Modes, owners, mtimes, symlinks, hard links, empty
    /// directories, FIFOs and device nodes are kept; sockets are left out.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for a relative root, [`crate::ErrorKind::NotFound`] when the root
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
                "path {} is not absolute",
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
                let mut children = self.children(&path, progress)?;
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

    fn header(&self, meta: &Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        h.set_entry_type(kind);
        if kind != tar::EntryType::Regular {
            h.set_size(0);
        }
        h
    }

    /// The entries of directory `path` with their metadata. A directory removed, or replaced
    /// by a file, since it was seen is a warning and has none (as with GNU tar), and so is an
    /// entry removed before it was read.
    fn children(
        &mut self,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<Vec<(PathBuf, Metadata)>> {
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.warn(
                    progress,
                    format!("directory removed before we read it: {}", path.display()),
                );
                return Ok(Vec::new());
            }
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                self.warn(
                    progress,
                    format!(
                        "directory replaced by a file before we read it (archived empty): {}",
                        path.display()
                    ),
                );
                return Ok(Vec::new());
            }
            Err(e) => return Err(Error::io("cannot list the directory", path, e)),
        };
        let mut children = Vec::new();
        for entry in rd {
            let entry = entry.at("cannot list the directory", path)?;
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
        Ok(children)
    }

    /// Refuses to write what a restore would refuse to read ([`ArchiveOptions::limits`]),
    /// so that a finished archive always restores.
    fn check_limits(&self, path: &Path, size: u64) -> Result<()> {
        let limits = &self.limits;
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::archive::{ArchiveOptions, Manifest};

    #[test]
    fn a_directory_replaced_by_a_file_mid_run_is_a_warning() {
        let tmp = tempfile::tempdir().unwrap();
        let was_dir = tmp.path().join("d");
        // The walk saw a directory; by the time it is listed it is a file.
        std::fs::write(&was_dir, "now a file").unwrap();
        let mut w =
            ArchiveWriter::create(Vec::new(), &Manifest::default(), &ArchiveOptions::default())
                .unwrap();
        let children = w.children(&was_dir, &crate::progress::NoProgress).unwrap();
        assert!(children.is_empty());
        let gone = w
            .children(&tmp.path().join("gone"), &crate::progress::NoProgress)
            .unwrap();
        assert!(gone.is_empty());
        let (_, stats) = w.finish().unwrap();
        assert_eq!(stats.warnings.len(), 2, "{:?}", stats.warnings);
        assert!(stats.warnings[0].starts_with("directory replaced by a file"));
    }

    #[test]
    fn trees_a_restore_would_refuse_are_refused_while_writing() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..5 {
            std::fs::write(tmp.path().join(format!("f{i}")), "x").unwrap();
        }
        let few = crate::archive::Limits {
            max_entries: 4,
            ..Default::default()
        };
        let small = crate::archive::Limits {
            max_entry_bytes: 0,
            ..Default::default()
        };
        for (limits, said) in [(few, "more than 4 entries"), (small, "is 1 bytes")] {
            let options = ArchiveOptions {
                limits,
                ..ArchiveOptions::default()
            };
            let mut w = ArchiveWriter::create(Vec::new(), &Manifest::default(), &options).unwrap();
            let e = w
                .append_tree(
                    tmp.path(),
                    &Excludes::default(),
                    &crate::progress::NoProgress,
                )
                .unwrap_err();
            assert!(e.to_string().contains(said), "{e}");
        }
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
}
