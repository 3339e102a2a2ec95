//! etcd mode against a real etcd: a consistent snapshot through etcdctl, then a restore into a
//! fresh data directory that etcd starts from with the snapshot's keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "agent")]

mod common;
use common::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Etcd {
    child: Child,
    client: String,
}

impl Etcd {
    fn start(data: &Path, client: u16, peer: u16) -> Etcd {
        let p = format!("http://127.0.0.1:{peer}");
        let e = Etcd::spawn("n1", data, client, peer, &format!("n1={p}"));
        e.wait_healthy();
        e
    }

    /// Starts member `name` of the cluster `initial` (`n1=http://...,n2=...`), not waiting.
    fn spawn(name: &str, data: &Path, client: u16, peer: u16, initial: &str) -> Etcd {
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", name, "--data-dir"])
            .arg(data)
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", initial])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (Debian's etcd-server; .ci/run installs it)");
        Etcd { child, client: c }
    }

    fn wait_healthy(&self) {
        let t = Instant::now();
        while !self.ctl(&["endpoint", "health"]).status.success() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "etcd did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.client))
            .args(args)
            .output()
            .unwrap()
    }

    fn get(&self, key: &str) -> String {
        String::from_utf8_lossy(&self.ctl(&["get", "--print-value-only", key]).stdout)
            .trim()
            .to_string()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_charm-backup"))
        .args(args)
        .arg("--agent-dir")
        .arg(dir.join("agent"))
        .output()
        .unwrap()
}

/// Runs `snapshot` in etcd mode (`endpoint` is `etcd-endpoint=...`) into `dir/snaps`; returns
/// the archive.
fn snapshot(dir: &Path, endpoint: &str) -> PathBuf {
    let snaps = dir.join("snaps");
    let out = agent(
        dir,
        &[
            "run",
            "snapshot",
            "--config",
            "paths=",
            "--config",
            endpoint,
            &format!("target={}", snaps.display()),
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = &v["charm-backup/0"];
    assert_eq!(task["status"], "completed", "{task}");
    PathBuf::from(task["results"]["snapshot"]["path"].as_str().unwrap())
}

#[test]
fn etcd_snapshot_and_restore_keep_the_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("etcd-data");
    let (client, peer) = (free_port(), free_port());
    let etcd = Etcd::start(&data, client, peer);
    for (k, v) in [("/app/a", "alpha"), ("/app/b", "beta")] {
        assert!(etcd.ctl(&["put", k, v]).status.success());
    }
    let endpoint = format!("etcd-endpoint={}", etcd.client);
    let archive = snapshot(tmp.path(), &endpoint);
    let manifest = Command::new("tar")
        .arg("xzOf")
        .arg(&archive)
        .arg(".charm-backup/manifest.json")
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let src = &m["sources"][0];
    assert_eq!(src["kind"], "etcd");
    assert_eq!(
        src["details"]["version"], "3.4.23",
        "the etcd version is recorded: {m}"
    );
    assert!(
        src["details"]["revision"]
            .as_str()
            .is_some_and(|r| r.parse::<u64>().is_ok()),
        "{m}"
    );

    // create-backup in etcd mode records the etcd source in the backup's metadata.
    let out = agent(
        tmp.path(),
        &[
            "run",
            "create-backup",
            "--config",
            "paths=",
            "--config",
            &endpoint,
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["charm-backup/0"]["results"]["backup-id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = agent(
        tmp.path(),
        &[
            "run",
            "show-backup",
            &format!("backup-id={id}"),
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources = &v["charm-backup/0"]["results"]["backup"]["sources"];
    assert_eq!(sources["0"]["kind"], "etcd", "{v}");
    assert_eq!(sources["0"]["details"]["version"], "3.4.23");

    // Change etcd after the snapshot, stop it, and restore.
    assert!(etcd.ctl(&["put", "/app/c", "gamma"]).status.success());
    assert!(etcd.ctl(&["del", "/app/a"]).status.success());
    etcd.stop();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "run".to_string(),
            "restore".into(),
            "--config".into(),
            "paths=".into(),
            "--config".into(),
            endpoint.clone(),
            "--config".into(),
            format!("etcd-data-dir={}", data.display()),
            "--config".into(),
            "etcd-name=n1".into(),
            "--config".into(),
            format!("etcd-peer-url={peer_url}"),
            format!("path={}", archive.display()),
            format!("target={}", tmp.path().join("pre").display()),
            "--format".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = agent(tmp.path(), &args);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // A member that cannot be asked whether it is alone in its cluster is not restored...
    let before = common::listing(&data);
    let v = restore(&[]);
    assert_eq!(v["charm-backup/0"]["status"], "failed", "{v}");
    let msg = v["charm-backup/0"]["message"].as_str().unwrap();
    assert!(msg.contains("cannot reach etcd"), "{msg}");
    assert!(msg.contains("allow-unreachable-etcd=true"), "{msg}");
    assert_eq!(common::listing(&data), before, "the data is untouched");
    // ...unless the operator says it is a single member that cannot start.
    let v = restore(&["allow-unreachable-etcd=true"]);
    let results = &v["charm-backup/0"]["results"]["restore"]["etcd"];
    assert_eq!(results["name"], "n1", "{v}");
    assert_eq!(results["peer-url"], peer_url.as_str());
    let cluster_id = results["cluster-id"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_string();
    assert!(
        cluster_id.len() >= 8 && u64::from_str_radix(&cluster_id, 16).is_ok(),
        "{cluster_id}"
    );
    assert_eq!(v["charm-backup/0"]["status"], "completed", "{v}");
    let saved = v["charm-backup/0"]["results"]["backup"]["path"]
        .as_str()
        .unwrap();
    assert!(
        Path::new(saved).exists(),
        "the old data directory was saved first"
    );
    let etcd = Etcd::start(&data, client, peer);
    // The member runs as the cluster the results named.
    let status = etcd.ctl(&["endpoint", "status", "-w", "json"]);
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let id = s[0]["Status"]["header"]["cluster_id"].as_u64().unwrap();
    assert_eq!(format!("{id:x}"), cluster_id);
    assert_eq!(etcd.get("/app/a"), "alpha");
    assert_eq!(etcd.get("/app/b"), "beta");
    assert_eq!(
        etcd.get("/app/c"),
        "",
        "keys written after the snapshot are gone"
    );
    etcd.stop();
}

#[test]
fn a_restore_into_one_member_of_a_three_member_cluster_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let members: Vec<Etcd> = ports
        .iter()
        .enumerate()
        .map(|(i, (c, p))| {
            let data = tmp.path().join(format!("m{i}"));
            Etcd::spawn(&format!("m{i}"), &data, *c, *p, &initial)
        })
        .collect();
    for m in &members {
        m.wait_healthy();
    }
    assert!(members[0].ctl(&["put", "/app/a", "alpha"]).status.success());
    let endpoint = format!("etcd-endpoint={}", members[0].client);
    let archive = snapshot(tmp.path(), &endpoint).display().to_string();
    assert!(members[0].ctl(&["put", "/app/b", "beta"]).status.success());

    use std::os::unix::fs::MetadataExt;
    let data = tmp.path().join("m0");
    let inode = std::fs::metadata(&data).unwrap().ino();
    let beside = |d: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let around = beside(tmp.path());
    let out = agent(
        tmp.path(),
        &[
            "run",
            "restore",
            "--config",
            "paths=",
            "--config",
            &endpoint,
            "--config",
            &format!("etcd-data-dir={}", data.display()),
            "--config",
            "etcd-name=m0",
            "--config",
            &format!("etcd-peer-url=http://127.0.0.1:{}", ports[0].1),
            &format!("path={archive}"),
            "skip-backup=true",
            "allow-unreachable-etcd=true",
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = &v["charm-backup/0"];
    assert_eq!(task["status"], "failed", "{task}");
    let msg = task["message"].as_str().unwrap();
    assert!(
        msg.contains("one of 3 cluster members (m0, m1, m2)"),
        "{msg}"
    );
    assert!(msg.contains("single-unit deployment"), "{msg}");
    // Nothing was touched: the data directory is the same one, nothing was staged beside it,
    // and the cluster still has its three members and every key.
    assert_eq!(std::fs::metadata(&data).unwrap().ino(), inode);
    assert_eq!(beside(tmp.path()), around);
    for m in &members {
        assert!(m.ctl(&["endpoint", "health"]).status.success());
        assert_eq!(m.get("/app/a"), "alpha");
        assert_eq!(m.get("/app/b"), "beta");
    }
    let list = members[1].ctl(&["member", "list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 3);
}
