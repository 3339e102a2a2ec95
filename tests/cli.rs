//! The local agent running the charm's real executables end to end: `charm-backup run` and
//! `charm-backup hook` against the `dispatch` binary, with real hook-tool executables.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "agent")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Agent {
    dir: tempfile::TempDir,
}

impl Agent {
    fn new() -> Self {
        Agent {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_charm-backup"))
            .args(args)
            .arg("--agent-dir")
            .arg(self.path().join("agent"))
            .output()
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The value of `key:` in plain output (first match).
fn field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
        .trim_matches('\'')
        .to_string()
}

#[test]
fn snapshot_on_the_demo_data_then_restore_from_the_resource() {
    let a = Agent::new();
    let snaps = a.path().join("snaps");
    let out = a.cmd(&["run", "snapshot", &format!("target={}", snaps.display())]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.starts_with("Running operation 1 with 1 task\n  - task 2 on unit-charm-backup-0\n\nWaiting for task 2...\n"), "{stderr}");
    assert!(
        stderr.contains(" archiving "),
        "live action-log lines: {stderr}"
    );
    let path = field(&stdout, "path");
    let sha = field(&stdout, "sha256");
    assert!(
        path.starts_with(&snaps.display().to_string()) && path.ends_with(".tar.gz"),
        "{path}"
    );
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sum = Command::new("sha256sum").arg(&path).output().unwrap();
    assert_eq!(text(&sum.stdout).split_whitespace().next().unwrap(), sha);
    assert!(field(&stdout, "cmd").starts_with("juju scp charm-backup/0:"));

    // GNU tar reads it; put it back through the attached resource after damaging the data.
    let x = a.path().join("x");
    fs::create_dir(&x).unwrap();
    let tar = Command::new("tar")
        .args(["xzf", &path, "-C"])
        .arg(&x)
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", text(&tar.stderr));
    let demo = a.path().join("agent/demo/data");
    let conf = demo.join("etc/app.conf");
    let original = fs::read(&conf).unwrap();
    assert_eq!(
        fs::read(x.join(demo.strip_prefix("/").unwrap()).join("etc/app.conf")).unwrap(),
        original
    );
    fs::write(&conf, "damaged").unwrap();
    let pre = a.path().join("pre");
    let out = a.cmd(&[
        "run",
        "restore",
        "--resource",
        &format!("snapshot={path}"),
        &format!("target={}", pre.display()),
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(fs::read(&conf).unwrap(), original);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v["charm-backup/0"]["results"];
    assert_eq!(r["restore"]["sha256"], sha.as_str());
    let saved = r["backup"]["path"].as_str().unwrap();
    assert!(
        saved.starts_with(&pre.display().to_string()),
        "the damaged data was saved first: {saved}"
    );
}

#[test]
fn create_backup_and_list_backups_as_json() {
    let a = Agent::new();
    let out = a.cmd(&["run", "create-backup", "notes=nightly", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = &v["charm-backup/0"];
    assert_eq!(task["status"], "completed");
    assert_eq!(task["results"]["return-code"], 0);
    let id = task["results"]["backup-id"].as_str().unwrap().to_string();
    let out = a.cmd(&["run", "list-backups", "format=json", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list: serde_json::Value =
        serde_json::from_str(v["charm-backup/0"]["results"]["backups"].as_str().unwrap()).unwrap();
    assert_eq!(list["backups"][0]["backup-id"], id.as_str());
    assert_eq!(list["backups"][0]["status"], "finished");
}

#[test]
fn invalid_params_are_refused_before_anything_runs() {
    let a = Agent::new();
    let out = a.cmd(&["run", "snapshot", "target=5"]);
    assert!(
        out.status.success(),
        "juju run exits 0 when nothing was scheduled"
    );
    assert_eq!(
        text(&out.stderr),
        "Operation 1 failed to schedule any tasks:\nvalidation failed: (root).target : must be of type string, given 5\n"
    );
    let out = a.cmd(&["run", "snapshot", "targte=/tmp"]);
    assert!(text(&out.stderr).ends_with("validation failed: (root) : additional property \"targte\" is not allowed, given {\"targte\":\"/tmp\"}\n"));
    let out = a.cmd(&["run", "restore", "sha256=abc"]);
    assert!(
        text(&out.stderr).contains("(root).sha256 : does not match pattern"),
        "{}",
        text(&out.stderr)
    );
    let out = a.cmd(&["run", "no-such-action"]);
    assert!(
        text(&out.stderr)
            .contains("action \"no-such-action\" not defined on unit \"charm-backup/0\"")
    );
    let out = a.cmd(&["run", "snapshot", "Target=/x"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("must start and end with lowercase alphanumeric"));
}

#[test]
fn a_failed_action_exits_zero_and_keeps_its_message() {
    let a = Agent::new();
    let out = a.cmd(&["run", "restore"]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "action-fail with exit 0 does not fail juju run"
    );
    assert!(stdout.starts_with("Action id 2 failed: no snapshot resource is attached: attach one with `juju attach-resource charm-backup snapshot=./file`"), "{stdout}");
    let show = a.cmd(&["show-task", "2", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["status"], "failed");
    assert_eq!(v["results"]["return-code"], 0, "the process exited 0");
    assert!(
        v["results"]["stderr"]
            .as_str()
            .unwrap()
            .contains("action failed:"),
        "the chain is on stderr too"
    );
}

#[test]
fn hooks_set_status_from_config_and_relation_data() {
    let a = Agent::new();
    let out = a.cmd(&["hook", "config-changed"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("charm-backup/0: active  backing up "),
        "{}",
        text(&out.stdout)
    );
    let out = a.cmd(&["hook", "config-changed", "--config", "paths="]);
    assert!(
        text(&out.stdout).contains("blocked  set paths"),
        "{}",
        text(&out.stdout)
    );
    let out = a.cmd(&[
        "hook",
        "s3-parameters-relation-changed",
        "--relation",
        "s3-parameters:bucket=b",
    ]);
    assert!(
        text(&out.stdout)
            .contains("blocked  s3-parameters from s3-integrator lacks access-key, secret-key"),
        "{}",
        text(&out.stdout)
    );
    let out = a.cmd(&["hook", "config-changed", "--config", "compression=xz"]);
    assert!(
        text(&out.stdout).contains("blocked  compression: unknown compression \"xz\""),
        "{}",
        text(&out.stdout)
    );
    let out = a.cmd(&[
        "hook",
        "config-changed",
        "--config",
        "compression=gzip",
        "--config",
        "compression-threads=-1",
    ]);
    assert!(
        text(&out.stdout).contains(
            "blocked  compression-threads is -1: set it to 0 (one per core) or a number of threads"
        ),
        "{}",
        text(&out.stdout)
    );
    let status = a.cmd(&["status"]);
    assert!(
        text(&status.stdout).contains("blocked"),
        "status persists between runs"
    );
}

/// A charm whose dispatch is a shell script, to see exactly what the agent gives it.
fn script_charm(dir: &Path, body: &str) -> PathBuf {
    let charm = dir.join("script-charm");
    fs::create_dir_all(&charm).unwrap();
    fs::write(charm.join("metadata.yaml"), "name: probe\n").unwrap();
    fs::write(charm.join("config.yaml"), "options: {}\n").unwrap();
    fs::write(
        charm.join("actions.yaml"),
        "probe:\n  params:\n    n: {type: integer}\n  required: [n]\n  additionalProperties: false\n",
    )
    .unwrap();
    let d = charm.join("dispatch");
    fs::write(&d, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    charm
}

#[test]
fn the_action_gets_jujus_environment_and_tools() {
    let a = Agent::new();
    let charm = script_charm(
        a.path(),
        r#"action-set home="${HOME:-unset}" hook="[$JUJU_HOOK_NAME]" dispatch="$JUJU_DISPATCH_PATH" cwd="$(pwd)" charm="$JUJU_CHARM_DIR" n="$(action-get n)" id="$JUJU_ACTION_UUID"
action-log working
echo out"#,
    );
    let c = charm.display().to_string();
    let out = a.cmd(&["run", "--charm", &c, "probe"]);
    assert!(
        text(&out.stderr).contains(
            "validation failed: (root) : \"n\" property is missing and required, given {}"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = a.cmd(&["run", "--charm", &c, "probe", "n=7", "--format", "yaml"]);
    let y = text(&out.stdout);
    assert!(y.contains("home: unset"), "{y}");
    assert!(
        y.contains("hook: '[]'") || y.contains("hook: \"[]\""),
        "{y}"
    );
    assert!(y.contains("dispatch: actions/probe"), "{y}");
    assert!(
        y.contains(&format!("cwd: {c}")) && y.contains(&format!("charm: {c}")),
        "{y}"
    );
    assert!(y.contains("n: '7'") || y.contains("n: \"7\""), "{y}");
    assert!(
        y.contains("stdout: |") || y.contains("stdout: out"),
        "captured stdout: {y}"
    );
    assert!(y.contains("working"), "{y}");
}

#[test]
fn a_non_zero_exit_replaces_the_message() {
    let a = Agent::new();
    let charm = script_charm(a.path(), "action-fail 'lost message'\nexit 3");
    let out = a.cmd(&[
        "run",
        "--charm",
        &charm.display().to_string(),
        "probe",
        "n=1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with("Action id 2 failed: exit status 3\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("the following task failed:\n - id \"2\" with return code 3")
    );
}

#[test]
fn runs_at_the_same_time_in_one_agent_directory_each_keep_their_results() {
    let a = Agent::new();
    let data = a.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), "x").unwrap();
    let config = format!("paths={}", data.display());
    // The first run creates the unit's directories.
    assert!(
        a.cmd(&["hook", "install", "--config", &config])
            .status
            .success()
    );
    let runs: Vec<std::process::Child> = (0..4)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_charm-backup"))
                .args([
                    "run",
                    "list-backups",
                    "--format",
                    "json",
                    "--config",
                    &config,
                ])
                .arg("--agent-dir")
                .arg(a.path().join("agent"))
                .env("RUN", i.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let start = std::time::Instant::now();
    let mut ids = Vec::new();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let unit = &v["charm-backup/0"];
        assert_eq!(unit["status"], "completed", "{v}");
        assert!(unit["results"]["backups"].is_string(), "{v}");
        ids.push(unit["id"].as_str().unwrap().to_string());
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(60),
        "no run hung"
    );
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "each run has a task of its own: {ids:?}");
    for id in &ids {
        let shown = a.cmd(&["show-task", id, "--format", "json"]);
        assert!(shown.status.success(), "{}", text(&shown.stderr));
    }
}
