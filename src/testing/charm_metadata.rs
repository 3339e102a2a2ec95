//! `metadata.yaml` as far as the harness needs it: the charm's name (which names the unit), its
//! relation endpoints (`requires`, `provides`, `peers`) and its resources.
//!
//! An endpoint is written either as its interface name or as a map with an `interface` key,
//! and a resource as a map whose `type` defaults to `file`, as juju/charm's `meta.go` reads
//! them.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::error::{Error, Result};

/// Which section of `metadata.yaml` declares an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointRole {
    /// Under `requires:`.
    Requires,
    /// Under `provides:`.
    Provides,
    /// Under `peers:`: a relation between the units of this application.
    Peers,
}

impl fmt::Display for EndpointRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndpointRole::Requires => "requires",
            EndpointRole::Provides => "provides",
            EndpointRole::Peers => "peers",
        })
    }
}

/// The parts of a charm's `metadata.yaml` the harness checks a test against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CharmMetadata {
    /// The charm's name: the application, and the unit `<name>/0`.
    pub name: String,
    /// Whether the charm is a subordinate.
    pub subordinate: bool,
    /// Endpoints under `requires:`, with their interfaces.
    pub requires: BTreeMap<String, String>,
    /// Endpoints under `provides:`, with their interfaces.
    pub provides: BTreeMap<String, String>,
    /// Endpoints under `peers:`, with their interfaces.
    pub peers: BTreeMap<String, String>,
    /// Resources with their types (`file` or `oci-image`).
    pub resources: BTreeMap<String, String>,
}

/// The endpoints of one section: endpoint name to interface.
fn endpoints(doc: &Value, section: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(map) = doc.get(section).filter(|v| !v.is_null()) else {
        return Ok(out);
    };
    let Some(map) = map.as_object() else {
        return Err(Error::invalid(format!(
            "metadata.yaml: {section} must be a map of endpoints"
        )));
    };
    for (name, spec) in map {
        let interface = match spec {
            Value::String(s) => Some(s.clone()),
            Value::Object(m) => m.get("interface").and_then(Value::as_str).map(String::from),
            _ => None,
        };
        let Some(interface) = interface.filter(|i| !i.is_empty()) else {
            return Err(Error::invalid(format!(
                "metadata.yaml: {section}.{name} has no interface"
            )));
        };
        out.insert(name.clone(), interface);
    }
    Ok(out)
}

/// Names joined for a message, or `(none)`.
fn listed<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

impl CharmMetadata {
    /// Parses `metadata.yaml`.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] when it is not YAML, has no `name`, an endpoint has no
    /// interface, or one endpoint name is declared twice.
    pub fn parse(text: &str) -> Result<Self> {
        let doc: Value = serde_norway::from_str(text)
            .map_err(|e| Error::invalid("metadata.yaml is not valid YAML").with_source(e))?;
        let name = doc
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::invalid("metadata.yaml has no name"))?
            .to_string();
        let meta = CharmMetadata {
            subordinate: doc
                .get("subordinate")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            requires: endpoints(&doc, "requires")?,
            provides: endpoints(&doc, "provides")?,
            peers: endpoints(&doc, "peers")?,
            resources: doc
                .get("resources")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let kind = v.get("type").and_then(Value::as_str).unwrap_or("file");
                            (k.clone(), kind.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default(),
            name,
        };
        for (endpoint, _) in meta
            .requires
            .iter()
            .chain(&meta.provides)
            .chain(&meta.peers)
        {
            let sections = [&meta.requires, &meta.provides, &meta.peers]
                .iter()
                .filter(|s| s.contains_key(endpoint))
                .count();
            if sections > 1 {
                return Err(Error::invalid(format!(
                    "metadata.yaml declares the endpoint {endpoint:?} in more than one of \
                     requires, provides and peers"
                )));
            }
        }
        Ok(meta)
    }

    /// Where `endpoint` is declared, if anywhere.
    pub fn role(&self, endpoint: &str) -> Option<EndpointRole> {
        if self.requires.contains_key(endpoint) {
            Some(EndpointRole::Requires)
        } else if self.provides.contains_key(endpoint) {
            Some(EndpointRole::Provides)
        } else if self.peers.contains_key(endpoint) {
            Some(EndpointRole::Peers)
        } else {
            None
        }
    }

    /// The endpoints, for a message: `requires: a, b; provides: (none); peers: c`.
    pub fn describe_endpoints(&self) -> String {
        format!(
            "requires: {}; provides: {}; peers: {}",
            listed(self.requires.keys()),
            listed(self.provides.keys()),
            listed(self.peers.keys())
        )
    }

    /// The resource names, for a message (`(none)` when there are none).
    pub fn describe_resources(&self) -> String {
        listed(self.resources.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_endpoints_and_resources() {
        let m = CharmMetadata::parse(
            "name: db\nrequires:\n  backup: {interface: s3}\nprovides:\n  api: http\n\
             peers:\n  cluster:\n    interface: db-peers\nresources:\n  snap: {type: file}\n  \
             image: {type: oci-image}\n",
        )
        .unwrap();
        assert_eq!(m.name, "db");
        assert_eq!(m.role("backup"), Some(EndpointRole::Requires));
        assert_eq!(m.role("api"), Some(EndpointRole::Provides));
        assert_eq!(m.role("cluster"), Some(EndpointRole::Peers));
        assert_eq!(m.role("nope"), None);
        assert_eq!(m.resources["image"], "oci-image");
        assert_eq!(
            m.describe_endpoints(),
            "requires: backup; provides: api; peers: cluster"
        );
        assert!(CharmMetadata::parse("summary: x").is_err());
        assert!(CharmMetadata::parse("name: x\nrequires:\n  a: {}\n").is_err());
        assert!(CharmMetadata::parse("name: x\nrequires: {a: i}\npeers: {a: i}\n").is_err());
    }
}
