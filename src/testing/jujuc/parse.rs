//! What every fake tool shares: gnuflag-style flag parsing, `key=value` arguments, settings
//! files, output formats and Juju's error and exit-code conventions.
//!
//! Follows `juju/gnuflag` (flag errors), `juju/cmd` `output.go` (formats, `-o`) and `cmd.go`
//! (`ERROR <msg>`, exit 2 for usage, 1 for run errors), `juju/utils` `keyvalues.Parse`, and
//! `relation-set.go` `readSettings` (the `--file` YAML map).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A usage (`Init` or flag) error: exit status 2.
pub(super) struct Usage(pub(super) String);
/// A run error: exit status 1.
pub(super) struct RunErr(pub(super) String);

/// How a tool call failed.
pub(super) enum Fail {
    Usage(Usage),
    Run(RunErr),
}

/// What a successful tool call printed.
#[derive(Default)]
pub(super) struct Reply {
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl From<String> for Reply {
    fn from(stdout: String) -> Self {
        Reply {
            stdout,
            stderr: String::new(),
        }
    }
}

/// A tool's result.
pub(super) type Answer = std::result::Result<Reply, Fail>;
/// A tool's result when it never writes to stderr.
pub(super) type Out = std::result::Result<String, Fail>;

pub(super) fn usage<T>(msg: impl Into<String>) -> std::result::Result<T, Fail> {
    Err(Fail::Usage(Usage(msg.into())))
}

pub(super) fn run_err<T>(msg: impl Into<String>) -> std::result::Result<T, Fail> {
    Err(Fail::Run(RunErr(msg.into())))
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(args: &[String]) -> String {
    let items: Vec<String> = args.iter().map(|a| go_quote(a)).collect();
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of a string (close enough: JSON string escaping).
pub(super) fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// A flag a tool accepts.
pub(super) struct Flag {
    pub(super) names: &'static [&'static str],
    pub(super) takes_value: bool,
}

/// `--format`, checked against `smart`, `yaml` and `json` (`cmd.Output.AddFlags`).
pub(super) const FORMAT: Flag = Flag {
    names: &["format"],
    takes_value: true,
};
/// `-o`/`--output`: write the output to a file instead of stdout.
pub(super) const OUTPUT: Flag = Flag {
    names: &["o", "output"],
    takes_value: true,
};
/// The deprecated `--format` of tools that print nothing: any value, a warning on stderr.
pub(super) const OLD_FORMAT: Flag = Flag {
    names: &["old-format"],
    takes_value: true,
};
pub(super) const RELATION: Flag = Flag {
    names: &["r", "relation"],
    takes_value: true,
};
pub(super) const LABEL: Flag = Flag {
    names: &["label"],
    takes_value: true,
};
pub(super) const PEEK: Flag = Flag {
    names: &["peek"],
    takes_value: false,
};
pub(super) const REFRESH: Flag = Flag {
    names: &["refresh"],
    takes_value: false,
};
pub(super) const APP: Flag = Flag {
    names: &["app"],
    takes_value: false,
};
/// `--file <path>` (`cmd.FileVar`: `-` is stdin).
pub(super) const FILE: Flag = Flag {
    names: &["file"],
    takes_value: true,
};

/// Parsed command line: flags by their first name, positionals in order.
pub(super) struct Parsed {
    pub(super) flags: BTreeMap<&'static str, String>,
    pub(super) args: Vec<String>,
}

impl Parsed {
    /// A boolean flag's value (`--app`, `--app=true`; `--app=false` is false).
    pub(super) fn flag(&self, name: &str) -> bool {
        self.flags.get(name).is_some_and(|v| v == "true")
    }

    /// A string flag's value, `None` when absent or empty.
    pub(super) fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The `--format` value, `smart` by default.
    pub(super) fn format(&self) -> &str {
        self.flags.get("format").map_or("smart", String::as_str)
    }

    /// Formats `v` and writes it where `cmd.Output.Write` would: the `-o` file (printing
    /// nothing) or stdout.
    pub(super) fn emit(&self, v: &Value) -> Out {
        self.write(format_value(v, self.format()))
    }

    /// Writes already formatted output to the `-o` file or returns it for stdout.
    pub(super) fn write(&self, text: String) -> Out {
        let Some(path) = self.value("o") else {
            return Ok(text);
        };
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.into());
        match std::fs::write(&abs, text) {
            Ok(()) => Ok(String::new()),
            Err(e) => run_err(format!("open {}: {}", abs.display(), go_io_error(&e))),
        }
    }

    /// Refuses positional arguments past the first `n`, as `cmd.CheckEmpty` does.
    pub(super) fn at_most(&self, n: usize) -> std::result::Result<(), Fail> {
        if self.args.len() > n {
            return usage(format!(
                "unrecognized args: {}",
                go_quote_list(&self.args[n..])
            ));
        }
        Ok(())
    }
}

/// Go's text for an OS error, as `os.Open` reports it after the path.
pub(super) fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory".into(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

/// strconv.ParseBool, as gnuflag reads a boolean flag's `=value`.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// gnuflag-style parsing: flags may be mixed with positionals, `--` ends flags, `--long`,
/// `--long=v`, `--long v`, and single-dash clusters of one-rune flags. A flag given twice keeps
/// its last value.
pub(super) fn parse(args: &[String], spec: &[&Flag]) -> std::result::Result<Parsed, Fail> {
    // A tool's deprecated `--format` is spelled `format` on the command line.
    let old_format = spec.iter().any(|f| f.names == OLD_FORMAT.names);
    let find = |name: &str| {
        let name = if old_format && name == "format" {
            "old-format"
        } else {
            name
        };
        spec.iter().find(|f| f.names.contains(&name)).copied()
    };
    let dashed = |name: &str| {
        if name.chars().count() > 1 {
            format!("--{name}")
        } else {
            format!("-{name}")
        }
    };
    let mut p = Parsed {
        flags: BTreeMap::new(),
        args: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            p.args.extend(it.by_ref().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(flag) = find(name) else {
                return usage(format!("option provided but not defined: {}", dashed(name)));
            };
            let value = if flag.takes_value {
                match inline.or_else(|| it.next().cloned()) {
                    Some(v) => v,
                    None => return usage(format!("option needs an argument: {}", dashed(name))),
                }
            } else {
                match inline.as_deref().map_or(Some(true), go_bool) {
                    Some(b) => b.to_string(),
                    None => {
                        return usage(format!(
                            "invalid boolean value {} for option {}",
                            go_quote(inline.as_deref().unwrap_or_default()),
                            dashed(name)
                        ));
                    }
                }
            };
            p.flags.insert(flag.names[0], value);
        } else if a.len() > 1 && a.starts_with('-') {
            let cluster: Vec<char> = a[1..].chars().collect();
            let mut i = 0;
            while i < cluster.len() {
                let name = cluster[i].to_string();
                let Some(flag) = find(&name) else {
                    return usage(format!("option provided but not defined: -{name}"));
                };
                if flag.takes_value {
                    let rest: String = cluster[i + 1..].iter().collect();
                    let rest = rest.strip_prefix('=').map(str::to_string).unwrap_or(rest);
                    let value = if !rest.is_empty() {
                        rest
                    } else {
                        match it.next() {
                            Some(v) => v.clone(),
                            None => return usage(format!("option needs an argument: -{name}")),
                        }
                    };
                    p.flags.insert(flag.names[0], value);
                    break;
                }
                p.flags.insert(flag.names[0], "true".into());
                i += 1;
            }
        } else {
            p.args.push(a.clone());
        }
    }
    if let Some(f) = p.flags.get("format")
        && !matches!(f.as_str(), "smart" | "yaml" | "json")
    {
        return usage(format!(
            "invalid value {} for option --format: unknown format {}",
            go_quote(f),
            go_quote(f)
        ));
    }
    Ok(p)
}

/// Renders a value in one of Juju's output formats (`smart` is the default).
pub fn format_value(v: &Value, format: &str) -> String {
    match format {
        "json" => {
            let s = serde_json::to_string(v).unwrap_or_default();
            // Go's encoder escapes these three; they can only occur inside strings.
            let s = s
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026");
            format!("{s}\n")
        }
        "yaml" => match v {
            Value::Null => String::new(),
            Value::String(s) if s.is_empty() => "\"\"\n".into(),
            v => yaml(v),
        },
        _ => match v {
            Value::Null => String::new(),
            Value::String(s) if s.is_empty() => String::new(),
            Value::String(s) => format!("{s}\n"),
            Value::Bool(true) => "True\n".into(),
            Value::Bool(false) => "False\n".into(),
            Value::Array(items) if items.iter().all(Value::is_string) => {
                if items.is_empty() {
                    String::new()
                } else {
                    let lines: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                    format!("{}\n", lines.join("\n"))
                }
            }
            v => yaml(v),
        },
    }
}

/// YAML as Juju prints it: sorted keys, one trailing newline.
pub fn yaml(v: &Value) -> String {
    let s = serde_norway::to_string(v).unwrap_or_default();
    format!("{}\n", s.trim_end_matches('\n'))
}

/// A string map as a JSON object (for output).
pub(super) fn object(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Walks `a.b.c` into nested maps; a missing key or a non-map gives `None`.
pub(super) fn lookup<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    key.split('.').try_fold(v, |cur, k| cur.as_object()?.get(k))
}

/// Juju's `addValueToMap`: creates or replaces intermediate maps; the last segment wins.
pub fn merge_path(map: &mut Map<String, Value>, path: &[&str], value: Value) {
    let Some((last, inner)) = path.split_last() else {
        return;
    };
    let mut cur = map;
    for seg in inner {
        let entry = cur
            .entry(seg.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(m) = entry else {
            return;
        };
        cur = m;
    }
    cur.insert(last.to_string(), value);
}

/// `keyvalues.Parse(args, true)`: `key=value` pairs, empty values allowed, no empty key and no
/// key twice (usage errors).
pub(super) fn key_values(args: &[String]) -> std::result::Result<BTreeMap<String, String>, Fail> {
    let mut out = BTreeMap::new();
    for kv in args {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                if out.insert(k.to_string(), v.to_string()).is_some() {
                    return usage(format!("key {} specified more than once", go_quote(k)));
                }
            }
            _ => return usage(format!("expected \"key=value\", got {}", go_quote(kv))),
        }
    }
    Ok(out)
}

/// The YAML tag yaml.v2 names a value by in its errors.
fn yaml_tag(v: &Value) -> &'static str {
    match v {
        Value::Null => "!!null",
        Value::Bool(_) => "!!bool",
        Value::Number(n) if n.is_f64() => "!!float",
        Value::Number(_) => "!!int",
        Value::String(_) => "!!str",
        Value::Array(_) => "!!seq",
        Value::Object(_) => "!!map",
    }
}

/// yaml.v2's `cannot unmarshal <tag> [`value`] into <type>`, long scalars cut to 7 characters.
fn unmarshal_error(v: &Value, into: &str) -> String {
    let text = match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let shown = match text {
        Some(t) if t.chars().count() > 10 => {
            format!(" `{}...`", t.chars().take(7).collect::<String>())
        }
        Some(t) => format!(" `{t}`"),
        None => String::new(),
    };
    format!("cannot unmarshal {}{shown} into {into}", yaml_tag(v))
}

/// The 1-based line of the first YAML content in `text` (not blank, not a comment), or of the
/// first line holding `key:`.
fn yaml_line(text: &str, key: Option<&str>) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            match key {
                Some(k) => t.contains(&format!("{k}:")),
                None => !t.is_empty() && !t.starts_with('#'),
            }
        })
        .map_or(1, |i| i + 1)
}

/// `readSettings` of `relation-set.go` / `state-set.go`: the `--file` holds a YAML map of
/// strings (scalars are kept as strings, `~` as an empty value). Errors are run errors, worded
/// as yaml.v2's unmarshal errors (`yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str
/// `foo=bar...` into map[string]string`); YAML syntax errors carry serde_norway's text.
pub(super) fn read_settings_file(
    path: &str,
) -> std::result::Result<BTreeMap<String, String>, Fail> {
    if path == "-" {
        return run_err("hook tool requires stdin, none supplied");
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.into());
    let text = match std::fs::read(&abs) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {
            return run_err(format!("read {}: is a directory", abs.display()));
        }
        Err(e) => return run_err(format!("open {}: {}", abs.display(), go_io_error(&e))),
    };
    let doc = match serde_norway::from_str::<Value>(&text) {
        Ok(v) => v,
        Err(e) => return run_err(format!("yaml: {e}")),
    };
    let map = match doc {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(m) => m,
        other => {
            return run_err(format!(
                "yaml: unmarshal errors:\n  line {}: {}",
                yaml_line(&text, None),
                unmarshal_error(&other, "map[string]string")
            ));
        }
    };
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (k, v) in map {
        let s = match &v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Array(_) | Value::Object(_) => {
                problems.push(format!(
                    "  line {}: {}",
                    yaml_line(&text, Some(&k)),
                    unmarshal_error(&v, "string")
                ));
                continue;
            }
        };
        out.insert(k, s);
    }
    if !problems.is_empty() {
        return run_err(format!("yaml: unmarshal errors:\n{}", problems.join("\n")));
    }
    Ok(out)
}
