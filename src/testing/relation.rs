//! A relation to put in the unit's world, with every data bag, as Scenario's `Relation` and
//! `PeerRelation` describe one.

use std::collections::BTreeMap;

use crate::testing::jujuc::FakeRelation;

/// Collects `(key, value)` pairs into a data bag.
fn bag<K: Into<String>, V: Into<String>>(
    data: impl IntoIterator<Item = (K, V)>,
) -> BTreeMap<String, String> {
    data.into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// A relation for [`Harness::with_relation`](crate::testing::Harness::with_relation): the
/// remote application and its data, each remote unit with its own data, and what this unit
/// and its application already published.
///
/// ```
/// use charm_backup::testing::Relation;
///
/// // `db` related to postgresql, whose two units each published an address.
/// let db = Relation::new("db", "postgresql")
///     .remote_app_data([("database", "app")])
///     .unit(0, [("host", "10.0.0.1")])
///     .unit(1, [("host", "10.0.0.2")]);
/// // A peer relation: this unit's own bag, the application bag, and one other peer.
/// let cluster = Relation::peer("cluster")
///     .local_unit_data([("ready", "true")])
///     .local_app_data([("leader-address", "10.0.0.9")])
///     .unit(1, [("ready", "false")]);
/// # let _ = (db, cluster);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Relation {
    endpoint: String,
    remote_app: String,
    peer: bool,
    id: Option<u32>,
    remote_app_data: BTreeMap<String, String>,
    units: Option<BTreeMap<u32, BTreeMap<String, String>>>,
    local_unit_data: BTreeMap<String, String>,
    local_app_data: BTreeMap<String, String>,
}

impl Relation {
    /// A relation on `endpoint` (under `requires:` or `provides:`) to `remote_app`, with one
    /// remote unit `<remote_app>/0` and empty data bags until told otherwise.
    pub fn new(endpoint: &str, remote_app: &str) -> Self {
        Relation {
            endpoint: endpoint.to_string(),
            remote_app: remote_app.to_string(),
            ..Default::default()
        }
    }

    /// A peer relation on `endpoint` (under `peers:`): the other units are this application's,
    /// and there are none until added with [`Relation::unit`].
    pub fn peer(endpoint: &str) -> Self {
        Relation {
            endpoint: endpoint.to_string(),
            peer: true,
            units: Some(BTreeMap::new()),
            ..Default::default()
        }
    }

    /// The relation id (the `N` of `endpoint:N`); by default the next free one.
    pub fn id(mut self, id: u32) -> Self {
        self.id = Some(id);
        self
    }

    /// The remote application's data bag (what its leader published). In a peer relation the
    /// application's one bag, the same as [`Relation::local_app_data`].
    pub fn remote_app_data<K: Into<String>, V: Into<String>>(
        mut self,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.remote_app_data = bag(data);
        self
    }

    /// Adds the remote unit `<app>/<n>` (in a peer relation, the peer `<this app>/<n>`) with
    /// its data bag. The first call replaces the default unit 0.
    pub fn unit<K: Into<String>, V: Into<String>>(
        mut self,
        n: u32,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.units
            .get_or_insert_with(BTreeMap::new)
            .insert(n, bag(data));
        self
    }

    /// This unit's own data bag in the relation, as an earlier hook left it.
    pub fn local_unit_data<K: Into<String>, V: Into<String>>(
        mut self,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.local_unit_data = bag(data);
        self
    }

    /// This application's data bag (in a peer relation, the one bag every peer reads with
    /// `relation-get --app`).
    pub fn local_app_data<K: Into<String>, V: Into<String>>(
        mut self,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.local_app_data = bag(data);
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether this is a peer relation.
    pub fn is_peer(&self) -> bool {
        self.peer
    }

    /// The relation id, when one was chosen.
    pub fn chosen_id(&self) -> Option<u32> {
        self.id
    }

    /// The relation as the fake agent holds it, for a unit of `own_app`, with id `id`.
    pub(crate) fn to_fake(&self, id: u32, own_app: &str) -> FakeRelation {
        let app = if self.peer {
            own_app.to_string()
        } else {
            self.remote_app.clone()
        };
        let units = self
            .units
            .clone()
            .unwrap_or_else(|| BTreeMap::from([(0, BTreeMap::new())]));
        let unit_data: BTreeMap<String, BTreeMap<String, String>> = units
            .into_iter()
            .map(|(n, data)| (format!("{app}/{n}"), data))
            .collect();
        FakeRelation {
            id,
            endpoint: self.endpoint.clone(),
            units: unit_data.keys().cloned().collect(),
            unit_data,
            app_data: if self.peer {
                BTreeMap::new()
            } else {
                self.remote_app_data.clone()
            },
            local_unit_data: self.local_unit_data.clone(),
            local_app_data: if self.peer {
                let mut all = self.remote_app_data.clone();
                all.extend(self.local_app_data.clone());
                all
            } else {
                self.local_app_data.clone()
            },
            peer: self.peer,
            app,
        }
    }
}
