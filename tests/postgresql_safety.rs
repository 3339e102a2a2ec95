//! PostgreSQL restores that cannot be turned against the server: hostile text in database
//! properties, roles and their passwords, exact names, templates. Each against a real
//! PostgreSQL 15 cluster of its own, asserting the exact state afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::pg::Cluster;
use std::path::Path;

use charm_backup::charm::charm;
use charm_backup::testing::{ActionOutput, Harness, action};

/// The charm backing up `c` logically to the local store, connecting as `user` with the
/// password in `password_file`.
fn harness_as(tmp: &Path, c: &Cluster, user: &str, password_file: &Path) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", "")
        .config("local-store", tmp.join("store").display().to_string())
        .config(
            "postgresql-uri",
            format!("postgresql://{user}@127.0.0.1:{}/postgres", c.port),
        )
        .config(
            "postgresql-password-file",
            password_file.display().to_string(),
        )
        .config("postgresql-mode", "logical")
        .config("postgresql-bin-dir", c.bin.display().to_string())
}

fn harness(tmp: &Path, c: &Cluster) -> Harness {
    harness_as(tmp, c, "postgres", &c.password_file)
}

fn backup(h: &Harness) -> String {
    let out = h
        .run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("create-backup failed: {} {:?}", e.message, e.logs));
    out.results["backup-id"].as_str().unwrap().to_string()
}

fn restore(h: &Harness, id: &str, tmp: &Path, extra: &[(&str, bool)]) -> ActionOutput {
    let mut a = action("restore")
        .param("backup-id", id)
        .param("target", tmp.join("saved").display().to_string());
    for (k, v) in extra {
        a = a.param(k, *v);
    }
    h.run_action(&charm(), a)
        .unwrap_or_else(|e| panic!("restore failed: {} {:?}", e.message, e.logs))
}

/// Every database on the server, sorted, one per line.
fn database_list(c: &Cluster) -> Vec<String> {
    c.psql(
        "postgres",
        "SELECT string_agg(datname, E'\\n' ORDER BY datname) FROM pg_database",
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// A database's properties as the catalogs hold them, byte for byte (hex, so newlines and
/// quotes compare exactly): comment, connection limit, template flag, grants, settings.
fn properties(c: &Cluster, db: &str) -> String {
    let db = db.replace('\'', "''");
    c.psql(
        "postgres",
        &format!(
            "SELECT encode(convert_to(concat_ws(' | ', \
               coalesce(shobj_description(d.oid, 'pg_database'), '<null>'), d.datconnlimit, \
               d.datistemplate, pg_get_userbyid(d.datdba), \
               coalesce((SELECT string_agg(CASE WHEN a.grantee = 0 THEN 'public' \
                 ELSE pg_get_userbyid(a.grantee) END || '=' || a.privilege_type || ':' || a.is_grantable, \
                 ',' ORDER BY 1) FROM aclexplode(d.datacl) a), CASE WHEN d.datacl IS NULL THEN '<default>' END), \
               (SELECT string_agg(coalesce(r.rolname, '-') || '=' || array_to_string(s.setconfig, '\x01'), \
                 '\x02' ORDER BY r.rolname NULLS FIRST) \
                FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole \
                WHERE s.setdatabase = d.oid)), 'UTF8'), 'hex') \
             FROM pg_database d WHERE d.datname = '{db}'"
        ),
    )
}

fn superuser(c: &Cluster, role: &str) -> String {
    c.psql(
        "postgres",
        &format!("SELECT rolsuper FROM pg_roles WHERE rolname = '{role}'"),
    )
}

fn logs_in(c: &Cluster, user: &str, password: &str) -> bool {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(c.port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect(postgres::NoTls)
        .is_ok()
}

#[test]
fn a_database_owner_cannot_become_superuser_through_a_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    // The attack, verbatim.
    c.psql("postgres", "CREATE ROLE attacker LOGIN");
    c.psql("postgres", "CREATE DATABASE evildb OWNER attacker");
    c.psql(
        "evildb",
        "SET ROLE attacker; COMMENT ON DATABASE evildb IS E'x\\nCREATE DATABASE z'; \
         ALTER DATABASE evildb SET search_path TO E'\\n; ALTER ROLE attacker SUPERUSER;\\nCREATE DATABASE q';",
    );
    // Innocent text the old line filter dropped or choked on, and more hostile values.
    c.psql(
        "postgres",
        "CREATE DATABASE \"we'ird \"\"db\"\"; $$ \\connect x\" OWNER attacker",
    );
    let weird = "we'ird \"db\"; $$ \\connect x";
    c.psql(
        "evildb",
        "SET ROLE attacker; \
         COMMENT ON DATABASE \"we'ird \"\"db\"\"; $$ \\connect x\" IS E'shares:\\n\\\\\\\\fileserver\\\\share\\nCREATE DATABASE notes\\n$$; DROP ROLE postgres; --'; \
         ALTER DATABASE \"we'ird \"\"db\"\"; $$ \\connect x\" SET application_name TO E'a''b; $$ \\\\q\\nDROP DATABASE postgres'; \
         ALTER DATABASE \"we'ird \"\"db\"\"; $$ \\connect x\" SET search_path TO 'a, b', E'\"q\"\\n', public; \
         ALTER DATABASE \"we'ird \"\"db\"\"; $$ \\connect x\" SET work_mem TO '7MB'; \
         ALTER DATABASE \"we'ird \"\"db\"\"; $$ \\connect x\" CONNECTION LIMIT 7;",
    );
    c.psql(
        "postgres",
        "ALTER ROLE attacker IN DATABASE evildb SET statement_timeout TO '5s'; \
         GRANT CREATE ON DATABASE evildb TO attacker WITH GRANT OPTION; \
         REVOKE TEMP ON DATABASE evildb FROM PUBLIC; \
         CREATE ROLE \"we\"\"ird role; --\" LOGIN PASSWORD 'r$$1'; \
         GRANT CONNECT ON DATABASE evildb TO \"we\"\"ird role; --\"; \
         ALTER ROLE \"we\"\"ird role; --\" IN DATABASE evildb SET search_path TO E'$$;\\q', public",
    );
    let before: Vec<String> = ["evildb", weird]
        .iter()
        .map(|d| properties(&c, d))
        .collect();
    let dbs = database_list(&c);

    let h = harness(tmp.path(), &c);
    let id = backup(&h);
    c.psql("postgres", "DROP DATABASE evildb");
    c.psql("postgres", "DROP ROLE \"we\"\"ird role; --\"");
    c.psql(
        "postgres",
        "COMMENT ON DATABASE \"we'ird \"\"db\"\"; $$ \\connect x\" IS NULL",
    );
    let out = restore(&h, &id, tmp.path(), &[("skip-backup", true)]);

    assert_eq!(superuser(&c, "attacker"), "f", "{:?}", out.logs);
    assert_eq!(database_list(&c), dbs, "no database z, q or notes appeared");
    assert!(
        logs_in(&c, "we\"ird role; --", "r$$1"),
        "the dropped role came back with its password"
    );
    let after: Vec<String> = ["evildb", weird]
        .iter()
        .map(|d| properties(&c, d))
        .collect();
    assert_eq!(
        after, before,
        "comments, settings and grants come back byte for byte"
    );
    // A backup of the restored cluster restores as well.
    let id = backup(&h);
    restore(&h, &id, tmp.path(), &[("skip-backup", true)]);
    assert_eq!(superuser(&c, "attacker"), "f");
    let again: Vec<String> = ["evildb", weird]
        .iter()
        .map(|d| properties(&c, d))
        .collect();
    assert_eq!(again, before);
}

#[test]
fn restores_keep_current_passwords_and_attributes_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    for sql in [
        "CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD 'old-pw'",
        "CREATE ROLE other LOGIN PASSWORD 'o1' CONNECTION LIMIT 3",
        "CREATE ROLE grp NOLOGIN",
        "CREATE ROLE gone LOGIN PASSWORD 'g1' CREATEDB",
        "GRANT grp TO gone WITH ADMIN OPTION",
        "COMMENT ON ROLE gone IS 'it''s gone'",
        "ALTER ROLE gone SET work_mem TO '3MB'",
        "CREATE ROLE unrelated LOGIN PASSWORD 'u1'",
        "CREATE DATABASE appdb OWNER other",
        "GRANT CONNECT ON DATABASE appdb TO grp",
    ] {
        c.psql("postgres", sql);
    }
    c.psql(
        "appdb",
        "SET ROLE other; CREATE TABLE t (x int); INSERT INTO t VALUES (1)",
    );
    let pw = tmp.path().join("pwuser-password");
    std::fs::write(&pw, "old-pw\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let h = harness_as(tmp.path(), &c, "pwuser", &pw).config("postgresql-databases", "appdb");
    let id = backup(&h);

    // After the backup: the charm's own password changes, another role's password and
    // attributes change, roles are dropped, a new role appears.
    c.psql("postgres", "ALTER ROLE pwuser PASSWORD 'new-pw'");
    std::fs::write(&pw, "new-pw\n").unwrap();
    c.psql(
        "postgres",
        "ALTER ROLE other PASSWORD 'o2' CONNECTION LIMIT 9 CREATEROLE",
    );
    c.psql("postgres", "DROP ROLE gone");
    c.psql("postgres", "DROP ROLE unrelated");
    c.psql("postgres", "CREATE ROLE bystander LOGIN PASSWORD 'b1'");
    c.psql("appdb", "DELETE FROM t");

    let out = restore(&h, &id, tmp.path(), &[("skip-backup", true)]);
    assert_eq!(
        c.psql("appdb", "SELECT count(*) FROM t"),
        "1",
        "{:?}",
        out.logs
    );
    assert!(
        logs_in(&c, "pwuser", "new-pw"),
        "the charm's role keeps its password"
    );
    assert!(
        logs_in(&c, "other", "o2"),
        "an existing role keeps its password"
    );
    assert!(!logs_in(&c, "other", "o1"));
    assert_eq!(
        c.psql(
            "postgres",
            "SELECT rolconnlimit || ' ' || rolcreaterole FROM pg_roles WHERE rolname = 'other'"
        ),
        "9 true"
    );
    assert!(
        logs_in(&c, "gone", "g1"),
        "a missing role comes back with its password"
    );
    assert_eq!(
        c.psql(
            "postgres",
            "SELECT r.rolcreatedb || ' ' || shobj_description(r.oid, 'pg_authid') || ' ' || \
             (SELECT string_agg(g.rolname || ':' || m.admin_option, ',') FROM pg_auth_members m \
              JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid) || ' ' || \
             (SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting WHERE setrole = r.oid AND setdatabase = 0) \
             FROM pg_roles r WHERE r.rolname = 'gone'"
        ),
        "true it's gone grp:true work_mem=3MB"
    );
    assert_eq!(
        c.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'unrelated'"
        ),
        "0",
        "a role appdb does not need is not created by a restore of appdb alone"
    );
    assert!(logs_in(&c, "bystander", "b1"));

    // Asked for: existing roles get their backed-up password and attributes; never the
    // charm's own role.
    let out = restore(
        &h,
        &id,
        tmp.path(),
        &[("skip-backup", true), ("restore-roles", true)],
    );
    assert!(logs_in(&c, "other", "o1"), "{:?}", out.logs);
    assert_eq!(
        c.psql(
            "postgres",
            "SELECT rolconnlimit || ' ' || rolcreaterole FROM pg_roles WHERE rolname = 'other'"
        ),
        "3 false"
    );
    assert!(
        logs_in(&c, "pwuser", "new-pw"),
        "the charm's role is never changed"
    );
    assert!(logs_in(&c, "bystander", "b1"));
}

#[test]
fn names_match_exactly_and_backup_restore_cycles_never_wedge() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    let long_a = "averyveryverylongdatabasenameprefix_alpha";
    let long_b = "averyveryverylongdatabasenameprefix_beta";
    for db in [
        "charm-backup-restoring-keepme",
        "charm_backup_restoring_real",
        long_a,
        long_b,
        "appdb",
    ] {
        c.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
        c.psql(
            db,
            &format!("CREATE TABLE t AS SELECT '{db}'::text AS name"),
        );
    }
    let h = harness(tmp.path(), &c);

    // Long names sharing 33 bytes, with and without keeping the old databases.
    let id = backup(&h);
    restore(&h, &id, tmp.path(), &[("skip-backup", true)]);
    let out = restore(&h, &id, tmp.path(), &[]);
    let kept: Vec<&str> = out.results["restore"]["kept-databases"]
        .as_str()
        .unwrap()
        .split(' ')
        .collect();
    assert!(kept.iter().all(|k| k.len() <= 63), "{kept:?}");
    let mut unique = kept.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), kept.len(), "{kept:?}");
    assert!(
        out.results["restore"]["databases"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|d| d == "charm_backup_restoring_real"),
        "a database really named like the temporary ones is backed up: {}",
        out.results
    );

    // Ten backup/restore cycles in a row, each keeping the replaced databases.
    for cycle in 0..10 {
        let before = database_list(&c);
        let id = backup(&h);
        let out = restore(&h, &id, tmp.path(), &[]);
        let restored = out.results["restore"]["databases"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            !restored.contains("before_restore"),
            "cycle {cycle}: kept copies are not backed up with every database: {restored}"
        );
        let kept = out.results["restore"]["kept-databases"].as_str().unwrap();
        let mut expected: Vec<String> = before
            .into_iter()
            .chain(kept.split(' ').map(str::to_string))
            .collect();
        expected.sort();
        assert_eq!(database_list(&c), expected, "cycle {cycle}");
        for db in [
            "charm-backup-restoring-keepme",
            "charm_backup_restoring_real",
            long_a,
            long_b,
        ] {
            assert_eq!(c.psql(db, "SELECT name FROM t"), db, "cycle {cycle}");
        }
    }

    // A database named twice is backed up once; a name with a space is quoted.
    c.psql("postgres", "CREATE DATABASE \"my db\"");
    let h = h.config("postgresql-databases", "\"my db\" appdb appdb");
    let id = backup(&h);
    let out = restore(&h, &id, tmp.path(), &[("skip-backup", true)]);
    assert_eq!(out.results["restore"]["databases"], "my db appdb");
}

#[test]
fn template_databases_are_backed_up_and_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new(tmp.path());
    c.psql("postgres", "CREATE DATABASE tmpl IS_TEMPLATE true");
    c.psql("tmpl", "CREATE TABLE seed AS SELECT 42 AS answer");
    c.psql(
        "template1",
        "CREATE TABLE house_rules AS SELECT 'be kind'::text AS rule",
    );
    let before = [properties(&c, "tmpl"), properties(&c, "template1")];
    let h = harness(tmp.path(), &c);
    let id = backup(&h);

    c.psql("postgres", "ALTER DATABASE tmpl IS_TEMPLATE false");
    c.psql("postgres", "DROP DATABASE tmpl");
    c.psql("template1", "DROP TABLE house_rules");
    let out = restore(&h, &id, tmp.path(), &[]);
    let restored = out.results["restore"]["databases"].as_str().unwrap();
    assert!(restored.split(' ').any(|d| d == "tmpl"), "{restored}");
    assert!(restored.split(' ').any(|d| d == "template1"), "{restored}");
    assert_eq!(c.psql("tmpl", "SELECT answer FROM seed"), "42");
    assert_eq!(
        c.psql("template1", "SELECT rule FROM house_rules"),
        "be kind"
    );
    assert_eq!(
        [properties(&c, "tmpl"), properties(&c, "template1")],
        before
    );
    // The kept copy of template1 is no template (it can be dropped).
    let kept = out.results["restore"]["kept-databases"].as_str().unwrap();
    let old_t1 = kept
        .split(' ')
        .find(|k| k.starts_with("template1_"))
        .unwrap_or_else(|| panic!("{kept}"));
    c.psql("postgres", &format!("DROP DATABASE \"{old_t1}\""));
    // A new database made from template1 has the restored table.
    c.psql("postgres", "CREATE DATABASE fresh");
    assert_eq!(c.psql("fresh", "SELECT rule FROM house_rules"), "be kind");

    // Naming a template works.
    let h = h.config("postgresql-databases", "tmpl");
    let id = backup(&h);
    let out = restore(&h, &id, tmp.path(), &[("skip-backup", true)]);
    assert_eq!(out.results["restore"]["databases"], "tmpl");
    assert_eq!(properties(&c, "tmpl"), before[0]);
}
