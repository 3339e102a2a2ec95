//! Project tasks: `cargo xtask pack` builds the charm (this one, or an author's charm crate with
//! `--charm-dir`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// The newest glibc symbol version the binaries may need: Ubuntu 22.04 ships glibc 2.35.
const MAX_GLIBC: (u32, u32) = (2, 35);

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("pack") => {
            let mut charm_dir = None;
            let mut binary = None;
            let mut it = args[1..].iter();
            while let Some(a) = it.next() {
                match (a.as_str(), it.next()) {
                    ("--charm-dir", Some(d)) => charm_dir = Some(PathBuf::from(d)),
                    ("--binary", Some(b)) => binary = Some(PathBuf::from(b)),
                    _ => usage(),
                }
            }
            pack(charm_dir, binary)
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo xtask pack [--charm-dir DIR] [--binary FILE]

  pack  build the charm's release `dispatch` and write DIR/dist/charm/ and DIR/dist/<name>.charm
        (name from DIR/metadata.yaml): metadata.yaml, actions.yaml, config.yaml, README.md and
        hooks/ when present, a manifest.yaml, the binary (checked to need no glibc newer than
        Ubuntu 22.04's), and actions/<name> and hooks/<name> links to it.

  --charm-dir DIR  an author's charm crate (default: this charm, built with --features charm);
                   its `dispatch` binary is built with cargo build --release
  --binary FILE    pack this binary instead of building one"
    );
    std::process::exit(2);
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

fn pack(charm_dir: Option<PathBuf>, binary: Option<PathBuf>) -> anyhow::Result<()> {
    let ours = charm_dir.is_none();
    let root = match charm_dir {
        Some(d) => {
            fs::canonicalize(&d).with_context(|| format!("no charm directory {}", d.display()))?
        }
        None => root(),
    };
    let name = charm_name(
        &fs::read_to_string(root.join("metadata.yaml"))
            .context("the charm directory has no metadata.yaml")?,
    )?;
    let built = match binary {
        Some(b) => b,
        None => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(&cargo);
            cmd.current_dir(&root)
                .args(["build", "--release", "--bin", "dispatch"]);
            if ours {
                cmd.args(["--package", "charm-backup", "--features", "charm"]);
            }
            let status = cmd.status().context("cannot run cargo")?;
            if !status.success() {
                bail!("cargo build failed");
            }
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target"));
            target.join("release/dispatch")
        }
    };
    let dist = root.join("dist");
    let charm = dist.join("charm");
    if charm.exists() {
        fs::remove_dir_all(&charm)?;
    }
    fs::create_dir_all(charm.join("actions"))?;
    fs::create_dir_all(charm.join("hooks"))?;
    for f in ["metadata.yaml", "actions.yaml", "config.yaml", "README.md"] {
        if f == "README.md" && !root.join(f).exists() {
            continue;
        }
        fs::copy(root.join(f), charm.join(f)).with_context(|| format!("cannot copy {f}"))?;
    }
    fs::write(charm.join("manifest.yaml"), manifest())?;
    let bin = charm.join("dispatch");
    fs::copy(&built, &bin).with_context(|| format!("cannot copy {}", built.display()))?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
    check_glibc(&bin)?;
    for name in action_names(&fs::read_to_string(root.join("actions.yaml"))?) {
        std::os::unix::fs::symlink("../dispatch", charm.join("actions").join(name))?;
    }
    if root.join("hooks").is_dir() {
        for entry in fs::read_dir(root.join("hooks"))? {
            let entry = entry?;
            std::os::unix::fs::symlink("../dispatch", charm.join("hooks").join(entry.file_name()))?;
        }
    }
    let zip_path = dist.join(format!("{name}.charm"));
    write_zip(&charm, &zip_path)?;
    println!("     bytes  file");
    let mut files = Vec::new();
    walk(&charm, &mut files)?;
    for f in &files {
        let m = fs::symlink_metadata(f)?;
        let rel = f.strip_prefix(&root)?.display().to_string();
        if m.file_type().is_symlink() {
            println!("{:>10}  {rel} -> {}", "link", fs::read_link(f)?.display());
        } else {
            println!("{:>10}  {rel}", m.len());
        }
    }
    let zip_len = fs::metadata(&zip_path)?.len();
    println!(
        "{zip_len:>10}  {} ({:.2} MiB zipped)",
        zip_path.strip_prefix(&root)?.display(),
        zip_len as f64 / 1048576.0
    );
    Ok(())
}

/// The charm's name: metadata.yaml's top-level `name:`.
fn charm_name(metadata: &str) -> anyhow::Result<String> {
    metadata
        .lines()
        .find_map(|l| l.strip_prefix("name:"))
        .map(|n| n.trim().trim_matches(['"', '\'']).to_string())
        .filter(|n| !n.is_empty())
        .context("metadata.yaml has no top-level name")
}

/// Top-level keys of actions.yaml: lines that start with a name and end with a colon.
fn action_names(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter(|l| !l.starts_with([' ', '#', '\t']) && l.ends_with(':'))
        .map(|l| l.trim_end_matches(':').to_string())
        .collect()
}

fn manifest() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "# Written by cargo xtask pack\nanalysis:\n  attributes:\n  - name: language\n    result: rust\n  - name: framework\n    result: charm-backup\ncharmcraft-started-at: '{now}'\ncharmcraft-version: none (cargo xtask pack {})\nbases:\n- name: ubuntu\n  channel: '22.04'\n  architectures:\n  - amd64\n- name: ubuntu\n  channel: '24.04'\n  architectures:\n  - amd64\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Fails if the binary needs a glibc symbol newer than Ubuntu 22.04 has.
fn check_glibc(bin: &Path) -> anyhow::Result<()> {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(bin)
        .output()
        .context("cannot run objdump (install binutils)")?;
    if !out.status.success() {
        bail!(
            "objdump -T failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut max = (0, 0);
    for part in text.split("GLIBC_").skip(1) {
        let v: String = part
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut it = v.split('.').filter_map(|n| n.parse::<u32>().ok());
        if let (Some(a), Some(b)) = (it.next(), it.next()) {
            max = max.max((a, b));
        }
    }
    println!(
        "{}: needs GLIBC_{}.{} at most (limit {}.{})",
        bin.display(),
        max.0,
        max.1,
        MAX_GLIBC.0,
        MAX_GLIBC.1
    );
    if max > MAX_GLIBC {
        bail!(
            "{} needs GLIBC_{}.{}, newer than Ubuntu 22.04's {}.{}: build on an older glibc",
            bin.display(),
            max.0,
            max.1,
            MAX_GLIBC.0,
            MAX_GLIBC.1
        );
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn write_zip(dir: &Path, to: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut z = zip::ZipWriter::new(fs::File::create(to)?);
    for f in files {
        let name = f.strip_prefix(dir)?.display().to_string();
        let m = fs::symlink_metadata(&f)?;
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(m.permissions().mode() & 0o777);
        if m.file_type().is_symlink() {
            z.add_symlink(name, fs::read_link(&f)?.display().to_string(), opts)?;
        } else {
            z.start_file(name, opts)?;
            z.write_all(&fs::read(&f)?)?;
        }
    }
    z.finish()?;
    Ok(())
}
