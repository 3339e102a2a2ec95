//! Random trees, snapshotted and restored, compared attribute by attribute: names with spaces,
//! newlines and bytes that are not UTF-8, deep and long paths, hard links, symlinks, empty
//! directories, FIFOs, modes, owners, extended attributes, sparse files, nanosecond mtimes.
//!
//! CI runs a fixed seed and a few cases; `PROPERTY_CASES=200 PROPERTY_SEED=7 cargo test
//! --all-features --test property` runs more.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "testing", feature = "charm"))]

mod common;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use charm_backup::charm::charm;
use charm_backup::testing::{Harness, action};

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn name(rng: &mut Rng, taken: &[OsString]) -> OsString {
    loop {
        let len = match rng.below(10) {
            0 => 100 + rng.below(150) as usize,
            _ => 1 + rng.below(12) as usize,
        };
        let mut b: Vec<u8> = (0..len)
            .map(|_| match rng.below(20) {
                0 => b' ',
                1 => b'\n',
                2 => 0x80 + rng.below(0x7f) as u8,
                3 => b'.',
                _ => b"abcdefghijklmnopqrstuvwxyz0123456789-_"[rng.below(38) as usize],
            })
            .collect();
        // Not ".", "..", nor our own names.
        if b.iter().all(|&c| c == b'.') || b.starts_with(b".charm-backup") {
            b.insert(0, b'n');
        }
        let n = OsString::from_vec(b);
        if !taken.contains(&n) {
            return n;
        }
    }
}

fn set_mtime(p: &Path, rng: &mut Rng) {
    let secs = 1_000_000_000 + rng.below(700_000_000);
    let nsec = rng.below(1_000_000_000);
    // By path (`touch -h`): opening a FIFO would wait for a writer.
    let ok = Command::new("touch")
        .args(["-h", "-m", "-d", &format!("@{secs}.{nsec:09}")])
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Fills `dir` with a random tree; returns the regular files made, for hard links.
fn fill(dir: &Path, depth: u32, rng: &mut Rng, files: &mut Vec<PathBuf>) {
    let mut taken = Vec::new();
    for _ in 0..rng.below(6) {
        let n = name(rng, &taken);
        taken.push(n.clone());
        let p = dir.join(&n);
        match rng.below(10) {
            0..=3 => {
                let size = match rng.below(8) {
                    0 => 0,
                    1 => 2 << 20,
                    _ => rng.below(70_000),
                };
                let mut data = vec![0u8; size as usize];
                for b in data.iter_mut().take(4096) {
                    *b = rng.next() as u8;
                }
                fs::write(&p, &data).unwrap();
                if rng.chance(15) {
                    // Sparse: a hole, then a tail.
                    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
                    f.set_len(size + (1 << 20)).unwrap();
                    std::os::unix::fs::FileExt::write_at(&f, b"tail", size + (1 << 20)).unwrap();
                }
                let mode =
                    [0o600, 0o644, 0o640, 0o755, 0o700, 0o444, 0o4755][rng.below(7) as usize];
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
                if rng.chance(30) {
                    let v = format!("v{}", rng.below(1000));
                    xattr(&p, &format!("user.k{}", rng.below(3)), &v);
                }
                if rng.chance(40) {
                    let (u, g) = (1000 + rng.below(4) as u32, 1000 + rng.below(4) as u32);
                    std::os::unix::fs::lchown(&p, Some(u), Some(g)).unwrap();
                }
                set_mtime(&p, rng);
                files.push(p);
            }
            4..=5 if depth < 4 => {
                fs::create_dir(&p).unwrap();
                fill(&p, depth + 1, rng, files);
                let mode = [0o755, 0o700, 0o750, 0o1777][rng.below(4) as usize];
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
                set_mtime(&p, rng);
            }
            6 => {
                // Relative, to a sibling (which may not exist: a dangling link).
                let target = taken[rng.below(taken.len() as u64) as usize].clone();
                std::os::unix::fs::symlink(&target, &p).unwrap();
            }
            7 if !files.is_empty() => {
                let f = files[rng.below(files.len() as u64) as usize].clone();
                fs::hard_link(&f, &p).unwrap();
            }
            8 => {
                let ok = Command::new("mkfifo").arg(&p).status().unwrap().success();
                assert!(ok);
                set_mtime(&p, rng);
            }
            _ => {
                fs::create_dir(&p).unwrap();
                set_mtime(&p, rng);
            }
        }
    }
}

fn xattr(p: &Path, key: &str, value: &str) {
    let ok = Command::new("setfattr")
        .args(["-n", key, "-v", value])
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Every attribute a restore must keep, per path (hard links named by the first path of
/// their group), and the files that are sparse.
fn describe(root: &Path) -> (BTreeMap<Vec<u8>, String>, Vec<Vec<u8>>) {
    let mut out = BTreeMap::new();
    let mut sparse = Vec::new();
    let mut groups: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut file_inode = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let t = m.file_type();
        let common = format!("mode {:o} owner {}:{}", m.mode() & 0o7777, m.uid(), m.gid());
        let desc = if t.is_symlink() {
            format!(
                "link {:?} owner {}:{}",
                fs::read_link(&p).unwrap(),
                m.uid(),
                m.gid()
            )
        } else if t.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            format!("dir {common} mtime {}.{}", m.mtime(), m.mtime_nsec())
        } else if t.is_fifo() {
            format!("fifo {common} mtime {}.{}", m.mtime(), m.mtime_nsec())
        } else {
            use sha2::Digest as _;
            let first = groups.entry(m.ino()).or_insert_with(|| rel.clone());
            if rel < *first {
                *first = rel.clone();
            }
            file_inode.push((rel.clone(), m.ino()));
            if m.blocks() * 512 < m.len() {
                sparse.push(rel.clone());
            }
            let xattrs = String::from_utf8_lossy(
                &Command::new("getfattr")
                    .args(["-d", "-m", "user\\.", "--absolute-names"])
                    .arg(&p)
                    .output()
                    .unwrap()
                    .stdout,
            )
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join(",");
            format!(
                "file {common} mtime {}.{} size {} sha256 {} xattrs [{xattrs}]",
                m.mtime(),
                m.mtime_nsec(),
                m.len(),
                charm_backup::archive::hex(&sha2::Sha256::digest(fs::read(&p).unwrap())),
            )
        };
        out.insert(rel, desc);
    }
    for (rel, ino) in file_inode {
        let first = String::from_utf8_lossy(&groups[&ino]).into_owned();
        if let Some(d) = out.get_mut(&rel) {
            d.push_str(&format!(" same-inode-as {first:?}"));
        }
    }
    (out, sparse)
}

fn harness(tmp: &Path, app: &Path) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(tmp.join("unit/charm"))
        .config("paths", app.display().to_string())
        .config("local-store", tmp.join("store").display().to_string())
}

#[test]
fn random_trees_come_back_attribute_for_attribute() {
    let cases: u64 = std::env::var("PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("PROPERTY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_202);
    for case in 0..cases {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (case + 1));
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        fs::create_dir(&app).unwrap();
        let mut files = Vec::new();
        fill(&app, 0, &mut rng, &mut files);
        // A deep chain of long names: a path of well over 1,000 bytes.
        let mut deep = app.join("deep");
        for i in 0..12 {
            deep.push(format!("{i:02}-{}", "x".repeat(90)));
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(
            deep.join(OsString::from_vec(b"leaf \xff\n".to_vec())),
            "deep",
        )
        .unwrap();
        let (want, want_sparse) = describe(&app);

        let h = harness(tmp.path(), &app);
        let out = h
            .run_action(
                &charm(),
                action("snapshot").param("target", tmp.path().join("snaps").display().to_string()),
            )
            .unwrap_or_else(|e| panic!("seed {seed} case {case}: snapshot: {}", e.message));
        let snap = out.results["snapshot"]["path"]
            .as_str()
            .unwrap()
            .to_string();
        // Replace the tree with something else entirely, then restore.
        let _ = Command::new("rm").arg("-rf").arg(&app).status();
        fs::create_dir(&app).unwrap();
        fs::write(app.join("other"), "not the tree").unwrap();
        h.run_action(
            &charm(),
            action("restore")
                .param("path", snap.as_str())
                .param("skip-backup", true),
        )
        .unwrap_or_else(|e| {
            panic!(
                "seed {seed} case {case}: restore: {} {:?}",
                e.message, e.logs
            )
        });
        let (got, got_sparse) = describe(&app);
        for (k, v) in &want {
            assert_eq!(
                got.get(k),
                Some(v),
                "seed {seed} case {case}: {:?}",
                String::from_utf8_lossy(k)
            );
        }
        assert_eq!(
            got.len(),
            want.len(),
            "seed {seed} case {case}: extra entries"
        );
        for f in &want_sparse {
            assert!(
                got_sparse.contains(f),
                "seed {seed} case {case}: {:?} came back dense",
                String::from_utf8_lossy(f)
            );
        }
    }
}
