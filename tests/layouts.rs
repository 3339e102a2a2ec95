//! Restores on the layouts units really have: volumes mounted below a configured path or at
//! it (real tmpfs mounts, as root), restored with each volume's contents right, the volume
//! still mounted, and nothing of it written to or removed from another filesystem.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::listing;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use charm_backup::charm::charm;
use charm_backup::testing::{Harness, action};

/// A filesystem mounted for the test (tmpfs, or ext4 on a loop device), unmounted when
/// dropped.
struct Volume {
    at: PathBuf,
    image: Option<PathBuf>,
}

impl Volume {
    fn tmpfs(at: &Path) -> Volume {
        Volume::mount(at, "tmpfs")
    }

    /// `kind`: `tmpfs`, or `ext4` (a fresh 64 MiB image, outside the tree under test,
    /// loop-mounted).
    fn mount(at: &Path, kind: &str) -> Volume {
        fs::create_dir_all(at).unwrap();
        let image = (kind == "ext4").then(|| {
            std::env::temp_dir().join(format!(
                "charm-backup-test-{}-{}.img",
                std::process::id(),
                at.file_name().unwrap().to_string_lossy()
            ))
        });
        let mut cmd = Command::new("mount");
        match &image {
            Some(img) => {
                let f = fs::File::create(img).unwrap();
                f.set_len(64 << 20).unwrap();
                let mkfs = Command::new("mkfs.ext4")
                    .args(["-q", "-F"])
                    .arg(img)
                    .output()
                    .unwrap();
                assert!(
                    mkfs.status.success(),
                    "{}",
                    String::from_utf8_lossy(&mkfs.stderr)
                );
                cmd.args(["-o", "loop"]).arg(img);
            }
            None => {
                cmd.args(["-t", "tmpfs", "-o", "size=64m", "charm-backup-test"]);
            }
        }
        let out = cmd.arg(at).output().unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if image.is_some() {
            // A fresh ext4 has lost+found: part of the volume, as on a real disk.
            assert!(at.join("lost+found").is_dir());
        }
        Volume {
            at: at.to_path_buf(),
            image,
        }
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.at).status();
        if !unmounted.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
        if let Some(img) = &self.image {
            let _ = fs::remove_file(img);
        }
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

/// Restores `snap` without saving the existing data, with `flags` set to true.
fn restore_flags(
    h: &Harness,
    snap: &str,
    flags: &[&str],
) -> Result<charm_backup::testing::ActionOutput, charm_backup::testing::ActionFailed> {
    let mut a = action("restore")
        .param("path", snap)
        .param("skip-backup", true);
    for f in flags {
        a = a.param(f, true);
    }
    h.run_action(&charm(), a)
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
    volume_below_a_path("tmpfs");
}

#[test]
fn an_ext4_volume_mounted_below_a_path_is_restored_inside_itself() {
    volume_below_a_path("ext4");
}

fn volume_below_a_path(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    fs::create_dir_all(app.join("data")).unwrap();
    let vol = Volume::mount(&app.join("data/vol"), kind);
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
        is_mount_point(&vol.at),
        "the volume is still mounted where it was"
    );
    assert_eq!(leftovers(&app), Vec::<PathBuf>::new());
    assert_eq!(listing(&app), want, "every file as it was at the snapshot");
    // The volume's files are on the volume, not on the filesystem above it.
    let vol_dev = fs::metadata(&vol.at).unwrap().dev();
    assert_ne!(fs::metadata(&app).unwrap().dev(), vol_dev);
    for f in ["image", "deep/x"] {
        assert_eq!(fs::metadata(vol.at.join(f)).unwrap().dev(), vol_dev, "{f}");
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
    let vol = Volume::tmpfs(&tmp.path().join("pgvol"));
    write_tree(
        &vol.at,
        &[("15/main/PG_VERSION", "15"), ("15/main/base/1", "v1")],
    );
    let h = harness(tmp.path(), &vol.at);
    let snap = snapshot(&h, tmp.path());
    let want = listing(&vol.at);
    write_tree(
        &vol.at,
        &[("15/main/base/1", "v2"), ("15/main/base/2", "new")],
    );

    restore(&h, tmp.path(), &snap);

    assert!(is_mount_point(&vol.at));
    assert_eq!(leftovers(&vol.at), Vec::<PathBuf>::new());
    assert_eq!(listing(&vol.at), want);
    let vol_dev = fs::metadata(&vol.at).unwrap().dev();
    assert_eq!(
        fs::metadata(vol.at.join("15/main/base/1")).unwrap().dev(),
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

#[test]
fn the_units_own_directories_inside_paths_are_refused_or_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let agent = root.join("agents/unit-app-0");
    fs::create_dir_all(agent.join("charm")).unwrap();
    write_tree(
        &root,
        &[("data.txt", "v1"), ("agents/unit-app-0/agent.conf", "conf")],
    );
    let base = harness(tmp.path(), &root).charm_dir(agent.join("charm"));

    // The store inside the paths: blocked, and refused before anything is written.
    let inside_store = root.join("backups");
    let h = base
        .clone()
        .config("local-store", inside_store.display().to_string());
    let status = h.run_hook(&charm(), "update-status").status;
    assert_eq!(status.0, "blocked", "{status:?}");
    assert!(status.1.contains("local-store"), "{status:?}");
    let e = h
        .run_action(&charm(), action("create-backup"))
        .expect_err("the store is inside the paths");
    assert!(
        e.message.contains("set local-store to a directory outside"),
        "{}",
        e.message
    );
    assert!(!inside_store.exists());

    // A snapshot target inside the paths.
    let h = base.clone();
    let e = h
        .run_action(
            &charm(),
            action("snapshot").param("target", root.join("snaps").display().to_string()),
        )
        .expect_err("the target is inside the paths");
    assert!(e.message.contains("target"), "{}", e.message);
    assert!(!root.join("snaps").exists());

    // Backups leave the agent's directory (and our state in it) out, saying so.
    let out = h.run_action(&charm(), action("create-backup")).unwrap();
    assert!(
        out.logs
            .iter()
            .any(|l| l.starts_with(&format!("left out {}", agent.display()))),
        "{:?}",
        out.logs
    );
    let first = out.results["backup-id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(1100));
    h.run_action(&charm(), action("create-backup")).unwrap();
    assert_eq!(common::listed(&h).len(), 2);

    fs::write(root.join("data.txt"), "v2").unwrap();
    fs::write(agent.join("marker"), "written after the backup").unwrap();
    let before = listing(&root);
    // A pre-restore target inside the paths is refused, nothing touched.
    let e = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", first.as_str())
                .param("target", root.join("pre").display().to_string()),
        )
        .expect_err("the pre-restore target is inside the paths");
    assert!(e.message.contains("target"), "{}", e.message);
    assert_eq!(listing(&root), before);

    let out = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", first.as_str())
                .param("target", tmp.path().join("saved").display().to_string()),
        )
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    // The pre-restore save leaves out what the restore keeps in place anyway.
    let saved = out.results["backup"]["path"].as_str().unwrap().to_string();
    let names = Command::new("tar").args(["tzf", &saved]).output().unwrap();
    let names = String::from_utf8_lossy(&names.stdout);
    assert!(
        names.contains("data.txt") && !names.contains("agents/unit-app-0"),
        "{names}"
    );
    assert_eq!(fs::read_to_string(root.join("data.txt")).unwrap(), "v1");
    assert_eq!(
        fs::read_to_string(agent.join("marker")).unwrap(),
        "written after the backup",
        "the agent's directory is never replaced"
    );
    assert_eq!(
        fs::read_to_string(agent.join("agent.conf")).unwrap(),
        "conf"
    );
    assert_eq!(leftovers(&root), Vec::<PathBuf>::new());
    assert_eq!(common::listed(&h).len(), 2, "both backups are still there");
}

#[test]
fn a_symlinked_path_is_backed_up_and_restored_where_it_points() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("volume/app-data");
    write_tree(&real, &[("a.txt", "a v1"), ("sub/b.txt", "b v1")]);
    let link = tmp.path().join("app");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // With a trailing slash, and listed twice.
    let paths = format!("{}/ {}/.", link.display(), link.display());
    let h = harness(tmp.path(), Path::new("")).config("paths", paths);
    let out = h
        .run_action(
            &charm(),
            action("snapshot").param("target", tmp.path().join("snaps").display().to_string()),
        )
        .unwrap_or_else(|e| panic!("snapshot failed: {} {:?}", e.message, e.logs));
    assert!(
        out.logs
            .iter()
            .any(|l| l.contains("(a symlink): backing up")),
        "{:?}",
        out.logs
    );
    let snap = out.results["snapshot"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let want = listing(&real);
    write_tree(&real, &[("a.txt", "a v2"), ("c.txt", "new")]);
    restore(&h, tmp.path(), &snap);
    assert_eq!(fs::read_link(&link).unwrap(), real, "the link is kept");
    assert_eq!(listing(&real), want);
    assert_eq!(
        leftovers(tmp.path().join("volume").as_path()),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn fifos_and_devices_come_back_and_sockets_stay() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    write_tree(&app, &[("run/keep.txt", "v1")]);
    let fifo = app.join("run/queue");
    let dev = app.join("dev-null");
    let sock = app.join("run/app.sock");
    assert!(
        Command::new("mkfifo")
            .arg("-m")
            .arg("640")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    assert!(
        Command::new("mknod")
            .args(["-m", "600"])
            .arg(&dev)
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success()
    );
    let h = harness(tmp.path(), &app);
    let snap = snapshot(&h, tmp.path());
    let want = listing(&app);

    // A listening socket appears after the backup; the FIFO and the device are removed.
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    fs::remove_file(&fifo).unwrap();
    fs::remove_file(&dev).unwrap();
    fs::write(app.join("run/keep.txt"), "v2").unwrap();

    // Device nodes need the operator's word.
    let e = restore_flags(&h, &snap, &[]).expect_err("device nodes are refused unless allowed");
    assert!(e.message.contains("allow-devices=true"), "{}", e.message);

    restore_flags(&h, &snap, &["allow-devices"])
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    let m = fs::symlink_metadata(&fifo).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(m.mode() & 0o7777, 0o640);
    let m = fs::symlink_metadata(&dev).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), fs::metadata("/dev/null").unwrap().rdev());
    assert_eq!(fs::read_to_string(app.join("run/keep.txt")).unwrap(), "v1");
    // The live socket is still there, and still the one being listened on.
    assert!(fs::symlink_metadata(&sock).unwrap().file_type().is_socket());
    let client = std::os::unix::net::UnixStream::connect(&sock);
    assert!(client.is_ok(), "{client:?}");
    drop(listener);
    fs::remove_file(&sock).unwrap();
    assert_eq!(listing(&app), want, "every file, FIFO and device as it was");
}

#[test]
fn a_sparse_file_comes_back_sparse() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    fs::create_dir_all(&app).unwrap();
    // 16 MiB apparent, a few KiB of data at the start, the middle and the end.
    let img = app.join("disk.img");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::File::create(&img).unwrap();
        f.write_all(b"boot sector").unwrap();
        f.seek(SeekFrom::Start(8 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(16 << 20).unwrap();
        f.seek(SeekFrom::Start((16 << 20) - 4)).unwrap();
        f.write_all(b"tail").unwrap();
    }
    let allocated = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
    assert!(
        allocated(&img) < 1 << 20,
        "the test file is sparse to begin with"
    );
    let h = harness(tmp.path(), &app);
    let snap = snapshot(&h, tmp.path());
    let want = listing(&app);
    fs::write(&img, "overwritten").unwrap();
    restore(&h, tmp.path(), &snap);
    assert_eq!(listing(&app), want, "the same bytes");
    assert_eq!(fs::metadata(&img).unwrap().len(), 16 << 20);
    assert!(
        allocated(&img) < 1 << 20,
        "restored sparse: {} bytes allocated",
        allocated(&img)
    );
}

fn tool(cmd: &str, args: &[&str], path: &Path) -> String {
    let out = Command::new(cmd).args(args).arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn acls_extended_attributes_and_subsecond_mtimes_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    write_tree(
        &app,
        &[("conf/secret", "s3cr3t"), ("bin/tool", "#!/bin/sh\n")],
    );
    let secret = app.join("conf/secret");
    let conf = app.join("conf");
    let bin = app.join("bin/tool");
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    tool("setfacl", &["-m", "u:1000:r--,g::r--,m::r--"], &secret);
    tool("setfacl", &["-d", "-m", "u:1000:rwx"], &conf);
    tool(
        "setfattr",
        &["-n", "user.origin", "-v", "0x00ff0a3d"],
        &secret,
    );
    tool("setfattr", &["-n", "trusted.note", "-v", "kept"], &secret);
    tool(
        "setfattr",
        &["-n", "user.plain", "-v", "plain text"],
        &secret,
    );
    tool("setcap", &["cap_net_bind_service=+ep"], &bin);
    let touch = Command::new("touch")
        .args(["-d", "2024-02-29 12:34:56.123456789"])
        .arg(&secret)
        .status()
        .unwrap();
    assert!(touch.success());
    let facl = |p: &Path| tool("getfacl", &["-p", "-n"], p);
    let fattr = |p: &Path| tool("getfattr", &["-d", "-m", "-", "-e", "hex"], p);
    let before = (
        facl(&secret),
        facl(&conf),
        fattr(&secret),
        tool("getcap", &[], &bin),
        fs::metadata(&secret).unwrap().mtime_nsec(),
    );
    assert!(
        before.0.contains("user:1000:r--") && before.0.contains("mask::r--"),
        "{}",
        before.0
    );

    let h = harness(tmp.path(), &app);
    let snap = snapshot(&h, tmp.path());
    // GNU tar reads them back too.
    let gnu = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--acls", "-tvzf", &snap])
        .output()
        .unwrap();
    assert!(
        gnu.status.success(),
        "{}",
        String::from_utf8_lossy(&gnu.stderr)
    );

    // Widen and strip everything, then restore.
    tool("setfacl", &["-b"], &secret);
    tool("setfacl", &["-k"], &conf);
    tool("setfattr", &["-x", "user.origin"], &secret);
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    restore(&h, tmp.path(), &snap);

    let after = (
        facl(&secret),
        facl(&conf),
        fattr(&secret),
        tool("getcap", &[], &bin),
        fs::metadata(&secret).unwrap().mtime_nsec(),
    );
    assert_eq!(after, before);
    assert_eq!(before.4, 123_456_789);

    // And GNU tar puts the ACL and attributes back from our archive.
    let out = tmp.path().join("gnu");
    fs::create_dir_all(&out).unwrap();
    let x = Command::new("tar")
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "-xzf",
            &snap,
            "-C",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    let gnu_secret = out.join(secret.strip_prefix("/").unwrap());
    let gnu_acl = facl(&gnu_secret);
    assert!(
        gnu_acl.contains("user:1000:r--") && gnu_acl.contains("mask::r--"),
        "{gnu_acl}"
    );
    assert!(fattr(&gnu_secret).contains("user.plain=0x706c61696e2074657874"));
}

#[test]
fn a_volume_that_is_no_longer_mounted_is_not_written_onto_the_disk_above() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    let vol = Volume::tmpfs(&app.join("vol"));
    write_tree(&app, &[("top.txt", "top"), ("vol/image", "image")]);
    let h = harness(tmp.path(), &app);
    let snap = snapshot(&h, tmp.path());
    drop(vol);
    let before = listing(&app);
    let e = restore_flags(&h, &snap, &[]).expect_err("the volume is not mounted");
    assert!(
        e.message.contains("mounted at") && e.message.contains("allow-unmounted=true"),
        "{}",
        e.message
    );
    assert_eq!(listing(&app), before, "nothing was written");
    restore_flags(&h, &snap, &["allow-unmounted"])
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(fs::read_to_string(app.join("vol/image")).unwrap(), "image");
}

#[test]
fn excludes_that_match_nothing_are_named_in_the_status() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("app");
    write_tree(&app, &[("a/cache/tmp/x", "x"), ("keep", "k")]);
    let h = harness(tmp.path(), &app).config("exclude", "cache/tmp sub/cahce");
    let status = h.run_hook(&charm(), "update-status").status;
    assert_eq!(status.0, "active", "{status:?}");
    assert!(
        status.1.contains("exclude \"sub/cahce\" matches nothing")
            && !status.1.contains("cache/tmp\""),
        "{status:?}"
    );
    // The relative pattern matched at depth: the snapshot leaves it out.
    let snap = snapshot(&h, tmp.path());
    let list = Command::new("tar").args(["tzf", &snap]).output().unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(
        names.contains("/keep") && !names.contains("cache/tmp/x"),
        "{names}"
    );
}
