//! The machine's mount points, from `/proc/self/mountinfo`: a restore must never move a
//! mounted volume with the directory above it, nor remove data across a filesystem boundary.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every mount point, as the kernel lists them.
pub fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// The mount points (field 5) of a `mountinfo` text, octal escapes undone.
fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// `\040` (space), `\011` (tab), `\012` (newline) and `\134` (backslash), as the kernel
/// writes them.
fn unescape(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = |j: usize| {
            b.get(j)
                .filter(|c| (b'0'..=b'7').contains(c))
                .map(|c| c - b'0')
        };
        if b[i] == b'\\'
            && let (Some(x), Some(y), Some(z)) = (octal(i + 1), octal(i + 2), octal(i + 3))
        {
            out.push(x * 64 + y * 8 + z);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// The mount points at or below `path` (which should be canonical), shallowest first.
pub fn mounts_within(path: &Path, mounts: &[PathBuf]) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mounts
        .iter()
        .filter(|m| m.starts_with(path))
        .cloned()
        .collect();
    found.sort_by_key(|m| m.components().count());
    found.dedup();
    found
}

/// Removes a tree without ever crossing into another filesystem: a mount point found inside
/// is left in place with everything above it, and reported.
///
/// # Errors
/// When a removal fails, or the tree holds a mount point.
pub fn remove_within_fs(path: &Path) -> std::io::Result<()> {
    let Ok(top) = fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !top.is_dir() {
        return fs::remove_file(path);
    }
    if !remove_dir_on(path, top.dev())? {
        return Err(std::io::Error::other(format!(
            "{} holds a mount point: left in place",
            path.display()
        )));
    }
    Ok(())
}

/// Removes what of `dir` is on device `dev`; returns whether `dir` itself is gone.
fn remove_dir_on(dir: &Path, dev: u64) -> std::io::Result<bool> {
    let mut all = true;
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let m = fs::symlink_metadata(&p)?;
        if m.dev() != dev {
            all = false;
        } else if m.is_dir() {
            all &= remove_dir_on(&p, dev)?;
        } else {
            fs::remove_file(&p)?;
        }
    }
    if all {
        fs::remove_dir(dir)?;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_give_their_mount_points() {
        let text = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
                    45 22 0:40 / /srv/my\\040vol rw,relatime - tmpfs none rw\n";
        assert_eq!(
            parse_mountinfo(text),
            [PathBuf::from("/"), PathBuf::from("/srv/my vol")]
        );
        let mounts = parse_mountinfo(text);
        assert_eq!(
            mounts_within(Path::new("/srv"), &mounts),
            [PathBuf::from("/srv/my vol")]
        );
        assert_eq!(mounts_within(Path::new("/"), &mounts).len(), 2);
    }

    #[test]
    fn removal_within_one_filesystem_removes_a_plain_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("t");
        fs::create_dir_all(t.join("a/b")).unwrap();
        fs::write(t.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", t.join("a/l")).unwrap();
        remove_within_fs(&t).unwrap();
        assert!(!t.exists());
        assert!(Path::new("/etc").exists());
    }
}
