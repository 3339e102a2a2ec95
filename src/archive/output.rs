//! Output files that never carry their final name until they are whole: written to a `0600`
//! temporary file beside the final one, fsynced, handed to the target directory's owner, then
//! renamed (refusing to replace an existing file).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, IoContext, Result};

/// A file being written under a temporary name in its final directory.
#[derive(Debug)]
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    final_path: PathBuf,
    /// Whether a taken name is stepped past rather than refused.
    unique: bool,
}

/// Creates `dir` (and parents) if missing, with mode `0700` for the directories it creates.
///
/// # Errors
/// When a directory cannot be created.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at("cannot create the directory", dir)
}

impl AtomicFile {
    /// Starts a file that will be named `final_path`; its directory is created (`0700`) if
    /// missing.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] when `final_path` exists; otherwise when the directory or
    /// temporary file cannot be created.
    pub fn create(final_path: &Path) -> Result<Self> {
        if final_path.exists() {
            return Err(
                Error::new(ErrorKind::AlreadyExists, "the file exists already")
                    .with_path(final_path),
            );
        }
        Self::create_unique(final_path).map(|mut f| {
            f.unique = false;
            f
        })
    }

    /// Like [`AtomicFile::create`], but when `final_path` exists (or appears meanwhile) the
    /// file is committed as `<stem>-1<ext>`, `<stem>-2<ext>`, … (the extension from `.tar` on,
    /// else from the last `.`), so two files made in the same second both land.
    ///
    /// # Errors
    /// When the directory or temporary file cannot be created.
    pub fn create_unique(final_path: &Path) -> Result<Self> {
        let dir = final_path
            .parent()
            .ok_or_else(|| Error::invalid(format!("{} has no directory", final_path.display())))?;
        create_private_dir(dir)?;
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)
            .at("cannot create a file in the target directory", dir)?;
        Ok(AtomicFile {
            temp,
            final_path: final_path.to_path_buf(),
            unique: true,
        })
    }

    /// The file to write to.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }

    /// A buffered writer over the file.
    ///
    /// # Errors
    /// When the file handle cannot be duplicated.
    pub fn writer(&self) -> Result<BufWriter<File>> {
        let f = self
            .temp
            .as_file()
            .try_clone()
            .at("cannot write", self.temp.path())?;
        Ok(BufWriter::with_capacity(1 << 20, f))
    }

    /// Where the file will end up.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes to disk, gives the file to the owner of its directory, and renames it to its
    /// final name. Dropping an `AtomicFile` without committing removes the temporary file.
    ///
    /// # Errors
    /// When syncing, ownership or the rename fails (the temporary file is then removed).
    pub fn commit(self) -> Result<PathBuf> {
        let path = self.temp.path().to_path_buf();
        self.temp.as_file().sync_all().map_err(|e| {
            Error::io(
                "cannot flush the archive to disk (is the filesystem full?)",
                &path,
                e,
            )
        })?;
        let dir = self.final_path.parent().unwrap_or(Path::new("/"));
        let dmeta = std::fs::metadata(dir).at("cannot read the target directory", dir)?;
        let fmeta = self.temp.as_file().metadata().at("cannot read", &path)?;
        if (fmeta.uid(), fmeta.gid()) != (dmeta.uid(), dmeta.gid()) {
            // Only root can give files away; anyone else keeps ownership, which is fine.
            if let Err(e) = std::os::unix::fs::chown(&path, Some(dmeta.uid()), Some(dmeta.gid()))
                && e.kind() != std::io::ErrorKind::PermissionDenied
            {
                return Err(Error::io(
                    "cannot give the archive to the directory's owner",
                    &path,
                    e,
                ));
            }
        }
        let mut temp = self.temp;
        let mut n = 0u32;
        let landed = loop {
            let target = numbered(&self.final_path, n);
            match temp.persist_noclobber(&target) {
                Ok(_) => break target,
                Err(e)
                    if self.unique
                        && e.error.kind() == std::io::ErrorKind::AlreadyExists
                        && n < 999 =>
                {
                    temp = e.file;
                    n += 1;
                }
                Err(e) => {
                    return Err(Error::io(
                        "cannot rename the archive into place",
                        &target,
                        e.error,
                    ));
                }
            }
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(landed)
    }
}

/// `path` with `-n` before its extension (`.tar…`, else the last `.`); `path` itself for 0.
fn numbered(path: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return path.to_path_buf();
    }
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cut = name
        .rfind(".tar")
        .or_else(|| name.rfind('.'))
        .filter(|i| *i > 0)
        .unwrap_or(name.len());
    path.with_file_name(format!("{}-{n}{}", &name[..cut], &name[cut..]))
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.temp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.temp.flush()
    }
}

/// Removes what an [`AtomicFile`] for `final_path` left behind when its process was killed
/// (`.name.<random>.partial` beside it); returns how many.
///
/// # Errors
/// When the directory cannot be listed or a file removed.
pub fn remove_partials(final_path: &Path) -> std::io::Result<usize> {
    let (Some(dir), Some(name)) = (final_path.parent(), final_path.file_name()) else {
        return Ok(0);
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut n = 0;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let file = e.file_name();
        let file = file.to_string_lossy();
        if file.starts_with(&prefix) && file.ends_with(".partial") {
            std::fs::remove_file(e.path())?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::numbered;
    use std::path::Path;

    #[test]
    fn numbered_names_keep_the_extension() {
        let p = Path::new("/t/app-snapshot-2026-12-05-14.22.43.tar.gz.age");
        assert_eq!(numbered(p, 0), p);
        assert_eq!(
            numbered(p, 2),
            Path::new("/t/app-snapshot-2026-12-05-14.22.43-2.tar.gz.age")
        );
        assert_eq!(numbered(Path::new("/t/x.bin"), 1), Path::new("/t/x-1.bin"));
        assert_eq!(numbered(Path::new("/t/noext"), 1), Path::new("/t/noext-1"));
    }
}
