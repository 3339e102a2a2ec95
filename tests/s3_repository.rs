//! The backup repository on a real S3-compatible server (SeaweedFS): restores that stream from
//! the bucket with nothing staged on the unit's disk, dropped connections resumed, verification
//! of what the bucket holds, and objects that are not ours left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::proxy::Proxy;
use common::weed::{KEY, SECRET, Weed};
use std::fs;
use std::path::Path;
use std::process::Command;

use charm_backup::charm::charm;
use charm_backup::store::Store;
use charm_backup::testing::{Harness, action};

fn harness(tmp: &Path, endpoint: &str, path: &str) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", tmp.join("data").display().to_string())
        .config("local-store", tmp.join("local").display().to_string())
        .relation(
            "s3-parameters",
            "s3-integrator",
            [
                ("bucket", "backups"),
                ("endpoint", endpoint),
                ("path", path),
                ("access-key", KEY),
                ("secret-key", SECRET),
                ("s3-uri-style", "path"),
            ],
        )
}

/// The whole bucket, to change objects behind the charm's back.
struct Bucket(charm_backup::store::S3Store);

impl Bucket {
    fn of(weed: &Weed) -> Bucket {
        Bucket(weed.bucket())
    }
    fn get(&self, key: &str) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut self.0.open(key).unwrap(), &mut out).unwrap();
        out
    }
    fn put(&self, key: &str, data: &[u8]) {
        self.0.put(key, data).unwrap();
    }
    fn delete(&self, key: &str) {
        self.0.delete(key).unwrap();
    }
}

/// A tmpfs of `size` mounted at `at` (as root) for the test's length.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "charm-backup-test",
            ])
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

fn data(tmp: &Path, bytes: usize) -> Vec<(std::path::PathBuf, String)> {
    let d = tmp.join("data");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("big.bin"), common::random(bytes)).unwrap();
    fs::write(d.join("sub/conf"), "x = 1\n").unwrap();
    common::listing(&d)
}

#[test]
fn a_restore_streams_from_the_bucket_with_a_state_directory_smaller_than_the_archive() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let before = data(tmp.path(), 24 << 20);
    let h = harness(tmp.path(), &weed.endpoint, "/stream");
    let id = common::create_backup(&h);
    fs::remove_dir_all(tmp.path().join("data")).unwrap();
    let state = tmp.path().join("unit/charm-backup-state");
    let _small = Tmpfs::mount(&state, "4m");
    let out = common::restore_id(&h, &id).unwrap();
    assert!(
        out.results["restore"]["source"]
            .as_str()
            .unwrap()
            .starts_with("s3://backups/stream/backup/"),
        "{:?}",
        out.results
    );
    assert_eq!(common::listing(&tmp.path().join("data")), before);
    let left: Vec<_> = walk(&state);
    assert!(left.iter().all(|(_, size)| *size < 1 << 20), "{left:?}");
}

fn walk(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len()));
            }
        }
    }
    out
}

#[test]
fn a_connection_cut_mid_restore_is_resumed_and_a_dead_one_fails_with_the_data_untouched() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let before = data(tmp.path(), 20 << 20);
    let direct = harness(tmp.path(), &weed.endpoint, "/cut");
    let id = common::create_backup(&direct);
    fs::write(tmp.path().join("data/sub/conf"), "changed\n").unwrap();
    let changed = common::listing(&tmp.path().join("data"));
    let upstream = weed.endpoint.trim_start_matches("http://").to_string();

    // Every response is cut after 64 KiB: more cuts than are resumed, so the restore fails
    // with the data as it was.
    let dead = Proxy::start(&upstream, 64 << 10, usize::MAX);
    let h = harness(tmp.path(), &dead.endpoint, "/cut");
    let err = common::restore_id(&h, &id).unwrap_err();
    assert!(
        err.message.contains("nothing was changed"),
        "{}",
        err.message
    );
    assert_eq!(common::listing(&tmp.path().join("data")), changed);

    // Two cuts: resumed with ranged reads.
    let flaky = Proxy::start(&upstream, 5 << 20, 2);
    let h = harness(tmp.path(), &flaky.endpoint, "/cut");
    common::restore_id(&h, &id).unwrap();
    assert_eq!(flaky.cut.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(common::listing(&tmp.path().join("data")), before);
}

#[test]
fn verify_backup_reads_the_bucket_and_names_a_changed_byte() {
    let weed = Weed::start();
    let bucket = Bucket::of(&weed);
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path(), 2 << 20);
    let h = harness(tmp.path(), &weed.endpoint, "/verify");
    let id = common::create_backup(&h);
    let out = h.run_action(&charm(), action("verify-backup")).unwrap();
    assert_eq!(out.results["verify"]["status"], "ok");
    // One byte changed in the bucket, same size.
    let key = format!("verify/backup/{id}/charm-backup-backup.tar.gz");
    let mut bytes = bucket.get(&key);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    bucket.put(&key, &bytes);
    let err = common::verify_fails(&h, Some(&id));
    assert!(
        err.contains(&format!("backup {id} would not restore")),
        "{}",
        err
    );
    // Truncated.
    bucket.put(&key, &bytes[..bytes.len() / 2]);
    let err = common::verify_fails(&h, Some(&id));
    assert!(err.contains(&format!("backup {id} is damaged")), "{}", err);
    // Metadata removed.
    bucket.delete(&format!("verify/backup/{id}/metadata.json"));
    let err = h
        .run_action(
            &charm(),
            action("verify-backup").param("backup-id", id.as_str()),
        )
        .unwrap_err();
    assert!(err.message.contains("not finished"), "{}", err.message);
}

#[test]
fn a_pgbackrest_repository_in_the_same_bucket_and_path_is_left_alone() {
    let weed = Weed::start();
    let bucket = Bucket::of(&weed);
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path(), 1 << 10);
    let foreign = [
        "shared/backup/main/backup.info",
        "shared/backup/main/20260101-000000F/backup.manifest",
        "shared/backup/stray.txt",
        "shared/archive/main/archive.info",
    ];
    for k in foreign {
        bucket.put(k, b"not ours");
    }
    let h = harness(tmp.path(), &weed.endpoint, "/shared").config("retention-count", 1);
    h.run_action(&charm(), action("create-backup")).unwrap();
    let second = h.run_action(&charm(), action("create-backup")).unwrap();
    assert_ne!(
        second.results["pruned"],
        serde_json::Value::Null,
        "{:?}",
        second.results
    );
    let rows = common::listed(&h);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let err = h
        .run_action(&charm(), action("remove-backup").param("backup-id", "main"))
        .unwrap_err();
    assert!(err.message.contains("no backup main"), "{}", err.message);
    h.run_action(&charm(), action("prune-backups")).unwrap();
    for k in foreign {
        assert_eq!(bucket.get(k), b"not ours", "{k}");
    }
}

#[test]
fn show_backup_and_restore_of_a_failed_backup_say_it_failed() {
    let weed = Weed::start();
    let bucket = Bucket::of(&weed);
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path(), 1 << 10);
    let h = harness(tmp.path(), &weed.endpoint, "/failed");
    let id = common::create_backup(&h);
    let meta_key = format!("failed/backup/{id}/metadata.json");
    let mut m: serde_json::Value = serde_json::from_slice(&bucket.get(&meta_key)).unwrap();
    m["status"] = "failed: disk full".into();
    bucket.put(
        &format!("failed/backup/{id}/failed.json"),
        &serde_json::to_vec(&m).unwrap(),
    );
    bucket.delete(&meta_key);
    common::assert_shown_failed_not_restorable(&h, &id);
}
