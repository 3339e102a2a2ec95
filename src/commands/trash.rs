//! Removing the data a restore replaced: in a detached `rm` that outlives the action, never
//! across a filesystem boundary, recorded so that an interrupted removal is finished later.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Removes a file, link or directory tree; absent is fine.
pub fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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
            .try_for_each(|p| crate::commands::mounts::remove_within_fs(p).at("cannot remove", p))
    })
}

fn spawn_rm(paths: &[PathBuf]) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    // Never into another filesystem: a volume mounted inside old data stays as it is.
    Command::new("rm")
        .args(["-rf", "--one-file-system"])
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
        .filter(|p| fs::symlink_metadata(p).is_ok())
        .collect();
    remove_any(&list).at("cannot rewrite the list of old data to remove", &list)?;
    remove_later(state_dir, left)
}
