//! `import-backup`: a snapshot (from a path or the attached resource) becomes a backup that
//! restores; a foreign or damaged archive is refused with nothing stored; an encrypted one is
//! checked with the identity and stored as it is. `create-backup` to the local store gives
//! `copy.cmd`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use charm_backup::charm::charm;
use charm_backup::testing::{Harness, action};

fn harness(tmp: &Path) -> Harness {
    let d = tmp.join("data");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("a.txt"), "alpha\n").unwrap();
    fs::write(d.join("sub/b.bin"), common::random(256 << 10)).unwrap();
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", d.display().to_string())
        .config("local-store", tmp.join("store").display().to_string())
}

fn snapshot(h: &Harness, tmp: &Path) -> PathBuf {
    let out = h
        .run_action(
            &charm(),
            action("snapshot").param("target", tmp.join("snaps").display().to_string()),
        )
        .unwrap();
    PathBuf::from(out.results["snapshot"]["path"].as_str().unwrap())
}

fn import(h: &Harness, path: &Path) -> Result<serde_json::Value, String> {
    h.run_action(
        &charm(),
        action("import-backup").param("path", path.display().to_string()),
    )
    .map(|o| o.results)
    .map_err(|e| e.message)
}

#[test]
fn an_imported_snapshot_is_listed_and_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let h = harness(tmp.path());
    let snap = snapshot(&h, tmp.path());
    let before = common::listing(&tmp.path().join("data"));

    let results = import(&h, &snap).unwrap();
    let id = results["backup-id"].as_str().unwrap().to_string();
    assert_eq!(
        results["imported-from"],
        snap.display().to_string().as_str()
    );
    let stored = PathBuf::from(results["backup"]["path"].as_str().unwrap());
    // Stored byte for byte: the same sha256 as the file, as sha256sum prints it.
    let sum = Command::new("sha256sum").arg(&stored).output().unwrap();
    let file_sum = Command::new("sha256sum").arg(&snap).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sum.stdout).split(' ').next(),
        String::from_utf8_lossy(&file_sum.stdout).split(' ').next()
    );
    assert_eq!(
        results["backup"]["sha256"].as_str(),
        String::from_utf8_lossy(&sum.stdout).split(' ').next()
    );

    let rows = common::listed(&h);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["origin"], "imported");
    assert_eq!(rows[0]["status"], "finished");
    let shown = h
        .run_action(
            &charm(),
            action("show-backup").param("backup-id", id.as_str()),
        )
        .unwrap();
    let notes = shown.results["backup"]["notes"].as_str().unwrap();
    assert!(
        notes.starts_with(&format!("imported from {}", snap.display())),
        "{notes}"
    );
    assert_eq!(shown.results["backup"]["sources"]["0"]["kind"], "paths");

    fs::write(tmp.path().join("data/a.txt"), "changed\n").unwrap();
    fs::remove_file(tmp.path().join("data/sub/b.bin")).unwrap();
    common::restore_id(&h, &id).unwrap();
    assert_eq!(common::listing(&tmp.path().join("data")), before);
    h.run_action(
        &charm(),
        action("verify-backup").param("backup-id", id.as_str()),
    )
    .unwrap();
}

#[test]
fn the_attached_snapshot_resource_is_imported_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let h = harness(tmp.path());
    let snap = snapshot(&h, tmp.path());
    let out = h
        .clone()
        .resource("snapshot", &snap)
        .run_action(&charm(), action("import-backup"))
        .unwrap();
    assert!(out.results["backup-id"].as_str().is_some());
    common::assert_logged(&out.logs, "importing the attached snapshot resource");
}

/// Nothing of ours is in the store: no backup folder.
fn assert_nothing_stored(tmp: &Path) {
    let backups = tmp.join("store/backup");
    let n = fs::read_dir(&backups).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "nothing stored under {}", backups.display());
}

#[test]
fn a_foreign_or_damaged_archive_is_refused_with_nothing_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let h = harness(tmp.path());
    // A tar.gz made by GNU tar has no manifest: restore would refuse it, so import does.
    let foreign = tmp.path().join("foreign.tar.gz");
    assert!(
        Command::new("tar")
            .arg("czf")
            .arg(&foreign)
            .arg("-C")
            .arg(tmp.path())
            .arg("data")
            .status()
            .unwrap()
            .success()
    );
    let msg = import(&h, &foreign).unwrap_err();
    assert!(msg.contains("cannot be imported"), "{msg}");
    assert!(msg.contains("not a charm-backup archive"), "{msg}");
    assert_nothing_stored(tmp.path());

    // A snapshot with one byte changed in the middle.
    let snap = snapshot(&h, tmp.path());
    let mut bytes = fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let damaged = tmp.path().join("damaged.tar.gz");
    fs::write(&damaged, &bytes).unwrap();
    let msg = import(&h, &damaged).unwrap_err();
    assert!(msg.contains("cannot be imported"), "{msg}");
    assert_nothing_stored(tmp.path());

    // Not an archive at all, and a missing file.
    let text = tmp.path().join("notes.txt");
    fs::write(&text, "hello").unwrap();
    let msg = import(&h, &text).unwrap_err();
    assert!(msg.contains("not a gzip or zstd archive"), "{msg}");
    let msg = import(&h, &tmp.path().join("missing.tar.gz")).unwrap_err();
    assert!(msg.contains("missing.tar.gz"), "{msg}");
    assert_nothing_stored(tmp.path());
}

#[test]
fn an_encrypted_snapshot_is_checked_with_the_identity_and_stored_sealed() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("key.txt");
    assert!(
        Command::new("age-keygen")
            .arg("-o")
            .arg(&key)
            .output()
            .unwrap()
            .status
            .success()
    );
    let text = fs::read_to_string(&key).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    let h = harness(tmp.path()).config("encryption-recipients", public.as_str());
    let snap = snapshot(&h, tmp.path());
    assert!(snap.display().to_string().ends_with(".tar.gz.age"));

    let msg = import(&h, &snap).unwrap_err();
    assert!(msg.contains("encryption-identity-secret"), "{msg}");
    assert_nothing_stored(tmp.path());

    let uri = "secret:d4j5kq1uqu5c7ffmbvt0";
    let h = h
        .secret(uri, "identity", &text)
        .config("encryption-identity-secret", uri);
    let results = import(&h, &snap).unwrap();
    let stored = PathBuf::from(results["backup"]["path"].as_str().unwrap());
    assert!(stored.display().to_string().ends_with(".tar.gz.age"));
    assert!(
        fs::read(&stored)
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );
    let rows = common::listed(&h);
    assert_eq!(rows[0]["encrypted-to"][0], public.as_str());
    let id = results["backup-id"].as_str().unwrap();
    common::restore_id(&h, id).unwrap();
}

#[test]
fn create_backup_to_the_local_store_says_how_to_copy_it_off() {
    let tmp = tempfile::tempdir().unwrap();
    let h = harness(tmp.path());
    let out = h.run_action(&charm(), action("create-backup")).unwrap();
    let path = out.results["backup"]["path"].as_str().unwrap();
    assert!(Path::new(path).is_file());
    assert_eq!(
        out.results["copy"]["cmd"],
        format!("juju scp charm-backup/0:{path} .").as_str()
    );
}
