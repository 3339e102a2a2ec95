//! The action tools: `action-get`, `action-set`, `action-fail` and `action-log`
//! (`internal/worker/uniter/runner/jujuc/action-*.go`).

use serde_json::{Map, Value};

use super::parse::{
    FORMAT, Fail, OUTPUT, Out, Usage, go_quote, lookup, merge_path, parse, run_err, usage,
};
use super::{FakeAgent, LogLine};
use crate::juju::check_result_key;

/// The run error of every action tool outside an action.
const NOT_IN_ACTION: &str = "not running an action";

impl FakeAgent {
    /// `action-get [<key>]`: the params (defaults included), or one dotted key's value.
    pub(super) fn action_get(&self, args: &[String]) -> Out {
        let p = parse(args, &[&FORMAT, &OUTPUT])?;
        p.at_most(1)?;
        let st = self.lock();
        let Some(params) = &st.params else {
            return run_err(NOT_IN_ACTION);
        };
        let answer = match p.args.first() {
            None => match params {
                Value::Object(_) => params.clone(),
                _ => Value::Object(Map::new()),
            },
            Some(key) => lookup(params, key).cloned().unwrap_or(Value::Null),
        };
        p.emit(&answer)
    }

    /// `action-set <key>=<value> ...`: keys checked as Juju checks them (one bad key sets
    /// nothing), merged into the results by dotted path.
    pub(super) fn action_set(&self, args: &[String]) -> Out {
        let p = parse(args, &[])?;
        let mut pairs = Vec::new();
        for a in &p.args {
            let Some((k, v)) = a.split_once('=') else {
                return usage(format!(
                    "argument {} must be of the form key...=value",
                    go_quote(a)
                ));
            };
            check_result_key(k).map_err(|e| Fail::Usage(Usage(e.to_string())))?;
            pairs.push((k.to_string(), v.to_string()));
        }
        let mut st = self.lock();
        if st.params.is_none() {
            return run_err(NOT_IN_ACTION);
        }
        for (k, v) in pairs {
            let path: Vec<&str> = k.split('.').collect();
            merge_path(&mut st.results, &path, Value::String(v));
        }
        Ok(String::new())
    }

    /// `action-fail [<message>]`: marks the action failed; the last message wins.
    pub(super) fn action_fail(&self, args: &[String]) -> Out {
        let p = parse(args, &[])?;
        p.at_most(1)?;
        let mut st = self.lock();
        if st.params.is_none() {
            return run_err(NOT_IN_ACTION);
        }
        st.failed = true;
        st.fail_message = p.args.first().cloned().unwrap_or_else(|| {
            "action failed without reason given, check action for errors".into()
        });
        Ok(String::new())
    }

    /// `action-log <message>`: a progress line, timestamped; past 1000 lines Juju drops them.
    pub(super) fn action_log(&self, args: &[String]) -> Out {
        let p = parse(args, &[])?;
        if p.args.is_empty() {
            return usage("no message specified");
        }
        let line = {
            let mut st = self.lock();
            if st.params.is_none() {
                return run_err(NOT_IN_ACTION);
            }
            if st.logs.len() >= 1000 {
                // Juju drops messages past 1000 without an error.
                return Ok(String::new());
            }
            let now = jiff::Timestamp::now();
            let line = LogLine {
                time: jiff::Timestamp::from_second(now.as_second()).unwrap_or(now),
                message: p.args.join(" "),
            };
            st.logs.push(line.clone());
            line
        };
        if let Some(sink) = self.on_log.as_ref() {
            sink(&line);
        }
        Ok(String::new())
    }
}
