//! The local unit: its directories laid out as a Juju machine has them, its persisted state,
//! and the charm directory it runs.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::tool::TOOLS;

/// The charm files compiled in, for the charm directory assembled from this build.
const METADATA: &str = include_str!("../../../metadata.yaml");
const ACTIONS: &str = include_str!("../../../actions.yaml");
const CONFIG: &str = include_str!("../../../config.yaml");

/// What persists between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Persisted {
    /// Config set with `charm-backup config`.
    pub config: Map<String, Value>,
    /// Unit status and message.
    pub status: (String, String),
    /// The last operation or task id used.
    pub last_id: u64,
}

/// The unit's directories.
#[derive(Debug)]
pub struct Unit {
    /// `<app>/<n>`.
    pub name: String,
    /// The agent directory (`/var/lib/juju` on a real machine).
    pub root: PathBuf,
    /// `agents/unit-<app>-<n>`.
    pub base: PathBuf,
    /// `tools/unit-<app>-<n>`.
    pub tools: PathBuf,
    /// The charm directory.
    pub charm: PathBuf,
}

impl Unit {
    /// Lays out the unit for `name` under `root`; the charm is `charm_dir`, or one assembled
    /// from this build's `dispatch` binary and charm files.
    pub fn prepare(root: &Path, name: &str, charm_dir: Option<&Path>) -> anyhow::Result<Self> {
        let tag = format!("unit-{}", name.replace('/', "-"));
        let base = root.join("agents").join(&tag);
        let tools = root.join("tools").join(&tag);
        std::fs::create_dir_all(&base)
            .with_context(|| format!("cannot create {}", base.display()))?;
        std::fs::create_dir_all(&tools)?;
        // Runs at the same time lay out the same unit: one at a time.
        let _lock = lock_file(&base.join("unit-state.lock"))?;
        let me = std::env::current_exe().context("cannot find this program's path")?;
        for t in TOOLS {
            link(&me, &tools.join(t))?;
        }
        let charm = match charm_dir {
            Some(d) => {
                std::fs::canonicalize(d).with_context(|| format!("no charm at {}", d.display()))?
            }
            None => assemble(&base.join("charm"), &me)?,
        };
        if !charm.join("metadata.yaml").exists() {
            bail!(
                "charm missing from disk: {} has no metadata.yaml",
                charm.display()
            );
        }
        Ok(Unit {
            name: name.to_string(),
            root: root.to_path_buf(),
            base,
            tools,
            charm,
        })
    }

    fn state_file(&self) -> PathBuf {
        self.base.join("unit-state.json")
    }

    /// Reads the persisted state.
    pub fn load(&self) -> anyhow::Result<Persisted> {
        match std::fs::read(self.state_file()) {
            Ok(b) => Ok(serde_json::from_slice(&b).context("the unit state file is damaged")?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Persisted {
                status: ("unknown".into(), String::new()),
                ..Default::default()
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Holds the unit's state for one read-modify-write, against other runs at the same
    /// time (released when the file is dropped).
    pub fn lock(&self) -> anyhow::Result<std::fs::File> {
        std::fs::create_dir_all(&self.base)?;
        lock_file(&self.base.join("unit-state.lock"))
    }

    /// Takes the next operation and task ids, `(operation, task)`, unique among runs that
    /// share this unit's directory.
    pub fn next_ids(&self, p: &mut Persisted) -> anyhow::Result<(u64, u64)> {
        let _lock = self.lock()?;
        let current = self.load()?;
        let op = current.last_id.max(p.last_id) + 1;
        p.last_id = op + 1;
        self.write(p)?;
        Ok((op, op + 1))
    }

    /// Writes the persisted state (never lowering the last id another run took meanwhile).
    pub fn save(&self, p: &Persisted) -> anyhow::Result<()> {
        let _lock = self.lock()?;
        let mut p = p.clone();
        p.last_id = p.last_id.max(self.load()?.last_id);
        self.write(&p)
    }

    fn write(&self, p: &Persisted) -> anyhow::Result<()> {
        let tmp = self
            .state_file()
            .with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(p)?)?;
        std::fs::rename(&tmp, self.state_file())?;
        Ok(())
    }

    /// Where task records go.
    pub fn task_file(&self, id: u64) -> PathBuf {
        self.root.join("tasks").join(format!("{id}.json"))
    }

    /// The socket this run's tools talk to: one per run, so runs at the same time never
    /// take each other's.
    pub fn socket(&self) -> PathBuf {
        self.base
            .join(format!("agent-{}.socket", std::process::id()))
    }
}

fn lock_file(path: &Path) -> anyhow::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    f.lock()?;
    Ok(f)
}

/// Makes `at` a symlink to `target`, replacing what is there in one rename, so a run that is
/// executing through it never finds it missing.
fn link(target: &Path, at: &Path) -> anyhow::Result<()> {
    if std::fs::read_link(at).ok().as_deref() == Some(target) {
        return Ok(());
    }
    let tmp = at.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    symlink(target, &tmp).with_context(|| format!("cannot link {}", at.display()))?;
    std::fs::rename(&tmp, at).with_context(|| format!("cannot link {}", at.display()))?;
    Ok(())
}

/// Writes `data` to `path` in one rename (a run may be reading it).
fn write_file(path: &Path, data: &str) -> anyhow::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(data) {
        return Ok(());
    }
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Builds a charm directory from this build: the charm files, `dispatch` linked to the
/// `dispatch` binary beside this program, and the `actions/` and `hooks/` links.
fn assemble(dir: &Path, me: &Path) -> anyhow::Result<PathBuf> {
    let bin = me.with_file_name("dispatch");
    if !bin.exists() {
        bail!(
            "the dispatch binary is not beside {} : build it with `cargo build --release --all-features`, or pass --charm DIR",
            me.display()
        );
    }
    for d in ["actions", "hooks"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    write_file(&dir.join("metadata.yaml"), METADATA)?;
    write_file(&dir.join("actions.yaml"), ACTIONS)?;
    write_file(&dir.join("config.yaml"), CONFIG)?;
    link(&bin, &dir.join("dispatch"))?;
    let actions = charm_backup::testing::ActionSpecs::parse(ACTIONS)?;
    for a in actions.names() {
        link(Path::new("../dispatch"), &dir.join("actions").join(a))?;
    }
    for h in charm_backup::charm::hooks::HOOKS {
        link(Path::new("../dispatch"), &dir.join("hooks").join(h))?;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    Ok(dir.to_path_buf())
}
