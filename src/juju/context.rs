//! What Juju tells a hook or action through its environment, read once.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The event this process was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An action, by name (`snapshot`).
    Action(String),
    /// A hook, by name (`config-changed`).
    Hook(String),
}

/// The environment Juju gives a hook or action, parsed once.
///
/// Juju sets exactly these variables and nothing else: there is no `HOME` or `USER`, and `PATH`
/// is the agent's own with the tools directory first. Nothing in this crate reads any other
/// variable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JujuContext {
    /// `JUJU_UNIT_NAME`, e.g. `etcd/0`.
    pub unit_name: String,
    /// `JUJU_MODEL_NAME`.
    pub model_name: String,
    /// `JUJU_MODEL_UUID`.
    pub model_uuid: String,
    /// `JUJU_CHARM_DIR` (or the legacy `CHARM_DIR`): the charm's files, also the working
    /// directory.
    pub charm_dir: PathBuf,
    /// `JUJU_DISPATCH_PATH`, e.g. `actions/snapshot` or `hooks/install`.
    pub dispatch_path: String,
    /// `JUJU_HOOK_NAME`: empty for actions.
    pub hook_name: String,
    /// `JUJU_ACTION_NAME`, set only for actions.
    pub action_name: Option<String>,
    /// `JUJU_ACTION_UUID`: the task id (a number in Juju 3, despite the name).
    pub action_id: Option<String>,
    /// `JUJU_ACTION_TAG`, e.g. `action-7`.
    pub action_tag: Option<String>,
    /// `JUJU_CONTEXT_ID`.
    pub context_id: String,
    /// `JUJU_VERSION`, the agent's version.
    pub juju_version: String,
    /// `JUJU_PRINCIPAL_UNIT`: the principal this subordinate is attached to (empty otherwise).
    pub principal_unit: String,
    /// `JUJU_MACHINE_ID`.
    pub machine_id: String,
    /// `JUJU_AVAILABILITY_ZONE`.
    pub availability_zone: String,
    /// `JUJU_API_ADDRESSES`, space-separated.
    pub api_addresses: String,
}

impl JujuContext {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        JujuContext::from_vars(std::env::vars())
    }

    /// Reads a given set of variables (for tests and the local agent).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut m: HashMap<String, String> = vars.into_iter().collect();
        let mut take = |k: &str| m.remove(k).unwrap_or_default();
        let opt = |s: String| (!s.is_empty()).then_some(s);
        let charm_dir = match take("JUJU_CHARM_DIR") {
            s if s.is_empty() => take("CHARM_DIR"),
            s => s,
        };
        JujuContext {
            unit_name: take("JUJU_UNIT_NAME"),
            model_name: take("JUJU_MODEL_NAME"),
            model_uuid: take("JUJU_MODEL_UUID"),
            charm_dir: PathBuf::from(charm_dir),
            dispatch_path: take("JUJU_DISPATCH_PATH"),
            hook_name: take("JUJU_HOOK_NAME"),
            action_name: opt(take("JUJU_ACTION_NAME")),
            action_id: opt(take("JUJU_ACTION_UUID")),
            action_tag: opt(take("JUJU_ACTION_TAG")),
            context_id: take("JUJU_CONTEXT_ID"),
            juju_version: take("JUJU_VERSION"),
            principal_unit: take("JUJU_PRINCIPAL_UNIT"),
            machine_id: take("JUJU_MACHINE_ID"),
            availability_zone: take("JUJU_AVAILABILITY_ZONE"),
            api_addresses: take("JUJU_API_ADDRESSES"),
        }
    }

    /// The application name: the unit name without `/<n>`.
    pub fn app_name(&self) -> &str {
        self.unit_name
            .split_once('/')
            .map_or(self.unit_name.as_str(), |(a, _)| a)
    }

    /// The unit whose data this charm backs up: the principal for a subordinate, else itself.
    pub fn workload_unit(&self) -> &str {
        if self.principal_unit.is_empty() {
            &self.unit_name
        } else {
            &self.principal_unit
        }
    }

    /// Which event this process runs for: from `JUJU_DISPATCH_PATH` (`actions/<name>` or
    /// `hooks/<name>`), else `JUJU_ACTION_NAME` or `JUJU_HOOK_NAME`, else the program name
    /// `argv0` as Juju before 2.8 ran `actions/<name>` and `hooks/<name>` directly.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when none of these names an event.
    pub fn event(&self, argv0: &str) -> Result<Event> {
        let from_path = |p: &str| -> Option<Event> {
            let p = std::path::Path::new(p);
            let name = p.file_name()?.to_str()?.to_string();
            let dir = p.parent()?.file_name()?.to_str()?;
            match dir {
                "actions" => Some(Event::Action(name)),
                "hooks" => Some(Event::Hook(name)),
                _ => None,
            }
        };
        if let Some(e) = from_path(&self.dispatch_path) {
            return Ok(e);
        }
        if let Some(a) = &self.action_name {
            return Ok(Event::Action(a.clone()));
        }
        if !self.hook_name.is_empty() {
            return Ok(Event::Hook(self.hook_name.clone()));
        }
        from_path(argv0).ok_or_else(|| {
            Error::invalid(
                "no Juju event to run: JUJU_DISPATCH_PATH is not set; this program is run by the \
                 Juju agent (or locally by `charm-backup run`), not by hand",
            )
        })
    }
}

/// The name this program was started as (the file name of `argv[0]`): hook tools and
/// multi-call binaries are one executable under several names.
pub fn program_name() -> String {
    let argv0 = std::env::args().next().unwrap_or_default();
    std::path::Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(vars: &[(&str, &str)]) -> JujuContext {
        JujuContext::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn event_from_dispatch_path_then_names_then_argv0() {
        let c = ctx(&[("JUJU_DISPATCH_PATH", "actions/snapshot")]);
        assert_eq!(c.event("x").ok(), Some(Event::Action("snapshot".into())));
        let c = ctx(&[("JUJU_HOOK_NAME", "install")]);
        assert_eq!(c.event("x").ok(), Some(Event::Hook("install".into())));
        let c = ctx(&[]);
        assert_eq!(
            c.event("/var/lib/juju/charm/hooks/config-changed").ok(),
            Some(Event::Hook("config-changed".into()))
        );
        assert!(c.event("/usr/bin/dispatch").is_err());
    }

    #[test]
    fn app_and_workload_unit() {
        let c = ctx(&[
            ("JUJU_UNIT_NAME", "charm-backup/3"),
            ("JUJU_PRINCIPAL_UNIT", "etcd/0"),
        ]);
        assert_eq!(c.app_name(), "charm-backup");
        assert_eq!(c.workload_unit(), "etcd/0");
    }
}
