//! The charm's actions and hooks run in-process through the test harness, against real files.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::listing;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use charm_backup::charm::charm;
use charm_backup::testing::{ActionOutput, Harness, action};

fn harness() -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("charm files parse")
}

fn tree(root: &Path) {
    fs::create_dir_all(root.join("sub/empty")).unwrap();
    fs::write(root.join("a.txt"), "alpha\n").unwrap();
    fs::write(root.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    fs::hard_link(root.join("a.txt"), root.join("hard")).unwrap();
    // Set-user-ID and set-group-ID bits survive only if the owner is set before the mode: one
    // small file and one large enough to take the streamed path.
    use std::os::unix::fs::PermissionsExt;
    fs::write(root.join("sub/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("sub/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("sub/big-tool"), vec![1u8; 3 << 20]).unwrap();
    fs::set_permissions(
        root.join("sub/big-tool"),
        fs::Permissions::from_mode(0o2755),
    )
    .unwrap();
}

/// A unit whose `paths` is a fresh tree, and a snapshot of it taken through the charm.
fn unit_with_snapshot() -> (tempfile::TempDir, PathBuf, Harness, ActionOutput) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tree(&data);
    let h = harness()
        .charm_dir(tmp.path().join("unit/charm"))
        .config("paths", data.display().to_string());
    let out = h
        .run_action(
            &charm(),
            action("snapshot").param("target", tmp.path().join("snaps").display().to_string()),
        )
        .expect("snapshot completes");
    (tmp, data, h, out)
}

#[test]
fn snapshot_then_restore_round_trips_and_gnu_tools_agree() {
    let (tmp, data, h, out) = unit_with_snapshot();
    let before = listing(&data);
    let path = out.results["snapshot"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let sha = out.results["snapshot"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(path.contains("charm-backup-snapshot-"), "{path}");
    assert_eq!(
        out.results["copy"]["cmd"],
        format!("juju scp charm-backup/0:{path} .")
    );
    let sum = Command::new("sha256sum").arg(&path).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sum.stdout)
            .split_whitespace()
            .next()
            .unwrap(),
        sha
    );
    let list = Command::new("tar").args(["tzf", &path]).output().unwrap();
    assert!(list.status.success());
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(names.lines().next().unwrap().contains("manifest.json"));

    fs::write(data.join("a.txt"), "changed").unwrap();
    fs::remove_file(data.join("link")).unwrap();
    let out = h
        .run_action(
            &charm(),
            action("restore")
                .param("path", path.clone())
                .param("sha256", sha.clone())
                .param("target", tmp.path().join("pre").display().to_string()),
        )
        .expect("restore completes");
    assert_eq!(listing(&data), before);
    assert_eq!(out.results["restore"]["sha256"], sha.as_str());
    // The replaced data is removed in the background, soon.
    let t = std::time::Instant::now();
    while fs::read_dir(tmp.path()).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains("charm-backup-trash-")
    }) {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(20),
            "old data still there"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        out.results["backup"]["path"]
            .as_str()
            .unwrap()
            .contains("pre-restore")
    );
}

#[test]
fn wrong_checksum_changes_nothing() {
    let (_tmp, data, h, out) = unit_with_snapshot();
    let path = out.results["snapshot"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(data.join("a.txt"), "new").unwrap();
    let before = listing(&data);
    let err = h
        .run_action(
            &charm(),
            action("restore")
                .param("path", path)
                .param("sha256", "0".repeat(64))
                .param("skip-backup", true),
        )
        .unwrap_err();
    assert!(err.scheduled);
    assert!(err.message.contains("checksum mismatch"), "{}", err.message);
    assert_eq!(listing(&data), before);
}

#[test]
fn create_and_list_backups_in_the_local_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    tree(&data);
    let store = tmp.path().join("store");
    let h = harness()
        .config("paths", data.display().to_string())
        .config("local-store", store.display().to_string());
    let out = h
        .run_action(&charm(), action("create-backup").param("notes", "first"))
        .unwrap();
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    let listed = h.run_action(&charm(), action("list-backups")).unwrap();
    let table = listed.results["backups"].as_str().unwrap();
    assert!(
        table.starts_with(&format!(
            "Local directory: {}\nBackups base path: /backup/\nOwner: application charm-backup of model test (",
            store.display()
        )) && table.contains("backup-id              | type | status   | unit "),
        "{table}"
    );
    assert!(table.contains(&id) && table.contains("finished"), "{table}");

    let shown = h
        .run_action(
            &charm(),
            action("show-backup").param("backup-id", id.clone()),
        )
        .unwrap();
    assert_eq!(shown.results["backup"]["notes"], "first");
    assert_eq!(shown.results["backup"]["status"], "finished");
    assert_eq!(shown.results["backup"]["sources"]["0"]["kind"], "paths");
    assert_eq!(
        shown.results["backup"]["sha256"].as_str().unwrap().len(),
        64
    );

    let removed = h
        .run_action(
            &charm(),
            action("remove-backup").param("backup-id", id.clone()),
        )
        .unwrap();
    // The marker, the archive and the metadata.
    assert_eq!(removed.results["removed"], "3");
    let listed = h.run_action(&charm(), action("list-backups")).unwrap();
    assert!(!listed.results["backups"].as_str().unwrap().contains(&id));
    let err = h
        .run_action(
            &charm(),
            action("show-backup").param("backup-id", id.clone()),
        )
        .unwrap_err();
    assert!(
        err.message.starts_with(&format!("no backup {id} in")),
        "{}",
        err.message
    );
    let err = h.run_action(&charm(), action("remove-backup")).unwrap_err();
    assert!(
        !err.scheduled
            && err
                .message
                .contains("\"backup-id\" property is missing and required"),
        "{}",
        err.message
    );
}

#[test]
fn hooks_set_status() {
    let h = harness();
    let out = h.run_hook(&charm(), "config-changed");
    assert_eq!(out.status.0, "blocked");
    assert!(out.status.1.starts_with("set paths"), "{:?}", out.status);
    let tmp = tempfile::tempdir().unwrap();
    let h = harness()
        .config("paths", tmp.path().display().to_string())
        .config(
            "local-store",
            tmp.path().join("store").display().to_string(),
        )
        .relation("s3-parameters", "s3-integrator", [("bucket", "b")]);
    let out = h.run_hook(&charm(), "config-changed");
    assert_eq!(out.status.0, "blocked");
    assert!(
        out.status.1.contains("lacks access-key, secret-key"),
        "{:?}",
        out.status
    );
}
