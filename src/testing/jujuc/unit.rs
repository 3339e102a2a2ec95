//! The unit's own tools: `status-set`, `juju-log`, `config-get`, `is-leader`, `leader-get`,
//! `leader-set`, `application-version-set`, `resource-get` and `secret-get`, each following its
//! file in `internal/worker/uniter/runner/jujuc/` (juju/juju).

use serde_json::Value;

use super::parse::{
    Answer, FORMAT, Flag, LABEL, OUTPUT, Out, PEEK, REFRESH, Reply, go_quote, key_values, object,
    parse, run_err, usage,
};
use super::{FakeAgent, deprecated_format};

impl FakeAgent {
    /// `status-set [--application] <status> [<message>]` (`status-set.go`): applied at once;
    /// `--application` needs leadership (`ErrIsNotLeader`).
    pub(super) fn status_set(&self, args: &[String]) -> Out {
        const APPLICATION: Flag = Flag {
            names: &["application"],
            takes_value: false,
        };
        let p = parse(args, &[&APPLICATION])?;
        let Some(status) = p.args.first() else {
            return usage("invalid args, require <status> [message]");
        };
        let valid = ["maintenance", "blocked", "waiting", "active"];
        if !valid.contains(&status.as_str()) {
            return usage(format!(
                "invalid status {}, expected one of [{}]",
                go_quote(status),
                valid.join(" ")
            ));
        }
        p.at_most(2)?;
        let msg = p.args.get(1).cloned().unwrap_or_default();
        let mut st = self.lock();
        if p.flag("application") {
            if !st.leader {
                return run_err("this unit is not the leader");
            }
            st.app_status = (status.clone(), msg);
        } else {
            st.status = (status.clone(), msg);
        }
        Ok(String::new())
    }

    /// `juju-log [--debug] [-l <level>] <message>` (`juju-log.go`): the message is every
    /// argument joined by spaces; an unknown level falls back to INFO; `--format` is
    /// deprecated and only warned about.
    pub(super) fn juju_log(&self, args: &[String]) -> Answer {
        const DEBUG: Flag = Flag {
            names: &["debug"],
            takes_value: false,
        };
        const LEVEL: Flag = Flag {
            names: &["l", "log-level"],
            takes_value: true,
        };
        const OLD: Flag = super::parse::OLD_FORMAT;
        let p = parse(args, &[&DEBUG, &LEVEL, &OLD])?;
        if p.args.is_empty() {
            return usage("no message specified");
        }
        let level = if p.flag("debug") {
            "DEBUG".to_string()
        } else {
            let l = p
                .flags
                .get("l")
                .map_or("INFO", String::as_str)
                .to_ascii_uppercase();
            match l.as_str() {
                "TRACE" | "DEBUG" | "INFO" | "WARNING" | "ERROR" | "CRITICAL" => l,
                "WARN" => "WARNING".into(),
                _ => "INFO".into(),
            }
        };
        self.lock()
            .juju_logs
            .push(format!("{level} {}", p.args.join(" ")));
        Ok(Reply {
            stdout: String::new(),
            stderr: if p.value("old-format").is_some() {
                deprecated_format("juju-log")
            } else {
                String::new()
            },
        })
    }

    /// `config-get [--all] [<key>]` (`config-get.go`).
    pub(super) fn config_get(&self, args: &[String]) -> Out {
        const ALL: Flag = Flag {
            names: &["a", "all"],
            takes_value: false,
        };
        let p = parse(args, &[&FORMAT, &OUTPUT, &ALL])?;
        p.at_most(1)?;
        if let (Some(k), true) = (p.args.first(), p.flag("a")) {
            return usage(format!(
                "cannot use argument --all together with key {}",
                go_quote(k)
            ));
        }
        let st = self.lock();
        let v = match p.args.first() {
            Some(k) => st.config.get(k).cloned().unwrap_or(Value::Null),
            None => Value::Object(
                st.config
                    .iter()
                    .filter(|(_, v)| p.flag("a") || !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        };
        drop(st);
        p.emit(&v)
    }

    /// `is-leader` (`is-leader.go`).
    pub(super) fn is_leader(&self, args: &[String]) -> Out {
        let p = parse(args, &[&FORMAT, &OUTPUT])?;
        p.at_most(0)?;
        let leader = self.lock().leader;
        p.emit(&Value::Bool(leader))
    }

    /// `leader-get [<key>|-]` (`leader-get.go`): every setting as a map, or one value (nothing,
    /// or `null` in JSON, when unset). Any unit may read.
    pub(super) fn leader_get(&self, args: &[String]) -> Out {
        let p = parse(args, &[&FORMAT, &OUTPUT])?;
        let key = match p.args.first().map(String::as_str) {
            None | Some("-") => None,
            Some(k) if k.contains('=') => return usage(format!("invalid key {}", go_quote(k))),
            Some(k) => Some(k.to_string()),
        };
        if !p.args.is_empty() {
            p.at_most(1)?;
        }
        let st = self.lock();
        let v = match key {
            None => object(&st.leader_settings),
            Some(k) => st
                .leader_settings
                .get(&k)
                .cloned()
                .map_or(Value::Null, Value::String),
        };
        drop(st);
        p.emit(&v)
    }

    /// `leader-set <key>=<value> ...` (`leader-set.go`; `runner/context/leader.go`
    /// `WriteLeaderSettings`; `state/application.go` `UpdateLeaderSettings`): written at once,
    /// an empty value deletes the key; only the leader may write, even nothing.
    pub(super) fn leader_set(&self, args: &[String]) -> Out {
        let p = parse(args, &[])?;
        let settings = key_values(&p.args)?;
        let mut st = self.lock();
        if !st.leader {
            return run_err(
                "cannot write leadership settings: cannot write settings: not the leader",
            );
        }
        for (k, v) in settings {
            if v.is_empty() {
                st.leader_settings.remove(&k);
            } else {
                st.leader_settings.insert(k, v);
            }
        }
        Ok(String::new())
    }

    /// `application-version-set <new-version>` (`application-version-set.go`): applied at once.
    pub(super) fn application_version_set(&self, args: &[String]) -> Out {
        let p = parse(args, &[])?;
        let Some(version) = p.args.first() else {
            return usage("no version specified");
        };
        p.at_most(1)?;
        self.lock().workload_version = version.clone();
        Ok(String::new())
    }

    /// `resource-get <name>` (`resource-get.go`): the path of the attached file.
    pub(super) fn resource_get(&self, args: &[String]) -> Out {
        let p = parse(args, &[])?;
        let Some(name) = p.args.first() else {
            return usage("missing required resource name");
        };
        p.at_most(1)?;
        let st = self.lock();
        match st.resources.get(name) {
            Some(path) => Ok(path.display().to_string()),
            None => {
                let tag = st.unit.replace('/', "-");
                let app = st.app();
                run_err(format!(
                    "could not download resource: HTTP request failed: Get \
                     https://localhost:17070/units/unit-{tag}/resources/{name}: \
                     resource#{app}/{name} not found"
                ))
            }
        }
    }

    /// `secret-get [--format yaml|json] [--label L] [--peek|--refresh] <uri> [key]`, as Juju
    /// 3 has it (`secret-get.go`): the whole content as a map, or one key's value.
    pub(super) fn secret_get(&self, args: &[String]) -> Out {
        let p = parse(args, &[&FORMAT, &OUTPUT, &LABEL, &PEEK, &REFRESH])?;
        let format = p.flags.get("format").map_or("yaml", String::as_str);
        if format != "yaml" && format != "json" {
            return usage(format!(
                "invalid value {format:?} for option --format: unknown format {format:?}"
            ));
        }
        let Some(uri) = p.args.first() else {
            return usage("require either a secret URI or label");
        };
        let id = uri.strip_prefix("secret:").unwrap_or(uri);
        if id.len() != 20
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return usage(format!("secret URI {uri:?} not valid"));
        }
        if p.flag("peek") && p.flag("refresh") {
            return usage("specify one of --peek or --refresh but not both");
        }
        p.at_most(2)?;
        let st = self.lock();
        let Some(content) = st.secrets.get(&format!("secret:{id}")) else {
            return run_err(format!("secret {id:?} not found"));
        };
        let value = match p.args.get(1) {
            None => object(content),
            Some(key) => match content.get(key) {
                Some(v) => Value::String(v.clone()),
                None => return run_err(format!("secret key value {key:?} not found")),
            },
        };
        drop(st);
        p.write(super::parse::format_value(&value, format))
    }
}
