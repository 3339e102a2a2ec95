//! The tools that write key-value settings: `relation-set`, `leader-get`/`leader-set`,
//! `state-get`/`state-set`/`state-delete`, and `application-version-set`.
//!
//! They follow `internal/worker/uniter/runner/jujuc/` in juju/juju: `relation-set.go`,
//! `leader-get.go`, `leader-set.go`, `state-get.go`, `state-set.go`, `state-delete.go` and
//! `application-version-set.go`; `key=value` arguments are parsed there by
//! `juju/utils/keyvalues.Parse` (empty values allowed, duplicate keys refused).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::juju::tools::{ACTION_SET_BATCH_BYTES, HookTools, MAX_ARG_BYTES};

/// Largest key `state-set` accepts (Juju's `quota.MaxCharmStateKeySize`).
pub const MAX_STATE_KEY_BYTES: usize = 256;

/// Largest value `state-set` accepts (Juju's `quota.MaxCharmStateValueSize`).
pub const MAX_STATE_VALUE_BYTES: usize = 64 * 1024;

/// Settings checked the way `keyvalues.Parse` would check their `key=value` form: no empty key,
/// no key twice.
fn collect<K: AsRef<str>, V: AsRef<str>>(
    tool: &str,
    settings: impl IntoIterator<Item = (K, V)>,
) -> Result<Vec<(String, String)>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (k, v) in settings {
        let (k, v) = (k.as_ref(), v.as_ref());
        if k.is_empty() {
            return Err(Error::invalid(format!(
                "{tool} cannot take an empty key (Juju refuses it: expected \"key=value\", got \
                 \"={v}\")"
            )));
        }
        if !seen.insert(k.to_string()) {
            return Err(Error::invalid(format!(
                "key {k:?} specified more than once"
            )));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Whether settings must go through `--file`: a key holds `=` (which `key=value` cannot carry),
/// one argument is over the OS limit, or all of them together are large.
fn needs_file(pairs: &[(String, String)]) -> bool {
    let mut total = 0;
    for (k, v) in pairs {
        let len = k.len() + v.len() + 1;
        if k.contains('=') || len > MAX_ARG_BYTES {
            return true;
        }
        total += len + 1;
    }
    total > ACTION_SET_BATCH_BYTES
}

/// Writes settings as the YAML map `--file` takes (JSON is valid YAML, and quoting every key
/// and value keeps `yes`, `1.0` or `~` strings).
fn settings_file(pairs: &[(String, String)]) -> Result<tempfile::NamedTempFile> {
    let map: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut f = tempfile::Builder::new()
        .prefix("juju-settings-")
        .suffix(".yaml")
        .tempfile()
        .map_err(|e| {
            Error::new(ErrorKind::Other, "cannot create a settings file").with_source(e)
        })?;
    serde_json::to_writer(&mut f, &map)
        .map_err(std::io::Error::from)
        .and_then(|()| f.flush())
        .map_err(|e| Error::io("cannot write a settings file", f.path(), e))?;
    Ok(f)
}

/// A string map from a tool's JSON output (`null` is empty).
fn string_map(tool: &str, v: Value) -> Result<BTreeMap<String, String>> {
    match v {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => Ok(m
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect()),
        other => Err(Error::new(
            ErrorKind::Other,
            format!("{tool} printed {other}, not a map of settings"),
        )),
    }
}

/// One value from a tool's JSON output (`null` is absent).
fn string_value(tool: &str, v: Value) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        other => Err(Error::new(
            ErrorKind::Other,
            format!("{tool} printed {other}, not a string"),
        )),
    }
}

/// Refuses `-`, which the getters read as "all keys", and an empty key.
fn one_key(tool: &str, key: &str) -> Result<()> {
    if key.is_empty() || key == "-" {
        return Err(Error::invalid(format!(
            "{tool} reads every key for {key:?}: ask for one key by name"
        )));
    }
    Ok(())
}

impl HookTools {
    /// `relation-set -r <id> [--app] -- key=value ...`: writes this unit's settings in a
    /// relation, or (with `app`, leader only) the application's. An empty value deletes the
    /// key. Large settings, or keys holding `=`, go through `--file` with a YAML map instead,
    /// as Juju's docs advise. Juju applies the change when the hook exits successfully.
    /// Nothing is run when `settings` is empty.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty or repeated key; otherwise when the tool fails,
    /// e.g. `cannot write relation settings` for `--app` from a unit that is not the leader.
    pub fn relation_set<K: AsRef<str>, V: AsRef<str>>(
        &self,
        relation_id: &str,
        settings: impl IntoIterator<Item = (K, V)>,
        app: bool,
    ) -> Result<()> {
        let pairs = collect("relation-set", settings)?;
        if pairs.is_empty() {
            return Ok(());
        }
        let mut args = vec!["-r".to_string(), relation_id.to_string()];
        if app {
            args.push("--app".into());
        }
        if needs_file(&pairs) {
            let file = settings_file(&pairs)?;
            args.extend(["--file".into(), file.path().display().to_string()]);
            return self.call("relation-set", args).map(drop);
        }
        args.push("--".into());
        args.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
        self.call("relation-set", args).map(drop)
    }

    /// `leader-get --format=json`: every leadership setting of the application.
    ///
    /// # Errors
    /// When the tool fails.
    pub fn leader_get(&self) -> Result<BTreeMap<String, String>> {
        let v = self.call_json("leader-get", vec!["--format=json".into()])?;
        string_map("leader-get", v)
    }

    /// `leader-get --format=json -- <key>`: one leadership setting, `None` when unset.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for `-` or an empty key; otherwise when the tool fails (a
    /// key holding `=` is refused by Juju).
    pub fn leader_get_key(&self, key: &str) -> Result<Option<String>> {
        one_key("leader-get", key)?;
        let v = self.call_json(
            "leader-get",
            vec!["--format=json".into(), "--".into(), key.into()],
        )?;
        string_value("leader-get", v)
    }

    /// `leader-set -- key=value ...`: writes leadership settings, at once (not at the end of
    /// the hook). An empty value deletes the key. Long sets are sent in several calls, which
    /// Juju merges.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty, repeated or `=`-holding key or an argument
    /// over [`MAX_ARG_BYTES`]; otherwise when the tool fails (`cannot write leadership
    /// settings: cannot write settings: not the leader` on a unit that is not the leader).
    pub fn leader_set<K: AsRef<str>, V: AsRef<str>>(
        &self,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let pairs = collect("leader-set", settings)?;
        let mut batch = vec!["--".to_string()];
        let mut batch_bytes = 0;
        for (k, v) in pairs {
            if k.contains('=') {
                return Err(Error::invalid(format!(
                    "leader-set cannot take the key {k:?}: it has no --file and a key=value \
                     argument cannot hold \"=\" in its key"
                )));
            }
            let arg = format!("{k}={v}");
            if arg.len() > MAX_ARG_BYTES {
                return Err(Error::invalid(format!(
                    "leadership setting {k:?} is {} bytes, over the {MAX_ARG_BYTES}-byte limit \
                     the OS puts on one argument",
                    arg.len()
                )));
            }
            if batch_bytes + arg.len() > ACTION_SET_BATCH_BYTES && batch.len() > 1 {
                let full = std::mem::replace(&mut batch, vec!["--".to_string()]);
                self.call("leader-set", full)?;
                batch_bytes = 0;
            }
            batch_bytes += arg.len() + 1;
            batch.push(arg);
        }
        if batch.len() > 1 {
            self.call("leader-set", batch)?;
        }
        Ok(())
    }

    /// `state-get --format=json`: all the unit's stored state (kept by Juju across hooks).
    ///
    /// # Errors
    /// When the tool fails.
    pub fn state_get(&self) -> Result<BTreeMap<String, String>> {
        let v = self.call_json("state-get", vec!["--format=json".into()])?;
        string_map("state-get", v)
    }

    /// `state-get --format=json --strict -- <key>`: one stored value, `None` when the key is
    /// not set (`--strict` tells a missing key from an empty value).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for `-` or an empty key; otherwise when the tool fails.
    pub fn state_get_key(&self, key: &str) -> Result<Option<String>> {
        one_key("state-get", key)?;
        let args = vec![
            "--format=json".into(),
            "--strict".into(),
            "--".into(),
            key.into(),
        ];
        match self.call_json("state-get", args) {
            Ok(v) => string_value("state-get", v).map(|v| Some(v.unwrap_or_default())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `state-set -- key=value ...` (or `--file` for large sets): stores values Juju keeps for
    /// this unit, applied when the hook exits successfully. An empty value is stored as an
    /// empty string, as Juju does; delete a key with [`HookTools::state_delete`].
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty or repeated key; otherwise when the tool fails,
    /// e.g. `max allowed value length (65536) exceeded` for a value over
    /// [`MAX_STATE_VALUE_BYTES`] (a key may hold [`MAX_STATE_KEY_BYTES`]).
    pub fn state_set<K: AsRef<str>, V: AsRef<str>>(
        &self,
        settings: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        let pairs = collect("state-set", settings)?;
        if pairs.is_empty() {
            return Ok(());
        }
        if needs_file(&pairs) {
            let file = settings_file(&pairs)?;
            let args = vec!["--file".into(), file.path().display().to_string()];
            return self.call("state-set", args).map(drop);
        }
        let mut args = vec!["--".to_string()];
        args.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
        self.call("state-set", args).map(drop)
    }

    /// `state-delete -- <key>`: removes a stored value (a no-op when it is not set), applied when
    /// the hook exits successfully.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for an empty key; otherwise when the tool fails.
    pub fn state_delete(&self, key: &str) -> Result<()> {
        if key.is_empty() {
            return Err(Error::invalid("state-delete needs a key"));
        }
        self.call("state-delete", vec!["--".into(), key.into()])
            .map(drop)
    }

    /// `application-version-set -- <version>`: the workload version `juju status` shows for the
    /// application (a package version or a git hash, not the charm revision). Applied at once.
    ///
    /// # Errors
    /// When the tool fails.
    pub fn application_version_set(&self, version: &str) -> Result<()> {
        self.call("application-version-set", vec!["--".into(), version.into()])
            .map(drop)
    }
}
