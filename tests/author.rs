//! The library as a charm author uses it: an action of their own over `snapshot`, with its own
//! option name in errors, progress to `action-log`, two snapshots in one second, and the
//! harness's checks of what it is asked to run.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

use std::path::PathBuf;

use charm_backup::commands::snapshot::{SnapshotOptions, snapshot};
use charm_backup::juju::{Action, BoxError, Context};
use charm_backup::testing::{Harness, action};
use serde::{Deserialize, Serialize};

/// An author's `backup-myapp`: snapshots the `data-dir` option into `target`.
struct BackupMyApp;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Params {
    target: String,
}

#[derive(Serialize)]
struct Results {
    path: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Config {
    data_dir: String,
}

impl Action for BackupMyApp {
    const NAME: &'static str = "backup-myapp";
    type Params = Params;
    type Results = Results;
    fn run(&self, ctx: &mut Context, p: Params) -> Result<Results, BoxError> {
        let config: Config = ctx.config()?;
        let options = SnapshotOptions::new(vec![config.data_dir.clone().into()]);
        let stats = snapshot(p.target.as_ref(), "myapp.tar.gz", &options, &ctx.progress())
            .map_err(|e| format!("{e}; set data-dir: juju config myapp data-dir=/srv/myapp"))?;
        Ok(Results {
            path: stats.path.display().to_string(),
        })
    }
}

const ACTIONS: &str = "
backup-myapp:
  params:
    target: {type: string}
  required: [target]
  additionalProperties: false
other:
  params: {}
";

const CONFIG: &str = "
options:
  data-dir: {type: string, default: /srv/myapp}
";

fn harness(data_dir: &str) -> Harness {
    Harness::new(ACTIONS, CONFIG)
        .unwrap()
        .config("data-dir", data_dir)
}

#[test]
fn two_snapshots_in_the_same_second_both_land() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a"), "alpha").unwrap();
    let h = harness(&data.display().to_string());
    let target = tmp.path().join("out").display().to_string();
    let run = || {
        h.run(
            action("backup-myapp").param("target", target.as_str()),
            &BackupMyApp,
        )
        .unwrap()
        .results["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (first, second) = (run(), run());
    assert_eq!(PathBuf::from(&first).file_name().unwrap(), "myapp.tar.gz");
    assert_eq!(
        PathBuf::from(&second).file_name().unwrap(),
        "myapp-1.tar.gz"
    );
    assert!(PathBuf::from(&first).is_file() && PathBuf::from(&second).is_file());

    // This charm's own snapshot, twice in a row (names of one-second resolution).
    let h = Harness::from_charm_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.path().join("unit/charm"))
        .config("paths", data.display().to_string());
    let snap = || {
        h.run_action(
            &charm_backup::charm::charm(),
            action("snapshot").param("target", target.as_str()),
        )
        .unwrap()
        .results["snapshot"]["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let paths: std::collections::BTreeSet<String> = (0..3).map(|_| snap()).collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
}

#[test]
fn errors_name_the_path_and_the_charm_adds_its_own_option() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let h = harness(&missing.display().to_string());
    let failed = h
        .run(
            action("backup-myapp").param("target", tmp.path().display().to_string()),
            &BackupMyApp,
        )
        .unwrap_err();
    assert!(
        failed.message.contains(&format!(
            "{:?} does not exist",
            missing.display().to_string()
        )),
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("set data-dir"),
        "{}",
        failed.message
    );
    assert!(
        !failed.message.contains("paths option"),
        "{}",
        failed.message
    );
    assert!(
        !failed.message.contains("charm-backup"),
        "{}",
        failed.message
    );
    // ActionFailed is an error like any other.
    let boxed: Box<dyn std::error::Error> = Box::new(failed.clone());
    assert_eq!(
        boxed.to_string(),
        format!("action failed: {}", failed.message)
    );

    // This charm names its own option.
    let h = Harness::from_charm_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.path().join("unit/charm"))
        .config("paths", missing.display().to_string());
    let failed = h
        .run_action(
            &charm_backup::charm::charm(),
            action("snapshot").param("target", tmp.path().join("o").display().to_string()),
        )
        .unwrap_err();
    assert!(
        failed
            .message
            .contains("does not exist: set the paths option"),
        "{}",
        failed.message
    );
}

#[test]
fn progress_reaches_action_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a"), "alpha").unwrap();
    let out = harness(&data.display().to_string())
        .run(
            action("backup-myapp").param("target", tmp.path().join("o").display().to_string()),
            &BackupMyApp,
        )
        .unwrap();
    assert!(
        out.logs
            .iter()
            .any(|l| l == &format!("archiving {}", data.display())),
        "{:?}",
        out.logs
    );
}

#[test]
fn an_action_run_through_another_handler_is_an_error() {
    let failed = harness("/srv/myapp")
        .run(action("other"), &BackupMyApp)
        .unwrap_err();
    assert!(!failed.scheduled);
    assert!(
        failed
            .message
            .contains("\"other\" was run through the handler of \"backup-myapp\""),
        "{}",
        failed.message
    );
    assert!(failed.to_string().starts_with("action not scheduled: "));
}
