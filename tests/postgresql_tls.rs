//! Connections as DBAs write them: TLS with `sslmode=verify-full` (and `verify-ca`) to a
//! server whose certificate the test makes, for our sessions and the tools alike; and
//! connection problems shown in the status before an action needs them.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::pg::Cluster;
use std::path::{Path, PathBuf};
use std::process::Command;

use charm_backup::charm::charm;
use charm_backup::testing::{Harness, action};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA in `dir/<name>-ca.pem` (its key beside it).
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}-ca.key"),
            "-out",
            &format!("{name}-ca.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={name} test CA"),
        ],
    );
    dir.join(format!("{name}-ca.pem"))
}

/// Turns TLS on for `c` with a certificate for 127.0.0.1 signed by the CA `ca`, and allows
/// TCP sessions only over TLS.
fn serve_tls(c: &Cluster, dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}-ca.pem"),
            "-CAkey",
            &format!("{ca}-ca.key"),
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    c.stop("fast");
    let owner = std::fs::metadata(&c.data).unwrap();
    for f in ["server.key", "server.crt"] {
        let to = c.data.join(f);
        std::fs::copy(dir.join(f), &to).unwrap();
        std::os::unix::fs::chown(
            &to,
            Some(std::os::unix::fs::MetadataExt::uid(&owner)),
            Some(std::os::unix::fs::MetadataExt::gid(&owner)),
        )
        .unwrap();
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(c.data.join("postgresql.conf"))
        .unwrap();
    std::io::Write::write_all(
        &mut conf,
        b"\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
    )
    .unwrap();
    std::fs::write(
        c.data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    c.start();
}

fn harness(tmp: &Path, c: &Cluster, uri: &str) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", "")
        .config("local-store", tmp.join("store").display().to_string())
        .config("postgresql-uri", uri)
        .config(
            "postgresql-password-file",
            c.password_file.display().to_string(),
        )
        .config("postgresql-bin-dir", c.bin.display().to_string())
}

#[test]
fn verify_full_tls_to_a_server_with_a_certificate_of_our_own() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let ca = make_ca(&certs, "good");
    let other_ca = make_ca(&certs, "other");
    serve_tls(&c, &certs, "good");
    c.psql("postgres", "CREATE DATABASE \"my db\"");
    c.psql("my db", "CREATE TABLE t AS SELECT 'over tls'::text AS v");
    let uri = |mode: &str, ca: &Path| {
        format!(
            "postgresql://postgres@127.0.0.1:{}/postgres?sslmode={mode}&sslrootcert={}",
            c.port,
            ca.display()
        )
    };

    // Plain TCP is refused by the server: what follows is TLS.
    let plain = harness(tmp.path(), &c, &uri("disable", &ca));
    let e = plain
        .run_action(&charm(), action("create-backup"))
        .expect_err("the server takes TLS only");
    assert!(
        e.message.contains("cannot connect to PostgreSQL"),
        "{}",
        e.message
    );

    let h = harness(tmp.path(), &c, &uri("verify-full", &ca))
        .config("postgresql-databases", "\"my db\"");
    let status = h.run_hook(&charm(), "config-changed").status;
    assert_eq!(status.0, "active", "{status:?}");
    let out = h
        .run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("create-backup failed: {} {:?}", e.message, e.logs));
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    c.psql("my db", "DELETE FROM t");
    h.run_action(
        &charm(),
        action("restore")
            .param("backup-id", id)
            .param("skip-backup", true),
    )
    .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(c.psql("my db", "SELECT v FROM t"), "over tls");

    // A key=value string with verify-ca works the same way.
    let kv = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-ca sslrootcert='{}'",
        c.port,
        ca.display()
    );
    harness(tmp.path(), &c, &kv)
        .config("postgresql-databases", "\"my db\"")
        .run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("create-backup failed: {} {:?}", e.message, e.logs));

    // A certificate from another CA is refused, and the status says so before any action.
    let bad = harness(tmp.path(), &c, &uri("verify-full", &other_ca));
    let e = bad
        .run_action(&charm(), action("create-backup"))
        .expect_err("the server's certificate is not from that CA");
    assert!(
        e.message.to_lowercase().contains("certificate"),
        "{}",
        e.message
    );
    let status = bad.run_hook(&charm(), "update-status").status;
    assert_eq!(status.0, "blocked", "{status:?}");
    assert!(
        status.1.contains("cannot connect to PostgreSQL"),
        "{status:?}"
    );
    assert!(!status.1.contains(&c.password));
}

#[test]
fn the_status_shows_connection_problems_before_an_action_needs_them() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    let h = harness(tmp.path(), &c, &c.uri());
    assert_eq!(h.run_hook(&charm(), "update-status").status.0, "active");

    // A password file others can read.
    std::fs::set_permissions(
        &c.password_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let status = h.run_hook(&charm(), "update-status").status;
    assert_eq!(status.0, "blocked", "{status:?}");
    assert!(status.1.contains("chmod 600"), "{status:?}");
    std::fs::set_permissions(
        &c.password_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    // A wrong password.
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "not-it\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let status = h
        .clone()
        .config("postgresql-password-file", wrong.display().to_string())
        .run_hook(&charm(), "update-status")
        .status;
    assert_eq!(status.0, "blocked", "{status:?}");
    assert!(
        status.1.contains("password authentication failed"),
        "{status:?}"
    );
    assert!(!status.1.contains("not-it"));
}
