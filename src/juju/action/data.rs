//! [`Context`] conveniences over the tools that read and write Juju's data: relation data bags,
//! leadership settings, stored state, opened ports and the workload version.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::juju::action::Context;
use crate::juju::tools::PortRange;

impl Context {
    /// Each remote unit's data bag in relation `relation_id` (`s3-parameters:4`), by unit name;
    /// in a peer relation, each other peer's. Read with `relation-list` and `relation-get`.
    ///
    /// # Errors
    /// When a relation tool fails, e.g. for an unknown relation.
    pub fn relation_units(
        &self,
        relation_id: &str,
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut out = BTreeMap::new();
        for unit in self.tools().relation_list(relation_id)? {
            let data = self.tools().relation_get(relation_id, &unit, false)?;
            out.insert(unit, data);
        }
        Ok(out)
    }

    /// What this unit wrote in relation `relation_id`: its own data bag, or (with `app`) its
    /// application's, changes made in this hook included.
    ///
    /// # Errors
    /// When `relation-get` fails; reading the application's bag needs leadership except in a
    /// peer relation.
    pub fn local_relation_data(
        &self,
        relation_id: &str,
        app: bool,
    ) -> Result<BTreeMap<String, String>> {
        let juju = self.juju();
        let member = if app {
            juju.app_name()
        } else {
            &juju.unit_name
        };
        self.tools().relation_get(relation_id, member, app)
    }

    /// Writes this unit's data bag in relation `relation_id` or, with `app` (leader only), the
    /// application's. An empty value deletes the key; Juju applies the change when the hook
    /// exits successfully.
    ///
    /// # Errors
    /// When `relation-set` fails.
    pub fn set_relation_data<K: AsRef<str>, V: AsRef<str>>(
        &self,
        relation_id: &str,
        data: impl IntoIterator<Item = (K, V)>,
        app: bool,
    ) -> Result<()> {
        self.tools().relation_set(relation_id, data, app)
    }

    /// The application's leadership settings (any unit may read them).
    ///
    /// # Errors
    /// When `leader-get` fails.
    pub fn leader_settings(&self) -> Result<BTreeMap<String, String>> {
        self.tools().leader_get()
    }

    /// Writes leadership settings (leader only), at once; an empty value deletes the key.
    ///
    /// # Errors
    /// When `leader-set` fails, e.g. on a unit that is not the leader.
    pub fn set_leader_settings<K: AsRef<str>, V: AsRef<str>>(
        &self,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        self.tools().leader_set(data)
    }

    /// One value of the unit's stored state (`state-get`), `None` when it was never stored.
    ///
    /// # Errors
    /// When `state-get` fails.
    pub fn stored(&self, key: &str) -> Result<Option<String>> {
        self.tools().state_get_key(key)
    }

    /// Stores values Juju keeps for this unit across hooks (`state-set`), applied when the hook
    /// exits successfully.
    ///
    /// # Errors
    /// When `state-set` fails, e.g. a value over Juju's 64 KiB quota.
    pub fn store<K: AsRef<str>, V: AsRef<str>>(
        &self,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Result<()> {
        self.tools().state_set(data)
    }

    /// Sets the workload version `juju status` shows (`application-version-set`).
    ///
    /// # Errors
    /// When the tool fails.
    pub fn set_workload_version(&self, version: &str) -> Result<()> {
        self.tools().application_version_set(version)
    }

    /// Opens `range` on every endpoint (`open-port`), when the hook exits successfully.
    ///
    /// # Errors
    /// When `open-port` fails, e.g. the range overlaps another one this unit opened.
    pub fn open_port(&self, range: &PortRange) -> Result<()> {
        self.tools().open_port(range, &[])
    }

    /// Closes `range` on every endpoint (`close-port`), when the hook exits successfully.
    ///
    /// # Errors
    /// When `close-port` fails.
    pub fn close_port(&self, range: &PortRange) -> Result<()> {
        self.tools().close_port(range, &[])
    }
}
