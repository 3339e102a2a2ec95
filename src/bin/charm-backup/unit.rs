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
#[derive(Debug, Default, Serialize, Deserialize)]
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
        let me = std::env::current_exe().context("cannot find this program's path")?;
        for t in TOOLS {
            let link = tools.join(t);
            if std::fs::read_link(&link).ok().as_deref() != Some(me.as_path()) {
                let _ = std::fs::remove_file(&link);
                symlink(&me, &link).with_context(|| format!("cannot link {}", link.display()))?;
            }
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

    /// Writes the persisted state.
    pub fn save(&self, p: &Persisted) -> anyhow::Result<()> {
        let tmp = self.state_file().with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(p)?)?;
        std::fs::rename(&tmp, self.state_file())?;
        Ok(())
    }

    /// Where task records go.
    pub fn task_file(&self, id: u64) -> PathBuf {
        self.root.join("tasks").join(format!("{id}.json"))
    }

    /// The socket the tools talk to.
    pub fn socket(&self) -> PathBuf {
        self.base.join("agent.socket")
    }
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
    std::fs::write(dir.join("metadata.yaml"), METADATA)?;
    std::fs::write(dir.join("actions.yaml"), ACTIONS)?;
    std::fs::write(dir.join("config.yaml"), CONFIG)?;
    let dispatch = dir.join("dispatch");
    let _ = std::fs::remove_file(&dispatch);
    symlink(&bin, &dispatch)?;
    let actions = charm_backup::testing::ActionSpecs::parse(ACTIONS)?;
    for a in actions.names() {
        let l = dir.join("actions").join(a);
        let _ = std::fs::remove_file(&l);
        symlink("../dispatch", &l)?;
    }
    for h in charm_backup::charm::hooks::HOOKS {
        let l = dir.join("hooks").join(h);
        let _ = std::fs::remove_file(&l);
        symlink("../dispatch", &l)?;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    Ok(dir.to_path_buf())
}
