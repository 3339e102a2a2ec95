//! Hook-tool answers kept from a hook and replayed outside any hook: a scheduled backup, run by
//! systemd with no Juju agent at hand, reads the config, relation data and secrets the last hook
//! saw, through the same client code an action uses.
//!
//! Only the read-only tools ([`REPLAYABLE`]) are kept. Logging tools print to stdout (the
//! journal); tools that change Juju's state are refused, since there is no hook to change it in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::juju::context::JujuContext;
use crate::juju::tools::{HookTools, ToolOutput, ToolRunner};

/// The tools whose answers are kept and replayed.
pub const REPLAYABLE: [&str; 8] = [
    "config-get",
    "relation-ids",
    "relation-list",
    "relation-get",
    "secret-get",
    "is-leader",
    "leader-get",
    "state-get",
];

/// One tool call and its answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCall {
    /// The tool.
    pub tool: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its exit status.
    pub status: i32,
    /// What it printed.
    pub stdout: String,
    /// Its errors.
    pub stderr: String,
}

/// What a hook saw, kept for a run outside any hook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct SavedContext {
    /// The `JUJU_*` variables of the hook (no action or hook names).
    pub env: BTreeMap<String, String>,
    /// The answers, in the order they were given.
    pub calls: Vec<RecordedCall>,
}

impl SavedContext {
    /// Keeps `juju`'s unit, model and charm directory with `calls`.
    pub fn new(juju: &JujuContext, calls: Vec<RecordedCall>) -> Self {
        let env = [
            ("JUJU_UNIT_NAME", &juju.unit_name),
            ("JUJU_MODEL_NAME", &juju.model_name),
            ("JUJU_MODEL_UUID", &juju.model_uuid),
            ("JUJU_PRINCIPAL_UNIT", &juju.principal_unit),
            ("JUJU_MACHINE_ID", &juju.machine_id),
            ("JUJU_VERSION", &juju.juju_version),
            ("JUJU_AVAILABILITY_ZONE", &juju.availability_zone),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .chain([(
            "JUJU_CHARM_DIR".to_string(),
            juju.charm_dir.display().to_string(),
        )])
        .collect();
        SavedContext { env, calls }
    }

    /// The environment, as a hook would have it (no event).
    pub fn juju(&self) -> JujuContext {
        JujuContext::from_vars(self.env.clone())
    }

    /// A hook-tool client that answers from these calls.
    pub fn tools(&self) -> HookTools {
        HookTools::new(Box::new(ReplayRunner {
            calls: self.calls.clone(),
        }))
    }
}

/// Answers hook-tool calls from a recording.
#[derive(Debug, Clone)]
struct ReplayRunner {
    calls: Vec<RecordedCall>,
}

fn answer(status: i32, stdout: &str, stderr: &str) -> ToolOutput {
    ToolOutput {
        status,
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

impl ToolRunner for ReplayRunner {
    fn invoke(&self, tool: &str, args: &[String]) -> Result<ToolOutput> {
        if REPLAYABLE.contains(&tool) {
            return Ok(
                match self.calls.iter().find(|c| c.tool == tool && c.args == args) {
                    Some(c) => answer(c.status, &c.stdout, &c.stderr),
                    None => answer(
                        1,
                        "",
                        &format!(
                            "ERROR the settings saved by the last hook hold no answer to {tool}: \
                             they are refreshed by every hook (update-status runs every few \
                             minutes)"
                        ),
                    ),
                },
            );
        }
        match tool {
            // The message follows `--`; the level (juju-log) precedes it.
            "juju-log" | "action-log" => {
                let level = args
                    .iter()
                    .position(|a| a == "--log-level")
                    .and_then(|i| args.get(i + 1))
                    .map_or("INFO", String::as_str);
                let msg = args.last().map_or("", String::as_str);
                println!("{level}: {msg}");
                Ok(answer(0, "", ""))
            }
            _ => Ok(answer(
                1,
                "",
                &format!("ERROR {tool} cannot be run outside a hook or action"),
            )),
        }
    }
}
