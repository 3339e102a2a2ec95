//! The backup repository on the local store: ids that cannot collide, only our own objects
//! listed, pruned and removed, retention, store ownership, verification and results that fit.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use std::fs;
use std::path::{Path, PathBuf};

use charm_backup::charm::charm;
use charm_backup::testing::{Harness, action};

fn harness(tmp: &Path, unit: &str) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .unit(unit)
        .charm_dir(tmp.join(unit.replace('/', "-")).join("charm"))
        .config("paths", tmp.join("data").display().to_string())
        .config("local-store", store(tmp).display().to_string())
}

fn store(tmp: &Path) -> PathBuf {
    tmp.join("store")
}

fn data(tmp: &Path) -> PathBuf {
    let d = tmp.join("data");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join("a"), "alpha\n").unwrap();
    d
}

fn backup(h: &Harness) -> String {
    common::create_backup(h)
}

fn rows(h: &Harness) -> Vec<serde_json::Value> {
    common::listed(h)
}

fn ids(h: &Harness) -> Vec<String> {
    rows(h)
        .iter()
        .map(|r| r["backup-id"].as_str().unwrap().to_string())
        .collect()
}

/// Copies backup `id` as a backup started at `at` (an id of that time), so retention can be
/// tested on backups of chosen ages without waiting.
fn backdate(tmp: &Path, id: &str, at: &str) -> String {
    let new_id = format!("{at}-0");
    let from = store(tmp).join("backup").join(id);
    let to = store(tmp).join("backup").join(&new_id);
    fs::create_dir_all(&to).unwrap();
    for e in fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        let text = fs::read(e.path()).unwrap();
        if name.to_string_lossy().ends_with(".json") {
            let mut m: serde_json::Value = serde_json::from_slice(&text).unwrap();
            m["id"] = new_id.clone().into();
            m["started"] = at.into();
            m["finished"] = at.into();
            let archive = m["archive"].as_str().unwrap().replace(id, &new_id);
            m["archive"] = archive.into();
            fs::write(to.join(name), serde_json::to_vec(&m).unwrap()).unwrap();
        } else {
            fs::write(to.join(name), text).unwrap();
        }
    }
    new_id
}

#[test]
fn two_units_backing_up_in_the_same_second_keep_both() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let (a, b) = (
        harness(tmp.path(), "charm-backup/0"),
        harness(tmp.path(), "charm-backup/1"),
    );
    let (x, y) = std::thread::scope(|s| {
        let x = s.spawn(|| backup(&a));
        let y = s.spawn(|| backup(&b));
        (x.join().unwrap(), y.join().unwrap())
    });
    assert_ne!(x, y);
    assert!(x.ends_with("-0") && y.ends_with("-1"), "{x} {y}");
    let listed = rows(&a);
    assert_eq!(listed.len(), 2, "{listed:?}");
    for r in &listed {
        assert_eq!(r["status"], "finished", "{r}");
    }
    let units: Vec<&str> = listed.iter().map(|r| r["unit"].as_str().unwrap()).collect();
    assert!(units.contains(&"charm-backup/0") && units.contains(&"charm-backup/1"));
    // Restoring the other unit's backup says whose it is.
    let out = common::restore_id(&a, &y).unwrap();
    common::assert_logged(&out.logs, "made by unit charm-backup/1");
}

/// A pgBackRest repository and stray objects sharing the store path.
fn foreign_objects(tmp: &Path) -> Vec<PathBuf> {
    let root = store(tmp);
    let files = [
        "backup/main/backup.info",
        "backup/main/backup.info.copy",
        "backup/main/20260101-000000F/backup.manifest",
        "backup/main/20260101-000000F/pg_data/PG_VERSION",
        "backup/stray.txt",
        "backup/notes/metadata.json",
        "archive/main/archive.info",
    ];
    let mut out = Vec::new();
    for f in files {
        let p = root.join(f);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("{{\"id\": \"{f}\"}}")).unwrap();
        out.push(p);
    }
    out
}

#[test]
fn objects_that_are_not_ours_are_never_listed_pruned_or_removed() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let h = harness(tmp.path(), "charm-backup/0").config("retention-count", 1);
    let foreign = foreign_objects(tmp.path());
    let first = backup(&h);
    assert_eq!(ids(&h), vec![first.clone()], "only our backup is listed");
    for id in ["main", "notes", "stray.txt"] {
        let err = h
            .run_action(&charm(), action("remove-backup").param("backup-id", id))
            .unwrap_err();
        assert!(err.message.contains("no backup"), "{id}: {}", err.message);
        let err = h
            .run_action(&charm(), action("verify-backup").param("backup-id", id))
            .unwrap_err();
        assert!(err.message.contains("no backup"), "{id}: {}", err.message);
    }
    // Retention after a second backup removes the first, and nothing else.
    let second = backup(&h);
    assert_eq!(ids(&h), vec![second.clone()]);
    let out = h
        .run_action(
            &charm(),
            action("remove-backup").param("backup-id", second.as_str()),
        )
        .unwrap();
    assert_eq!(out.results["removed"], "3", "marker, archive and metadata");
    for f in &foreign {
        assert!(f.exists(), "{} was removed", f.display());
    }
    assert!(!store(tmp.path()).join("backup").join(&first).exists());
}

#[test]
fn retention_by_count_and_by_days_never_removes_the_newest() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let h = harness(tmp.path(), "charm-backup/0");
    let real = backup(&h);
    let days: Vec<String> = [
        "2026-01-01T00:00:00Z",
        "2026-01-05T00:00:00Z",
        "2026-01-09T00:00:00Z",
        "2026-01-10T00:00:00Z",
    ]
    .iter()
    .map(|t| backdate(tmp.path(), &real, t))
    .collect();
    // A failed backup older than the newest finished one goes too.
    let failed = store(tmp.path()).join("backup").join(&days[1]);
    fs::rename(failed.join("metadata.json"), failed.join("failed.json")).unwrap();
    let mut m: serde_json::Value =
        serde_json::from_slice(&fs::read(failed.join("failed.json")).unwrap()).unwrap();
    m["status"] = "failed: disk full".into();
    fs::write(failed.join("failed.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    fs::remove_dir_all(store(tmp.path()).join("backup").join(&real)).unwrap();

    // Nothing configured: prune-backups says so.
    let err = h.run_action(&charm(), action("prune-backups")).unwrap_err();
    assert!(err.message.contains("retention-count"), "{}", err.message);

    // By days, counted from the newest (2026-01-10), not from today.
    let by_days = h.clone().config("retention-days", 3);
    let before = common::listing(&store(tmp.path()));
    let dry = by_days
        .run_action(&charm(), action("prune-backups").param("dry-run", true))
        .unwrap();
    assert_eq!(
        dry.results["removed"],
        format!("{} {}", days[0], days[1]),
        "{:?}",
        dry.results
    );
    assert_eq!(
        common::listing(&store(tmp.path())),
        before,
        "dry-run changes nothing"
    );
    by_days
        .run_action(&charm(), action("prune-backups"))
        .unwrap();
    assert_eq!(ids(&h), days[2..].to_vec());

    // By count: one kept, and never the newest.
    let by_count = h.clone().config("retention-count", 1);
    let out = by_count
        .run_action(&charm(), action("prune-backups"))
        .unwrap();
    assert_eq!(out.results["removed"], days[2]);
    assert_eq!(out.results["kept"], "1");
    assert_eq!(ids(&h), [days[3].clone()]);
    let out = by_count
        .run_action(&charm(), action("prune-backups"))
        .unwrap();
    assert_eq!(out.results["removed"], "");
    assert_eq!(ids(&h), [days[3].clone()]);
    // What is left still restores.
    let out = h.run_action(&charm(), action("verify-backup")).unwrap();
    assert_eq!(out.results["verify"]["status"], "ok");
}

#[test]
fn another_applications_store_path_is_refused_for_writing_and_open_for_reading() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let h = harness(tmp.path(), "charm-backup/0");
    let id = backup(&h);
    let owner = store(tmp.path()).join("charm-backup.owner.json");
    let record: serde_json::Value = serde_json::from_slice(&fs::read(&owner).unwrap()).unwrap();
    assert_eq!(record["application"], "charm-backup");
    // The same path seen from another application.
    let other = Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .unit("other-backup/0")
        .charm_dir(tmp.path().join("other/charm"))
        .config("paths", tmp.path().join("data").display().to_string())
        .config("local-store", store(tmp.path()).display().to_string());
    let before = common::listing(&store(tmp.path()));
    let err = other
        .run_action(&charm(), action("create-backup"))
        .unwrap_err();
    assert!(
        err.message.contains("application charm-backup of model")
            && err.message.contains("take-over-store=true"),
        "{}",
        err.message
    );
    assert_eq!(
        common::listing(&store(tmp.path())),
        before,
        "nothing written"
    );
    // Reading is free.
    let out = common::restore_id(&other, &id).unwrap();
    common::assert_logged(&out.logs, "made by unit charm-backup/0");
    let listed = other.run_action(&charm(), action("list-backups")).unwrap();
    assert!(
        listed.results["backups"]
            .as_str()
            .unwrap()
            .contains("Owner: application charm-backup of model"),
        "{}",
        listed.results["backups"]
    );
    // Taken over on purpose.
    let out = other
        .run_action(
            &charm(),
            action("create-backup").param("take-over-store", true),
        )
        .unwrap();
    common::assert_logged(&out.logs, "taking over");
    let record: serde_json::Value = serde_json::from_slice(&fs::read(&owner).unwrap()).unwrap();
    assert_eq!(record["application"], "other-backup");
}

#[test]
fn verify_backup_reads_everything_and_names_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    fs::write(d.join("big"), common::random(3 << 20)).unwrap();
    let h = harness(tmp.path(), "charm-backup/0");
    let id = backup(&h);
    let out = h.run_action(&charm(), action("verify-backup")).unwrap();
    assert_eq!(out.results["backup-id"], id.as_str());
    assert_eq!(out.results["verify"]["status"], "ok");
    let dir = store(tmp.path()).join("backup").join(&id);
    let archive = dir.join("charm-backup-backup.tar.gz");
    let good = fs::read(&archive).unwrap();
    let sum = {
        use sha2::Digest;
        charm_backup::archive::hex(&sha2::Sha256::digest(&good))
    };
    assert_eq!(out.results["verify"]["sha256"], sum.as_str());
    assert_eq!(out.results["verify"]["bytes"], good.len().to_string());
    let entries: u64 = out.results["verify"]["entries"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(entries >= 4, "{entries}");

    // One byte changed in the middle.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    fs::write(&archive, &bad).unwrap();
    let err = common::verify_fails(&h, Some(&id));
    assert!(
        err.contains(&format!("backup {id}")) && err.contains("damaged")
            || err.contains("checksum"),
        "{}",
        err
    );
    // Truncated: listed damaged, and verify says so.
    fs::write(&archive, &good[..good.len() - 100]).unwrap();
    let err = common::verify_fails(&h, None);
    assert!(
        err.contains("no finished backup") || err.contains("bytes"),
        "{}",
        err
    );
    let err = common::verify_fails(&h, Some(&id));
    assert!(err.contains(&format!("backup {id} is damaged")), "{}", err);
    // Metadata removed: not finished.
    fs::write(&archive, &good).unwrap();
    fs::remove_file(dir.join("metadata.json")).unwrap();
    let err = h
        .run_action(
            &charm(),
            action("verify-backup").param("backup-id", id.as_str()),
        )
        .unwrap_err();
    assert!(err.message.contains("not finished"), "{}", err.message);
    assert_eq!(rows(&h)[0]["status"], "in progress");
}

#[test]
fn corrupt_metadata_is_listed_damaged_and_refused_by_restore_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let h = harness(tmp.path(), "charm-backup/0");
    let id = backup(&h);
    let meta = store(tmp.path())
        .join("backup")
        .join(&id)
        .join("metadata.json");
    fs::write(&meta, "{\n\u{1}").unwrap();
    let row = &rows(&h)[0];
    assert!(
        row["status"]
            .as_str()
            .unwrap()
            .starts_with("damaged: its metadata is not valid JSON"),
        "{row}"
    );
    let err = common::restore_id(&h, &id).unwrap_err();
    assert!(
        err.message.contains(&format!("backup {id} is damaged"))
            && err.message.contains("remove-backup"),
        "{}",
        err.message
    );
    // And it can still be removed.
    h.run_action(
        &charm(),
        action("remove-backup").param("backup-id", id.as_str()),
    )
    .unwrap();
    assert!(rows(&h).is_empty());
}

#[test]
fn a_failed_backup_can_be_shown() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let h = harness(tmp.path(), "charm-backup/0");
    let id = backup(&h);
    let dir = store(tmp.path()).join("backup").join(&id);
    let mut m: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    m["status"] = "failed: disk full".into();
    fs::write(dir.join("failed.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    fs::remove_file(dir.join("metadata.json")).unwrap();
    common::assert_shown_failed_not_restorable(&h, &id);
}

#[test]
fn a_listing_too_big_for_a_result_says_which_limit_fits() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let h = harness(tmp.path(), "charm-backup/0");
    let id = backup(&h);
    let meta: serde_json::Value = serde_json::from_slice(
        &fs::read(
            store(tmp.path())
                .join("backup")
                .join(&id)
                .join("metadata.json"),
        )
        .unwrap(),
    )
    .unwrap();
    for i in 0..900 {
        let new_id = format!("2025-01-01T00:{:02}:{:02}Z-0", i / 60, i % 60);
        let dir = store(tmp.path()).join("backup").join(&new_id);
        fs::create_dir_all(&dir).unwrap();
        let mut m = meta.clone();
        m["id"] = new_id.clone().into();
        m["archive"] = format!("backup/{new_id}/x.tar.gz").into();
        fs::write(dir.join("metadata.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    }
    let err = h
        .run_action(&charm(), action("list-backups").param("limit", 0))
        .unwrap_err();
    assert!(err.message.contains("limit="), "{}", err.message);
    let fit: usize = err
        .message
        .split("limit=")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let out = h
        .run_action(&charm(), action("list-backups").param("limit", fit as i64))
        .unwrap();
    assert!(out.results["backups"].as_str().unwrap().len() <= 100_000);
}
