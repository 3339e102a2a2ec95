//! Archives encrypted on the unit with age: what is stored starts with the age header and holds
//! no plaintext, Debian's `age` CLI decrypts it, restores need the identity from a Juju secret
//! and fail cleanly without it, and a malformed recipient stops backups instead of writing
//! plaintext.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::weed::{KEY, SECRET, Weed};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use charm_backup::charm::charm;
use charm_backup::testing::{Harness, action};

/// Text only the data holds: it must never appear in anything stored.
const MARKER: &str = "plaintext-marker-4d2f9a";

use common::keygen;

const SECRET_URI: &str = "secret:d4j5kq1uqu5c7ffmbvt0";

fn data(tmp: &Path) -> PathBuf {
    let d = tmp.join("data");
    fs::create_dir_all(d.join("sub")).unwrap();
    fs::write(d.join("a.txt"), format!("{MARKER}\n").repeat(1000)).unwrap();
    fs::write(d.join("sub/b.bin"), common::random(1 << 20)).unwrap();
    d
}

fn harness(tmp: &Path, recipients: &str) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", tmp.join("data").display().to_string())
        .config("local-store", tmp.join("store").display().to_string())
        .config("encryption-recipients", recipients)
}

fn with_identity(h: &Harness, identity: &str) -> Harness {
    h.clone()
        .secret(SECRET_URI, "identity", identity)
        .config("encryption-identity-secret", SECRET_URI)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that `bytes` is an age file holding no plaintext of the data.
fn assert_sealed(bytes: &[u8]) {
    assert!(
        bytes.starts_with(b"age-encryption.org/v1\n"),
        "not an age file"
    );
    assert!(!contains(bytes, MARKER.as_bytes()), "plaintext stored");
    assert!(!contains(bytes, b"manifest.json"), "plaintext stored");
}

#[test]
fn an_encrypted_snapshot_is_read_by_the_age_cli_and_restores_only_with_its_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let before = common::listing(&d);
    let (identity, public) = keygen(tmp.path(), "key.txt");
    let (other_identity, _) = keygen(tmp.path(), "other.txt");
    let h = harness(tmp.path(), &public);
    let target = tmp.path().join("snaps");
    let out = h
        .run_action(
            &charm(),
            action("snapshot").param("target", target.display().to_string()),
        )
        .unwrap();
    let path = out.results["snapshot"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(path.ends_with(".tar.gz.age"), "{path}");
    let stored = fs::read(&path).unwrap();
    assert_sealed(&stored);
    // sha256 of the stored bytes, as sha256sum prints it.
    let sum = Command::new("sha256sum").arg(&path).output().unwrap();
    assert!(
        String::from_utf8_lossy(&sum.stdout)
            .starts_with(out.results["snapshot"]["sha256"].as_str().unwrap())
    );
    // age -d -i key.txt FILE | tar xz gives the data back.
    let by_hand = tmp.path().join("by-hand");
    fs::create_dir_all(&by_hand).unwrap();
    let script = format!(
        "age -d -i '{}' '{path}' | tar xzf - -C '{}'",
        tmp.path().join("key.txt").display(),
        by_hand.display()
    );
    let st = Command::new("sh").args(["-c", &script]).status().unwrap();
    assert!(st.success());
    assert_eq!(
        common::listing(&by_hand.join(d.strip_prefix("/").unwrap())),
        before
    );

    fs::write(d.join("a.txt"), "changed\n").unwrap();
    let changed = common::listing(&d);
    let restore = |h: &Harness| {
        h.run_action(
            &charm(),
            action("restore")
                .param("path", path.as_str())
                .param("skip-backup", true),
        )
    };
    // No secret: refused before anything is touched.
    let err = restore(&h).unwrap_err();
    assert!(
        err.message.contains("encrypted with age")
            && err.message.contains("encryption-identity-secret"),
        "{}",
        err.message
    );
    assert_eq!(common::listing(&d), changed);
    // The wrong identity.
    let err = restore(&with_identity(&h, &other_identity)).unwrap_err();
    assert!(
        err.message.contains("none of the identities"),
        "{}",
        err.message
    );
    assert_eq!(common::listing(&d), changed);
    // A secret the unit cannot read (configured, not granted).
    let ungranted = h
        .clone()
        .config("encryption-identity-secret", "secret:d4j5kq1uqu5c7ffmbvt9");
    let err = restore(&ungranted).unwrap_err();
    assert!(
        err.message.contains("cannot be read") && err.message.contains("grant-secret"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("AGE-SECRET-KEY"));
    assert_eq!(common::listing(&d), changed);
    // One byte of the ciphertext changed: refused, data untouched.
    let damaged = tmp.path().join("damaged.tar.gz.age");
    let mut bytes = stored.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    fs::write(&damaged, &bytes).unwrap();
    let err = with_identity(&h, &identity)
        .run_action(
            &charm(),
            action("restore")
                .param("path", damaged.display().to_string())
                .param("skip-backup", true),
        )
        .unwrap_err();
    assert!(
        err.message.contains("damaged") || err.message.contains("checksum mismatch"),
        "{}",
        err.message
    );
    assert_eq!(common::listing(&d), changed);
    // The identity: restored, and the existing data saved encrypted too.
    let out = with_identity(&h, &identity)
        .run_action(
            &charm(),
            action("restore")
                .param("path", path.as_str())
                .param("target", tmp.path().join("saved").display().to_string()),
        )
        .unwrap();
    assert_eq!(common::listing(&d), before);
    let saved = out.results["backup"]["path"].as_str().unwrap();
    assert!(saved.ends_with(".age"), "{saved}");
    assert!(
        fs::read(saved)
            .unwrap()
            .starts_with(b"age-encryption.org/v1\n")
    );
    for l in &out.logs {
        assert!(!l.contains("AGE-SECRET-KEY"), "{l}");
    }
}

#[test]
fn an_archive_encrypted_with_the_age_cli_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let before = common::listing(&d);
    let (identity, public) = keygen(tmp.path(), "key.txt");
    let plain = harness(tmp.path(), "");
    let out = plain
        .run_action(
            &charm(),
            action("snapshot").param("target", tmp.path().join("s").display().to_string()),
        )
        .unwrap();
    let path = out.results["snapshot"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    let sealed = format!("{path}.age");
    let st = Command::new("age")
        .args(["-r", &public, "-o", &sealed, &path])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    fs::write(d.join("a.txt"), "changed\n").unwrap();
    with_identity(&plain, &identity)
        .run_action(
            &charm(),
            action("restore")
                .param("path", sealed.as_str())
                .param("skip-backup", true),
        )
        .unwrap();
    assert_eq!(common::listing(&d), before);
}

#[test]
fn encrypted_backups_in_s3_list_verify_and_restore_with_either_of_two_identities() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    let before = common::listing(&d);
    let (id_a, pub_a) = keygen(tmp.path(), "a.txt");
    let (id_b, pub_b) = keygen(tmp.path(), "b.txt");
    let h = harness(tmp.path(), &format!("{pub_a} {pub_b}")).relation(
        "s3-parameters",
        "s3-integrator",
        [
            ("bucket", "backups"),
            ("endpoint", weed.endpoint.as_str()),
            ("path", "/sealed"),
            ("access-key", KEY),
            ("secret-key", SECRET),
            ("s3-uri-style", "path"),
        ],
    );
    let out = h.run_action(&charm(), action("create-backup")).unwrap();
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    let url = out.results["backup"]["path"].as_str().unwrap();
    assert!(url.ends_with("charm-backup-backup.tar.gz.age"), "{url}");
    // Every stored object that holds data is an age file.
    let bucket = weed.bucket();
    use charm_backup::store::Store;
    let objects = bucket.list("sealed/").unwrap();
    let key = format!("sealed/backup/{id}/charm-backup-backup.tar.gz.age");
    for obj in &objects {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut bucket.open(&obj.key).unwrap(), &mut bytes).unwrap();
        if obj.key.ends_with(".json") {
            assert!(!contains(&bytes, MARKER.as_bytes()), "{}", obj.key);
        } else {
            assert_eq!(obj.key, key);
            assert_sealed(&bytes);
        }
    }
    // Metadata stays readable and says to whom it is encrypted.
    let shown = h
        .run_action(
            &charm(),
            action("show-backup").param("backup-id", id.as_str()),
        )
        .unwrap();
    let to = &shown.results["backup"]["encrypted-to"];
    assert!(
        to.to_string().contains(&pub_a) && to.to_string().contains(&pub_b),
        "{to}"
    );
    let row = common::listed(&h).pop().unwrap();
    assert!(row["encrypted-to"].to_string().contains(&pub_a), "{row}");
    let table = h.run_action(&charm(), action("list-backups")).unwrap();
    assert!(
        table.results["backups"]
            .as_str()
            .unwrap()
            .contains("| age (2)   |"),
        "{}",
        table.results["backups"]
    );
    // Verify without the key checks the stored bytes; with it, every entry.
    let out = h.run_action(&charm(), action("verify-backup")).unwrap();
    assert!(
        out.results["verify"]["status"]
            .as_str()
            .unwrap()
            .starts_with("ok: the stored"),
        "{:?}",
        out.results
    );
    let out = with_identity(&h, &id_b)
        .run_action(&charm(), action("verify-backup"))
        .unwrap();
    assert_eq!(out.results["verify"]["status"], "ok");
    // Restore without the secret: refused before anything is read, naming the recipients.
    fs::write(d.join("a.txt"), "changed\n").unwrap();
    let changed = common::listing(&d);
    let err = common::restore_id(&h, &id).unwrap_err();
    assert!(
        err.message.contains(&pub_a) && err.message.contains("encryption-identity-secret"),
        "{}",
        err.message
    );
    assert_eq!(common::listing(&d), changed);
    // Either identity restores.
    for identity in [&id_a, &id_b] {
        fs::write(d.join("a.txt"), "changed\n").unwrap();
        common::restore_id(&with_identity(&h, identity), &id).unwrap();
        assert_eq!(common::listing(&d), before);
    }
    // One byte changed in the bucket: verify and restore refuse it.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut bucket.open(&key).unwrap(), &mut bytes).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    bucket.delete(&key).unwrap();
    bucket.put(&key, &bytes).unwrap();
    let err = with_identity(&h, &id_a)
        .run_action(&charm(), action("verify-backup"))
        .unwrap_err();
    assert!(
        err.message.contains(&format!("backup {id}")),
        "{}",
        err.message
    );
    fs::write(d.join("a.txt"), "changed\n").unwrap();
    let err = common::restore_id(&with_identity(&h, &id_a), &id).unwrap_err();
    assert!(
        err.message.contains("damaged") || err.message.contains("checksum mismatch"),
        "{}",
        err.message
    );
    assert_eq!(common::listing(&d), changed);
}

#[test]
fn a_malformed_recipient_blocks_the_unit_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let (_, public) = keygen(tmp.path(), "key.txt");
    let h = harness(tmp.path(), &format!("{public} age1notakey"));
    let out = h.run_hook(&charm(), "config-changed");
    assert_eq!(out.status.0, "blocked");
    assert!(out.status.1.contains("age1notakey"), "{}", out.status.1);
    let target = tmp.path().join("snaps");
    let err = h
        .run_action(
            &charm(),
            action("snapshot").param("target", target.display().to_string()),
        )
        .unwrap_err();
    assert!(err.message.contains("age1notakey"), "{}", err.message);
    let err = h.run_action(&charm(), action("create-backup")).unwrap_err();
    assert!(err.message.contains("age1notakey"), "{}", err.message);
    assert!(!target.exists() || fs::read_dir(&target).unwrap().next().is_none());
    assert!(
        !tmp.path().join("store/backup").exists()
            || common::listed(&harness(tmp.path(), "")).is_empty()
    );
}

/// A base64 AES-256 key for SSE-C, as `openssl rand -base64 32` makes one.
fn customer_key() -> String {
    charm_backup::encoding::base64(&common::random(32))
}

#[test]
fn server_side_encryption_from_the_relation_attributes_is_sent_with_every_write_and_read() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path());
    // Over one part, so the parts of a multipart upload carry the key too.
    fs::write(d.join("big.bin"), common::random(20 << 20)).unwrap();
    let before = common::listing(&d);
    let key = customer_key();
    let attributes = serde_json::to_string(&[
        "x-amz-server-side-encryption-customer-algorithm=AES256".to_string(),
        format!("x-amz-server-side-encryption-customer-key={key}"),
        "x-amz-meta-origin=charm-backup-test".to_string(),
    ])
    .unwrap();
    let relation = |attributes: &str| {
        harness(tmp.path(), "").relation(
            "s3-parameters",
            "s3-integrator",
            [
                ("bucket", "backups"),
                ("endpoint", weed.endpoint.as_str()),
                ("path", "/sse"),
                ("access-key", KEY),
                ("secret-key", SECRET),
                ("s3-uri-style", "path"),
                ("attributes", attributes),
            ],
        )
    };
    let h = relation(&attributes);
    let id = common::create_backup(&h);
    let listed = common::listed(&h);
    assert_eq!(listed.len(), 1, "{listed:?}");
    // Without the key the server gives back neither the archive nor the metadata: both were
    // stored encrypted with it.
    use charm_backup::store::Store;
    let bucket = weed.bucket();
    let objects = bucket.list(&format!("sse/backup/{id}/")).unwrap();
    assert!(objects.len() >= 2, "{objects:?}");
    for obj in &objects {
        let read = bucket.open(&obj.key).and_then(|mut r| {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut r, &mut b)
                .map_err(|e| {
                    charm_backup::Error::new(charm_backup::ErrorKind::Other, e.to_string())
                })
                .map(|_| b)
        });
        assert!(read.is_err(), "{} was readable without the key", obj.key);
    }
    // With another key the restore fails and the data stays as it was.
    fs::write(d.join("a.txt"), "changed since the backup").unwrap();
    let changed = common::listing(&d);
    let other = serde_json::to_string(&[format!(
        "x-amz-server-side-encryption-customer-key={}",
        customer_key()
    )])
    .unwrap();
    let e = common::restore_id(&relation(&other), &id)
        .unwrap_err()
        .message;
    assert!(!e.contains(&key), "{e}");
    assert_eq!(common::listing(&d), changed);
    // With the key it restores, through streamed ranged reads like any other.
    common::restore_id(&h, &id).unwrap();
    assert_eq!(common::listing(&d), before);
    // A header the store would not send blocks backups rather than being left out.
    let unknown =
        serde_json::to_string(&["x-amz-object-lock-mode=COMPLIANCE".to_string()]).unwrap();
    let status = relation(&unknown)
        .run_hook(&charm(), "config-changed")
        .status;
    assert_eq!(status.0, "blocked", "{status:?}");
    assert!(status.1.contains("x-amz-object-lock-mode"), "{status:?}");
    let e = relation(&unknown)
        .run_action(&charm(), action("create-backup"))
        .unwrap_err()
        .message;
    assert!(
        e.contains("x-amz-object-lock-mode") && e.contains("attributes"),
        "{e}"
    );
}
