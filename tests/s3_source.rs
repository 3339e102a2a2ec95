//! S3 buckets as a source (Deis's workflow): hundreds of small objects and one larger than a
//! multipart part, with odd keys, content types and user metadata, backed up from SeaweedFS
//! into a bucket of the same server, the source wiped, restored, every object compared byte
//! for byte and header for header; an object in the way refused without overwrite-objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use charm_backup::charm::charm;
use charm_backup::encoding::aws_encode;
use charm_backup::testing::{Harness, action};
use common::weed::{KEY, SECRET, Weed};

/// What an object is, as S3 gives it back: bytes, content type, user metadata.
type Object = (Vec<u8>, String, BTreeMap<String, String>);

fn path_of(bucket: &str, key: &str) -> String {
    let segments: Vec<String> = key.split('/').map(aws_encode).collect();
    format!("/{bucket}/{}", segments.join("/"))
}

fn put(weed: &Weed, bucket: &str, key: &str, body: &[u8], ct: &str, meta: &[(&str, &str)]) {
    let mut headers = vec![("content-type", ct)];
    let names: Vec<String> = meta
        .iter()
        .map(|(k, _)| format!("x-amz-meta-{k}"))
        .collect();
    for (n, (_, v)) in names.iter().zip(meta) {
        headers.push((n.as_str(), *v));
    }
    let (status, _, b) = weed.s3_raw("PUT", &path_of(bucket, key), &headers, body);
    assert_eq!(status, 200, "PUT {key}: {}", String::from_utf8_lossy(&b));
}

fn get(weed: &Weed, bucket: &str, key: &str) -> Option<Object> {
    let (status, headers, body) = weed.s3_raw("GET", &path_of(bucket, key), &[], b"");
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "GET {key}");
    let ct = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let meta = headers
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("x-amz-meta-")?.to_string(), v.clone())))
        .collect();
    Some((body, ct, meta))
}

/// Every key of `bucket`, listed by the test's own client.
fn keys(weed: &Weed, bucket: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let q = if token.is_empty() {
            "?list-type=2".to_string()
        } else {
            format!("?list-type=2&continuation-token={}", aws_encode(&token))
        };
        let (status, body) = weed.s3("GET", &format!("/{bucket}{q}"), "");
        if status == 404 {
            return out;
        }
        for part in body.split("<Key>").skip(1) {
            let k = part.split("</Key>").next().unwrap();
            out.push(
                k.replace("&amp;", "&")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">"),
            );
        }
        match body.split("<NextContinuationToken>").nth(1) {
            Some(t) => token = t.split('<').next().unwrap().to_string(),
            None => return out,
        }
    }
}

fn wipe(weed: &Weed, bucket: &str) {
    for k in keys(weed, bucket) {
        let (status, _, _) = weed.s3_raw("DELETE", &path_of(bucket, &k), &[], b"");
        assert!(status == 204 || status == 200, "DELETE {k}: {status}");
    }
    let (status, body) = weed.s3("DELETE", &format!("/{bucket}"), "");
    assert!(status == 204 || status == 200, "DELETE {bucket}: {body}");
}

fn snapshot_of(weed: &Weed, buckets: &[&str]) -> BTreeMap<(String, String), Object> {
    let mut out = BTreeMap::new();
    for b in buckets {
        for k in keys(weed, b) {
            out.insert((b.to_string(), k.clone()), get(weed, b, &k).unwrap());
        }
    }
    out
}

fn harness(tmp: &Path, weed: &Weed) -> Harness {
    let data = tmp.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("deis.conf"), "registry=s3\n").unwrap();
    let relation = |path: &'static str| {
        [
            ("bucket", "backups"),
            ("endpoint", weed.endpoint.as_str()),
            ("path", path),
            ("access-key", KEY),
            ("secret-key", SECRET),
            ("s3-uri-style", "path"),
        ]
    };
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", data.display().to_string())
        .config("s3-source-buckets", "registry wal-archive")
        .relation("s3-parameters", "store", relation("/store"))
        .relation("s3-source", "gateway", relation(""))
}

#[test]
fn buckets_are_backed_up_wiped_and_restored_object_for_object() {
    let weed = Weed::start();
    for b in ["registry", "wal-archive"] {
        assert_eq!(weed.s3("PUT", &format!("/{b}"), "").0, 200);
    }
    // Hundreds of small objects, each with its own content type and metadata.
    for i in 0..300 {
        let body = common::random(500 + (i * 37) % 9000);
        let n = i.to_string();
        put(
            &weed,
            "registry",
            &format!("images/{:03}.layer", i),
            &body,
            if i % 2 == 0 {
                "application/octet-stream"
            } else {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            },
            &[("owner", "deis"), ("index", &n)],
        );
    }
    // Keys a tar name cannot hold as they are (SeaweedFS folds `a//b` itself, so that one is
    // left to the unit test of the names).
    for key in ["folder/", "a b/ünï %code.txt", "100%", "deep/er/"] {
        put(
            &weed,
            "registry",
            key,
            key.as_bytes(),
            "text/plain",
            &[("odd", "yes")],
        );
    }
    // Larger than a multipart part, and a WAL segment or two.
    put(
        &weed,
        "wal-archive",
        "base/big.bin",
        &common::random(20 << 20),
        "binary/octet-stream",
        &[],
    );
    put(
        &weed,
        "wal-archive",
        "wal/000000010000000000000001",
        &common::random(64 << 10),
        "application/octet-stream",
        &[("timeline", "1")],
    );
    let before = snapshot_of(&weed, &["registry", "wal-archive"]);
    assert_eq!(
        before.len(),
        306,
        "{:?}",
        before
            .keys()
            .filter(|(_, k)| !k.starts_with("images/"))
            .collect::<Vec<_>>()
    );

    let tmp = tempfile::tempdir().unwrap();
    let h = harness(tmp.path(), &weed);
    let out = h.run_hook(&charm(), "config-changed");
    assert_eq!(out.status.0, "active", "{:?}", out.status);
    assert!(
        out.status
            .1
            .contains("S3 buckets registry wal-archive at http://"),
        "{:?}",
        out.status
    );

    let out = h.run_action(&charm(), action("create-backup")).unwrap();
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    let shown = h
        .run_action(
            &charm(),
            action("show-backup").param("backup-id", id.as_str()),
        )
        .unwrap();
    let sources = &shown.results["backup"]["sources"];
    let s3 = (0..4)
        .map(|i| &sources[i.to_string()])
        .find(|s| s["kind"] == "s3")
        .unwrap();
    assert_eq!(s3["details"]["objects"], "306");
    assert_eq!(s3["details"]["buckets"], "registry wal-archive");

    // `tar tzf` of the stored archive lists the objects under a readable prefix.
    let archive_url = out.results["backup"]["path"].as_str().unwrap();
    let key = archive_url.trim_start_matches("s3://backups/");
    let archive = tmp.path().join("archive.tar.gz");
    {
        use charm_backup::store::Store;
        let mut r = weed.bucket().open(key).unwrap();
        let mut f = fs::File::create(&archive).unwrap();
        std::io::copy(&mut r, &mut f).unwrap();
    }
    let listed = Command::new("tar")
        .arg("tzf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(listed.status.success());
    let listed = String::from_utf8_lossy(&listed.stdout);
    for name in [
        ".charm-backup/s3/registry/images/007.layer",
        ".charm-backup/s3/wal-archive/base/big.bin",
        ".charm-backup/s3/registry/folder/%",
        ".charm-backup/s3/registry/100%25",
        ".charm-backup/s3-index.json",
    ] {
        assert!(
            listed.lines().any(|l| l == name),
            "{name} not in:\n{listed}"
        );
    }

    // The source is lost; the restore creates the buckets and puts every object back.
    wipe(&weed, "registry");
    wipe(&weed, "wal-archive");
    fs::write(tmp.path().join("data/deis.conf"), "changed\n").unwrap();
    let restored = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", id.as_str())
                .param("skip-backup", true),
        )
        .unwrap();
    let r = &restored.results["restore"]["s3"];
    assert_eq!(r["objects"], "306", "{}", restored.results);
    assert_eq!(r["buckets-created"], "registry wal-archive");
    assert_eq!(snapshot_of(&weed, &["registry", "wal-archive"]), before);
    assert_eq!(
        fs::read_to_string(tmp.path().join("data/deis.conf")).unwrap(),
        "registry=s3\n"
    );

    // An object changed since the backup is in the way: refused before anything is written,
    // unless overwrite-objects; an object the backup does not hold is left alone.
    put(
        &weed,
        "registry",
        "images/007.layer",
        b"tampered",
        "text/plain",
        &[],
    );
    put(
        &weed,
        "registry",
        "extra.txt",
        b"not in the backup",
        "text/plain",
        &[],
    );
    fs::write(tmp.path().join("data/deis.conf"), "changed again\n").unwrap();
    let refused = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", id.as_str())
                .param("skip-backup", true),
        )
        .unwrap_err();
    assert!(
        refused
            .message
            .contains("1 object(s) exist with other content")
            && refused.message.contains("s3://registry/images/007.layer")
            && refused.message.contains("overwrite-objects=true"),
        "{}",
        refused.message
    );
    assert_eq!(
        get(&weed, "registry", "images/007.layer").unwrap().0,
        b"tampered"
    );
    assert_eq!(
        fs::read_to_string(tmp.path().join("data/deis.conf")).unwrap(),
        "changed again\n",
        "nothing was restored"
    );
    let out = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", id.as_str())
                .param("skip-backup", true)
                .param("overwrite-objects", true),
        )
        .unwrap();
    let r = &out.results["restore"]["s3"];
    assert_eq!(r["objects"], "1", "{}", out.results);
    assert_eq!(r["replaced"], "1");
    assert_eq!(r["identical"], "305");
    let mut after = snapshot_of(&weed, &["registry", "wal-archive"]);
    let extra = after
        .remove(&("registry".to_string(), "extra.txt".to_string()))
        .expect("an object the backup does not hold is left alone");
    assert_eq!(extra.0, b"not in the backup");
    assert_eq!(after, before);
}

#[test]
fn a_bucket_list_without_a_relation_or_the_other_way_round_blocks() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let h = harness(tmp.path(), &weed);
    // Related, but no bucket named.
    let out = h
        .clone()
        .config("s3-source-buckets", "")
        .run_hook(&charm(), "config-changed");
    assert_eq!(out.status.0, "blocked");
    assert!(
        out.status.1.contains("set s3-source-buckets"),
        "{:?}",
        out.status
    );
    // The backup store's own bucket is never a source.
    let out = h
        .clone()
        .config("s3-source-buckets", "registry backups")
        .run_hook(&charm(), "config-changed");
    assert_eq!(out.status.0, "blocked");
    assert!(
        out.status
            .1
            .contains("names backups, the bucket backups are stored in"),
        "{:?}",
        out.status
    );
    // A bucket that does not exist fails the backup, naming it.
    let err = h
        .clone()
        .config("s3-source-buckets", "no-such-bucket")
        .run_action(&charm(), action("create-backup"))
        .unwrap_err();
    assert!(err.message.contains("no-such-bucket"), "{}", err.message);
}
