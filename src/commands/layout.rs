//! Where a restore puts things, given the unit's real layout: symlinked paths restored where
//! they point, mounted volumes swapped inside themselves, running servers left alone.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::commands::journal::{INSIDE_NEW, JournalPath};
use crate::commands::mounts::mounts_within;
use crate::error::{Error, Result};
use crate::source::postgres::{self, PgCtl};

/// Where a restored path's data goes: for a symlink to a directory (a data directory on a
/// volume mounted elsewhere), the directory it points to, so the link stays; else the path.
pub fn resolve_target(p: &Path) -> PathBuf {
    match fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() && fs::metadata(p).is_ok_and(|m| m.is_dir()) => {
            fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
        }
        _ => p.to_path_buf(),
    }
}

/// How the paths of a restore are staged and swapped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// What is swapped, one entry per directory swapped on its own.
    pub units: Vec<JournalPath>,
    /// Per archive root, where its tree is staged.
    pub staging: Vec<PathBuf>,
    /// Subtrees staged elsewhere than under their root's staging (see
    /// [`crate::archive::ExtractOptions::redirects`]).
    pub redirects: Vec<(PathBuf, PathBuf)>,
}

impl Plan {
    /// Plans the swap of `targets`, the first of which are the archive's `roots` (in the
    /// same order), around the `mounts` and the directories to `keep` (never swapped, such
    /// as the Juju agent's): a target with none of them at or below it is renamed whole; one
    /// that is a mount point, or holds one or a kept directory, is swapped by its contents,
    /// as is every directory on the way from it to each of them (a mount point included, a
    /// kept directory not), each staged on its own filesystem.
    pub fn new(
        targets: &[PathBuf],
        roots: &[String],
        mounts: &[PathBuf],
        keep: &[PathBuf],
    ) -> Plan {
        let mut plan = Plan::default();
        for (i, t) in targets.iter().enumerate() {
            let canonical = fs::canonicalize(t).ok();
            let within = |list: Vec<PathBuf>| -> Vec<PathBuf> {
                canonical.as_ref().map_or_else(Vec::new, |c| {
                    list.into_iter()
                        .filter_map(|m| m.strip_prefix(c).ok().map(Path::to_path_buf))
                        .collect()
                })
            };
            let inner = within(mounts_within(canonical.as_deref().unwrap_or(t), mounts));
            let kept = within(
                keep.iter()
                    .map(|k| fs::canonicalize(k).unwrap_or_else(|_| k.clone()))
                    .collect(),
            );
            if kept.iter().any(|k| k.as_os_str().is_empty()) {
                // The whole target is to be kept: nothing of it is swapped.
                if i < roots.len() {
                    plan.staging.push(t.join(INSIDE_NEW));
                }
                continue;
            }
            if inner.is_empty() && kept.is_empty() {
                let unit = JournalPath::new(t.clone(), fs::symlink_metadata(t).is_ok());
                if i < roots.len() {
                    plan.staging.push(unit.staging());
                }
                plan.units.push(unit);
                continue;
            }
            // Every directory from the target down to each mount point, relative.
            let mut dirs: BTreeSet<PathBuf> = BTreeSet::from([PathBuf::new()]);
            for m in &inner {
                let mut d = PathBuf::new();
                for c in m.components() {
                    d.push(c);
                    dirs.insert(d.clone());
                }
            }
            for k in &kept {
                let mut d = PathBuf::new();
                for c in k.parent().into_iter().flat_map(Path::components) {
                    d.push(c);
                    dirs.insert(d.clone());
                }
            }
            let archive_root = roots
                .get(i)
                .map(|r| PathBuf::from(r.trim_start_matches('/')));
            for rel in &dirs {
                let mut pinned: Vec<PathBuf> = dirs
                    .iter()
                    .chain(&kept)
                    .filter(|d| d.parent() == Some(rel.as_path()) && !d.as_os_str().is_empty())
                    .filter_map(|d| d.file_name().map(PathBuf::from))
                    .collect();
                pinned.sort();
                pinned.dedup();
                let unit = JournalPath::inside(t.join(rel), pinned);
                if rel.as_os_str().is_empty() {
                    if i < roots.len() {
                        plan.staging.push(unit.staging());
                    }
                } else if let Some(r) = &archive_root {
                    plan.redirects.push((r.join(rel), unit.staging()));
                }
                plan.units.push(unit);
            }
        }
        plan
    }

    /// Where the tree for `target` (one of the targets) is staged.
    pub fn staging_of(&self, target: &Path) -> PathBuf {
        self.units
            .iter()
            .find(|u| u.path == target)
            .map_or_else(|| target.join(INSIDE_NEW), JournalPath::staging)
    }
}

/// Refuses to swap a path that is, holds or lies inside the data directory of a running
/// PostgreSQL server, other than the one `managed` stops and starts itself.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] naming the server and what to do.
pub fn check_no_running_server(targets: &[PathBuf], managed: Option<&PgCtl>) -> Result<()> {
    let managed = managed.and_then(|p| fs::canonicalize(&p.data_dir).ok());
    for (dir, pid) in postgres::running_servers() {
        if managed.as_ref() == Some(&dir) {
            continue;
        }
        for t in targets {
            let t = fs::canonicalize(t).unwrap_or_else(|_| t.clone());
            if dir.starts_with(&t) || t.starts_with(&dir) {
                return Err(Error::invalid(format!(
                    "{} would replace files of the data directory {} of a running PostgreSQL server (postmaster pid {pid}): stop that server first, or set services to its systemd unit so that the restore stops and starts it",
                    t.display(),
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_mounts_are_swapped_inside_each_filesystem() {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        let app = root.join("app");
        fs::create_dir_all(app.join("a/vol")).unwrap();
        let plain = root.join("plain");
        let mounts = vec![PathBuf::from("/"), app.join("a/vol")];
        let roots = vec![app.display().to_string(), plain.display().to_string()];
        let plan = Plan::new(&[app.clone(), plain.clone()], &roots, &mounts, &[]);
        let paths: Vec<&Path> = plan.units.iter().map(|u| u.path.as_path()).collect();
        assert_eq!(
            paths,
            [app.as_path(), &app.join("a"), &app.join("a/vol"), &plain]
        );
        assert_eq!(
            plan.units[0].inside.as_ref().unwrap().pinned,
            [PathBuf::from("a")]
        );
        assert_eq!(
            plan.units[1].inside.as_ref().unwrap().pinned,
            [PathBuf::from("vol")]
        );
        assert!(plan.units[2].inside.as_ref().unwrap().pinned.is_empty());
        assert!(plan.units[3].inside.is_none());
        assert_eq!(
            plan.staging,
            [app.join(INSIDE_NEW), plan.units[3].staging()]
        );
        let archive_app = PathBuf::from(roots[0].trim_start_matches('/'));
        assert_eq!(
            plan.redirects,
            [
                (archive_app.join("a"), app.join("a").join(INSIDE_NEW)),
                (
                    archive_app.join("a/vol"),
                    app.join("a/vol").join(INSIDE_NEW)
                ),
            ]
        );
    }

    #[test]
    fn kept_directories_are_pinned_and_never_swapped() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = fs::canonicalize(tmp.path()).unwrap().join("var-lib");
        fs::create_dir_all(lib.join("juju/agents/unit-x-0")).unwrap();
        let roots = vec![lib.display().to_string()];
        let keep = [lib.join("juju/agents/unit-x-0")];
        let plan = Plan::new(std::slice::from_ref(&lib), &roots, &[], &keep);
        let units: Vec<(&Path, &Vec<PathBuf>)> = plan
            .units
            .iter()
            .map(|u| (u.path.as_path(), &u.inside.as_ref().unwrap().pinned))
            .collect();
        assert_eq!(
            units,
            [
                (lib.as_path(), &vec![PathBuf::from("juju")]),
                (&*lib.join("juju"), &vec![PathBuf::from("agents")]),
                (&*lib.join("juju/agents"), &vec![PathBuf::from("unit-x-0")]),
            ]
        );
        // A target that is itself kept is not swapped at all.
        let plan = Plan::new(
            std::slice::from_ref(&lib),
            &roots,
            &[],
            std::slice::from_ref(&lib),
        );
        assert!(plan.units.is_empty());
    }
}
