//! The unit's stored state ("server-side state"): `state-get`, `state-set` and `state-delete`,
//! following `state-get.go`, `state-set.go` and `state-delete.go` in
//! `internal/worker/uniter/runner/jujuc/` and the hook context's charm-state cache
//! (`runner/context/context.go`: `GetCharmState`, `SetCharmStateValue`,
//! `DeleteCharmStateValue`, written by `Flush` only when the hook succeeds).

use std::collections::BTreeMap;

use serde_json::Value;

use super::parse::{
    FILE, FORMAT, Flag, OUTPUT, Out, format_value, go_quote, key_values, object, parse,
    read_settings_file, run_err,
};
use super::{FakeAgent, Shared};
use crate::juju::{MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES};

/// The hook context's working copy of the stored state, loaded on first use.
fn working_copy(sh: &mut Shared) -> &mut BTreeMap<String, String> {
    let Shared { state, pending } = sh;
    pending
        .stored
        .get_or_insert_with(|| state.stored_state.clone())
}

impl FakeAgent {
    /// `state-get [--strict] [<key>|-]`: every value as a map, or one value. A missing key
    /// prints an empty string (an error with `--strict`: `"key" not found`). With nothing
    /// stored Juju hands the formatter a nil map: `{}` in smart and YAML, `null` in JSON.
    pub(super) fn state_get(&self, args: &[String]) -> Out {
        const STRICT: Flag = Flag {
            names: &["strict"],
            takes_value: false,
        };
        let p = parse(args, &[&FORMAT, &OUTPUT, &STRICT])?;
        let key = p.args.first().filter(|k| *k != "-").cloned();
        if !p.args.is_empty() {
            p.at_most(1)?;
        }
        let mut guard = self.lock();
        let stored = working_copy(&mut guard).clone();
        drop(guard);
        let v = match key {
            None if stored.is_empty() => {
                let nil_map = if p.format() == "json" {
                    "null\n"
                } else {
                    "{}\n"
                };
                return p.write(nil_map.into());
            }
            None => object(&stored),
            Some(k) => match stored.get(&k) {
                Some(v) => Value::String(v.clone()),
                None if p.flag("strict") => return run_err(format!("{} not found", go_quote(&k))),
                None => Value::String(String::new()),
            },
        };
        p.write(format_value(&v, p.format()))
    }

    /// `state-set [--file <path>] key=value ...`: values from `--file` are overridden by the
    /// arguments; an empty value is stored as an empty string (deleting is `state-delete`'s
    /// job); keys over 256 bytes and values over 64 KiB are refused (`quota.CheckTupleSize`).
    ///
    /// Juju sets the values in Go map order and stops at the first refused one, so which others
    /// were set is unspecified; here a refused value sets none.
    pub(super) fn state_set(&self, args: &[String]) -> Out {
        let p = parse(args, &[&FILE])?;
        let overrides = key_values(&p.args)?;
        let mut settings = match p.value("file") {
            Some(path) => read_settings_file(path)?,
            None => BTreeMap::new(),
        };
        settings.extend(overrides);
        for (k, v) in &settings {
            if k.len() > MAX_STATE_KEY_BYTES {
                return run_err(format!(
                    "max allowed key length ({MAX_STATE_KEY_BYTES}) exceeded"
                ));
            }
            if v.len() > MAX_STATE_VALUE_BYTES {
                return run_err(format!(
                    "max allowed value length ({MAX_STATE_VALUE_BYTES}) exceeded"
                ));
            }
        }
        let mut guard = self.lock();
        working_copy(&mut guard).extend(settings);
        Ok(String::new())
    }

    /// `state-delete <key>`: a missing key, or no key at all, is not an error.
    pub(super) fn state_delete(&self, args: &[String]) -> Out {
        let p = parse(args, &[])?;
        let Some(key) = p.args.first() else {
            return Ok(String::new());
        };
        p.at_most(1)?;
        if !key.is_empty() {
            working_copy(&mut self.lock()).remove(key);
        }
        Ok(String::new())
    }
}
