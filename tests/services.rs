//! `stop-services`: the `services` units are stopped while snapshot and create-backup read the
//! data, and started again whatever happens, also after a SIGKILL (the next hook starts them).
//! systemd's units are stood in for by a `systemctl` on PATH that records what it is asked and
//! plays a service that flushes its state when it stops.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "agent")]

mod common;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const UNITS: &str = "maas-regiond maas-rackd";

struct Unit {
    tmp: tempfile::TempDir,
}

impl Unit {
    fn new() -> Unit {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let data = t.join("data");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("state.txt"), "running\n").unwrap();
        let bin = t.join("bin");
        fs::create_dir_all(&bin).unwrap();
        // A service that writes its state out when it stops (as a database flushes), and that
        // removes the data when told to, to make a capture fail.
        fs::write(
            bin.join("systemctl"),
            format!(
                "#!/bin/sh\nd={t}\necho \"$*\" >> \"$d/systemctl.log\"\n\
                 case \"$1\" in\n\
                 stop) echo flushed >> \"$d/data/state.txt\"; \
                 [ -e \"$d/vanish\" ] && rm -rf \"$d/data\" ;;\n\
                 start) [ -d \"$d/data\" ] && echo started >> \"$d/data/state.txt\" ;;\n\
                 esac\nexit 0\n",
                t = t.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(bin.join("systemctl"), fs::Permissions::from_mode(0o755)).unwrap();
        Unit { tmp }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn agent(&self, args: &[&str]) -> Command {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap()
        );
        let mut c = Command::new(env!("CARGO_BIN_EXE_charm-backup"));
        c.args(args)
            .arg("--agent-dir")
            .arg(self.path("agent"))
            .args([
                "--config",
                &format!("paths={}", self.path("data").display()),
            ])
            .args([
                "--config",
                &format!("local-store={}", self.path("store").display()),
            ])
            .args(["--config", &format!("services={UNITS}")])
            .env("PATH", path);
        c
    }

    fn run(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["run"];
        a.extend(args);
        a.extend(["--format", "json"]);
        let out = self.agent(&a).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        v["charm-backup/0"].clone()
    }

    fn hook(&self, hook: &str) -> Output {
        let out = self.agent(&["hook", hook]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn log(&self) -> Vec<String> {
        fs::read_to_string(self.path("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// `state.txt` as the archive holds it.
fn state_in(archive: &Path) -> String {
    let out = Command::new("tar")
        .arg("xzOf")
        .arg(archive)
        .arg(archive_entry(archive))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn archive_entry(archive: &Path) -> String {
    let out = Command::new("tar")
        .arg("tzf")
        .arg(archive)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find(|l| l.ends_with("state.txt"))
        .unwrap()
        .to_string()
}

#[test]
fn snapshot_and_create_backup_read_the_data_with_the_services_stopped() {
    let u = Unit::new();
    let task = u.run(&[
        "snapshot",
        "stop-services=true",
        &format!("target={}", u.path("snaps").display()),
    ]);
    assert_eq!(task["status"], "completed", "{task}");
    let down = task["results"]["snapshot"]["services-down"]
        .as_str()
        .unwrap();
    assert!(down.ends_with('s') && down[..down.len() - 1].parse::<f64>().is_ok());
    assert_eq!(
        u.log(),
        [format!("stop {UNITS}"), format!("start {UNITS}")],
        "stopped once, started once, in that order"
    );
    // The capture saw the state the services left when they stopped, and nothing after.
    let archive = PathBuf::from(task["results"]["snapshot"]["path"].as_str().unwrap());
    assert_eq!(state_in(&archive), "running\nflushed\n");
    assert_eq!(
        fs::read_to_string(u.path("data/state.txt")).unwrap(),
        "running\nflushed\nstarted\n"
    );
    let logs = task["log"].to_string();
    assert!(logs.contains(&format!("stopping {UNITS}")), "{logs}");
    assert!(logs.contains("again after"), "{logs}");

    let task = u.run(&["create-backup", "stop-services=true"]);
    assert_eq!(task["status"], "completed", "{task}");
    assert!(
        task["results"]["services-down"].as_str().is_some(),
        "{task}"
    );
    assert_eq!(u.log().len(), 4);
    assert_eq!(u.log()[3], format!("start {UNITS}"));

    // Without the flag nothing is stopped.
    let task = u.run(&["create-backup"]);
    assert_eq!(task["status"], "completed", "{task}");
    assert!(task["results"]["services-down"].is_null(), "{task}");
    assert_eq!(u.log().len(), 4);
}

#[test]
fn the_services_start_again_when_the_capture_fails_and_need_the_option() {
    let u = Unit::new();
    fs::write(u.path("vanish"), "").unwrap();
    let task = u.run(&["create-backup", "stop-services=true"]);
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["message"].as_str().unwrap().contains("does not exist"),
        "{task}"
    );
    assert_eq!(u.log(), [format!("stop {UNITS}"), format!("start {UNITS}")]);

    let mut c = Command::new(env!("CARGO_BIN_EXE_charm-backup"));
    c.args(["run", "snapshot", "stop-services=true", "--format", "json"])
        .arg("--agent-dir")
        .arg(u.path("agent2"))
        .args(["--config", &format!("paths={}", u.path("snaps").display())]);
    fs::create_dir_all(u.path("snaps")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&c.output().unwrap().stdout).unwrap();
    let msg = v["charm-backup/0"]["message"].as_str().unwrap();
    assert!(msg.contains("services option, which is empty"), "{msg}");
}

#[test]
fn services_stopped_by_a_killed_backup_are_started_by_the_next_hook() {
    let u = Unit::new();
    // Incompressible data, so the capture takes a while.
    for i in 0..16 {
        fs::write(u.path(&format!("data/f{i}")), common::random(4 << 20)).unwrap();
    }
    let mut cmd = u.agent(&["run", "create-backup", "stop-services=true"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap();
    let t = Instant::now();
    while u.log().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the units never stopped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    common::kill_group(&mut child);
    assert_eq!(
        u.log(),
        [format!("stop {UNITS}")],
        "killed while the services were down"
    );

    let out = u.hook("update-status");
    assert_eq!(u.log(), [format!("stop {UNITS}"), format!("start {UNITS}")]);
    let said = String::from_utf8_lossy(&[out.stdout.as_slice(), &out.stderr].concat()).into_owned();
    assert!(
        said.contains(&format!(
            "started {UNITS} again: an interrupted create-backup stopped them"
        )),
        "{said}"
    );
    // Once only.
    u.hook("update-status");
    assert_eq!(u.log().len(), 2);
}
