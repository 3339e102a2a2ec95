//! The relation tools: `relation-ids`, `relation-list`, `relation-get` and `relation-set`,
//! following `relation-ids.go`, `relation-list.go`, `relation-get.go` and `relation-set.go` in
//! `internal/worker/uniter/runner/jujuc/`, the hook context's relation settings
//! (`runner/context/relation.go`) and the uniter facade's read checks (`ReadRemoteSettings`:
//! a unit or application that is not part of the relation is `permission denied`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::parse::{
    APP, Answer, FILE, FORMAT, Fail, OLD_FORMAT, OUTPUT, Out, Parsed, RELATION, Reply, go_quote,
    key_values, object, parse, read_settings_file, run_err, usage,
};
use super::{FakeAgent, FakeRelation, Shared, deprecated_format};

/// `names.IsValidApplication`: lowercase letters, digits and hyphens, starting with a letter,
/// each part after a hyphen holding a letter.
pub(super) fn is_valid_application(name: &str) -> bool {
    let mut parts = name.split('-');
    let first_ok = parts.next().is_some_and(|p| {
        p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    first_ok
        && parts.all(|p| {
            p.bytes().any(|b| b.is_ascii_lowercase())
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// `names.IsValidUnit`: `<application>/<number>` with no leading zero.
pub(super) fn is_valid_unit(name: &str) -> bool {
    let Some((app, n)) = name.rsplit_once('/') else {
        return false;
    };
    let number_ok =
        n == "0" || (!n.is_empty() && !n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit()));
    is_valid_application(app) && number_ok
}

/// The application of a unit name.
fn app_of(unit: &str) -> &str {
    unit.split('/').next().unwrap_or(unit)
}

impl FakeAgent {
    /// `relation-ids [<endpoint>]` (`relation-ids.go`): ids string-sorted; an unknown endpoint
    /// gives none.
    pub(super) fn relation_ids(&self, args: &[String]) -> Out {
        let p = parse(args, &[&FORMAT, &OUTPUT])?;
        let Some(name) = p.args.first() else {
            return usage("no endpoint name specified");
        };
        p.at_most(1)?;
        let mut ids: Vec<String> = self
            .lock()
            .relations
            .iter()
            .filter(|r| &r.endpoint == name)
            .map(FakeRelation::key)
            .collect();
        ids.sort();
        let v = Value::Array(ids.into_iter().map(Value::String).collect());
        match (p.format(), &v) {
            ("yaml", Value::Array(a)) if a.is_empty() => p.write("[]\n".into()),
            _ => p.emit(&v),
        }
    }

    /// The relation `-r` names (`NewRelationIdValue`: `endpoint:N` or `N`).
    fn find_relation(&self, id: &str) -> std::result::Result<FakeRelation, Fail> {
        let num = id.rsplit(':').next().unwrap_or(id);
        let Ok(n) = num.parse::<u32>() else {
            return usage(format!(
                "invalid value {} for option -r: invalid relation id",
                go_quote(id)
            ));
        };
        match self.lock().relations.iter().find(|r| r.id == n) {
            Some(r) => Ok(r.clone()),
            None => usage(format!(
                "invalid value {} for option -r: relation not found",
                go_quote(id)
            )),
        }
    }

    /// Parses a relation tool's flags and finds the relation `-r` names (outside a relation
    /// hook `-r` is required).
    fn relation_call(
        &self,
        args: &[String],
        spec: &[&super::parse::Flag],
    ) -> std::result::Result<(Parsed, FakeRelation), Fail> {
        let p = parse(args, spec)?;
        let Some(id) = p.flags.get("r") else {
            return usage("no relation id specified");
        };
        let rel = self.find_relation(id)?;
        Ok((p, rel))
    }

    /// `relation-list -r <id> [--app]` (`relation-list.go`): the remote units (the other peers
    /// in a peer relation), or the remote application's name (this unit's own in a peer
    /// relation).
    pub(super) fn relation_list(&self, args: &[String]) -> Out {
        let (p, rel) = self.relation_call(args, &[&FORMAT, &OUTPUT, &RELATION, &APP])?;
        p.at_most(0)?;
        let v = if p.flag("app") {
            if rel.peer {
                Value::String(self.lock().app().to_string())
            } else {
                Value::String(rel.app)
            }
        } else {
            Value::Array(rel.units.into_iter().map(Value::String).collect())
        };
        p.emit(&v)
    }

    /// `relation-get -r <id> [--app] [<key>|-] <unit or app>` (`relation-get.go`).
    ///
    /// This unit's own bag, and its application's bag when it is the leader, are read from the
    /// hook context, changes made in this hook included; everything else is read as Juju's
    /// controller has it. A non-leader may read its own application's bag only in a peer
    /// relation, and nothing outside the relation may be read (`permission denied`).
    pub(super) fn relation_get(&self, args: &[String]) -> Out {
        let (p, rel) = self.relation_call(args, &[&FORMAT, &OUTPUT, &RELATION, &APP])?;
        let mut rest = p.args.clone().into_iter();
        let key = rest.next().filter(|k| k != "-");
        let app = p.flag("app");
        let member = match rest.next() {
            Some(m) if app => {
                if is_valid_application(&m) {
                    m
                } else if is_valid_unit(&m) {
                    app_of(&m).to_string()
                } else {
                    String::new()
                }
            }
            Some(m) => {
                if !is_valid_unit(&m) {
                    if is_valid_application(&m) {
                        return usage(format!(
                            "expected unit name, got application name {}",
                            go_quote(&m)
                        ));
                    }
                    return usage(format!("invalid unit name {}", go_quote(&m)));
                }
                m
            }
            None => return usage("no unit or application specified"),
        };
        p.at_most(2)?;
        let guard = self.lock();
        let data = read_bag(&guard, &rel, &member, app)?;
        drop(guard);
        let v = match key {
            None => object(&data),
            Some(k) => data.get(&k).cloned().map_or(Value::Null, Value::String),
        };
        p.emit(&v)
    }

    /// `relation-set -r <id> [--app] [--file <path>] key=value ...` (`relation-set.go`): settings
    /// from `--file` (a YAML map) are overridden by the arguments; an empty value deletes the
    /// key; `--app` needs leadership. The change waits in the hook context until the hook ends.
    pub(super) fn relation_set(&self, args: &[String]) -> Answer {
        let (p, rel) = self.relation_call(args, &[&RELATION, &FILE, &APP, &OLD_FORMAT])?;
        let overrides = key_values(&p.args)?;
        let stderr = if p.value("old-format").is_some() {
            deprecated_format("relation-set")
        } else {
            String::new()
        };
        let mut settings = match p.value("file") {
            Some(path) => read_settings_file(path)?,
            None => BTreeMap::new(),
        };
        settings.extend(overrides);
        let app = p.flag("app");
        let mut guard = self.lock();
        if app && !guard.leader {
            return run_err("cannot write relation settings");
        }
        let Shared { state, pending } = &mut *guard;
        let committed = state.relations.iter().find(|r| r.id == rel.id);
        let bag = if app {
            pending.app_settings.entry(rel.id).or_insert_with(|| {
                committed
                    .map(|r| r.local_app_data.clone())
                    .unwrap_or_default()
            })
        } else {
            pending.unit_settings.entry(rel.id).or_insert_with(|| {
                committed
                    .map(|r| r.local_unit_data.clone())
                    .unwrap_or_default()
            })
        };
        for (k, v) in settings {
            if v.is_empty() {
                bag.remove(&k);
            } else {
                bag.insert(k, v);
            }
        }
        Ok(Reply {
            stdout: String::new(),
            stderr,
        })
    }
}

/// One data bag of a relation as `relation-get` sees it (`mustReadSettingsFromController`).
fn read_bag(
    sh: &Shared,
    rel: &FakeRelation,
    member: &str,
    app: bool,
) -> std::result::Result<BTreeMap<String, String>, Fail> {
    let own_app = sh.state.app();
    if !app && member == sh.state.unit {
        return Ok(sh
            .pending
            .unit_settings
            .get(&rel.id)
            .unwrap_or(&rel.local_unit_data)
            .clone());
    }
    if app && member == own_app && sh.state.leader {
        return Ok(sh
            .pending
            .app_settings
            .get(&rel.id)
            .unwrap_or(&rel.local_app_data)
            .clone());
    }
    // Read from the controller: only the relation's other side (or, in a peer relation, this
    // application) may be read.
    let related = if rel.peer { own_app } else { rel.app.as_str() };
    if app {
        return match member {
            m if m == related && rel.peer => Ok(rel.local_app_data.clone()),
            m if m == related => Ok(rel.app_data.clone()),
            _ => run_err("permission denied"),
        };
    }
    if app_of(member) != related {
        return run_err("permission denied");
    }
    Ok(rel.unit_data.get(member).cloned().unwrap_or_default())
}
