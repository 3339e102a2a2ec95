//! What the store says is what it holds: a create-backup killed at any point leaves nothing
//! the next hook does not clean up (and say so); a backup whose archive is gone or short is
//! listed as damaged, not finished.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "agent")]

mod common;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn agent(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_charm-backup"));
    c.args(args).arg("--agent-dir").arg(dir.join("agent"));
    c
}

/// Every file under the store, relative.
fn store_files(store: &Path) -> Vec<String> {
    common::listing(store)
        .into_iter()
        .filter(|(_, what)| what.starts_with("file"))
        .map(|(p, _)| p.display().to_string())
        .collect()
}

fn list(dir: &Path, config: &[String]) -> Vec<serde_json::Value> {
    let mut args = vec!["run", "list-backups", "format=json", "--format", "json"];
    for c in config {
        args.extend(["--config", c.as_str()]);
    }
    let out = agent(dir, &args).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let listed: serde_json::Value =
        serde_json::from_str(v["charm-backup/0"]["results"]["backups"].as_str().unwrap()).unwrap();
    listed["backups"].as_array().unwrap().clone()
}

#[test]
fn a_create_backup_killed_at_any_point_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    // Incompressible data, so the archive takes a moment to write.
    for i in 0..8 {
        fs::write(data.join(format!("f{i}")), common::random(4 << 20)).unwrap();
    }
    let store = tmp.path().join("store");
    let config = vec![
        format!("paths={}", data.display()),
        format!("local-store={}", store.display()),
    ];
    let with_config = |args: &[&str]| {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        for c in &config {
            a.push("--config".into());
            a.push(c.clone());
        }
        a
    };
    let mut said = 0;
    for delay_ms in [30u64, 150, 400, 800] {
        let args = with_config(&["run", "create-backup"]);
        let mut cmd = agent(
            tmp.path(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        common::kill_group(&mut child);
        let hook = with_config(&["hook", "update-status"]);
        let out = agent(
            tmp.path(),
            &hook.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        said += usize::from(
            String::from_utf8_lossy(&[out.stdout.as_slice(), &out.stderr].concat())
                .contains("aborted the unfinished upload of"),
        );
        let files = store_files(&store);
        assert!(
            files.iter().all(|f| !f.ends_with(".partial")),
            "after a kill at {delay_ms} ms and a hook: {files:?}; the hook said {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for b in list(tmp.path(), &config) {
            let status = b["status"].as_str().unwrap();
            assert!(
                status == "finished" || status.starts_with("failed: interrupted"),
                "after a kill at {delay_ms} ms: {b}"
            );
        }
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert!(
        said > 0,
        "some kill landed while the archive was written, and the hook said so"
    );
    // A backup after all that still works.
    let args = with_config(&["run", "create-backup"]);
    let out = agent(
        tmp.path(),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    assert!(list(tmp.path(), &config).last().unwrap()["status"] == "finished");
}

#[test]
fn a_missing_or_short_archive_is_listed_as_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("f"), common::random(1 << 20)).unwrap();
    let store = tmp.path().join("store");
    let config = vec![
        format!("paths={}", data.display()),
        format!("local-store={}", store.display()),
    ];
    let mut args = vec!["run", "create-backup"];
    for c in &config {
        args.extend(["--config", c.as_str()]);
    }
    for _ in 0..3 {
        assert!(agent(tmp.path(), &args).output().unwrap().status.success());
        std::thread::sleep(Duration::from_millis(1100));
    }
    let archives: Vec<PathBuf> = store_files(&store)
        .into_iter()
        .filter(|f| f.ends_with(".tar.gz"))
        .map(|f| store.join(f))
        .collect();
    assert_eq!(archives.len(), 3);
    fs::remove_file(&archives[0]).unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(&archives[1])
        .unwrap();
    f.set_len(1000).unwrap();
    let rows = list(tmp.path(), &config);
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses[0], "damaged: its archive is missing");
    assert!(
        statuses[1].starts_with("damaged: its archive is 1000 bytes, its metadata says "),
        "{statuses:?}"
    );
    assert_eq!(statuses[2], "finished");
}
