//! Who writes to a store path: a small record at the base path, written by the first backup,
//! so two models or applications never mix their backups (and prune each other's) by sharing
//! a bucket and path. Reading a foreign path stays free: that is how a new model restores an
//! old one's backups.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::progress::Progress;
use crate::store::Store;

/// The owner record's key, at the store's base path.
pub const OWNER_NAME: &str = "charm-backup.owner.json";

/// The model and application that write backups to a store path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Owner {
    /// Juju model UUID.
    pub model_uuid: String,
    /// Juju model name.
    pub model: String,
    /// Juju application.
    pub application: String,
    /// When the record was written (`%Y-%m-%dT%H:%M:%SZ`).
    #[serde(default)]
    pub since: String,
    /// `charm-backup <version>`.
    #[serde(default)]
    pub tool: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "application {} of model {} ({})",
            self.application, self.model, self.model_uuid
        )
    }
}

impl Owner {
    /// Whether `other` is the same model and application.
    pub fn same(&self, other: &Owner) -> bool {
        self.model_uuid == other.model_uuid && self.application == other.application
    }

    /// The owner recorded in `store`, if any.
    ///
    /// # Errors
    /// When the store cannot be read; [`ErrorKind::Integrity`] for a record that is not one.
    pub fn read(store: &dyn Store) -> Result<Option<Owner>> {
        let r = match store.open(OWNER_NAME) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(r, 1 << 16), &mut buf).map_err(
            |e| {
                Error::new(
                    ErrorKind::Connect,
                    format!("cannot read {}", store.url(OWNER_NAME)),
                )
                .with_source(e)
            },
        )?;
        serde_json::from_slice(&buf).map(Some).map_err(|e| {
            Error::new(
                ErrorKind::Integrity,
                format!("{} is not an owner record", store.url(OWNER_NAME)),
            )
            .with_source(e)
        })
    }

    /// Makes sure `me` may write backups to `store`: records `me` as owner when the path has
    /// none (or when `take_over`, saying whose it was), and refuses when another model or
    /// application owns it. An `me` without a model UUID (outside Juju) checks nothing.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyExists`] naming the owner when the path is another's.
    pub fn claim(
        store: &dyn Store,
        me: &Owner,
        take_over: bool,
        progress: &dyn Progress,
    ) -> Result<()> {
        if me.model_uuid.is_empty() {
            return Ok(());
        }
        let current = Owner::read(store)?;
        match &current {
            Some(o) if o.same(me) => return Ok(()),
            Some(o) if !take_over => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "the backups at {} belong to {o}, not to this {me}: give this application a path of its own ({}), or take this one over on purpose with take-over-store=true",
                        store.url("").trim_end_matches('/'),
                        if store.kind() == "s3" {
                            "juju config <s3-integrator> path=<another path>"
                        } else {
                            "another local-store"
                        }
                    ),
                ));
            }
            Some(o) => progress.warn(&format!(
                "taking over {} from {o}: its backups stay, and this application's retention now applies to them",
                store.url("").trim_end_matches('/')
            )),
            None => progress.step(&format!(
                "recording {me} as the owner of {}",
                store.url("").trim_end_matches('/')
            )),
        }
        let record = Owner {
            since: crate::store::repo::format_time(jiff::Timestamp::now()),
            tool: format!("{} {}", super::TOOL_NAME, env!("CARGO_PKG_VERSION")),
            ..me.clone()
        };
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| Error::new(ErrorKind::Other, "cannot encode the owner").with_source(e))?;
        // Replaced, not overwritten in place (a local store never overwrites).
        if current.is_some() {
            store.delete(OWNER_NAME)?;
        }
        match store.put(OWNER_NAME, &json) {
            Ok(()) => Ok(()),
            // Another unit of this application recorded it first.
            Err(e) => match Owner::read(store) {
                Ok(Some(o)) if o.same(me) => Ok(()),
                _ => Err(e),
            },
        }
    }
}
