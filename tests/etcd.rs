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
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "n1", "--data-dir"])
            .arg(data)
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("n1={p}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd is installed (Debian's etcd-server; .ci/run installs it)");
        let e = Etcd { child, client: c };
        let t = Instant::now();
        while !e.ctl(&["endpoint", "health"]).status.success() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "etcd did not become healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        e
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
    let snaps = tmp.path().join("snaps");
    let out = agent(
        tmp.path(),
        &[
            "run",
            "snapshot",
            "--config",
            "paths=",
            "--config",
            &endpoint,
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
    let archive = PathBuf::from(task["results"]["snapshot"]["path"].as_str().unwrap());
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
            "etcd-name=n1",
            "--config",
            &format!("etcd-peer-url=http://127.0.0.1:{peer}"),
            &format!("path={}", archive.display()),
            &format!("target={}", tmp.path().join("pre").display()),
            "--format",
            "json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["charm-backup/0"]["status"], "completed", "{v}");
    let saved = v["charm-backup/0"]["results"]["backup"]["path"]
        .as_str()
        .unwrap();
    assert!(
        Path::new(saved).exists(),
        "the old data directory was saved first"
    );
    let etcd = Etcd::start(&data, client, peer);
    assert_eq!(etcd.get("/app/a"), "alpha");
    assert_eq!(etcd.get("/app/b"), "beta");
    assert_eq!(
        etcd.get("/app/c"),
        "",
        "keys written after the snapshot are gone"
    );
    etcd.stop();
}
