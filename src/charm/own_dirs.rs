//! The unit's own directories against the configured paths: a store, snapshot or pre-restore
//! target inside a path is refused (each backup would be archived into the next, and a
//! restore would replace them); the Juju agent's directory, which holds our state and the
//! restore journal, is left out of backups and never replaced by a restore.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::juju::Context;

/// `p` made absolute-clean: symlinks resolved when it exists, else `.` and trailing slashes
/// dropped.
pub fn normalize(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| normalize_lexically(p))
}

/// `p` without `.` components and trailing slashes (nothing resolved).
pub fn normalize_lexically(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// The Juju agent's directories on this unit: the unit agent's (the charm directory's
/// parent, which also holds our state), and `/var/lib/juju` when the charm lives there.
pub fn agent_dirs(ctx: &Context) -> Vec<PathBuf> {
    let charm = &ctx.juju().charm_dir;
    let mut dirs: Vec<PathBuf> = charm.parent().map(normalize).into_iter().collect();
    let juju = Path::new("/var/lib/juju");
    if normalize(charm).starts_with(juju) {
        dirs.push(juju.to_path_buf());
    }
    dirs
}

/// The configured path that holds `dir`, if any.
pub fn covering<'a>(dir: &Path, paths: &'a [PathBuf]) -> Option<&'a PathBuf> {
    let dir = normalize(dir);
    paths.iter().find(|p| dir.starts_with(normalize(p)))
}

/// Refuses a directory of ours, set by `option`, inside a configured path.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] saying what to move.
pub fn refuse_inside(option: &str, dir: &Path, paths: &[PathBuf]) -> Result<()> {
    match covering(dir, paths) {
        None => Ok(()),
        Some(p) => Err(Error::invalid(format!(
            "{option} {} is inside the configured path {}: backups would be archived into each other and a restore would replace them; set {option} to a directory outside the paths",
            dir.display(),
            p.display()
        ))),
    }
}

/// The agent directories inside configured paths, as exclude patterns, with a line for
/// the log about each.
pub fn agent_excludes(ctx: &Context, paths: &[PathBuf]) -> Vec<(String, String)> {
    agent_dirs(ctx)
        .into_iter()
        .filter_map(|d| {
            let p = covering(&d, paths)?;
            Some((
                glob::Pattern::escape(&d.display().to_string()),
                format!(
                    "left out {} (the Juju agent's directory, with this unit's state) from {}",
                    d.display(),
                    p.display()
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_inside_the_paths_are_found() {
        let paths = vec![PathBuf::from("/srv/app"), PathBuf::from("/etc/x")];
        assert_eq!(
            covering(Path::new("/srv/app/./backups/"), &paths),
            Some(&paths[0])
        );
        assert_eq!(covering(Path::new("/srv"), &paths), None);
        assert_eq!(covering(Path::new("/srv/application"), &paths), None);
        let e = refuse_inside("local-store", Path::new("/etc/x/store"), &paths).unwrap_err();
        assert!(
            e.to_string()
                .contains("set local-store to a directory outside"),
            "{e}"
        );
    }
}
