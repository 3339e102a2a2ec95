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
use charm_backup::source::postgres::wal::{WalFile, parse_lsn};
use charm_backup::store::Store;
use charm_backup::testing::{ActionFailed, ActionOutput, Harness, action};

/// A unit whose charm directory holds the built `dispatch`, archiving `c`'s WAL.
fn unit(tmp: &Path, c: &Cluster) -> Harness {
    let charm_dir = tmp.join("unit/charm");
    std::fs::create_dir_all(&charm_dir).unwrap();
    let link = charm_dir.join("dispatch");
    if !link.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dispatch"), link).unwrap();
    }
    c.physical(
        Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .charm_dir(charm_dir)
            .config("local-store", tmp.join("store").display().to_string()),
    )
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
    wait_archived(c, &seg);
    seg
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
    let base = common::create_backup(&h);
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

    // Latest: all three (and a new timeline, 2).
    let out = restore_to(&h, "latest")
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(rows(&c), "1-one,2-two,3-three");
    assert_eq!(out.results["restore"]["recovery"]["timeline"], "2");

    // Between the second and the third commit: exactly the first two rows.
    let out = restore_to(&h, &between.to_string())
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(rows(&c), "1-one,2-two");
    assert_eq!(out.results["restore"]["recovery"]["timeline"], "3");
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
    assert_eq!(out.results["restore"]["recovery"]["timeline"], "4");

    // A time before the second point-in-time restore means the timeline live then: row three.
    restore_to(&h, &after_three.to_string())
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(rows(&c), "1-one,2-two,3-three");
    // A time after it, the timeline that restore began: row four.
    restore_to(&h, &after_four.to_string())
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(rows(&c), "1-one,2-two,4-four");

    // A plain restore of the base backup goes on on a new timeline too, so the server never
    // archives over what it archived before (the archiver would be stuck on it).
    let out = common::restore_id(&h, &base)
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(out.results["restore"]["recovery"]["timeline"], "7");
    assert_eq!(rows(&c), "");
    c.psql("postgres", "INSERT INTO t VALUES ('5-five')");
    let seg = archive_now(&c);
    assert!(seg.starts_with("00000007"), "{seg}");
}

const SECRET_URI: &str = "secret:d4j5kq1uqu5c7ffmbvt0";

/// Runs the unit's installed `dispatch` as PostgreSQL would (in the data directory).
fn dispatch(tmp: &Path, c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(tmp.join("unit/charm-backup-wal/dispatch"))
        .args(args)
        .current_dir(&c.data)
        .output()
        .unwrap()
}

/// Waits until the archiver has stored `seg` (or a later segment).
fn wait_archived(c: &Cluster, seg: &str) {
    for _ in 0..600 {
        let last = c.psql(
            "postgres",
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        );
        if last.len() >= 24 && last[..24] >= *seg {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{seg} was not archived: {}\n{}",
        c.psql("postgres", "SELECT * FROM pg_stat_archiver"),
        std::fs::read_to_string(c.dir.join("log")).unwrap_or_default()
    );
}

#[test]
fn encrypted_wal_in_s3_outlives_the_store_going_down_and_fetch_tells_absent_from_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let mut weed = common::weed::Weed::start();
    let c = Cluster::new(tmp.path());
    let (identity, public) = common::keygen(tmp.path(), "key.txt");
    let h = unit(tmp.path(), &c)
        .relation(
            "s3-parameters",
            "s3-integrator",
            [
                ("bucket", "backups"),
                ("endpoint", weed.endpoint.as_str()),
                ("access-key", common::weed::KEY),
                ("secret-key", common::weed::SECRET),
                ("s3-uri-style", "path"),
            ],
        )
        .config("encryption-recipients", public.as_str())
        .config("encryption-identity-secret", SECRET_URI)
        .secret(SECRET_URI, "identity", &identity);
    start_archiving(&h, &c);
    c.psql("postgres", "CREATE TABLE t (v text)");
    common::create_backup(&h);
    c.psql("postgres", "INSERT INTO t VALUES ('a')");
    let first = archive_now(&c);
    let stored = weed.bucket().list("wal/").unwrap();
    assert!(stored.len() > 1, "{stored:?}");
    for o in &stored {
        assert!(
            o.key.ends_with(".gz.age"),
            "WAL is stored encrypted only: {}",
            o.key
        );
    }
    let settings = tmp.path().join("unit/charm-backup-wal/settings.json");
    let settings = settings.to_str().unwrap();
    let id_file = tmp.path().join("key.txt");
    let id_file = id_file.to_str().unwrap();
    let out_file = tmp.path().join("fetched");
    let out = out_file.to_str().unwrap();

    // The store goes down: the archiver fails and retries, and the status says so.
    weed.kill();
    c.psql("postgres", "INSERT INTO t VALUES ('b')");
    let seg = c.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    for _ in 0..600 {
        if c.psql("postgres", "SELECT failed_count FROM pg_stat_archiver") != "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = h.run_hook(&charm(), "update-status").status;
    assert_eq!(status.0, "blocked", "{status:?}");
    assert!(
        status.1.contains("WAL archiving fails") && status.1.contains(&seg),
        "{}",
        status.1
    );
    // A fetch that cannot reach the store is not "absent": 255, which ends recovery.
    let f = dispatch(
        tmp.path(),
        &c,
        &["wal-fetch", "--identity", id_file, settings, &first, out],
    );
    assert_eq!(f.status.code(), Some(255), "{f:?}");
    assert!(!out_file.exists());

    weed.restart();
    // A new segment wakes the archiver (it otherwise retries once a minute).
    c.psql(
        "postgres",
        "SELECT pg_logical_emit_message(false, 'test', 'wake'), pg_switch_wal()",
    );
    wait_archived(&c, &seg);
    let status = h.run_hook(&charm(), "update-status").status;
    assert_eq!(status.0, "active", "{status:?}");
    assert!(status.1.contains("WAL last archived"), "{}", status.1);

    // Present: 0 and the segment; absent: 1; encrypted without the identity: 255.
    let f = dispatch(
        tmp.path(),
        &c,
        &["wal-fetch", "--identity", id_file, settings, &first, out],
    );
    assert_eq!(f.status.code(), Some(0), "{f:?}");
    assert_eq!(std::fs::metadata(&out_file).unwrap().len(), 16 << 20);
    let f = dispatch(
        tmp.path(),
        &c,
        &[
            "wal-fetch",
            "--identity",
            id_file,
            settings,
            "0000000100000000000000FE",
            out,
        ],
    );
    assert_eq!(f.status.code(), Some(1), "{f:?}");
    let f = dispatch(tmp.path(), &c, &["wal-fetch", settings, &first, out]);
    assert_eq!(f.status.code(), Some(255), "{f:?}");

    // Pushing an archived segment again: the same content is fine, other content refused.
    let f = dispatch(tmp.path(), &c, &["wal-push", settings, out, &first]);
    assert_eq!(f.status.code(), Some(0), "{f:?}");
    let mut other = std::fs::read(&out_file).unwrap();
    other[100_000] ^= 0xff;
    std::fs::write(&out_file, other).unwrap();
    let f = dispatch(tmp.path(), &c, &["wal-push", settings, out, &first]);
    assert_eq!(f.status.code(), Some(1), "{f:?}");
    assert!(
        String::from_utf8_lossy(&f.stderr).contains("other content"),
        "{f:?}"
    );

    // Nothing was lost while the store was down.
    let out = restore_to(&h, "latest")
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(rows(&c), "a,b");
    assert_eq!(out.results["restore"]["recovery"]["timeline"], "2");
    assert!(
        !tmp.path()
            .join("unit/charm-backup-wal/private/identity")
            .exists(),
        "the identity file is gone once the restore ends"
    );
}

#[test]
fn retention_keeps_the_wal_kept_backups_need_and_a_missing_segment_is_listed_verified_and_refused()
{
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    let h = unit(tmp.path(), &c).config("retention-count", 1);
    start_archiving(&h, &c);
    c.psql("postgres", "CREATE TABLE t (v text)");
    let first = common::create_backup(&h);
    c.psql("postgres", "INSERT INTO t VALUES ('w')");
    let old = archive_now(&c);
    std::thread::sleep(Duration::from_millis(1100));
    // The second backup makes the first go, and with it the WAL only the first needed.
    let id = common::create_backup(&h);
    assert_ne!(id, first);
    let listed = common::listed(&h);
    assert_eq!(listed.len(), 1);
    let stop = parse_lsn(listed[0]["lsn-stop"].as_str().unwrap()).unwrap();
    let needed = WalFile::segment_of(1, stop).to_string();
    let names = || -> Vec<String> {
        walk(&tmp.path().join("store/wal"))
            .iter()
            .map(|p| {
                p.file_name().unwrap().to_string_lossy()[..24.min(p.file_name().unwrap().len())]
                    .to_string()
            })
            .filter(|n| n.len() == 24)
            .collect()
    };
    assert!(
        !names().contains(&old),
        "{old} went with the first backup: {:?}",
        names()
    );
    assert!(names().contains(&needed), "{needed} is kept: {:?}", names());
    assert!(names().iter().all(|n| *n >= needed), "{:?}", names());
    for v in ["x", "y", "z"] {
        c.psql("postgres", &format!("INSERT INTO t VALUES ('{v}')"));
        archive_now(&c);
    }
    let after = pause_and_mark();
    // The second newest segment goes: it lies between the backup and the end.
    let mut segs: Vec<std::path::PathBuf> = walk(&tmp.path().join("store/wal"))
        .into_iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.len() > 24 && n.as_bytes()[24] == b'-'
        })
        .collect();
    segs.sort();
    let gone = segs[segs.len() - 2].clone();
    let name = gone.file_name().unwrap().to_string_lossy()[..24].to_string();
    std::fs::remove_file(&gone).unwrap();

    let out = h.run_action(&charm(), action("list-backups")).unwrap();
    let table = out.results["backups"].as_str().unwrap();
    assert!(table.contains(&format!("MISSING WAL {name}")), "{table}");
    let listed = h
        .run_action(&charm(), action("list-backups").param("format", "json"))
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(listed.results["backups"].as_str().unwrap()).unwrap();
    assert_eq!(v["restorable"][0]["gaps"][0], name.as_str(), "{v}");

    let e = common::verify_fails(&h, Some(&id));
    assert!(e.contains(&name) && e.contains("missing"), "{e}");
    for t in ["latest".to_string(), after.to_string()] {
        let e = restore_to(&h, &t).expect_err("refused");
        assert!(e.message.contains(&name), "{t}: {}", e.message);
    }
    assert_eq!(rows(&c), "w,x,y,z");

    // Off: the server's own settings come back (archive_mode at the next restart).
    let h = h.config("postgresql-wal-archive", false);
    let out = h.run_hook(&charm(), "config-changed");
    assert_eq!(out.status.0, "blocked", "{:?}", out.status);
    assert!(out.status.1.contains("restart"), "{}", out.status.1);
    c.stop("fast");
    c.start();
    let out = h.run_hook(&charm(), "update-status");
    assert_eq!(out.status.0, "active", "{:?}", out.status);
    assert_eq!(c.psql("postgres", "SHOW archive_mode"), "off");
    assert_eq!(c.psql("postgres", "SHOW archive_command"), "(disabled)");
    let auto = std::fs::read_to_string(c.data.join("postgresql.auto.conf")).unwrap();
    assert!(!auto.contains("archive"), "{auto}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn archiving_that_hangs_turns_the_unit_blocked_as_lagging() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    // A store that accepts connections and never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", hole.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let conns: Vec<_> = hole.incoming().take(50).collect();
        drop(conns);
    });
    let h = unit(tmp.path(), &c)
        .config("postgresql-archive-timeout", 1)
        .relation(
            "s3-parameters",
            "s3-integrator",
            [
                ("bucket", "backups"),
                ("endpoint", endpoint.as_str()),
                ("access-key", common::weed::KEY),
                ("secret-key", common::weed::SECRET),
                ("s3-uri-style", "path"),
            ],
        );
    start_archiving(&h, &c);
    c.psql(
        "postgres",
        "SELECT pg_logical_emit_message(false, 'test', 'x'), pg_switch_wal()",
    );
    std::thread::sleep(Duration::from_secs(4));
    let status = h.run_hook(&charm(), "update-status").status;
    assert_eq!(status.0, "blocked", "{status:?}");
    assert!(
        status.1.contains("WAL archiving lags")
            && status
                .1
                .contains("more than twice postgresql-archive-timeout"),
        "{}",
        status.1
    );
    drop(h);
    drop(c);
    drop(held);
}

#[test]
fn recovery_that_cannot_read_a_segment_fails_saying_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    let h = unit(tmp.path(), &c);
    start_archiving(&h, &c);
    c.psql("postgres", "CREATE TABLE t (v text)");
    common::create_backup(&h);
    c.psql("postgres", "INSERT INTO t VALUES ('p')");
    let damaged = archive_now(&c);
    c.psql("postgres", "INSERT INTO t VALUES ('q')");
    archive_now(&c);
    // The archived copy of a segment recovery needs no longer holds what it was archived with.
    let stored = walk(&tmp.path().join("store/wal"))
        .into_iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{damaged}-"))
        })
        .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &vec![7u8; 16 << 20]).unwrap();
    std::fs::write(&stored, gz.finish().unwrap()).unwrap();

    let e = restore_to(&h, "latest").expect_err("recovery cannot go past the damaged segment");
    assert!(
        e.message.contains("recovery stopped")
            && e.message.contains("short of the target")
            && e.message.contains(&damaged)
            && e.message.contains("damaged"),
        "{}",
        e.message
    );
    assert!(
        !c.running(),
        "the server is left stopped in recovery, not promoted early"
    );
}
