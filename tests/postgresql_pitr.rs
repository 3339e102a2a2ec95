//! Point-in-time recovery against real PostgreSQL 15 clusters: the hooks make the server
//! archive its WAL into the store through `dispatch wal-push`, and `restore restore-to-time`
//! brings back the database as it was at a moment, on the timeline that was live then.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::pg::Cluster;
use std::path::Path;
use std::time::Duration;

use charm_backup::charm::charm;
use charm_backup::testing::{ActionFailed, ActionOutput, Harness, action};

/// A unit whose charm directory holds the built `dispatch`, archiving `c`'s WAL.
fn unit(tmp: &Path, c: &Cluster) -> Harness {
    let charm_dir = tmp.join("unit/charm");
    std::fs::create_dir_all(&charm_dir).unwrap();
    let link = charm_dir.join("dispatch");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dispatch"), link).unwrap();
    }
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(charm_dir)
        .config("local-store", tmp.join("store").display().to_string())
        .config("postgresql-uri", c.uri())
        .config(
            "postgresql-password-file",
            c.password_file.display().to_string(),
        )
        .config("postgresql-mode", "physical")
        .config("postgresql-bin-dir", c.bin.display().to_string())
        .config("postgresql-data-dir", c.data.display().to_string())
        .config("postgresql-wal-archive", true)
}

/// Runs the hooks, restarts the server as the status asks, and checks it then archives.
fn start_archiving(h: &Harness, c: &Cluster) {
    let out = h.run_hook(&charm(), "config-changed");
    assert_eq!(out.error, None);
    assert_eq!(out.status.0, "blocked", "{:?}", out.status);
    assert!(
        out.status.1.contains("PostgreSQL must restart") && out.status.1.contains("systemctl"),
        "{}",
        out.status.1
    );
    c.stop("fast");
    c.start();
    let out = h.run_hook(&charm(), "update-status");
    assert_eq!(out.status.0, "active", "{:?}", out.status);
    assert_eq!(c.psql("postgres", "SHOW archive_mode"), "on");
    assert!(
        c.psql("postgres", "SHOW archive_command")
            .contains("wal-push"),
        "archive_command is ours"
    );
}

/// Switches WAL and waits until the archiver has stored the segment it closed.
fn archive_now(c: &Cluster) -> String {
    let seg = c.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    for _ in 0..300 {
        let last = c.psql(
            "postgres",
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        );
        if !last.is_empty() && last[..24.min(last.len())] >= *seg.as_str() {
            return seg;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{seg} was not archived: {}\n{}",
        c.psql("postgres", "SELECT * FROM pg_stat_archiver"),
        std::fs::read_to_string(c.dir.join("log")).unwrap_or_default()
    );
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// A moment strictly between what was committed before and what comes after.
fn pause_and_mark() -> jiff::Timestamp {
    std::thread::sleep(Duration::from_millis(1100));
    let t = now();
    std::thread::sleep(Duration::from_millis(1100));
    t
}

fn rows(c: &Cluster) -> String {
    c.psql("postgres", "SELECT string_agg(v, ',' ORDER BY v) FROM t")
}

fn restore_to(h: &Harness, time: &str) -> Result<ActionOutput, ActionFailed> {
    h.run_action(
        &charm(),
        action("restore")
            .param("restore-to-time", time)
            .param("skip-backup", true),
    )
}

#[test]
fn restores_to_a_time_to_latest_and_across_timelines_refusing_what_it_cannot_reach() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    let h = unit(tmp.path(), &c);
    start_archiving(&h, &c);
    c.psql("postgres", "CREATE TABLE t (v text)");
    let before_backup = now();
    std::thread::sleep(Duration::from_millis(1100));
    common::create_backup(&h);
    c.psql("postgres", "INSERT INTO t VALUES ('1-one')");
    archive_now(&c);
    pause_and_mark();
    c.psql("postgres", "INSERT INTO t VALUES ('2-two')");
    archive_now(&c);
    let between = pause_and_mark();
    c.psql("postgres", "INSERT INTO t VALUES ('3-three')");
    archive_now(&c);
    let after_three = pause_and_mark();
    assert_eq!(rows(&c), "1-one,2-two,3-three");

    // Outside the window: refused before anything is touched.
    let pid = std::fs::read_to_string(c.data.join("postmaster.pid")).unwrap();
    for (t, why) in [
        (
            before_backup.to_string(),
            "before the earliest restorable time",
        ),
        (
            (now() + jiff::SignedDuration::from_hours(1)).to_string(),
            "after the last archived WAL",
        ),
        ("2026-12-05 10:00:00".to_string(), "no time zone"),
    ] {
        let e = restore_to(&h, &t).expect_err("refused");
        assert!(e.message.contains(why), "{t}: {}", e.message);
    }
    assert_eq!(
        std::fs::read_to_string(c.data.join("postmaster.pid")).unwrap(),
        pid,
        "the server was not touched"
    );
    assert_eq!(rows(&c), "1-one,2-two,3-three");

    // Between the second and the third commit: exactly the first two rows.
    let out = restore_to(&h, &between.to_string())
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(rows(&c), "1-one,2-two");
    assert_eq!(out.results["restore"]["recovery"]["timeline"], "2");
    assert_eq!(c.psql("postgres", "SELECT pg_is_in_recovery()"), "f");
    let settings = std::fs::read_to_string(c.data.join("postgresql.auto.conf")).unwrap();
    assert!(!settings.contains("recovery_target"), "{settings}");

    // The new timeline archives; latest follows it.
    c.psql("postgres", "INSERT INTO t VALUES ('4-four')");
    archive_now(&c);
    let after_four = pause_and_mark();
    let out = restore_to(&h, "latest")
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(rows(&c), "1-one,2-two,4-four");
    assert_eq!(out.results["restore"]["recovery"]["timeline"], "3");

    // A time before the first point-in-time restore means the old timeline: row three is back.
    restore_to(&h, &after_three.to_string())
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(rows(&c), "1-one,2-two,3-three");
    // A time after it, the second timeline.
    restore_to(&h, &after_four.to_string())
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(rows(&c), "1-one,2-two,4-four");
}
