//! What an operator can set on the s3-integrator, against a real S3-compatible server
//! (SeaweedFS, started on free loopback ports): settings that cannot work are refused with a
//! message saying what to set, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use common::weed::{KEY, SECRET, Weed};
use std::sync::Mutex;

use charm_backup::ErrorKind;
use charm_backup::store::{S3Options, S3Store, Store};

/// Panic messages seen on any thread (the client's worker threads too) since the last take.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info.location().map(|l| l.to_string()).unwrap_or_default();
        PANICS.lock().unwrap().push(format!("{msg} (at {at})"));
    }));
}

fn options(endpoint: &str) -> S3Options {
    let mut o = S3Options::default();
    o.bucket = "backups".into();
    o.endpoint = endpoint.into();
    o.access_key = KEY.into();
    o.secret_key = SECRET.into();
    o.uri_style = "path".into();
    o
}

/// Opens a store with `o` and writes and lists one object through it.
fn use_store(o: &S3Options) -> charm_backup::Result<()> {
    let s = S3Store::open(o)?;
    s.put("probe/x", b"x")?;
    s.list("probe/")?;
    Ok(())
}

#[test]
fn settings_that_cannot_work_are_refused_with_what_to_set() {
    let weed = Weed::start();
    let ep = weed.endpoint.clone();
    let port = ep.rsplit(':').next().unwrap().to_string();
    let with = |f: &dyn Fn(&mut S3Options)| {
        let mut o = options(&ep);
        f(&mut o);
        o
    };
    // (what, options, a word the message must name)
    let cases: Vec<(&str, S3Options, &str)> = vec![
        (
            "endpoint without a scheme",
            with(&|o| o.endpoint = format!("127.0.0.1:{port}")),
            "endpoint",
        ),
        (
            "endpoint with another scheme",
            with(&|o| o.endpoint = format!("ftp://127.0.0.1:{port}")),
            "endpoint",
        ),
        (
            "endpoint with a path",
            with(&|o| o.endpoint = format!("{ep}/foo")),
            "endpoint",
        ),
        (
            "endpoint with a query",
            with(&|o| o.endpoint = format!("{ep}/?x=1")),
            "endpoint",
        ),
        (
            "endpoint with a user",
            with(&|o| o.endpoint = format!("http://u:p@127.0.0.1:{port}")),
            "endpoint",
        ),
        (
            "endpoint with a newline",
            with(&|o| o.endpoint = format!("{ep}\n")),
            "endpoint",
        ),
        (
            "host style with an IPv4 endpoint",
            with(&|o| o.uri_style = "host".into()),
            "s3-uri-style",
        ),
        (
            "host style with an IPv6 endpoint",
            with(&|o| {
                o.uri_style = "host".into();
                o.endpoint = format!("http://[::1]:{port}");
            }),
            "s3-uri-style",
        ),
        (
            "an unknown uri style",
            with(&|o| o.uri_style = "virtual".into()),
            "s3-uri-style",
        ),
        (
            "storage class with CR LF",
            with(&|o| o.storage_class = "STANDARD\r\nX-Evil: 1".into()),
            "storage-class",
        ),
        (
            "storage class with a tab",
            with(&|o| o.storage_class = "STANDARD\tIA".into()),
            "storage-class",
        ),
        (
            "region with a newline",
            with(&|o| o.region = "us-east-1\n".into()),
            "region",
        ),
        (
            "region with a slash",
            with(&|o| o.region = "us/east".into()),
            "region",
        ),
        (
            "path with a newline",
            with(&|o| o.path = "unit\ntests".into()),
            "path",
        ),
        (
            "path with a NUL",
            with(&|o| o.path = "unit\0tests".into()),
            "path",
        ),
        (
            "bucket with a newline",
            with(&|o| o.bucket = "back\nups".into()),
            "bucket",
        ),
        (
            "bucket with a slash",
            with(&|o| o.bucket = "backups/slash".into()),
            "bucket",
        ),
        (
            "bucket with a space",
            with(&|o| o.bucket = "back ups".into()),
            "bucket",
        ),
        (
            "bucket in uppercase",
            with(&|o| o.bucket = "Backups".into()),
            "bucket",
        ),
        (
            "bucket with an underscore",
            with(&|o| o.bucket = "back_ups".into()),
            "bucket",
        ),
        (
            "bucket too short",
            with(&|o| o.bucket = "bk".into()),
            "bucket",
        ),
        (
            "bucket like an IP address",
            with(&|o| o.bucket = "192.168.1.1".into()),
            "bucket",
        ),
        (
            "access key with a newline",
            with(&|o| o.access_key = format!("{KEY}\n")),
            "access-key",
        ),
        (
            "secret key with a newline",
            with(&|o| o.secret_key = format!("{SECRET}\r\n")),
            "secret-key",
        ),
    ];
    record_panics();
    let mut wrong = Vec::new();
    for (what, o, setting) in &cases {
        PANICS.lock().unwrap().clear();
        let r = std::panic::catch_unwind(|| use_store(o));
        let panics = std::mem::take(&mut *PANICS.lock().unwrap());
        let seen = match &r {
            Err(_) => format!("panicked: {panics:?}"),
            Ok(Ok(())) => format!("worked (panics on other threads: {panics:?})"),
            Ok(Err(e)) => format!("{:?}: {e}", e.kind()),
        };
        let ok = matches!(&r, Ok(Err(e)) if e.kind() == ErrorKind::InvalidInput
            && e.to_string().contains(setting)
            && e.to_string().contains("s3-integrator")
            && !e.to_string().contains(SECRET))
            && panics.is_empty();
        if !ok {
            wrong.push(format!("{what}: {seen}"));
        }
    }
    let _ = std::panic::take_hook();
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    // And the settings they were made from work.
    use_store(&options(&ep)).unwrap();
}

fn harness(tmp: &std::path::Path, relation: &[(&str, &str)]) -> charm_backup::testing::Harness {
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a"), "a").unwrap();
    charm_backup::testing::Harness::from_charm_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", data.display().to_string())
        .config("local-store", tmp.join("local").display().to_string())
        .relation("s3-parameters", "s3-integrator", relation.iter().copied())
}

#[test]
fn a_bad_setting_blocks_the_unit_with_what_to_set() {
    use charm_backup::charm::charm;
    let tmp = tempfile::tempdir().unwrap();
    let base = [
        ("bucket", "backups"),
        ("access-key", KEY),
        ("secret-key", SECRET),
    ];
    for (setting, value, says) in [
        (
            "endpoint",
            "s3.example.com:9000",
            "the s3-parameters endpoint \"s3.example.com:9000\" has no scheme: set it with \
             `juju config s3-integrator endpoint=https://s3.example.com:9000`",
        ),
        (
            "bucket",
            "a/slash",
            "the s3-parameters bucket \"a/slash\" is not a valid S3 bucket name: it holds a \
             slash (the path in the bucket is the separate path setting): set it with `juju \
             config s3-integrator bucket=<3 to 63 of a-z, 0-9, '.' and '-'>`",
        ),
        (
            "storage-class",
            "STANDARD\r\n",
            "the s3-parameters storage-class \"STANDARD\\r\\n\" holds a control character (a \
             line break or tab): set it with `juju config s3-integrator storage-class=<the \
             value without it>`",
        ),
    ] {
        let mut rel = base.to_vec();
        rel.retain(|(k, _)| *k != setting);
        rel.push((setting, value));
        let out = harness(tmp.path(), &rel).run_hook(&charm(), "config-changed");
        assert_eq!(out.status, ("blocked".to_string(), says.to_string()));
    }
    // Status shows the prefix as it is in the bucket.
    let mut rel = base.to_vec();
    rel.push(("path", "//bäck up/./x/"));
    let out = harness(tmp.path(), &rel).run_hook(&charm(), "config-changed");
    assert_eq!(out.status.0, "active", "{:?}", out.status);
    assert!(
        out.status.1.ends_with(" to s3://backups/bäck up/%2E/x"),
        "{:?}",
        out.status
    );
}

fn read_all(store: &S3Store, key: &str) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut store.open(key).unwrap(), &mut out).unwrap();
    out
}

#[test]
fn every_path_an_operator_can_type_is_written_listed_read_and_deleted() {
    let weed = Weed::start();
    let whole_bucket = S3Store::open(&options(&weed.endpoint)).unwrap();
    // (the relation's path, the key prefix it is in the bucket)
    for (path, prefix) in [
        ("tilde~me", "tilde~me"),
        ("/bäck/", "bäck"),
        ("100%", "100%"),
        ("what?", "what?"),
        ("#1", "#1"),
        ("with space", "with space"),
        ("a//b/", "a/b"),
        ("a/../b", "a/%2E%2E/b"),
        ("./a", "%2E/a"),
        ("plus+amp&eq=semi;", "plus+amp&eq=semi;"),
    ] {
        let mut o = options(&weed.endpoint);
        o.path = path.into();
        let store = S3Store::open(&o).unwrap();
        assert_eq!(store.base_path(), format!("/{prefix}/backup/"));
        assert_eq!(
            store.url("backup/x/data"),
            format!("s3://backups/{prefix}/backup/x/data")
        );
        store.put("backup/x/data", path.as_bytes()).unwrap();
        let listed = store.list("backup/").unwrap();
        let keys: Vec<&str> = listed.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["backup/x/data"], "path {path:?}");
        assert_eq!(read_all(&store, "backup/x/data"), path.as_bytes());
        // In the bucket, under the key as it was typed (what other S3 tools show).
        let all: Vec<String> = whole_bucket
            .list("")
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(all, [format!("{prefix}/backup/x/data")], "path {path:?}");
        store.delete("backup/x/data").unwrap();
        assert!(store.list("backup/").unwrap().is_empty(), "path {path:?}");
        assert!(whole_bucket.list("").unwrap().is_empty(), "path {path:?}");
    }
}

/// The keys of every version and delete marker under `prefix` in `bucket`, as the server lists
/// them (entities decoded).
fn versions(weed: &Weed, bucket: &str, prefix: &str) -> Vec<String> {
    let (code, body) = weed.s3(
        "GET",
        &format!(
            "/{bucket}?prefix={}&versions=",
            charm_backup::encoding::aws_encode(prefix)
        ),
        "",
    );
    assert_eq!(code, 200, "{body}");
    let mut keys: Vec<String> = body
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split_once("</Key>"))
        .map(|(k, _)| {
            k.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&#39;", "'")
                .replace("&#34;", "\"")
                .replace("&amp;", "&")
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn deletes_in_a_versioned_bucket_leave_no_version_behind() {
    use charm_backup::store::Versioning;
    let weed = Weed::start();
    let (code, body) = weed.s3("PUT", "/versioned", "");
    assert_eq!(code, 200, "CreateBucket: {body}");
    let mut o = options(&weed.endpoint);
    o.bucket = "versioned".into();
    // Entities in the listed keys are decoded: `&`, `<`, `>`, `'` and `"` in the path.
    o.path = "a&b <c> 'd' \"e\"".into();
    let p = o.key_prefix();
    assert_eq!(
        S3Store::open(&o).unwrap().versioning().unwrap(),
        Versioning::Unversioned
    );

    weed.set_versioning("versioned", "Enabled");
    let store = S3Store::open(&o).unwrap();
    assert_eq!(store.versioning().unwrap(), Versioning::Enabled);
    store.put("backup/x/data", b"one").unwrap();
    store.put("backup/x/data", b"two").unwrap();
    // A sibling whose key starts with the deleted one's stays.
    store.put("backup/x/data.sha", b"sum").unwrap();
    // A key whose current version is a delete marker (deleted by another tool).
    store.put("backup/y", b"y").unwrap();
    let (code, body) = weed.s3(
        "DELETE",
        &format!(
            "/versioned/{}",
            charm_backup::encoding::aws_encode(&format!("{p}/backup/y")).replace("%2F", "/")
        ),
        "",
    );
    assert!(code == 204 || code == 200, "{code} {body}");
    assert_eq!(
        versions(&weed, "versioned", &p),
        [
            format!("{p}/backup/x/data"),
            format!("{p}/backup/x/data"),
            format!("{p}/backup/x/data.sha"),
            format!("{p}/backup/y"),
            format!("{p}/backup/y"),
        ]
    );

    store.delete("backup/x/data").unwrap();
    store.delete("backup/y").unwrap();
    assert_eq!(
        versions(&weed, "versioned", &p),
        [format!("{p}/backup/x/data.sha")]
    );
    let keys: Vec<String> = store
        .list("backup/")
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, ["backup/x/data.sha"]);
    assert_eq!(read_all(&store, "backup/x/data.sha"), b"sum");

    // Suspended: versions written before are there, and go too.
    weed.set_versioning("versioned", "Suspended");
    let store = S3Store::open(&o).unwrap();
    assert_eq!(store.versioning().unwrap(), Versioning::Suspended);
    store.put("backup/x/data.sha", b"sum 2").unwrap();
    store.delete("backup/x/data.sha").unwrap();
    assert_eq!(versions(&weed, "versioned", &p), Vec::<String>::new());
    assert!(store.list("").unwrap().is_empty());
}

/// A secret URI as Juju 3 prints them.
const CREDENTIALS: &str = "secret:d40rbhnmp25c76d6bdn0";

#[test]
fn v1_credentials_come_from_the_secret_extra_secret() {
    use charm_backup::charm::charm;
    use charm_backup::testing::action;
    let weed = Weed::start();
    let tmp = tempfile::tempdir().unwrap();
    let rel = [
        ("bucket", "backups"),
        ("endpoint", weed.endpoint.as_str()),
        ("path", "v1"),
        ("s3-uri-style", "path"),
        ("secret-extra", CREDENTIALS),
        ("lib-version", "1.10"),
    ];
    let h = harness(tmp.path(), &rel)
        .secret(CREDENTIALS, "access-key", KEY)
        .secret(CREDENTIALS, "secret-key", SECRET);
    let out = h.run_hook(&charm(), "s3-parameters-relation-changed");
    assert_eq!(out.status.0, "active", "{:?}", out.status);
    assert!(
        out.status.1.ends_with(" to s3://backups/v1"),
        "{:?}",
        out.status
    );
    let backup = h
        .run_action(&charm(), action("create-backup"))
        .unwrap_or_else(|e| panic!("{}", e.message));
    let id = backup.results["backup-id"].as_str().unwrap().to_string();
    let listed = common::listed(&h);
    assert!(
        listed.iter().any(|b| b["backup-id"] == id.as_str()),
        "{listed:?}"
    );
    // The secret is nowhere the unit's results, logs or status go.
    // (The harness's own state holds the granted secret: what the charm wrote is checked.)
    let seen = format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        backup.results,
        backup.logs,
        backup.state.juju_logs,
        backup.status,
        out.status,
        out.juju_logs
    );
    assert!(!seen.contains(SECRET), "{seen}");
}

#[test]
fn an_unreadable_secret_extra_blocks_the_unit_and_fails_actions_with_what_to_fix() {
    use charm_backup::charm::charm;
    use charm_backup::testing::action;
    let tmp = tempfile::tempdir().unwrap();
    let rel = [
        ("bucket", "backups"),
        ("endpoint", "http://127.0.0.1:9"),
        ("secret-extra", CREDENTIALS),
        // A v0 provider's plaintext keys do not stand in for an unreadable v1 secret.
        ("access-key", "plain"),
        ("secret-key", "plain"),
    ];
    for (h, says) in [
        (harness(tmp.path(), &rel), "not found"),
        (
            harness(tmp.path(), &rel).secret(CREDENTIALS, "access-key", KEY),
            "\"secret-key\"",
        ),
    ] {
        let out = h.run_hook(&charm(), "update-status");
        assert_eq!(out.status.0, "blocked", "{:?}", out.status);
        let msg = out.status.1.clone();
        assert!(
            msg.starts_with(
                "the S3 credentials from s3-integrator (secret-extra) cannot be read: "
            ) && msg.contains(CREDENTIALS)
                && msg.contains(says)
                && msg.contains("juju grant-secret"),
            "{msg}"
        );
        assert!(!msg.contains(KEY) && !msg.contains("plain"), "{msg}");
        let err = h.run_action(&charm(), action("list-backups")).unwrap_err();
        assert_eq!(err.message, msg);
    }
}
