//! Scheduled backups and backup health: the systemd timer and service the hooks write (checked
//! by systemd's own `systemd-analyze`), the service's command run as written with no Juju at
//! hand (local store and SeaweedFS), a held lock, a failing schedule and a stale backup in the
//! status, Prometheus metrics, and removal on `stop`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use charm_backup::charm::charm_on;
use charm_backup::schedule::Systemd;
use charm_backup::testing::{Harness, action};
use common::weed::{KEY, SECRET, Weed};

const UNIT: &str = "charm-backup/0";
const NAME: &str = "juju-backup-charm-backup-0";

/// A unit laid out as on a machine: its charm directory holds the built `dispatch`, systemd's
/// unit files go to a directory of the test's own, and `systemctl` is a script that records
/// what it is asked (systemd does not run here).
struct Unit {
    tmp: tempfile::TempDir,
    systemd: Systemd,
}

impl Unit {
    fn new() -> Unit {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let charm = t.join("unit/charm");
        fs::create_dir_all(&charm).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dispatch"), charm.join("dispatch")).unwrap();
        let bin = t.join("bin");
        fs::create_dir_all(&bin).unwrap();
        let systemctl = bin.join("systemctl");
        fs::write(
            &systemctl,
            "#!/bin/sh\nd=$(dirname \"$0\")\necho \"$*\" >> \"$d/systemctl.log\"\n\
             case \"$1\" in\n\
             is-enabled) [ -e \"$d/enabled-$3\" ]; exit $? ;;\n\
             enable) touch \"$d/enabled-$3\" ;;\n\
             disable) rm -f \"$d/enabled-$3\" ;;\n\
             esac\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&systemctl, fs::Permissions::from_mode(0o755)).unwrap();
        let data = t.join("data");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("a.txt"), "scheduled data\n").unwrap();
        Unit {
            systemd: Systemd {
                unit_dir: t.join("systemd"),
                systemctl,
            },
            tmp,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn harness(&self) -> Harness {
        Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .unit(UNIT)
            .charm_dir(self.path("unit/charm"))
            .config("paths", self.path("data").display().to_string())
            .config("local-store", self.path("store").display().to_string())
    }

    fn charm(&self) -> charm_backup::juju::Charm {
        charm_on(self.systemd.clone())
    }

    fn hook(&self, h: &Harness, hook: &str) -> (String, String) {
        let out = h.run_hook(&self.charm(), hook);
        assert_eq!(out.error, None, "{hook}: {:?}", out.juju_logs);
        out.status
    }

    fn unit_file(&self, suffix: &str) -> PathBuf {
        self.systemd.unit_dir.join(format!("{NAME}.{suffix}"))
    }

    fn systemctl_log(&self) -> String {
        fs::read_to_string(self.path("bin/systemctl.log")).unwrap_or_default()
    }

    fn state(&self) -> PathBuf {
        self.path("unit/charm-backup-state")
    }

    /// The service's `ExecStart=`, split as systemd splits it.
    fn exec_start(&self) -> Vec<String> {
        let text = fs::read_to_string(self.unit_file("service")).unwrap();
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("the service has ExecStart=");
        split_words(line)
    }

    /// Runs the service's command as written, with `extra` arguments after the subcommand,
    /// with no Juju at hand: a clean environment holding only `PATH`.
    fn run_service(&self, extra: &[&str]) -> Output {
        let argv = self.exec_start();
        Command::new(&argv[0])
            .arg(&argv[1])
            .args(extra)
            .args(&argv[2..])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .current_dir("/")
            .output()
            .unwrap()
    }

    fn history(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.state().join("backup-history.json")).unwrap())
            .unwrap()
    }
}

/// `ExecStart=` words: separated by spaces, double quotes group, `\` escapes, `%%` is `%`.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line
        .replace("%%", "%")
        .chars()
        .collect::<Vec<_>>()
        .into_iter();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' => cur.extend(chars.next()),
            ' ' if !quoted => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The UTC times `systemd-analyze calendar` gives for `expr`'s next elapse.
fn next_elapse(expr: &str) -> String {
    let out = Command::new("systemd-analyze")
        .args(["calendar", expr])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Next elapse: "))
        .unwrap();
    // `Sat 2026-12-05 23:00:00 UTC` -> `2026-12-05 23:00 UTC`
    let p: Vec<&str> = line.split_whitespace().collect();
    format!("{} {} UTC", p[1], &p[2][..5])
}

#[test]
fn timer_and_service_for_several_expressions_pass_systemd_analyze() {
    let u = Unit::new();
    for (expr, jitter) in [
        ("daily", 0),
        ("*-*-* 02:30:00", 900),
        ("Mon..Fri 23:00", 0),
        ("Sun *-*-01..07 04:00", 60),
    ] {
        let h = u
            .harness()
            .config("backup-schedule", expr)
            .config("backup-schedule-jitter", jitter);
        let (status, msg) = u.hook(&h, "config-changed");
        assert_eq!(status, "active", "{msg}");
        let next = next_elapse(expr);
        assert!(msg.contains("no backup yet"), "{msg}");
        assert!(msg.contains(&format!("next {next}")), "{expr}: {msg}");

        let timer = fs::read_to_string(u.unit_file("timer")).unwrap();
        assert!(timer.contains(&format!("\nOnCalendar={expr}\n")), "{timer}");
        assert!(
            timer.contains(&format!("\nUnit={NAME}.service\n")),
            "{timer}"
        );
        assert_eq!(
            timer.contains(&format!("\nRandomizedDelaySec={jitter}\n")),
            jitter > 0,
            "{timer}"
        );
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(u.unit_file("service"))
            .arg(u.unit_file("timer"))
            .output()
            .unwrap();
        assert_ok(&verify);
        let stderr = String::from_utf8_lossy(&verify.stderr);
        assert!(!stderr.contains(NAME), "systemd-analyze verify: {stderr}");
        // The timer's own expression, as systemd reads it from the file, elapses when the
        // status says.
        assert_eq!(next_elapse(expr), next);
    }
    let log = u.systemctl_log();
    assert!(log.contains("daemon-reload\n"), "{log}");
    assert!(
        log.contains(&format!("enable --now {NAME}.timer\n")),
        "{log}"
    );
    // An unchanged schedule is left alone: one more hook writes and reloads nothing.
    let before = log.matches("daemon-reload").count();
    let h = u
        .harness()
        .config("backup-schedule", "Sun *-*-01..07 04:00");
    let h = h.config("backup-schedule-jitter", 60);
    u.hook(&h, "update-status");
    assert_eq!(u.systemctl_log().matches("daemon-reload").count(), before);
}

#[test]
fn an_invalid_expression_blocks_the_unit_and_writes_nothing() {
    let u = Unit::new();
    for expr in ["every night", "25:00", "*-*-* 02:30:00\nExecStart=/bin/sh"] {
        let h = u.harness().config("backup-schedule", expr);
        let (status, msg) = u.hook(&h, "config-changed");
        assert_eq!(status, "blocked", "{expr}: {msg}");
        assert!(msg.starts_with("backup-schedule: "), "{msg}");
        assert!(!u.unit_file("timer").exists());
        assert!(!u.unit_file("service").exists());
    }
    let h = u.harness().config("backup-schedule-jitter", -5);
    assert_eq!(u.hook(&h, "config-changed").0, "blocked");
    let h = u.harness().config("backup-max-age", "a while");
    let (status, msg) = u.hook(&h, "config-changed");
    assert_eq!(status, "blocked");
    assert!(msg.contains("backup-max-age"), "{msg}");
}

/// Runs the service's command and checks the backup it made: listed with origin `scheduled`,
/// recorded in the unit's history, and verified whole.
fn scheduled_backup_restores(u: &Unit, h: &Harness) {
    let (status, msg) = u.hook(h, "config-changed");
    assert_eq!(status, "active", "{msg}");
    let settings = u.state().join("scheduled-backup.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&settings).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = u.run_service(&[]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("finished"), "{stdout}");

    let rows = common::listed(h);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["origin"], "scheduled");
    assert!(rows[0]["status"].as_str().unwrap().starts_with("finished"));
    let id = rows[0]["backup-id"].as_str().unwrap().to_string();
    let history = u.history();
    assert_eq!(history["outcomes"][0]["id"], id.as_str());
    assert_eq!(history["outcomes"][0]["result"], "success");
    assert_eq!(history["outcomes"][0]["origin"], "scheduled");

    h.run_action(
        &u.charm(),
        action("verify-backup").param("backup-id", id.as_str()),
    )
    .unwrap();
    fs::write(u.path("data/a.txt"), "changed\n").unwrap();
    common::restore_id(h, &id).unwrap();
    assert_eq!(
        fs::read_to_string(u.path("data/a.txt")).unwrap(),
        "scheduled data\n"
    );
    let (status, msg) = u.hook(h, "update-status");
    assert_eq!(status, "active");
    assert!(msg.contains("last backup "), "{msg}");
}

#[test]
fn the_service_command_backs_up_into_the_local_store_with_no_juju() {
    let u = Unit::new();
    let h = u.harness().config("backup-schedule", "daily");
    scheduled_backup_restores(&u, &h);
}

#[test]
fn the_service_command_backs_up_into_seaweedfs_with_no_juju() {
    let weed = Weed::start();
    let u = Unit::new();
    let h = u.harness().config("backup-schedule", "daily").relation(
        "s3-parameters",
        "s3-integrator",
        [
            ("bucket", "backups"),
            ("endpoint", weed.endpoint.as_str()),
            ("path", "/scheduled"),
            ("access-key", KEY),
            ("secret-key", SECRET),
            ("s3-uri-style", "path"),
        ],
    );
    scheduled_backup_restores(&u, &h);
    // The credentials are in the settings file only (root's, 0600), never the unit files.
    for f in ["service", "timer"] {
        assert!(!fs::read_to_string(u.unit_file(f)).unwrap().contains(SECRET));
    }
}

#[test]
fn a_scheduled_run_that_meets_a_held_lock_waits_then_skips() {
    let u = Unit::new();
    let h = u.harness().config("backup-schedule", "daily");
    u.hook(&h, "config-changed");
    let lock = charm_backup::commands::lock::OperationLock::acquire(&u.state(), "restore").unwrap();

    let out = u.run_service(&["--wait", "1"]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("waiting up to 1s"), "{stdout}");
    assert!(stdout.contains("skipped: restore"), "{stdout}");
    assert_eq!(u.history()["outcomes"][0]["result"], "skipped");
    assert!(common::listed(&h).is_empty());

    // Released while it waits: the run goes ahead.
    let argv = u.exec_start();
    let child = Command::new(&argv[0])
        .args([&argv[1], "--wait", "60", &argv[2]])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    drop(lock);
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("finished"));
    assert_eq!(common::listed(&h).len(), 1);
}

#[test]
fn a_failing_scheduled_run_blocks_the_unit_until_create_backup_succeeds() {
    let u = Unit::new();
    let h = u.harness().config("backup-schedule", "daily");
    u.hook(&h, "config-changed");
    // The store's directory is a file: the scheduled run cannot write there.
    fs::remove_dir_all(u.path("store")).unwrap();
    fs::write(u.path("store"), "not a directory").unwrap();
    let out = u.run_service(&[]);
    assert!(!out.status.success(), "a failed backup exits non-zero");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("scheduled backup failed"), "{stderr}");

    let (status, msg) = u.hook(&h, "update-status");
    assert_eq!(status, "blocked", "{msg}");
    assert!(msg.contains("the scheduled backup at "), "{msg}");
    assert!(msg.contains("failed: "), "{msg}");
    assert!(msg.contains("run create-backup"), "{msg}");

    fs::remove_file(u.path("store")).unwrap();
    let out = h.run_action(&u.charm(), action("create-backup")).unwrap();
    // The action sets the status itself; the next hook agrees.
    assert_eq!(out.status.0, "active", "{:?}", out.status);
    let (status, msg) = u.hook(&h, "update-status");
    assert_eq!(status, "active", "{msg}");
    assert!(msg.contains("last backup "), "{msg}");
}

/// Moves every recorded outcome `days` days into the past.
fn age_history(u: &Unit, days: i64) {
    let path = u.state().join("backup-history.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    for o in v["outcomes"].as_array_mut().unwrap() {
        for k in ["started", "finished"] {
            let t: jiff::Timestamp = o[k].as_str().unwrap().parse().unwrap();
            let t = t - jiff::SignedDuration::from_hours(24 * days);
            o[k] = t.to_string().into();
        }
    }
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn backup_max_age_is_read_from_the_backup_times() {
    let u = Unit::new();
    let h = u.harness();
    h.run_action(&u.charm(), action("create-backup")).unwrap();
    age_history(&u, 3);

    // No schedule and no max age: no limit.
    let (status, msg) = u.hook(&h, "update-status");
    assert_eq!(status, "active", "{msg}");
    assert!(msg.contains("(3d ago)"), "{msg}");
    // Given: three days is over two.
    let (status, msg) = u.hook(&h.clone().config("backup-max-age", "2d"), "update-status");
    assert_eq!(status, "blocked", "{msg}");
    assert!(msg.contains("is 3d old, over backup-max-age (2d)"), "{msg}");
    assert_eq!(
        u.hook(&h.clone().config("backup-max-age", "4d"), "update-status")
            .0,
        "active"
    );
    // The default: twice a daily schedule's interval.
    let daily = h.clone().config("backup-schedule", "daily");
    let (status, msg) = u.hook(&daily, "update-status");
    assert_eq!(status, "blocked", "{msg}");
    assert!(msg.contains("over backup-max-age (2d)"), "{msg}");
    let off = daily.clone().config("backup-max-age", "off");
    assert_eq!(u.hook(&off, "update-status").0, "active");
    // A backup by hand clears it.
    let out = daily
        .run_action(&u.charm(), action("create-backup"))
        .unwrap();
    assert_eq!(out.status.0, "active", "{:?}", out.status);
}

/// The samples of a Prometheus text file, parsed by the reference parser
/// (`prometheus_client`, installed by .ci/run into .venv-s3): `name{labels} value` per line.
fn parse_prometheus(path: &Path) -> Vec<(String, serde_json::Value, f64)> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-s3/bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import json,sys\nfrom prometheus_client.parser import text_string_to_metric_families as f\n\
             print(json.dumps([[s.name, s.labels, s.value] for m in f(open(sys.argv[1]).read()) \
             for s in m.samples]))",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run `bash .ci/run`", python.display()));
    assert_ok(&out);
    let v: Vec<(String, serde_json::Value, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    v
}

#[test]
fn every_backup_writes_metrics_a_prometheus_parser_reads() {
    let u = Unit::new();
    fs::create_dir_all(u.path("metrics")).unwrap();
    let h = u.harness().config("backup-schedule", "daily").config(
        "metrics-textfile-dir",
        u.path("metrics").display().to_string(),
    );
    u.hook(&h, "config-changed");
    let out = h.run_action(&u.charm(), action("create-backup")).unwrap();
    let id = out.results["backup-id"].as_str().unwrap().to_string();
    fs::rename(u.path("store"), u.path("store-moved")).unwrap();
    fs::write(u.path("store"), "not a directory").unwrap();
    assert!(!u.run_service(&[]).status.success());

    let file = u.path("metrics/charm_backup_charm_backup_0.prom");
    let samples = parse_prometheus(&file);
    let value = |name: &str| {
        let s = samples
            .iter()
            .find(|s| s.0 == name)
            .unwrap_or_else(|| panic!("no {name} in {samples:?}"));
        assert_eq!(s.1["unit"], UNIT);
        assert_eq!(s.1["application"], "charm-backup");
        s.2
    };
    assert_eq!(value("charm_backup_failures_total"), 1.0);
    assert_eq!(value("charm_backup_attempts_total"), 2.0);
    assert_eq!(value("charm_backup_last_attempt_success"), 0.0);
    let now = jiff::Timestamp::now().as_second() as f64;
    let last_ok = value("charm_backup_last_success_timestamp_seconds");
    assert!(now - last_ok < 300.0 && last_ok <= now, "{last_ok}");
    assert!(value("charm_backup_last_attempt_timestamp_seconds") >= last_ok);
    let size = fs::read_dir(u.path("store-moved/backup").join(&id))
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_name().to_string_lossy().ends_with(".tar.gz"))
        .unwrap()
        .metadata()
        .unwrap()
        .len();
    assert_eq!(value("charm_backup_last_size_bytes"), size as f64);
    // Written atomically: nothing but the file itself in the directory.
    let names: Vec<_> = fs::read_dir(u.path("metrics")).unwrap().collect();
    assert_eq!(names.len(), 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
}

#[test]
fn stop_removes_the_timer_and_an_empty_schedule_too() {
    let u = Unit::new();
    let h = u.harness().config("backup-schedule", "daily");
    u.hook(&h, "install");
    assert!(u.unit_file("timer").exists() && u.unit_file("service").exists());
    u.hook(&h, "stop");
    assert!(!u.unit_file("timer").exists());
    assert!(!u.unit_file("service").exists());
    assert!(!u.state().join("scheduled-backup.json").exists());
    let log = u.systemctl_log();
    assert!(
        log.contains(&format!("disable --now {NAME}.timer\n")),
        "{log}"
    );
    assert!(log.trim_end().ends_with("daemon-reload"), "{log}");

    u.hook(&h, "config-changed");
    assert!(u.unit_file("timer").exists());
    let (status, msg) = u.hook(&u.harness(), "config-changed");
    assert_eq!(status, "active");
    assert!(!msg.contains("next "), "{msg}");
    assert!(!u.unit_file("timer").exists());
}
