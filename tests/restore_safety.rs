//! Restore refuses bad and hostile input, and whatever happens the unit's data is either
//! exactly as it was or exactly the restored tree.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(feature = "agent")]

mod common;
use common::listing;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use charm_backup::archive::{FORMAT_VERSION, MANIFEST_NAME, Manifest, SourceInfo};
use charm_backup::charm::charm;
use charm_backup::commands::lock::OperationLock;
use charm_backup::testing::{Harness, action};

struct Unit {
    tmp: tempfile::TempDir,
}

impl Unit {
    fn new() -> Self {
        let u = Unit {
            tmp: tempfile::tempdir().unwrap(),
        };
        let d = u.data();
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("a.txt"), "precious\n").unwrap();
        fs::write(d.join("sub/b.txt"), "also precious\n").unwrap();
        u
    }
    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }
    fn harness(&self) -> Harness {
        Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .charm_dir(self.tmp.path().join("unit/charm"))
            .config("paths", self.data().display().to_string())
            .config(
                "local-store",
                self.tmp.path().join("store").display().to_string(),
            )
    }
    /// Restores `archive` through the charm and returns the failure message; the data must be
    /// byte-for-byte what it was.
    fn restore_fails(&self, archive: &Path) -> String {
        self.restore_fails_with_sum(archive, None)
    }
    /// [`Unit::restore_fails`], with the `sha256` parameter when given.
    fn restore_fails_with_sum(&self, archive: &Path, sha256: Option<&str>) -> String {
        let before = listing(&self.data());
        let mut params = action("restore")
            .param("path", archive.display().to_string())
            .param("target", self.tmp.path().join("pre").display().to_string());
        if let Some(sum) = sha256 {
            params = params.param("sha256", sum);
        }
        let err = self
            .harness()
            .run_action(&charm(), params)
            .expect_err("restore must fail");
        assert!(err.scheduled);
        assert_eq!(
            listing(&self.data()),
            before,
            "data changed after: {}",
            err.message
        );
        let leftovers: Vec<_> = fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("charm-backup-") && !n.contains("charm-backup-trash-"))
            .collect();
        assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
        err.message
    }
    /// A gzip tar archive with a valid manifest for the data path, then `entries`.
    fn archive(
        &self,
        name: &str,
        entries: impl FnOnce(&mut tar::Builder<flate2::write::GzEncoder<fs::File>>, &str),
    ) -> PathBuf {
        let path = self.tmp.path().join(name);
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        let m = Manifest {
            format_version: FORMAT_VERSION,
            sources: vec![SourceInfo {
                kind: "paths".into(),
                paths: vec![self.data().display().to_string()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let json = serde_json::to_vec(&m).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(json.len() as u64);
        h.set_mode(0o600);
        b.append_data(&mut h, MANIFEST_NAME, json.as_slice())
            .unwrap();
        let root = self.data().display().to_string();
        entries(&mut b, root.trim_start_matches('/'));
        b.into_inner().unwrap().finish().unwrap();
        path
    }
}

/// A header whose name is written raw, as a hostile archive would have it.
fn raw(kind: tar::EntryType, name: &str, link: Option<&str>, size: u64) -> tar::Header {
    let mut h = tar::Header::new_old();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        old.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
    h
}

fn append_raw<W: Write>(b: &mut tar::Builder<W>, h: tar::Header, data: &[u8]) {
    b.append(&h, data).unwrap();
}

type Gz = tar::Builder<flate2::write::GzEncoder<fs::File>>;
type EntriesFn = dyn Fn(&mut Gz, &str);

#[test]
fn hostile_archives_are_refused_before_anything_is_written() {
    let u = Unit::new();
    let cases: Vec<(&str, Box<EntriesFn>, &str)> = vec![
        (
            "traversal",
            Box::new(|b, r| {
                append_raw(
                    b,
                    raw(tar::EntryType::Regular, &format!("{r}/../escaped"), None, 1),
                    b"x",
                )
            }),
            "contains \"..\"",
        ),
        (
            "absolute",
            Box::new(|b, _| {
                append_raw(
                    b,
                    raw(tar::EntryType::Regular, "/tmp/escaped-abs", None, 1),
                    b"x",
                )
            }),
            "has an absolute path",
        ),
        (
            "symlink",
            Box::new(|b, r| {
                append_raw(
                    b,
                    raw(
                        tar::EntryType::Symlink,
                        &format!("{r}/lnk"),
                        Some("../../../etc"),
                        0,
                    ),
                    b"",
                )
            }),
            "points outside the restored paths",
        ),
        (
            "symlink-abs",
            Box::new(|b, r| {
                append_raw(
                    b,
                    raw(
                        tar::EntryType::Symlink,
                        &format!("{r}/lnk"),
                        Some("/etc/passwd"),
                        0,
                    ),
                    b"",
                )
            }),
            "points outside the restored paths",
        ),
        (
            "beneath-link",
            Box::new(|b, r| {
                append_raw(
                    b,
                    raw(tar::EntryType::Symlink, &format!("{r}/lnk"), Some("sub"), 0),
                    b"",
                );
                append_raw(
                    b,
                    raw(tar::EntryType::Regular, &format!("{r}/lnk/x"), None, 1),
                    b"x",
                );
            }),
            "lies beneath the symlink",
        ),
        (
            "hardlink",
            Box::new(|b, r| {
                append_raw(
                    b,
                    raw(
                        tar::EntryType::Link,
                        &format!("{r}/h"),
                        Some("etc/passwd"),
                        0,
                    ),
                    b"",
                )
            }),
            "does not point to a file earlier in the archive",
        ),
        (
            "device",
            Box::new(|b, r| {
                append_raw(
                    b,
                    raw(tar::EntryType::Char, &format!("{r}/null"), None, 0),
                    b"",
                )
            }),
            "is a device file",
        ),
        (
            "outside-roots",
            Box::new(|b, _| {
                append_raw(
                    b,
                    raw(tar::EntryType::Regular, "etc/cron.d/evil", None, 1),
                    b"x",
                )
            }),
            "lies outside the paths the manifest lists",
        ),
        (
            "duplicate",
            Box::new(|b, r| {
                append_raw(
                    b,
                    raw(tar::EntryType::Regular, &format!("{r}/a.txt"), None, 1),
                    b"x",
                );
                append_raw(
                    b,
                    raw(tar::EntryType::Regular, &format!("{r}/a.txt"), None, 1),
                    b"y",
                );
            }),
            "appears twice",
        ),
    ];
    for (name, build, expected) in cases {
        let a = u.archive(&format!("{name}.tar.gz"), |b, r| build(b, r));
        let msg = u.restore_fails(&a);
        assert!(msg.contains(expected), "{name}: {msg}");
        assert!(msg.contains("refusing"), "{name}: {msg}");
    }
    assert!(!Path::new("/tmp/escaped-abs").exists());
    assert!(!u.tmp.path().join("escaped").exists());
}

#[test]
fn broken_files_and_wrong_checksums_are_refused() {
    let u = Unit::new();
    let good = u.archive("good.tar.gz", |b, r| {
        append_raw(
            b,
            raw(tar::EntryType::Regular, &format!("{r}/a.txt"), None, 8),
            b"replaced",
        );
    });
    let bytes = fs::read(&good).unwrap();
    let truncated = u.tmp.path().join("truncated.tar.gz");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let msg = u.restore_fails(&truncated);
    assert!(
        msg.contains("the archive is truncated") || msg.contains("the archive is damaged"),
        "{msg}"
    );
    let not_gzip = u.tmp.path().join("notes.txt");
    fs::write(&not_gzip, "just some text, not an archive\n").unwrap();
    assert!(
        u.restore_fails(&not_gzip)
            .contains("not a gzip or zstd archive")
    );
    let foreign = u.tmp.path().join("foreign.tar.gz");
    let st = Command::new("tar")
        .arg("czf")
        .arg(&foreign)
        .arg("-C")
        .arg(u.tmp.path())
        .arg("data")
        .status()
        .unwrap();
    assert!(st.success());
    assert!(
        u.restore_fails(&foreign)
            .contains("not a charm-backup archive")
    );
    let msg = u.restore_fails_with_sum(&good, Some(&"ab".repeat(32)));
    assert!(msg.contains("checksum mismatch"), "{msg}");
    // A damaged copy checked against the good file's sum: the mismatch, which explains the
    // damage, is what the operator is told.
    let good_sum = charm_backup::archive::sha256_of(&fs::File::open(&good).unwrap()).unwrap();
    let msg = u.restore_fails_with_sum(&truncated, Some(&good_sum));
    assert!(
        msg.contains(&format!("but {good_sum} was expected")),
        "{msg}"
    );
    let before = listing(&u.data());
    let err = u
        .harness()
        .run_action(&charm(), action("restore"))
        .unwrap_err();
    assert!(
        err.message.starts_with("no snapshot resource is attached"),
        "{}",
        err.message
    );
    assert_eq!(listing(&u.data()), before);
    // The good archive does restore.
    u.harness()
        .run_action(
            &charm(),
            action("restore")
                .param("path", good.display().to_string())
                .param("skip-backup", true),
        )
        .unwrap();
    assert_eq!(fs::read(u.data().join("a.txt")).unwrap(), b"replaced");
}

#[test]
fn a_second_restore_while_one_runs_is_refused() {
    let u = Unit::new();
    let a = u.archive("a.tar.gz", |b, r| {
        append_raw(
            b,
            raw(tar::EntryType::Regular, &format!("{r}/a.txt"), None, 1),
            b"x",
        )
    });
    let _held =
        OperationLock::acquire(&u.tmp.path().join("unit/charm-backup-state"), "restore").unwrap();
    let msg = u.restore_fails(&a);
    assert!(msg.starts_with("restore (started "), "{msg}");
    assert!(
        msg.contains("is running on this unit: wait for it to finish, then run restore again"),
        "{msg}"
    );
}

fn agent(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_charm-backup"));
    c.args(args).arg("--agent-dir").arg(dir.join("agent"));
    c
}

#[test]
fn a_full_target_filesystem_fails_cleanly() {
    let u = Unit::new();
    let mut noise = vec![0u8; 4 << 20];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut noise))
        .unwrap();
    fs::write(u.data().join("big.bin"), noise).unwrap();
    let a = u.archive("a.tar.gz", |b, r| {
        append_raw(
            b,
            raw(tar::EntryType::Regular, &format!("{r}/a.txt"), None, 1),
            b"x",
        )
    });
    let before = listing(&u.data());
    let full = u.tmp.path().join("full");
    fs::create_dir(&full).unwrap();
    let config = format!("paths={}", u.data().display());
    let agent_cmd = agent(
        u.tmp.path(),
        &[
            "run",
            "restore",
            "--config",
            &config,
            &format!("path={}", a.display()),
            &format!("target={}", full.display()),
        ],
    );
    let line = format!(
        "mount -t tmpfs -o size=1m tmpfs {} && exec {}",
        full.display(),
        std::iter::once(agent_cmd.get_program())
            .chain(agent_cmd.get_args())
            .map(|s| format!("'{}'", s.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // A private mount namespace: the small filesystem vanishes with the process.
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", &line])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("failed: cannot save the existing data first, nothing was changed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("filesystem is full"), "{stdout}");
    assert_eq!(listing(&u.data()), before);
}

#[test]
fn killing_a_restore_at_any_point_leaves_old_or_new_data_exactly() {
    let u = Unit::new();
    let data = u.data();
    // Two distinct trees, A and B, each with enough files that a restore takes a while.
    let fill = |tag: &str| {
        let _ = fs::remove_dir_all(&data);
        for d in 0..20 {
            let dir = data.join(format!("d{d:02}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..40 {
                fs::write(
                    dir.join(format!("f{f:02}")),
                    format!("{tag} {d} {f}\n").repeat(200),
                )
                .unwrap();
            }
        }
        fs::write(data.join("which"), tag).unwrap();
        listing(&data)
    };
    let config = format!("paths={}", data.display());
    let snap = |tag: &str| -> PathBuf {
        let target = u.tmp.path().join(format!("snap-{tag}"));
        let out = agent(
            u.tmp.path(),
            &[
                "run",
                "snapshot",
                "--config",
                &config,
                &format!("target={}", target.display()),
                "--format",
                "json",
            ],
        )
        .output()
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        PathBuf::from(
            v["charm-backup/0"]["results"]["snapshot"]["path"]
                .as_str()
                .unwrap(),
        )
    };
    let tree_a = fill("A");
    let arch_a = snap("a");
    let tree_b = fill("B");
    let arch_b = snap("b");
    let restore_cmd = |arch: &Path, skip: bool| {
        let mut c = agent(
            u.tmp.path(),
            &[
                "run",
                "restore",
                "--config",
                &config,
                &format!("path={}", arch.display()),
                &format!("skip-backup={skip}"),
                &format!("target={}", u.tmp.path().join("pre").display()),
            ],
        );
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    // How long a whole restore takes, to spread the kills over it.
    let t = Instant::now();
    assert!(restore_cmd(&arch_a, false).status().unwrap().success());
    let full = t.elapsed();
    assert_eq!(listing(&data), tree_a);
    let runs = 30;
    let (mut saw_old, mut saw_new) = (0, 0);
    for i in 0..runs {
        let current_is_a = listing(&data) == tree_a;
        let (arch, old, new) = if current_is_a {
            (&arch_b, &tree_a, &tree_b)
        } else {
            (&arch_a, &tree_b, &tree_a)
        };
        // Spread past the measured time: restores run slower while other tests share the cores.
        let delay = full.mul_f64(i as f64 / runs as f64 * 2.5);
        let mut cmd = restore_cmd(arch, i % 2 == 0);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(delay);
        common::kill_group(&mut child);
        eprintln!("run {i}: delay {delay:?} of {full:?}");
        // Any next action or hook finishes or undoes the interrupted restore.
        let out = agent(
            u.tmp.path(),
            &["hook", "update-status", "--config", &config],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let now = listing(&data);
        if &now == old {
            saw_old += 1;
        } else if &now == new {
            saw_new += 1;
        } else {
            panic!("after a kill at {delay:?} the data is neither the old nor the new tree");
        }
        let strays: Vec<_> = fs::read_dir(u.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("charm-backup-") && !n.contains("charm-backup-trash-"))
            .collect();
        assert!(strays.is_empty(), "left behind after recovery: {strays:?}");
        let partial: Vec<_> = fs::read_dir(u.tmp.path().join("pre"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial"))
            .collect();
        assert!(
            partial.is_empty(),
            "a partial save left behind: {partial:?}"
        );
    }
    assert!(
        saw_old > 0 && saw_new > 0,
        "kills should land both before and after the swap (old {saw_old}, new {saw_new})"
    );
}

#[test]
fn a_restore_cut_off_after_its_databases_were_swapped_is_finished_not_undone() {
    use charm_backup::commands::journal::{Journal, JournalPath, Phase, sibling};
    let u = Unit::new();
    let data = u.data();
    let new = sibling(&data, "new");
    fs::create_dir_all(&new).unwrap();
    fs::write(new.join("a.txt"), "restored\n").unwrap();
    let expected = listing(&new);
    // As a kill leaves it between the two renames of the swap, once the databases were renamed
    // into place: the old data moved aside, the restored data not yet in place.
    fs::rename(&data, sibling(&data, "old")).unwrap();
    let state = u.tmp.path().join("unit/charm-backup-state");
    fs::create_dir_all(&state).unwrap();
    Journal::new(
        Phase::DatabasesSwapped,
        "backup 2026-11-24T01:02:03Z".into(),
        vec![JournalPath::new(data.clone(), true)],
    )
    .save(&state)
    .unwrap();
    let out = u.harness().run_hook(&charm(), "update-status");
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(
        out.juju_logs
            .iter()
            .any(|l| l.contains("after its databases were in place; it was finished")),
        "{:?}",
        out.juju_logs
    );
    assert_eq!(listing(&data), expected);
    assert!(Journal::load(&state).unwrap().is_none());
}
