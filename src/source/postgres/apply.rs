//! Putting back what [`super::catalog`] recorded, with statements of our own: roles that are
//! missing (existing ones only when asked, never the role we connect as), memberships, and
//! a restored database's properties; and the names restores give the databases they keep.

use std::collections::BTreeSet;

use postgres::GenericClient;
use sha2::{Digest, Sha256};

use super::catalog::{DatabaseProperties, KEPT_MARK, Role, Roles};
use super::statement::{Stmt, set_clause};
use crate::error::Result;

/// `CREATE ROLE`/`ALTER ROLE` with every attribute of `r`; `reset` also clears a password
/// or expiry the backup did not have, unless the backup could not read passwords.
fn role_attributes(stmt: Stmt, r: &Role, reset: bool, passwords: bool) -> Stmt {
    let flag =
        |s: Stmt, on: bool, yes: &'static str, no: &'static str| s.sql(if on { yes } else { no });
    let mut s = stmt.sql(" WITH");
    s = flag(s, r.superuser, " SUPERUSER", " NOSUPERUSER");
    s = flag(s, r.inherit, " INHERIT", " NOINHERIT");
    s = flag(s, r.createrole, " CREATEROLE", " NOCREATEROLE");
    s = flag(s, r.createdb, " CREATEDB", " NOCREATEDB");
    s = flag(s, r.login, " LOGIN", " NOLOGIN");
    s = flag(s, r.replication, " REPLICATION", " NOREPLICATION");
    s = flag(s, r.bypassrls, " BYPASSRLS", " NOBYPASSRLS");
    s = s.sql(" CONNECTION LIMIT ").int(r.connection_limit.into());
    s = match &r.password {
        Some(p) => s.sql(" PASSWORD ").literal(p),
        None if reset && passwords => s.sql(" PASSWORD NULL"),
        None => s,
    };
    match &r.valid_until {
        Some(v) => s.sql(" VALID UNTIL ").literal(v),
        None if reset => s.sql(" VALID UNTIL 'infinity'"),
        None => s,
    }
}

/// The comment and settings of role `r`, replacing what it has.
fn role_details(c: &mut impl GenericClient, r: &Role) -> Result<()> {
    let comment = Stmt::new("COMMENT ON ROLE ").ident(&r.name).sql(" IS ");
    match &r.comment {
        Some(t) => comment.literal(t),
        None => comment.sql("NULL"),
    }
    .run(c)?;
    Stmt::new("ALTER ROLE ")
        .ident(&r.name)
        .sql(" RESET ALL")
        .run(c)?;
    for e in &r.settings {
        set_clause(Stmt::new("ALTER ROLE ").ident(&r.name), e).run(c)?;
    }
    Ok(())
}

/// Creates the roles of `roles` that `existing` lacks, with their passwords, attributes,
/// comments and settings, and the memberships they take part in; returns their names.
///
/// # Errors
/// When the server refuses a statement.
pub(super) fn create_missing_roles(
    c: &mut impl GenericClient,
    roles: &Roles,
    existing: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let mut created = Vec::new();
    for r in roles.roles.iter().filter(|r| !existing.contains(&r.name)) {
        role_attributes(
            Stmt::new("CREATE ROLE ").ident(&r.name),
            r,
            false,
            roles.passwords,
        )
        .run(c)?;
        role_details(c, r)?;
        created.push(r.name.clone());
    }
    for m in &roles.memberships {
        if created.contains(&m.role) || created.contains(&m.member) {
            grant_membership(c, &m.role, &m.member, m.admin)?;
        }
    }
    Ok(created)
}

fn grant_membership(
    c: &mut impl GenericClient,
    role: &str,
    member: &str,
    admin: bool,
) -> Result<()> {
    let s = Stmt::new("GRANT ").ident(role).sql(" TO ").ident(member);
    if admin {
        s.sql(" WITH ADMIN OPTION")
    } else {
        s
    }
    .run(c)
}

/// Gives the existing roles of `roles` (all but `myself`, the role we connect as) their
/// backed-up password, attributes, comment, settings and memberships.
///
/// # Errors
/// When the server refuses a statement.
pub(super) fn reset_roles(c: &mut impl GenericClient, roles: &Roles, myself: &str) -> Result<()> {
    for r in roles.roles.iter().filter(|r| r.name != myself) {
        role_attributes(
            Stmt::new("ALTER ROLE ").ident(&r.name),
            r,
            true,
            roles.passwords,
        )
        .run(c)?;
        role_details(c, r)?;
    }
    for m in roles.memberships.iter().filter(|m| m.member != myself) {
        grant_membership(c, &m.role, &m.member, m.admin)?;
    }
    Ok(())
}

/// Gives database `db` (owned by `owner`, just renamed into place) the properties it had.
///
/// # Errors
/// When the server refuses a statement.
pub(super) fn apply_properties(
    c: &mut impl GenericClient,
    db: &str,
    owner: &str,
    p: &DatabaseProperties,
) -> Result<()> {
    let alter = || Stmt::new("ALTER DATABASE ").ident(db);
    if let Some(t) = &p.comment {
        Stmt::new("COMMENT ON DATABASE ")
            .ident(db)
            .sql(" IS ")
            .literal(t)
            .run(c)?;
    }
    alter()
        .sql(" CONNECTION LIMIT ")
        .int(p.connection_limit.into())
        .run(c)?;
    if let Some(grants) = &p.grants {
        let on = || Stmt::new("REVOKE ALL ON DATABASE ").ident(db);
        on().sql(" FROM PUBLIC").run(c)?;
        if !owner.is_empty() {
            on().sql(" FROM ").ident(owner).run(c)?;
        }
        for g in grants {
            let s = Stmt::new("GRANT ")
                .sql(g.privilege.keyword())
                .sql(" ON DATABASE ")
                .ident(db)
                .sql(" TO ");
            let s = match &g.grantee {
                Some(r) => s.ident(r),
                None => s.sql("PUBLIC"),
            };
            if g.grantable {
                s.sql(" WITH GRANT OPTION")
            } else {
                s
            }
            .run(c)?;
        }
    }
    for set in &p.settings {
        let head = || match &set.role {
            Some(r) => Stmt::new("ALTER ROLE ")
                .ident(r)
                .sql(" IN DATABASE ")
                .ident(db),
            None => alter(),
        };
        for e in &set.settings {
            set_clause(head(), e).run(c)?;
        }
    }
    if p.is_template {
        alter().sql(" IS_TEMPLATE true").run(c)?;
    }
    Ok(())
}

/// Marks database `kept` as the copy of `original` a restore replaced: no template any more
/// (so it can be dropped), and left out of backups of every database.
///
/// # Errors
/// When the server refuses a statement.
pub(super) fn mark_kept(c: &mut impl GenericClient, kept: &str, original: &str) -> Result<()> {
    let alter = || Stmt::new("ALTER DATABASE ").ident(kept);
    alter().sql(" IS_TEMPLATE false").run(c)?;
    alter()
        .sql(" SET ")
        .ident(KEPT_MARK)
        .sql(" TO ")
        .literal(original)
        .run(c)
}

/// PostgreSQL's limit on names, in bytes.
const NAME_MAX: usize = 63;

/// The name a replaced database is kept under: `<name>_before_restore_<stamp>`, within 63
/// bytes (a long name is cut and a hash of the whole name added, so two names sharing a
/// prefix stay apart), and not in `taken` (a counter is added when needed).
pub(super) fn kept_name(name: &str, stamp: &str, taken: &BTreeSet<String>) -> String {
    let tail = format!("_before_restore_{stamp}");
    let hash: String = Sha256::digest(name.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for n in 1.. {
        let counter = if n == 1 {
            String::new()
        } else {
            format!("_{n}")
        };
        let whole = format!("{name}{tail}{counter}");
        if whole.len() <= NAME_MAX && !taken.contains(&whole) {
            return whole;
        }
        if whole.len() <= NAME_MAX {
            continue;
        }
        let room = NAME_MAX - tail.len() - counter.len() - hash.len() - 1;
        let mut base = name.to_string();
        while base.len() > room {
            base.pop();
        }
        let cut = format!("{base}_{hash}{tail}{counter}");
        if !taken.contains(&cut) {
            return cut;
        }
    }
    unreachable!("some counter is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_names_fit_and_stay_apart() {
        let none = BTreeSet::new();
        assert_eq!(
            kept_name("app", "20261202131603", &none),
            "app_before_restore_20261202131603"
        );
        let a = kept_name(
            "averyveryverylongdatabasenameprefix_alpha",
            "20261202131603",
            &none,
        );
        let b = kept_name(
            "averyveryverylongdatabasenameprefix_beta",
            "20261202131603",
            &none,
        );
        assert!(a.len() <= 63 && b.len() <= 63, "{a} {b}");
        assert_ne!(a, b);
        let taken: BTreeSet<String> = [a.clone()].into();
        let a2 = kept_name(
            "averyveryverylongdatabasenameprefix_alpha",
            "20261202131603",
            &taken,
        );
        assert!(a2.len() <= 63 && a2 != a, "{a2}");
        let taken: BTreeSet<String> = ["app_before_restore_1".to_string()].into();
        assert_eq!(kept_name("app", "1", &taken), "app_before_restore_1_2");
        // Cut on a character boundary.
        let long = "é".repeat(40);
        assert!(kept_name(&long, "20261202131603", &none).len() <= 63);
    }
}
