//! The restore journal: what a restore is doing, on disk, so that a restore killed at any point
//! (Juju's `cancel-task` sends SIGKILL) is finished or undone by the next action or hook.
//!
//! Each path is swapped with two renames: `path` to `.path.charm-backup-old`, then
//! `.path.charm-backup-new` to `path`. The journal records the phase and, per path, whether
//! there was old data, which is enough to tell at every point which tree `path` holds.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Where a restore is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Writing staging directories; nothing of the unit's data has changed.
    Staging,
    /// Renaming staging directories into place.
    Swapping,
    /// The restored databases are in place, which cannot be undone here: the paths must
    /// follow, so an interrupted restore is finished, not undone.
    DatabasesSwapped,
    /// Every path holds the restored data; only clean-up is left.
    Swapped,
}

/// One path being restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JournalPath {
    /// The path.
    pub path: PathBuf,
    /// Whether something was there before.
    pub had_old: bool,
    /// Subtrees of the old data the backup excluded (relative paths), moved into the restored
    /// tree so they survive the swap; a roll-back moves them back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<PathBuf>,
}

/// The journal's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Journal {
    /// The phase.
    pub phase: Phase,
    /// The archive being restored.
    pub source: String,
    /// The paths.
    pub paths: Vec<JournalPath>,
    /// systemd units stopped for the swap.
    pub services: Vec<String>,
    /// A PostgreSQL server stopped with `pg_ctl` for the swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_ctl: Option<crate::source::postgres::PgCtl>,
}

impl JournalPath {
    /// A path to restore; `had_old` when something is there now.
    pub fn new(path: PathBuf, had_old: bool) -> Self {
        JournalPath {
            path,
            had_old,
            carried: Vec::new(),
        }
    }
}

impl Journal {
    /// A journal in `phase` for restoring `source` onto `paths`, with no services to stop.
    pub fn new(phase: Phase, source: String, paths: Vec<JournalPath>) -> Self {
        Journal {
            phase,
            source,
            paths,
            services: Vec::new(),
            pg_ctl: None,
        }
    }
}

/// `path` with its name hidden and tagged: `.name.charm-backup-<tag>`.
pub fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.charm-backup-{tag}"))
}

/// Removes a file, link or directory tree; absent is fine.
pub fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes a tree like [`remove_any`], spreading its top-level entries over the cores: old
/// data is often tens of thousands of files, and unlinking them is most of a restore's tail.
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    let Ok(m) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !m.is_dir() {
        return remove_any(path);
    }
    let children: Vec<PathBuf> = fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(children.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let result = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> std::io::Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(c) = children.get(i) else {
                            return Ok(());
                        };
                        remove_any(c)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("a removal thread panicked")))
            })
            .collect::<std::io::Result<Vec<()>>>()
    });
    result?;
    fs::remove_dir(path)
}

fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join("restore.journal")
}

impl Journal {
    /// Writes the journal durably (temporary file, fsync, rename, fsync of the directory).
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save(&self, state_dir: &Path) -> Result<()> {
        let path = journal_path(state_dir);
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::invalid("cannot encode the journal").with_source(e))?;
        let mut f = fs::File::create(&tmp).at("cannot write the restore journal", &tmp)?;
        f.write_all(&json)
            .at("cannot write the restore journal", &tmp)?;
        f.sync_all().at("cannot write the restore journal", &tmp)?;
        fs::rename(&tmp, &path).at("cannot write the restore journal", &path)?;
        if let Ok(d) = fs::File::open(state_dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Moves to `phase` and saves.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn advance(&mut self, phase: Phase, state_dir: &Path) -> Result<()> {
        self.phase = phase;
        self.save(state_dir)
    }

    /// Reads the journal, if a restore left one.
    ///
    /// # Errors
    /// When it exists but cannot be read.
    pub fn load(state_dir: &Path) -> Result<Option<Journal>> {
        let path = journal_path(state_dir);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                Error::invalid("the restore journal is damaged: check the restored paths by hand, then remove it")
                    .with_path(&path)
                    .with_source(e)
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot read the restore journal", &path, e)),
        }
    }

    /// Removes the journal: the restore is over.
    ///
    /// # Errors
    /// When it cannot be removed.
    pub fn clear(state_dir: &Path) -> Result<()> {
        let path = journal_path(state_dir);
        remove_any(&path).at("cannot remove the restore journal", &path)
    }

    /// Swaps one path in: old data aside, staging into place.
    ///
    /// # Errors
    /// When a rename fails.
    pub fn swap_one(p: &JournalPath) -> Result<()> {
        let new = sibling(&p.path, "new");
        if !exists(&new) {
            return Ok(());
        }
        if p.had_old && exists(&p.path) {
            let old = sibling(&p.path, "old");
            fs::rename(&p.path, &old).at("cannot move the old data aside", &p.path)?;
        }
        fs::rename(&new, &p.path).at("cannot move the restored data into place", &p.path)
    }

    /// Finishes the swap of every path, whatever point it reached (each rename is done once).
    ///
    /// # Errors
    /// When a rename fails (the journal is then kept for the next try).
    pub fn roll_forward(&self) -> Result<()> {
        self.paths.iter().try_for_each(Journal::swap_one)
    }

    /// Puts every path back to its old data and removes staging, whatever point the swap
    /// reached.
    ///
    /// # Errors
    /// When a rename or removal fails (the journal is then kept for the next try).
    pub fn roll_back(&self) -> Result<()> {
        for p in &self.paths {
            let old = sibling(&p.path, "old");
            let new = sibling(&p.path, "new");
            let trash = sibling(&p.path, "trash");
            // `path` holds restored data if staging is gone and either the old data was moved
            // aside, or there was none.
            let path_is_new = exists(&p.path) && !exists(&new) && (exists(&old) || !p.had_old);
            if path_is_new {
                fs::rename(&p.path, &trash).at("cannot move restored data aside", &p.path)?;
            }
            if exists(&old) && !exists(&p.path) {
                fs::rename(&old, &p.path).at("cannot put the old data back", &p.path)?;
            }
            for rel in &p.carried {
                let home = p.path.join(rel);
                for from in [new.join(rel), trash.join(rel)] {
                    if exists(&from) && !exists(&home) {
                        fs::rename(&from, &home)
                            .at("cannot put an excluded subtree back", &home)?;
                    }
                }
            }
            remove_any(&trash).at("cannot remove", &trash)?;
            remove_any(&new).at("cannot remove", &new)?;
        }
        Ok(())
    }

    /// Moves the subtrees of each path's old data that `excludes` matches (what the backup
    /// left out, such as MAAS's boot resources) into its staging tree, recording them first so
    /// that a roll-back, even after a kill, moves them back. Only subtrees whose parent
    /// directory the staging tree has, and which it does not hold itself, are moved.
    ///
    /// # Errors
    /// When the journal cannot be written or a rename fails.
    pub fn carry_excluded(
        &mut self,
        excludes: &crate::archive::Excludes,
        state_dir: &Path,
    ) -> Result<usize> {
        if excludes.patterns().is_empty() {
            return Ok(0);
        }
        for p in &mut self.paths {
            let new = sibling(&p.path, "new");
            if !p.had_old || !exists(&new) {
                continue;
            }
            p.carried = excluded_in(&p.path, excludes)
                .into_iter()
                .filter(|rel| {
                    // Every directory on the way must be a real one in the staging tree:
                    // never move data through a symlink the archive put there.
                    let mut dir = new.clone();
                    let parents_ok = rel.parent().is_none_or(|parent| {
                        parent.components().all(|c| {
                            dir.push(c);
                            fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir())
                        })
                    });
                    parents_ok && !exists(&new.join(rel))
                })
                .collect();
        }
        self.save(state_dir)?;
        let mut moved = 0;
        for p in &self.paths {
            let new = sibling(&p.path, "new");
            for rel in &p.carried {
                let from = p.path.join(rel);
                fs::rename(&from, new.join(rel)).at("cannot keep an excluded subtree", &from)?;
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Once every path holds the restored data, moves the old data (and any staging) out of
    /// the way under unique names and removes it in the background (see [`remove_later`]), so
    /// the restore does not wait for tens of thousands of unlinks.
    ///
    /// # Errors
    /// When a rename fails.
    pub fn clean_up(&self, state_dir: &Path) -> Result<()> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut doomed = Vec::new();
        for (i, p) in self.paths.iter().enumerate() {
            for tag in ["old", "new", "trash"] {
                let s = sibling(&p.path, tag);
                if exists(&s) {
                    let t = sibling(&p.path, &format!("trash-{stamp}-{i}"));
                    fs::rename(&s, &t).at("cannot move old data aside", &s)?;
                    doomed.push(t);
                }
            }
        }
        remove_later(state_dir, doomed)
    }
}

/// The paths under `root` (relative to it) that `excludes` matches, not descending into them
/// or through symlinks.
fn excluded_in(root: &Path, excludes: &crate::archive::Excludes) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            if excludes.matches(&path) {
                if let Ok(rel) = path.strip_prefix(root) {
                    found.push(rel.to_path_buf());
                }
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

fn trash_list(state_dir: &Path) -> PathBuf {
    state_dir.join("trash")
}

/// Removes `paths` in a detached `rm -rf` that outlives this process, recording them in the
/// state directory so that [`sweep_trash`] finishes the job if the machine stops first. If
/// `rm` cannot be started, removes them here.
///
/// # Errors
/// When the record cannot be written, or the fallback removal fails.
pub fn remove_later(state_dir: &Path, paths: Vec<PathBuf>) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let list = trash_list(state_dir);
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&list)
        .at("cannot record old data to remove", &list)?;
    for p in &paths {
        writeln!(f, "{}", p.display()).at("cannot record old data to remove", &list)?;
    }
    spawn_rm(&paths).or_else(|_| {
        paths
            .iter()
            .try_for_each(|p| remove_tree(p).at("cannot remove", p))
    })
}

fn spawn_rm(paths: &[PathBuf]) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    Command::new("rm")
        .arg("-rf")
        .arg("--")
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: killing the action does not stop the clean-up.
        .process_group(0)
        .spawn()
        .map(drop)
}

/// Starts removing again whatever [`remove_later`] recorded that still exists (the machine
/// may have stopped first), and forgets what is gone.
///
/// # Errors
/// When the record cannot be read or rewritten.
pub fn sweep_trash(state_dir: &Path) -> Result<()> {
    let list = trash_list(state_dir);
    let text = match fs::read_to_string(&list) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::io(
                "cannot read the list of old data to remove",
                &list,
                e,
            ));
        }
    };
    let left: Vec<PathBuf> = text
        .lines()
        .map(PathBuf::from)
        .filter(|p| exists(p))
        .collect();
    remove_any(&list).at("cannot rewrite the list of old data to remove", &list)?;
    remove_later(state_dir, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excluded_subtrees_are_carried_over_and_back_on_roll_back() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("maas");
        fs::create_dir_all(data.join("boot-resources/current")).unwrap();
        fs::write(data.join("boot-resources/current/image"), "big").unwrap();
        fs::write(data.join("secret"), "old").unwrap();
        let new = sibling(&data, "new");
        fs::create_dir_all(&new).unwrap();
        fs::write(new.join("secret"), "restored").unwrap();
        let state = tmp.path().join("state");
        fs::create_dir_all(&state).unwrap();
        let mut j = Journal::new(
            Phase::Staging,
            "x".into(),
            vec![JournalPath::new(data.clone(), true)],
        );
        let x = crate::archive::Excludes::new(&["boot-resources"]).unwrap();
        assert_eq!(j.carry_excluded(&x, &state).unwrap(), 1);
        assert_eq!(
            fs::read_to_string(new.join("boot-resources/current/image")).unwrap(),
            "big"
        );
        // The journal on disk knows, so a killed restore can put it back too.
        let saved = Journal::load(&state).unwrap().unwrap();
        assert_eq!(
            saved.paths[0].carried,
            vec![PathBuf::from("boot-resources")]
        );

        // Swapped, then rolled back: the subtree is home again, the restored tree gone.
        j.phase = Phase::Swapping;
        Journal::swap_one(&j.paths[0]).unwrap();
        assert_eq!(fs::read_to_string(data.join("secret")).unwrap(), "restored");
        j.roll_back().unwrap();
        assert_eq!(fs::read_to_string(data.join("secret")).unwrap(), "old");
        assert_eq!(
            fs::read_to_string(data.join("boot-resources/current/image")).unwrap(),
            "big"
        );
        assert!(!exists(&new) && !exists(&sibling(&data, "trash")));
    }

    #[test]
    fn a_swap_cut_off_halfway_rolls_forward() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("etc-maas");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("regiond.conf"), "old").unwrap();
        let new = sibling(&data, "new");
        fs::create_dir_all(&new).unwrap();
        fs::write(new.join("regiond.conf"), "restored").unwrap();
        let j = Journal::new(
            Phase::DatabasesSwapped,
            "x".into(),
            vec![JournalPath::new(data.clone(), true)],
        );
        // Killed between the two renames of the swap: the old data is aside, nothing in place.
        fs::rename(&data, sibling(&data, "old")).unwrap();
        j.roll_forward().unwrap();
        assert_eq!(
            fs::read_to_string(data.join("regiond.conf")).unwrap(),
            "restored"
        );
        // Again, as a second interrupted recovery would: nothing changes.
        j.roll_forward().unwrap();
        assert_eq!(
            fs::read_to_string(data.join("regiond.conf")).unwrap(),
            "restored"
        );
        assert_eq!(
            fs::read_to_string(sibling(&data, "old").join("regiond.conf")).unwrap(),
            "old"
        );
    }
}
