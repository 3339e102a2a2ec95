//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

pub mod pg;
pub mod proxy;
pub mod weed;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

/// Every file, link and directory under `root` with its mode and content or target, sorted,
/// for byte-for-byte comparisons of trees.
pub fn listing(root: &Path) -> Vec<(PathBuf, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&d) else {
            continue;
        };
        let rel = d.strip_prefix(root).unwrap().to_path_buf();
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            out.push((
                rel,
                format!("link {}", fs::read_link(&d).unwrap().display()),
            ));
        } else if !m.is_dir() && !m.is_file() {
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            let t = m.file_type();
            let kind = if t.is_fifo() {
                "fifo".to_string()
            } else if t.is_socket() {
                "socket".to_string()
            } else {
                format!("device {:x}", m.rdev())
            };
            out.push((rel, format!("{kind} {mode:o}")));
        } else if m.is_dir() {
            out.push((rel, format!("dir {mode:o}")));
            for e in fs::read_dir(&d).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else {
            let content = fs::read(&d).unwrap();
            let shown = if content.len() <= 64 {
                format!("{content:?}")
            } else {
                use sha2::Digest as _;
                format!(
                    "{} bytes, sha256 {}",
                    content.len(),
                    charm_backup::archive::hex(&sha2::Sha256::digest(&content))
                )
            };
            out.push((rel, format!("file {mode:o} {shown}")));
        }
    }
    out.sort();
    out
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `len` random bytes (incompressible test data).
pub fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut v))
        .unwrap();
    v
}

/// The store's backups, oldest first, as `list-backups format=json` gives them.
pub fn listed(h: &charm_backup::testing::Harness) -> Vec<serde_json::Value> {
    let out = h
        .run_action(
            &charm_backup::charm::charm(),
            charm_backup::testing::action("list-backups").param("format", "json"),
        )
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(out.results["backups"].as_str().unwrap()).unwrap();
    v["backups"].as_array().unwrap().clone()
}

/// Kills process group `pgid` (a child spawned with `process_group(0)`: the local agent and
/// the charm's process together, as `juju cancel-task` kills an action) and waits until every
/// process of it is gone (the charm's process is not the caller's child, and holds the unit's
/// lock while it lives).
pub fn kill_group(child: &mut std::process::Child) {
    use std::process::{Command, Stdio};
    let pgid = child.id().to_string();
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .status();
    let _ = child.wait();
    while Command::new("pgrep")
        .args(["-g", &pgid])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Runs `create-backup` and returns the new backup's id.
pub fn create_backup(h: &charm_backup::testing::Harness) -> String {
    h.run_action(
        &charm_backup::charm::charm(),
        charm_backup::testing::action("create-backup"),
    )
    .unwrap()
    .results["backup-id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs `restore backup-id=<id> skip-backup=true`.
pub fn restore_id(
    h: &charm_backup::testing::Harness,
    id: &str,
) -> Result<charm_backup::testing::ActionOutput, charm_backup::testing::ActionFailed> {
    h.run_action(
        &charm_backup::charm::charm(),
        charm_backup::testing::action("restore")
            .param("backup-id", id)
            .param("skip-backup", true),
    )
}

/// Asserts that one of `logs` contains `needle`.
pub fn assert_logged(logs: &[String], needle: &str) {
    assert!(
        logs.iter().any(|l| l.contains(needle)),
        "no log line has {needle:?}: {logs:?}"
    );
}

/// Runs `verify-backup` (of `id`, or the newest) and returns its failure message.
pub fn verify_fails(h: &charm_backup::testing::Harness, id: Option<&str>) -> String {
    let mut call = charm_backup::testing::action("verify-backup");
    if let Some(id) = id {
        call = call.param("backup-id", id);
    }
    h.run_action(&charm_backup::charm::charm(), call)
        .unwrap_err()
        .message
}

/// Asserts that backup `id`, recorded as failed with "disk full", is shown as failed and
/// refused by restore as not finished.
pub fn assert_shown_failed_not_restorable(h: &charm_backup::testing::Harness, id: &str) {
    let charm = charm_backup::charm::charm();
    let out = h
        .run_action(
            &charm,
            charm_backup::testing::action("show-backup").param("backup-id", id),
        )
        .unwrap();
    assert_eq!(out.results["backup"]["status"], "failed: disk full");
    let err = h
        .run_action(
            &charm,
            charm_backup::testing::action("restore").param("backup-id", id),
        )
        .unwrap_err();
    assert!(err.message.contains("not finished"), "{}", err.message);
}

/// An age key pair made by `age-keygen` into `dir/name`: (identity file text, public key).
pub fn keygen(dir: &Path, name: &str) -> (String, String) {
    let file = dir.join(name);
    let out = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&file).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_string();
    (text, public)
}
