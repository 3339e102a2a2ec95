//! Restores that replace a PostgreSQL data directory respect the server: a running server's
//! files are never swapped under it, a symlinked data directory is restored where the link
//! points, and the server comes back as it was (running or not, its environment its own, its
//! log where it was).
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::pg::{Cluster, pg_ctl};
use std::path::{Path, PathBuf};

use charm_backup::charm::charm;
use charm_backup::testing::{Harness, action};

fn harness(tmp: &Path, paths: &Path) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", paths.display().to_string())
        .config("local-store", tmp.join("store").display().to_string())
}

fn physical(tmp: &Path, c: &Cluster) -> Harness {
    c.physical(harness(tmp, Path::new("")))
}

/// The postmaster's pid, from `postmaster.pid`.
fn postmaster(c: &Cluster) -> u32 {
    std::fs::read_to_string(c.data.join("postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_file_restore_never_swaps_a_running_servers_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    c.psql("postgres", "CREATE TABLE kept AS SELECT 1 AS x");
    c.psql("postgres", "CHECKPOINT");
    for covered in [c.data.clone(), c.dir.clone()] {
        let h = harness(tmp.path(), &covered);
        let out = h
            .run_action(
                &charm(),
                action("snapshot").param("target", tmp.path().join("snaps").display().to_string()),
            )
            .unwrap_or_else(|e| panic!("snapshot failed: {} {:?}", e.message, e.logs));
        let snap = out.results["snapshot"]["path"]
            .as_str()
            .unwrap()
            .to_string();
        let pid = postmaster(&c);
        let e = h
            .run_action(
                &charm(),
                action("restore")
                    .param("path", snap)
                    .param("target", tmp.path().join("saved").display().to_string()),
            )
            .expect_err("a restore over a running server's data directory is refused");
        assert!(
            e.message.contains("running PostgreSQL") && e.message.contains(&pid.to_string()),
            "{}",
            e.message
        );
        assert!(c.running());
        assert_eq!(postmaster(&c), pid, "the same server still runs");
        assert_eq!(c.psql("postgres", "SELECT x FROM kept"), "1");
        assert!(c.data.join("global/pg_control").exists());
    }
}

#[test]
fn physical_restores_keep_a_symlinked_data_directory_and_the_servers_state() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    // The data directory behind a symlink, as with a volume mounted elsewhere.
    c.stop("fast");
    let real = c.dir.join("real-data");
    std::fs::rename(&c.data, &real).unwrap();
    std::os::unix::fs::symlink(&real, &c.data).unwrap();
    c.start();
    assert_eq!(
        c.psql("postgres", "SHOW data_directory"),
        c.data.display().to_string()
    );
    c.psql("postgres", "CREATE TABLE t AS SELECT 1 AS x");

    let h = physical(tmp.path(), &c);
    let out = h
        .run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("create-backup failed: {} {:?}", e.message, e.logs));
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    c.psql("postgres", "INSERT INTO t VALUES (2)");
    let log = c.dir.join("log");
    let log_before = std::fs::metadata(&log).unwrap().len();

    let restore = |h: &Harness| {
        h.run_action(
            &charm(),
            action("restore")
                .param("backup-id", id.as_str())
                .param("skip-backup", true),
        )
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs))
    };
    restore(&h);
    assert!(c.running(), "a running server runs again");
    assert_eq!(
        c.psql("postgres", "SELECT string_agg(x::text, ',') FROM t"),
        "1"
    );
    assert_eq!(
        std::fs::read_link(&c.data).unwrap(),
        real,
        "the link is kept"
    );
    assert!(
        real.join("global/pg_control").is_file(),
        "the data is where the link points"
    );
    let strays: Vec<PathBuf> = std::fs::read_dir(&c.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains("data."))
        .collect();
    assert!(strays.is_empty(), "nothing left beside it: {strays:?}");
    // The server's log stays where it was, and its environment is its own.
    assert!(std::fs::metadata(&log).unwrap().len() > log_before);
    assert!(
        !tmp.path()
            .join("unit/charm-backup-state/postgresql.log")
            .exists()
    );
    let environ = std::fs::read(format!("/proc/{}/environ", postmaster(&c))).unwrap();
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    assert!(
        vars.iter()
            .all(|v| !v.starts_with("JUJU_") && !v.starts_with("CARGO")),
        "{vars:?}"
    );

    // A server that was stopped stays stopped.
    c.stop("fast");
    restore(&h);
    assert!(!c.running(), "a stopped server is not started by a restore");
    assert!(pg_ctl(&c.bin, &c.data, &["status"]).status.code() == Some(3));
    c.start();
    assert_eq!(
        c.psql("postgres", "SELECT string_agg(x::text, ',') FROM t"),
        "1"
    );
}
