//! The charm's own files as Juju reads them: `actions.yaml` turned into one JSON Schema per
//! action (Juju 3 rules), params validated and defaulted as the controller does, and
//! `config.yaml` options with their types and defaults.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::juju::is_valid_name;

/// One action's spec: its description and the JSON Schema its params must satisfy.
#[derive(Debug, Clone)]
pub struct ActionSpec {
    /// The action's name.
    pub name: String,
    /// Its description ("No description" when none is given).
    pub description: String,
    /// The full schema, as `juju actions --schema` shows it.
    pub schema: Value,
    validator: std::sync::Arc<jsonschema::Validator>,
}

/// All actions of a charm, by name.
#[derive(Debug, Clone, Default)]
pub struct ActionSpecs {
    specs: BTreeMap<String, ActionSpec>,
}

fn yaml_to_json(text: &str, what: &str) -> Result<Value> {
    serde_norway::from_str::<Value>(text)
        .map_err(|e| Error::invalid(format!("{what} is not valid YAML")).with_source(e))
}

/// Juju's `cleanse`: `$ref` and `$schema` are refused anywhere.
fn cleanse(v: &Value) -> Result<()> {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" || k == "$schema" {
                    return Err(Error::invalid(format!(
                        "schema key {k:?} not compatible with this version of juju"
                    )));
                }
                cleanse(v)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(cleanse),
        _ => Ok(()),
    }
}

impl ActionSpecs {
    /// Parses `actions.yaml` with Juju 3's rules: names must match the action-name rule and not
    /// be reserved, `params` becomes `properties`, `parallel` and `execution-group` stay out of
    /// the schema, every other key is copied in, and the result must compile as draft 4.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] with Juju's message for the first problem.
    pub fn parse(text: &str) -> Result<Self> {
        let doc = yaml_to_json(text, "actions.yaml")?;
        let mut specs = BTreeMap::new();
        let Some(map) = doc.as_object() else {
            return Ok(ActionSpecs::default());
        };
        for (name, body) in map {
            if !is_valid_name(name) {
                return Err(Error::invalid(format!("bad action name {name}")));
            }
            if name == "juju" {
                return Err(Error::invalid(
                    "cannot use action name juju: \"juju\" is a reserved name",
                ));
            }
            if name.starts_with("juju-") {
                return Err(Error::invalid(format!(
                    "cannot use action name {name}: the \"juju-\" prefix is reserved"
                )));
            }
            let mut schema = Map::new();
            schema.insert("description".into(), "No description".into());
            schema.insert("type".into(), "object".into());
            schema.insert("title".into(), name.clone().into());
            schema.insert("properties".into(), Value::Object(Map::new()));
            let body = body.as_object().cloned().unwrap_or_default();
            for (k, v) in body {
                match k.as_str() {
                    "description" | "title" if !v.is_string() => {
                        return Err(Error::invalid(format!(
                            "value for schema key {k:?} must be a string"
                        )));
                    }
                    "required" if !v.is_array() => {
                        return Err(Error::invalid(
                            "value for schema key \"required\" must be a YAML list",
                        ));
                    }
                    "parallel" => {
                        if !v.is_boolean() {
                            return Err(Error::invalid(
                                "value for schema key \"parallel\" must be a bool",
                            ));
                        }
                    }
                    "execution-group" => {
                        if !v.is_string() {
                            return Err(Error::invalid(
                                "value for schema key \"execution-group\" must be a string",
                            ));
                        }
                    }
                    "params" => {
                        if !v.is_object() {
                            return Err(Error::invalid("params failed to parse as a map"));
                        }
                        cleanse(&v)?;
                        schema.insert("properties".into(), v);
                    }
                    _ => {
                        cleanse(&v)?;
                        schema.insert(k, v);
                    }
                }
            }
            let schema = Value::Object(schema);
            let validator = jsonschema::draft4::new(&schema).map_err(|e| {
                Error::invalid(format!(
                    "invalid params schema for action schema {name}: {e}"
                ))
            })?;
            let description = schema["description"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            specs.insert(
                name.clone(),
                ActionSpec {
                    name: name.clone(),
                    description,
                    schema,
                    validator: std::sync::Arc::new(validator),
                },
            );
        }
        Ok(ActionSpecs { specs })
    }

    /// The spec of one action.
    pub fn get(&self, name: &str) -> Option<&ActionSpec> {
        self.specs.get(name)
    }

    /// All action names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.specs.keys().map(String::as_str).collect()
    }

    /// What the controller does when an action is enqueued: look the action up, validate the
    /// params, then insert the defaults. The error text is Juju's.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`]: `action "x" not defined on unit "u"` or
    /// `validation failed: ...`.
    pub fn prepare(&self, unit: &str, name: &str, params: &Value) -> Result<Value> {
        let spec = self.get(name).ok_or_else(|| {
            Error::invalid(format!("action {name:?} not defined on unit {unit:?}"))
        })?;
        spec.validate(params)?;
        Ok(spec.insert_defaults(params))
    }
}

impl ActionSpec {
    /// Validates params against the schema, reporting every problem as gojsonschema words it,
    /// joined with `; ` behind `validation failed: `.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] listing each problem.
    pub fn validate(&self, params: &Value) -> Result<()> {
        let mut problems = Vec::new();
        for e in self.validator.iter_errors(params) {
            let path: Vec<String> = e
                .instance_path()
                .as_str()
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect();
            let field = std::iter::once("(root)".to_string())
                .chain(path)
                .collect::<Vec<_>>()
                .join(".");
            let given = serde_json::to_string(e.instance().as_ref()).unwrap_or_default();
            use jsonschema::error::ValidationErrorKind as K;
            match e.kind() {
                K::AdditionalProperties { unexpected } => {
                    for p in unexpected {
                        problems.push(format!(
                            "{field} : additional property {p:?} is not allowed, given {given}"
                        ));
                    }
                    continue;
                }
                kind => {
                    let description = match kind {
                        K::Type { kind } => {
                            let names: Vec<&str> = match kind {
                                jsonschema::error::TypeKind::Single(t) => vec![t.as_str()],
                                jsonschema::error::TypeKind::Multiple(set) => {
                                    set.iter().map(|t| t.as_str()).collect()
                                }
                            };
                            format!("must be of type {}", names.join(","))
                        }
                        K::Required { property } => {
                            format!("{property} property is missing and required")
                        }
                        K::Enum { options } => {
                            let opts: Vec<String> = options
                                .as_array()
                                .map(|a| a.iter().map(|o| o.to_string()).collect())
                                .unwrap_or_default();
                            format!("must match one of the enum values [{}]", opts.join(","))
                        }
                        K::MinLength { limit } => {
                            format!("string length must be greater or equal to {limit}")
                        }
                        K::MaxLength { limit } => {
                            format!("string length must be less than or equal to {limit}")
                        }
                        K::Pattern { pattern } => format!("does not match pattern '{pattern}'"),
                        K::Minimum { limit } => format!("must be greater than or equal to {limit}"),
                        K::Maximum { limit } => format!("must be less than or equal to {limit}"),
                        _ => e.to_string(),
                    };
                    problems.push(format!("{field} : {description}, given {given}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "validation failed: {}",
                problems.join("; ")
            )))
        }
    }

    /// gojsonschema's `InsertDefaults`: for each absent property, its `default`, or (for an
    /// object property) a map of its own defaults if any; present maps are recursed into;
    /// nothing given is overwritten.
    pub fn insert_defaults(&self, params: &Value) -> Value {
        let mut out = params.clone();
        if !out.is_object() {
            out = Value::Object(Map::new());
        }
        insert_defaults(&self.schema, &mut out);
        out
    }
}

fn insert_defaults(schema: &Value, instance: &mut Value) {
    let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        instance.as_object_mut(),
    ) else {
        return;
    };
    for (name, prop) in props {
        match obj.get_mut(name) {
            Some(v) if v.is_object() => insert_defaults(prop, v),
            Some(_) => {}
            None => {
                if let Some(d) = prop.get("default") {
                    obj.insert(name.clone(), d.clone());
                } else if prop.get("properties").is_some() {
                    let mut m = Value::Object(Map::new());
                    insert_defaults(prop, &mut m);
                    if m.as_object().is_some_and(|m| !m.is_empty()) {
                        obj.insert(name.clone(), m);
                    }
                }
            }
        }
    }
}

/// Parses `juju run` style `key.path=value` arguments: the key path's segments must match the
/// name rule; values are YAML-typed unless `string_args`; later arguments win, merged like
/// `action-set`.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] with `juju run`'s message.
pub fn parse_cli_params(args: &[String], string_args: bool) -> Result<Value> {
    let mut out = Map::new();
    for a in args {
        let Some((key, value)) = a.split_once('=') else {
            return Err(Error::invalid(format!(
                "argument {a:?} must be of the form key.key.key...=value"
            )));
        };
        let path: Vec<&str> = key.split('.').collect();
        for seg in &path {
            if !is_valid_name(seg) {
                return Err(Error::invalid(format!(
                    "key {seg:?} must start and end with lowercase alphanumeric, and contain only \
                     lowercase alphanumeric and hyphens"
                )));
            }
        }
        let v = if string_args {
            Value::String(value.to_string())
        } else {
            serde_norway::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.into()))
        };
        let v = if v.is_null()
            && !value.trim().is_empty()
            && value.trim() != "null"
            && value.trim() != "~"
        {
            Value::String(value.into())
        } else {
            v
        };
        crate::testing::jujuc::merge_path(&mut out, &path, v);
    }
    Ok(Value::Object(out))
}

/// One option of `config.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigOption {
    /// `string`, `int`, `float`, `boolean` or `secret`.
    pub kind: String,
    /// The default, if any.
    pub default: Option<Value>,
    /// The description.
    pub description: String,
}

/// A charm's `config.yaml`.
#[derive(Debug, Clone, Default)]
pub struct ConfigSpec {
    /// Options by name.
    pub options: BTreeMap<String, ConfigOption>,
}

impl ConfigSpec {
    /// Parses `config.yaml`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when it is not valid YAML or an option has an unknown
    /// type.
    pub fn parse(text: &str) -> Result<Self> {
        let doc = yaml_to_json(text, "config.yaml")?;
        let mut options = BTreeMap::new();
        if let Some(opts) = doc.get("options").and_then(Value::as_object) {
            for (name, o) in opts {
                let kind = o
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("string")
                    .to_string();
                if !matches!(
                    kind.as_str(),
                    "string" | "int" | "float" | "boolean" | "secret"
                ) {
                    return Err(Error::invalid(format!(
                        "option {name:?} has unknown type {kind:?}"
                    )));
                }
                options.insert(
                    name.clone(),
                    ConfigOption {
                        kind,
                        default: o.get("default").filter(|d| !d.is_null()).cloned(),
                        description: o
                            .get("description")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    },
                );
            }
        }
        Ok(ConfigSpec { options })
    }

    /// The defaults, as `config-get` returns them before anything is set.
    pub fn defaults(&self) -> Map<String, Value> {
        self.options
            .iter()
            .filter_map(|(k, o)| o.default.clone().map(|d| (k.clone(), d)))
            .collect()
    }

    /// Converts a `juju config` style string value to the option's type.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for an unknown option or a value of the wrong type.
    pub fn coerce(&self, key: &str, value: &str) -> Result<Value> {
        let opt = self.options.get(key).ok_or_else(|| {
            Error::invalid(format!(
                "unknown option {key:?}; the charm has: {}",
                self.options.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let bad = || {
            Error::invalid(format!(
                "option {key:?} expected {}, got {value:?}",
                opt.kind
            ))
        };
        Ok(match opt.kind.as_str() {
            "int" => Value::from(value.parse::<i64>().map_err(|_| bad())?),
            "float" => Value::from(value.parse::<f64>().map_err(|_| bad())?),
            "boolean" => Value::from(match value {
                "true" | "True" | "yes" => true,
                "false" | "False" | "no" => false,
                _ => return Err(bad()),
            }),
            _ => Value::String(value.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIONS: &str = r#"
snapshot:
  description: Take a snapshot.
  params:
    target:
      type: string
      default: /var/lib/x
    level:
      type: integer
    mode:
      type: string
      enum: [gzip, zstd]
    nested:
      type: object
      properties:
        inner:
          type: string
          default: d
  required: [level]
  additionalProperties: false
"#;

    fn err(r: Result<Value>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn validation_messages_are_jujus() {
        let s = ActionSpecs::parse(ACTIONS).unwrap();
        let p = |v: Value| s.prepare("u/0", "snapshot", &v);
        assert_eq!(
            err(p(serde_json::json!({"level": "text"}))),
            "validation failed: (root).level : must be of type integer, given \"text\""
        );
        assert_eq!(
            err(p(serde_json::json!({}))),
            "validation failed: (root) : \"level\" property is missing and required, given {}"
        );
        assert_eq!(
            err(p(serde_json::json!({"level": 1, "targte": "x"}))),
            "validation failed: (root) : additional property \"targte\" is not allowed, given {\"level\":1,\"targte\":\"x\"}"
        );
        assert!(
            err(p(serde_json::json!({"level": 1, "mode": "xz"})))
                .contains("must match one of the enum values")
        );
        assert_eq!(
            err(s.prepare("u/0", "nope", &serde_json::json!({}))),
            "action \"nope\" not defined on unit \"u/0\""
        );
    }

    #[test]
    fn defaults_after_validation_and_nested() {
        let s = ActionSpecs::parse(ACTIONS).unwrap();
        let v = s
            .prepare("u/0", "snapshot", &serde_json::json!({"level": 3}))
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"level": 3, "target": "/var/lib/x", "nested": {"inner": "d"}})
        );
        let v = s
            .prepare(
                "u/0",
                "snapshot",
                &serde_json::json!({"level": 3, "target": "/t"}),
            )
            .unwrap();
        assert_eq!(v["target"], "/t");
    }

    #[test]
    fn bad_action_files_are_refused() {
        assert!(
            ActionSpecs::parse("Bad_Name: {}")
                .unwrap_err()
                .to_string()
                .contains("bad action name")
        );
        assert!(
            ActionSpecs::parse("juju-x: {}")
                .unwrap_err()
                .to_string()
                .contains("prefix is reserved")
        );
        assert!(ActionSpecs::parse("a:\n  params:\n    x:\n      $ref: y\n").is_err());
    }

    #[test]
    fn cli_params_are_yaml_typed() {
        let args: Vec<String> = ["a=1", "b=true", "c.d=x", "e=[1,2]", "f="]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            parse_cli_params(&args, false).unwrap(),
            serde_json::json!({"a": 1, "b": true, "c": {"d": "x"}, "e": [1, 2], "f": null})
        );
        assert_eq!(parse_cli_params(&args, true).unwrap()["a"], "1");
        assert!(parse_cli_params(&["Bad=1".to_string()], false).is_err());
        assert!(parse_cli_params(&["noequals".to_string()], false).is_err());
    }
}
