//! What a logical backup records besides the dumps, read from the catalogs as data: the
//! roles its databases need (with their memberships), and each database's own properties
//! (comment, connection limit, template flag, tablespace, grants, settings). A restore
//! applies them with statements of its own ([`super::statement`]); no text the server holds
//! is ever run as SQL.

use std::collections::BTreeSet;

use postgres::Client;
use serde::{Deserialize, Serialize};

use super::pg_error;
use crate::error::{Error, ErrorKind, Result};

/// The database setting that marks a database a restore is still loading.
pub(super) const RESTORING_MARK: &str = "charm_backup.restoring";

/// The database setting that marks a database a restore replaced and kept (its value: the
/// name the database had).
pub(super) const KEPT_MARK: &str = "charm_backup.kept_from";

/// Whether a `setconfig` entry is one of our marks (they are never backed up).
pub(super) fn is_mark(entry: &str) -> bool {
    let name = entry.split_once('=').map_or(entry, |(n, _)| n);
    name == RESTORING_MARK || name == KEPT_MARK
}

/// A role as `pg_authid` holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Role {
    pub name: String,
    pub superuser: bool,
    pub inherit: bool,
    pub createrole: bool,
    pub createdb: bool,
    pub login: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub connection_limit: i32,
    /// The password hash (`None`: no password, or not readable by the backup's role).
    pub password: Option<String>,
    /// `VALID UNTIL`, as the server printed it.
    pub valid_until: Option<String>,
    pub comment: Option<String>,
    /// `ALTER ROLE ... SET` entries (`name=value`) that apply in every database.
    pub settings: Vec<String>,
}

/// `member` is a member of `role`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Membership {
    pub role: String,
    pub member: String,
    pub admin: bool,
}

/// The roles a backup's databases need.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Roles {
    /// Whether the password hashes could be read (`pg_authid` needs a superuser).
    pub passwords: bool,
    pub roles: Vec<Role>,
    pub memberships: Vec<Membership>,
}

/// A database privilege: only these three exist, so nothing else is ever granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(super) enum Privilege {
    Connect,
    Create,
    Temporary,
}

impl Privilege {
    /// The keyword a `GRANT` uses.
    pub fn keyword(self) -> &'static str {
        match self {
            Privilege::Connect => "CONNECT",
            Privilege::Create => "CREATE",
            Privilege::Temporary => "TEMPORARY",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "CONNECT" => Some(Privilege::Connect),
            "CREATE" => Some(Privilege::Create),
            "TEMPORARY" => Some(Privilege::Temporary),
            _ => None,
        }
    }
}

/// One entry of a database's access list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Grant {
    /// The role (`None`: `PUBLIC`).
    pub grantee: Option<String>,
    pub privilege: Privilege,
    pub grantable: bool,
}

/// `ALTER DATABASE ... SET` (no role) or `ALTER ROLE role IN DATABASE ... SET` entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Settings {
    pub role: Option<String>,
    pub settings: Vec<String>,
}

/// What `CREATE DATABASE` under another name and `pg_restore` do not carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DatabaseProperties {
    pub comment: Option<String>,
    pub connection_limit: i32,
    pub is_template: bool,
    /// The default tablespace, when not `pg_default`.
    pub tablespace: Option<String>,
    /// The access list (`None`: the default one, which is not stored).
    pub grants: Option<Vec<Grant>>,
    pub settings: Vec<Settings>,
}

fn query(
    c: &mut Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<postgres::Row>> {
    c.query(sql, params).map_err(|e| {
        Error::new(
            ErrorKind::SourceFailed,
            format!(
                "PostgreSQL refused to list roles or properties: {}",
                pg_error(&e)
            ),
        )
    })
}

/// The properties of database `name`.
///
/// # Errors
/// When the catalogs cannot be read.
pub(super) fn database_properties(c: &mut Client, name: &str) -> Result<DatabaseProperties> {
    let rows = query(
        c,
        "SELECT shobj_description(d.oid, 'pg_database'), d.datconnlimit, d.datistemplate, \
         CASE WHEN t.spcname = 'pg_default' THEN NULL ELSE t.spcname::text END, d.datacl IS NULL \
         FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = $1",
        &[&name],
    )?;
    let Some(r) = rows.first() else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("database {name:?} vanished during the backup"),
        ));
    };
    let mut p = DatabaseProperties {
        comment: r.get(0),
        connection_limit: r.get(1),
        is_template: r.get(2),
        tablespace: r.get(3),
        ..Default::default()
    };
    let default_acl: bool = r.get(4);
    if !default_acl {
        let mut grants = Vec::new();
        for r in query(
            c,
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee)::text END, \
             a.privilege_type, a.is_grantable FROM pg_database d, aclexplode(d.datacl) a \
             WHERE d.datname = $1 ORDER BY 1 NULLS FIRST, 2",
            &[&name],
        )? {
            let privilege: String = r.get(1);
            let Some(privilege) = Privilege::parse(&privilege) else {
                return Err(Error::new(
                    ErrorKind::SourceFailed,
                    format!(
                        "database {name:?} has a privilege this version does not know: {privilege}"
                    ),
                ));
            };
            grants.push(Grant {
                grantee: r.get(0),
                privilege,
                grantable: r.get(2),
            });
        }
        p.grants = Some(grants);
    }
    for r in query(
        c,
        "SELECT (SELECT rolname::text FROM pg_roles WHERE oid = s.setrole), s.setconfig \
         FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
         WHERE d.datname = $1 ORDER BY 1 NULLS FIRST",
        &[&name],
    )? {
        let settings: Vec<String> = r.get::<_, Vec<String>>(1);
        let settings: Vec<String> = settings.into_iter().filter(|e| !is_mark(e)).collect();
        if !settings.is_empty() {
            p.settings.push(Settings {
                role: r.get(0),
                settings,
            });
        }
    }
    Ok(p)
}

/// The roles databases `names` need (`None`: every role), with their memberships: the
/// owners of the databases and of everything in them, the roles their grants and settings
/// name, and the members of those roles.
///
/// # Errors
/// When the catalogs cannot be read.
pub(super) fn roles(c: &mut Client, names: Option<&[String]>) -> Result<Roles> {
    const COLUMNS: &str = "r.rolname::text, r.rolsuper, r.rolinherit, r.rolcreaterole, \
        r.rolcreatedb, r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit, \
        r.rolvaliduntil::text, shobj_description(r.oid, 'pg_authid'), \
        coalesce((SELECT s.setconfig FROM pg_db_role_setting s \
                  WHERE s.setrole = r.oid AND s.setdatabase = 0), '{}')";
    // pg_authid has the password hashes; only a superuser may read it.
    let (rows, passwords) = match c.query(
        &format!(
            "SELECT {COLUMNS}, r.rolpassword FROM pg_authid r WHERE r.rolname !~ '^pg_' ORDER BY 1"
        ),
        &[],
    ) {
        Ok(rows) => (rows, true),
        Err(_) => (
            query(
                c,
                &format!(
                    "SELECT {COLUMNS}, NULL::text FROM pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1"
                ),
                &[],
            )?,
            false,
        ),
    };
    let mut all: Vec<Role> = rows
        .iter()
        .map(|r| Role {
            name: r.get(0),
            superuser: r.get(1),
            inherit: r.get(2),
            createrole: r.get(3),
            createdb: r.get(4),
            login: r.get(5),
            replication: r.get(6),
            bypassrls: r.get(7),
            connection_limit: r.get(8),
            valid_until: r.get(9),
            comment: r.get(10),
            settings: r.get(11),
            password: r.get(12),
        })
        .collect();
    let mut memberships: Vec<Membership> = query(
        c,
        "SELECT g.rolname::text, m.rolname::text, a.admin_option FROM pg_auth_members a \
         JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
         WHERE g.rolname !~ '^pg_' AND m.rolname !~ '^pg_' ORDER BY 1, 2",
        &[],
    )?
    .iter()
    .map(|r| Membership {
        role: r.get(0),
        member: r.get(1),
        admin: r.get(2),
    })
    .collect();
    if let Some(names) = names {
        let mut needed: BTreeSet<String> = query(
            c,
            "WITH d AS (SELECT oid FROM pg_database WHERE datname = ANY($1)) \
             SELECT rolname::text FROM pg_roles WHERE oid IN ( \
               SELECT refobjid FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass \
                 AND (dbid IN (SELECT oid FROM d) \
                      OR (classid = 'pg_database'::regclass AND objid IN (SELECT oid FROM d))) \
               UNION SELECT datdba FROM pg_database WHERE oid IN (SELECT oid FROM d) \
               UNION SELECT setrole FROM pg_db_role_setting WHERE setdatabase IN (SELECT oid FROM d))",
            &[&names],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
        // Members of a needed role reach the databases through it.
        loop {
            let more: Vec<String> = memberships
                .iter()
                .filter(|m| needed.contains(&m.role) && !needed.contains(&m.member))
                .map(|m| m.member.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            needed.extend(more);
        }
        all.retain(|r| needed.contains(&r.name));
        memberships.retain(|m| needed.contains(&m.role) && needed.contains(&m.member));
    }
    Ok(Roles {
        passwords,
        roles: all,
        memberships,
    })
}
