//! Uploads that may still be open: recorded in the unit's state directory before an archive
//! upload starts and forgotten once it is finished or aborted, so an upload left open by a
//! killed backup (or one the server never heard aborted) is aborted later and its backup marked
//! failed.

use crate::error::{Error, Result, chain};
use crate::progress::Progress;
use crate::store::Store;
use crate::store::repo::{BackupMetadata, FAILED_NAME, Repository, STARTED_NAME};

/// Uploads started and not known to be finished or aborted: one `<url>\t<key>` line each, in
/// the unit's state directory, so an upload the server never heard aborted (it was down) is
/// aborted by the next backup.
#[derive(Debug)]
pub(crate) struct OpenUploads {
    file: std::path::PathBuf,
}

impl OpenUploads {
    /// The record kept in `state_dir`.
    pub(crate) fn in_dir(state_dir: &std::path::Path) -> Self {
        OpenUploads {
            file: state_dir.join("open-uploads"),
        }
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.file)
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    fn save(&self, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return match std::fs::remove_file(&self.file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                    "cannot update the list of open uploads",
                    &self.file,
                    e,
                )),
                _ => Ok(()),
            };
        }
        if let Some(dir) = self.file.parent() {
            crate::archive::create_private_dir(dir)?;
        }
        std::fs::write(&self.file, lines.join("\n") + "\n")
            .map_err(|e| Error::io("cannot update the list of open uploads", &self.file, e))
    }

    /// The record of an upload to `key` in `store`.
    fn line(store: &dyn Store, key: &str) -> String {
        format!("{}\t{key}", store.url(key))
    }

    pub(crate) fn add(&self, store: &dyn Store, key: &str) -> Result<()> {
        let mut lines = self.lines();
        lines.push(Self::line(store, key));
        self.save(&lines)
    }

    pub(crate) fn remove(&self, store: &dyn Store, key: &str) -> Result<()> {
        let line = Self::line(store, key);
        let lines: Vec<String> = self.lines().into_iter().filter(|l| *l != line).collect();
        self.save(&lines)
    }

    /// Aborts this store's recorded uploads, marking the backups they belonged to failed;
    /// keeps those that cannot be aborted yet. Returns what it did, for the log.
    pub(crate) fn sweep(&self, store: &dyn Store, progress: &dyn Progress) -> Vec<String> {
        let mut done = Vec::new();
        for line in self.lines() {
            let Some((url, key)) = line.split_once('\t') else {
                continue;
            };
            if url != store.url(key) {
                continue;
            }
            match store.abort_incomplete(key) {
                Ok(n) => {
                    let marked = mark_interrupted(store, key);
                    if n > 0 || marked {
                        let msg = format!(
                            "aborted the unfinished upload of {url}, left by a create-backup that did not finish{}",
                            if marked {
                                "; the backup is marked failed"
                            } else {
                                ""
                            }
                        );
                        progress.step(&msg);
                        done.push(msg);
                    }
                    let _ = self.remove(store, key);
                }
                Err(e) => progress.warn(&format!(
                    "the unfinished upload of {url} could not be aborted yet: {}",
                    chain(&e)
                )),
            }
        }
        done
    }
}

/// Gives the backup whose archive is `archive_key` a `failed.json` saying it was interrupted,
/// unless it has a sidecar already; returns whether it wrote one.
fn mark_interrupted(store: &dyn Store, archive_key: &str) -> bool {
    let Some(dir) = archive_key.rsplit_once('/').map(|(d, _)| d) else {
        return false;
    };
    let id = dir.rsplit('/').next().unwrap_or(dir).to_string();
    let repo = Repository::new(store);
    let Ok(found) = repo.find(&id) else {
        return false;
    };
    if found.sidecar != STARTED_NAME {
        return false;
    }
    let meta = BackupMetadata {
        status:
            "failed: interrupted before it finished (the action was killed, the machine stopped or the store was unreachable)"
                .into(),
        ..found.metadata
    };
    repo.write_sidecar(&meta, FAILED_NAME).is_ok()
}
