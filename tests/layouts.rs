//! Restores on the layouts units really have: volumes mounted below a configured path or at
//! it (real tmpfs mounts, as root), restored with each volume's contents right, the volume
//! still mounted, and nothing of it written to or removed from another filesystem.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "testing")]

mod common;
use common::listing;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use charm_backup::charm::charm;
use charm_backup::testing::{Harness, action};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "charm-backup-test"])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_mount_point(p: &Path) -> bool {
    let p = fs::canonicalize(p).unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

fn harness(tmp: &Path, paths: &Path) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", paths.display().to_string())
        .config("local-store", tmp.join("store").display().to_string())
}

fn snapshot(h: &Harness, tmp: &Path) -> String {
    let out = h
        .run_action(
            &charm(),
            action("snapshot").param("target", tmp.join("snaps").display().to_string()),
        )
        .unwrap_or_else(|e| panic!("snapshot failed: {} {:?}", e.message, e.logs));
    out.results["snapshot"]["path"]
        .as_str()
        .unwrap()
        .to_string()
}

fn restore(h: &Harness, tmp: &Path, snap: &str) {
    h.run_action(
        &charm(),
        action("restore")
            .param("path", snap)
            .param("target", tmp.join("saved").display().to_string()),
    )
    .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
}

/// Waits for the background removal of the old data, then lists what the restore left of
/// its own anywhere under `root`.
fn leftovers(root: &Path) -> Vec<PathBuf> {
    let start = Instant::now();
    loop {
        let found: Vec<PathBuf> = listing(root)
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| p.to_string_lossy().contains(".charm-backup-"))
            .collect();
        if found.is_empty() || start.elapsed() > Duration::from_secs(20) {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        let p = root.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
}

#[test]
fn a_volume_mounted_below_a_path_is_restored_inside_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    fs::create_dir_all(app.join("data")).unwrap();
    let vol = Tmpfs::mount(&app.join("data/vol"));
    write_tree(
        &app,
        &[
            ("top.txt", "top v1"),
            ("data/db.txt", "db v1"),
            ("data/vol/image", "image v1"),
            ("data/vol/deep/x", "x v1"),
        ],
    );
    let h = harness(tmp.path(), &app);
    let snap = snapshot(&h, tmp.path());
    let want = listing(&app);

    write_tree(
        &app,
        &[
            ("top.txt", "top v2"),
            ("data/db.txt", "db v2"),
            ("data/vol/image", "image v2"),
            ("data/vol/extra", "added later"),
            ("new.txt", "added later"),
        ],
    );
    restore(&h, tmp.path(), &snap);

    assert!(
        is_mount_point(&vol.0),
        "the volume is still mounted where it was"
    );
    assert_eq!(leftovers(&app), Vec::<PathBuf>::new());
    assert_eq!(listing(&app), want, "every file as it was at the snapshot");
    // The volume's files are on the volume, not on the filesystem above it.
    let vol_dev = fs::metadata(&vol.0).unwrap().dev();
    assert_ne!(fs::metadata(&app).unwrap().dev(), vol_dev);
    for f in ["image", "deep/x"] {
        assert_eq!(fs::metadata(vol.0.join(f)).unwrap().dev(), vol_dev, "{f}");
    }
    assert!(
        fs::read_dir(tmp.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("charm-backup-trash")),
        "no trash is left beside the path"
    );
}

#[test]
fn a_path_that_is_a_mount_point_is_restored_inside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let vol = Tmpfs::mount(&tmp.path().join("pgvol"));
    write_tree(
        &vol.0,
        &[("15/main/PG_VERSION", "15"), ("15/main/base/1", "v1")],
    );
    let h = harness(tmp.path(), &vol.0);
    let snap = snapshot(&h, tmp.path());
    let want = listing(&vol.0);
    write_tree(
        &vol.0,
        &[("15/main/base/1", "v2"), ("15/main/base/2", "new")],
    );

    restore(&h, tmp.path(), &snap);

    assert!(is_mount_point(&vol.0));
    assert_eq!(leftovers(&vol.0), Vec::<PathBuf>::new());
    assert_eq!(listing(&vol.0), want);
    let vol_dev = fs::metadata(&vol.0).unwrap().dev();
    assert_eq!(
        fs::metadata(vol.0.join("15/main/base/1")).unwrap().dev(),
        vol_dev
    );
    // Nothing was staged on the filesystem above the mount.
    let beside: Vec<String> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("charm-backup"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");
}
