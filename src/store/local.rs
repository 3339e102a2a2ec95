//! The local directory store.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::archive::{AtomicFile, create_private_dir};
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::store::{ObjectMeta, ObjectWriter, Store};

/// Backups as files under a directory (created `0700`).
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

struct LocalWriter {
    out: BufWriter<AtomicFile>,
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(self: Box<Self>) -> Result<()> {
        let f = self.out.into_inner().map_err(|e| {
            Error::new(ErrorKind::Other, "cannot write to the local store")
                .with_source(e.into_error())
        })?;
        f.commit().map(drop)
    }
}

impl LocalStore {
    /// Opens (creating if needed) the store at `root`.
    ///
    /// # Errors
    /// When `root` is relative or cannot be created.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.is_absolute() {
            return Err(Error::invalid(format!(
                "the local store {:?} is not an absolute path",
                root.display().to_string()
            )));
        }
        create_private_dir(root)?;
        Ok(LocalStore {
            root: root.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        if key.is_empty()
            || rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(Error::invalid(format!("invalid store key {key:?}")));
        }
        Ok(self.root.join(rel))
    }
}

impl Store for LocalStore {
    fn kind(&self) -> &'static str {
        "local"
    }
    fn name(&self) -> String {
        self.root.display().to_string()
    }
    fn base_path(&self) -> String {
        "/backup/".into()
    }
    fn url(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        let f = AtomicFile::create(&self.path(key)?)?;
        Ok(Box::new(LocalWriter {
            out: BufWriter::with_capacity(1 << 20, f),
        }))
    }
    fn abort_incomplete(&self, key: &str) -> Result<usize> {
        let p = self.path(key)?;
        crate::archive::remove_partials(&p).at("cannot remove an unfinished archive of", &p)
    }
    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }
    fn open(&self, key: &str) -> Result<Box<dyn Read + Send>> {
        let p = self.path(key)?;
        Ok(Box::new(
            File::open(&p).at("cannot open in the local store", &p)?,
        ))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        // The walk starts in the deepest directory the prefix names whole, so a listing of
        // `wal/<system>/` reads neither the rest of the store nor its root (which users other
        // than root may pass through but not read).
        let start = match prefix.rsplit_once('/') {
            Some((dir, _)) if !dir.is_empty() => self.path(dir)?,
            _ => self.root.clone(),
        };
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                // Nothing there, or a file where the prefix names a folder: no objects.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(Error::io("cannot list the local store", &dir, e)),
            };
            for entry in rd {
                let entry = entry.at("cannot list the local store", &dir)?;
                let p = entry.path();
                let name = entry.file_name();
                if name.to_string_lossy().ends_with(".partial") {
                    continue;
                }
                let key = p
                    .strip_prefix(&self.root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                // The name decides first: a file's metadata is read only when it is listed.
                let is_dir = entry.file_type().at("cannot read", &p)?.is_dir();
                if is_dir {
                    if prefix.starts_with(&format!("{key}/"))
                        || key.starts_with(prefix)
                        || prefix.is_empty()
                    {
                        stack.push(p);
                    }
                } else if key.starts_with(prefix) {
                    let meta = entry.metadata().at("cannot read", &p)?;
                    out.push(ObjectMeta {
                        key,
                        size: meta.len(),
                        modified: meta
                            .modified()
                            .ok()
                            .and_then(|t| jiff::Timestamp::try_from(t).ok()),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
    fn delete(&self, key: &str) -> Result<()> {
        let p = self.path(key)?;
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot delete from the local store", &p, e)),
        }
        if let Some(parent) = p.parent()
            && parent != self.root
        {
            let _ = std::fs::remove_dir(parent);
        }
        Ok(())
    }
}
