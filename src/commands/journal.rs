//! The restore journal: what a restore is doing, on disk, so that a restore killed at any point
//! (Juju's `cancel-task` sends SIGKILL) is finished or undone by the next action or hook.
//!
//! Each path is swapped with two renames: `path` to `.path.charm-backup-old`, then
//! `.path.charm-backup-new` to `path`. The journal records the phase and, per path, whether
//! there was old data, which is enough to tell at every point which tree `path` holds.
//!
//! A path that is a mount point, or holds one, cannot be renamed without moving the volume
//! with it: it is swapped by its contents instead, inside the directory ([`Inside`]), so
//! every rename stays within one filesystem and the mounted volume stays where it is.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::commands::trash::{remove_any, remove_later};
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
    /// Swapped by its contents (see [`Inside`]) rather than renamed whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside: Option<Inside>,
}

/// A directory swapped by its contents: the restored entries are staged in
/// `path/.charm-backup-new` and the old ones moved to `path/.charm-backup-old`, entry by
/// entry, on the directory's own filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Inside {
    /// Children that are swapped on their own (mount points, or directories on the way to
    /// one): never moved.
    pub pinned: Vec<PathBuf>,
    /// The names staged, recorded before the first rename so that a roll-back knows which
    /// entries in `path` are restored ones.
    #[serde(default)]
    pub staged: Vec<PathBuf>,
}

/// The staging directory inside a directory swapped by its contents.
pub const INSIDE_NEW: &str = ".charm-backup-new";
/// Where the old entries go inside a directory swapped by its contents.
pub const INSIDE_OLD: &str = ".charm-backup-old";

/// Whether a name is one of the restore's own inside a directory swapped by its contents.
fn is_ours(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".charm-backup-")
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
    /// The archive the existing data is being saved to, whose partial file a roll-back
    /// removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saving: Option<PathBuf>,
}

impl JournalPath {
    /// A path to restore; `had_old` when something is there now.
    pub fn new(path: PathBuf, had_old: bool) -> Self {
        JournalPath {
            path,
            had_old,
            carried: Vec::new(),
            inside: None,
        }
    }

    /// A directory swapped by its contents, `pinned` children left where they are.
    pub fn inside(path: PathBuf, pinned: Vec<PathBuf>) -> Self {
        JournalPath {
            inside: Some(Inside {
                pinned,
                staged: Vec::new(),
            }),
            ..JournalPath::new(path, true)
        }
    }

    /// Where the restored tree is staged.
    pub fn staging(&self) -> PathBuf {
        match self.inside {
            Some(_) => self.path.join(INSIDE_NEW),
            None => sibling(&self.path, "new"),
        }
    }

    /// Where the old data goes during the swap.
    fn old(&self) -> PathBuf {
        match self.inside {
            Some(_) => self.path.join(INSIDE_OLD),
            None => sibling(&self.path, "old"),
        }
    }

    /// Records which names are staged (before the swap starts).
    pub fn record_staged(&mut self) -> Result<()> {
        let staging = self.staging();
        if let Some(inside) = self.inside.as_mut()
            && exists(&staging)
        {
            inside.staged = fs::read_dir(&staging)
                .at("cannot list the restored data", &staging)?
                .map(|e| e.map(|e| PathBuf::from(e.file_name())))
                .collect::<std::io::Result<_>>()
                .at("cannot list the restored data", &staging)?;
        }
        Ok(())
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
            saving: None,
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
        let new = p.staging();
        if !exists(&new) {
            return Ok(());
        }
        if let Some(inside) = &p.inside {
            return swap_inside(p, inside);
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
        if let Some(saving) = &self.saving {
            crate::archive::remove_partials(saving)
                .at("cannot remove the partial save of", saving)?;
        }
        for p in &self.paths {
            if let Some(inside) = &p.inside {
                roll_back_inside(p, inside)?;
                continue;
            }
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
    /// left out, such as MAAS's boot resources), and its sockets, into its staging tree,
    /// recording them first so that a roll-back, even after a kill, moves them back. Only subtrees whose parent
    /// directory the staging tree has, and which it does not hold itself, are moved.
    ///
    /// # Errors
    /// When the journal cannot be written or a rename fails.
    pub fn carry_excluded(
        &mut self,
        excludes: &crate::archive::Excludes,
        state_dir: &Path,
    ) -> Result<usize> {
        for p in &mut self.paths {
            let new = p.staging();
            if !p.had_old || !exists(&new) {
                continue;
            }
            let pinned = p.inside.as_ref().map_or(&[][..], |i| &i.pinned[..]);
            p.carried = excluded_in(&p.path, excludes, pinned)
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
            let new = p.staging();
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
            let leftovers: Vec<PathBuf> = match p.inside {
                Some(_) => vec![p.staging(), p.old()],
                None => ["old", "new", "trash"]
                    .iter()
                    .map(|tag| sibling(&p.path, tag))
                    .collect(),
            };
            // A name of its own for each, on its own filesystem (beside it, or inside the
            // directory swapped by its contents).
            for (k, s) in leftovers.into_iter().enumerate() {
                if !exists(&s) {
                    continue;
                }
                let t = match p.inside {
                    Some(_) => p.path.join(format!(".charm-backup-trash-{stamp}-{k}")),
                    None => sibling(&p.path, &format!("trash-{stamp}-{i}-{k}")),
                };
                fs::rename(&s, &t).at("cannot move old data aside", &s)?;
                doomed.push(t);
            }
        }
        remove_later(state_dir, doomed)
    }
}

/// The paths under `root` (relative to it) that `excludes` matches, not descending into them
/// or through symlinks, nor into the `pinned` children of `root` or the restore's own.
fn excluded_in(
    root: &Path,
    excludes: &crate::archive::Excludes,
    pinned: &[PathBuf],
) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            if dir == root
                && (is_ours(&e.file_name()) || pinned.iter().any(|p| p == &e.file_name()))
            {
                continue;
            }
            // Sockets are never archived: the live ones stay where they are.
            if excludes.matches(&path) || e.file_type().is_ok_and(|t| t.is_socket()) {
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

/// Copies a directory's mode, owner and mtime onto another.
fn copy_dir_attributes(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(from).at("cannot read the attributes of", from)?;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(to, Some(m.uid()), Some(m.gid()))
            .at("cannot set the owner", to)?;
    }
    fs::set_permissions(to, m.permissions()).at("cannot set the mode", to)?;
    if let (Ok(t), Ok(d)) = (m.modified(), fs::File::open(to)) {
        let _ = d.set_modified(t);
    }
    Ok(())
}

/// The swap of a directory by its contents: each old entry (but the pinned ones) into
/// `.charm-backup-old`, then each staged entry into place, then the directory's own
/// attributes. Each step is done once, so a cut-off swap is finished by running it again.
fn swap_inside(p: &JournalPath, inside: &Inside) -> Result<()> {
    let (dir, new, old) = (&p.path, p.staging(), p.old());
    if !exists(&old) {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&old)
            .at("cannot make room for the old data", &old)?;
        copy_dir_attributes(dir, &old)?;
    }
    for e in fs::read_dir(dir).at("cannot list", dir)? {
        let name = e.at("cannot list", dir)?.file_name();
        let staged = inside.staged.iter().any(|s| s == &name);
        if is_ours(&name)
            || inside.pinned.iter().any(|p| p == &name)
            || (staged && !exists(&new.join(&name)))
        {
            continue;
        }
        fs::rename(dir.join(&name), old.join(&name))
            .at("cannot move the old data aside", &dir.join(&name))?;
    }
    for name in &inside.staged {
        let from = new.join(name);
        if exists(&from) {
            fs::rename(&from, dir.join(name))
                .at("cannot move the restored data into place", &dir.join(name))?;
        }
    }
    copy_dir_attributes(&new, dir)
}

/// Undoes [`swap_inside`] from wherever it stopped, and removes the staging directory.
fn roll_back_inside(p: &JournalPath, inside: &Inside) -> Result<()> {
    let (new, old) = (p.staging(), p.old());
    if exists(&new) {
        for name in &inside.staged {
            let here = p.path.join(name);
            if exists(&here) && !exists(&new.join(name)) {
                fs::rename(&here, new.join(name)).at("cannot move restored data aside", &here)?;
            }
        }
    }
    if exists(&old) {
        for e in fs::read_dir(&old).at("cannot list", &old)? {
            let name = e.at("cannot list", &old)?.file_name();
            fs::rename(old.join(&name), p.path.join(&name))
                .at("cannot put the old data back", &p.path.join(&name))?;
        }
        copy_dir_attributes(&old, &p.path)?;
        fs::remove_dir(&old).at("cannot remove", &old)?;
    }
    for rel in &p.carried {
        let home = p.path.join(rel);
        let from = new.join(rel);
        if exists(&from) && !exists(&home) {
            fs::rename(&from, &home).at("cannot put an excluded subtree back", &home)?;
        }
    }
    crate::commands::mounts::remove_within_fs(&new).at("cannot remove", &new)
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
    fn clean_up_moves_every_leftover_aside_however_many_there_are() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        fs::create_dir_all(&state).unwrap();
        // Renamed whole: old data and a restored tree moved aside by an earlier roll-back.
        let data = tmp.path().join("data");
        fs::create_dir_all(&data).unwrap();
        for tag in ["old", "trash"] {
            fs::create_dir_all(sibling(&data, tag)).unwrap();
            fs::write(sibling(&data, tag).join("f"), tag).unwrap();
        }
        // Swapped inside: old entries, and a staged entry that never moved in.
        let vol = tmp.path().join("vol");
        let inside = JournalPath::inside(vol.clone(), Vec::new());
        for (dir, file) in [(inside.old(), "old"), (inside.staging(), "stray")] {
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(file), file).unwrap();
        }
        let j = Journal::new(
            Phase::Swapped,
            "x".into(),
            vec![JournalPath::new(data.clone(), true), inside.clone()],
        );
        j.clean_up(&state).unwrap();
        let recorded = fs::read_to_string(state.join("trash")).unwrap();
        assert_eq!(recorded.lines().count(), 4, "{recorded}");
        for tag in ["old", "trash"] {
            assert!(!exists(&sibling(&data, tag)));
        }
        assert!(!exists(&inside.old()) && !exists(&inside.staging()));
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
