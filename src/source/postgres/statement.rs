//! Statements built from parts: our own SQL text, with every value from a backup or the
//! server filled in by PostgreSQL's `format()` (`%I` for identifiers, `%L` for literals),
//! so no name, comment or setting is ever read as SQL.

use postgres::GenericClient;

use super::pg_error;
use crate::error::{Error, ErrorKind, Result};

/// A statement under construction: `template` holds only text written here plus `%I`, `%L`
/// and `%s` placeholders, `args` the values the server quotes into them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Stmt {
    template: String,
    args: Vec<String>,
}

impl Stmt {
    /// Starts with our own SQL text.
    pub(super) fn new(sql: &'static str) -> Self {
        Stmt::default().sql(sql)
    }

    /// Appends our own SQL text (never a value: it may hold no `%`).
    pub(super) fn sql(mut self, sql: &'static str) -> Self {
        debug_assert!(!sql.contains('%'), "SQL text with a % in a template: {sql}");
        self.template.push_str(sql);
        self
    }

    /// Appends an identifier, quoted by the server (`%I`).
    pub(super) fn ident(mut self, name: &str) -> Self {
        self.template.push_str("%I");
        self.args.push(name.to_string());
        self
    }

    /// Appends a string literal, quoted by the server (`%L`).
    pub(super) fn literal(mut self, value: &str) -> Self {
        self.template.push_str("%L");
        self.args.push(value.to_string());
        self
    }

    /// Appends literals separated by `, ` (at least one: an empty list is `''`).
    pub(super) fn literals(mut self, values: &[String]) -> Self {
        if values.is_empty() {
            return self.literal("");
        }
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self = self.sql(", ");
            }
            self = self.literal(v);
        }
        self
    }

    /// Appends an integer.
    pub(super) fn int(mut self, n: i64) -> Self {
        self.template.push_str("%s");
        self.args.push(n.to_string());
        self
    }

    /// The statement's shape, for messages: the template, never its values (a password may be
    /// one of them).
    pub(super) fn shape(&self) -> &str {
        &self.template
    }

    /// Has the server build the statement, then runs it.
    ///
    /// # Errors
    /// [`ErrorKind::SourceFailed`] with the server's message and the statement's shape;
    /// [`ErrorKind::Busy`] when another session holds the object.
    pub(super) fn run(&self, c: &mut impl GenericClient) -> Result<()> {
        let refused = |e: postgres::Error| {
            let busy = e
                .as_db_error()
                .is_some_and(|d| d.code() == &postgres::error::SqlState::OBJECT_IN_USE);
            Error::new(
                if busy {
                    ErrorKind::Busy
                } else {
                    ErrorKind::SourceFailed
                },
                format!("PostgreSQL refused {}: {}", self.shape(), pg_error(&e)),
            )
        };
        let row = c
            .query_one(
                "SELECT format($1, VARIADIC $2::text[])",
                &[&self.template, &self.args],
            )
            .map_err(refused)?;
        let sql: String = row.get(0);
        c.batch_execute(&sql).map_err(refused)
    }
}

/// The elements of a list setting as PostgreSQL stores it (`a, "B c", public`), split and
/// unquoted as the server's own `SplitGUCList` does; `None` when it is not such a list.
pub(super) fn split_list_setting(value: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    let skip_space = |it: &mut std::iter::Peekable<std::str::Chars>| {
        while it.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            it.next();
        }
    };
    skip_space(&mut chars);
    if chars.peek().is_none() {
        return Some(out);
    }
    loop {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return None,
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        item.push('"');
                    }
                    Some('"') => break,
                    Some(c) => item.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                item.push(c);
                chars.next();
            }
            if item.is_empty() {
                return None;
            }
        }
        out.push(item);
        skip_space(&mut chars);
        match chars.next() {
            None => return Some(out),
            Some(',') => skip_space(&mut chars),
            Some(_) => return None,
        }
    }
}

/// Settings whose values are lists of quoted names (pg_dump's `variable_is_guc_list_quote`):
/// each element is given as a literal of its own.
pub(super) fn is_list_quote_setting(name: &str) -> bool {
    matches!(
        name,
        "local_preload_libraries"
            | "search_path"
            | "session_preload_libraries"
            | "shared_preload_libraries"
            | "temp_tablespaces"
            | "unix_socket_directories"
    )
}

/// `SET name TO value` as the tail of an `ALTER DATABASE`/`ALTER ROLE` statement, from one
/// `name=value` entry of `setconfig`.
pub(super) fn set_clause(stmt: Stmt, entry: &str) -> Stmt {
    let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
    let stmt = stmt.sql(" SET ").ident(name).sql(" TO ");
    match is_list_quote_setting(name)
        .then(|| split_list_setting(value))
        .flatten()
    {
        Some(items) => stmt.literals(&items),
        None => stmt.literal(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_keep_values_out_of_the_template() {
        let s = Stmt::new("ALTER DATABASE ")
            .ident("x\"; DROP")
            .sql(" CONNECTION LIMIT ")
            .int(-1);
        assert_eq!(s.shape(), "ALTER DATABASE %I CONNECTION LIMIT %s");
        assert_eq!(s.args, ["x\"; DROP", "-1"]);
    }

    #[test]
    fn list_settings_split_as_the_server_does() {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            split_list_setting("a, \"B c\", public"),
            v(&["a", "B c", "public"])
        );
        assert_eq!(
            split_list_setting("\"\n; ALTER ROLE x SUPERUSER;\nCREATE DATABASE q\""),
            v(&["\n; ALTER ROLE x SUPERUSER;\nCREATE DATABASE q"])
        );
        assert_eq!(
            split_list_setting("\"a \"\"q\"\"\",b"),
            v(&["a \"q\"", "b"])
        );
        assert_eq!(split_list_setting("\"\""), v(&[""]));
        assert_eq!(split_list_setting(""), v(&[]));
        assert_eq!(split_list_setting("a b"), None);
        assert_eq!(split_list_setting("\"open"), None);
        assert_eq!(split_list_setting("a,,b"), None);
    }

    #[test]
    fn set_clauses_quote_each_list_element() {
        let s = set_clause(
            Stmt::new("ALTER DATABASE ").ident("d"),
            "search_path=a, \"B c\"",
        );
        assert_eq!(s.shape(), "ALTER DATABASE %I SET %I TO %L, %L");
        let s = set_clause(Stmt::new("ALTER DATABASE ").ident("d"), "work_mem=7MB");
        assert_eq!(s.shape(), "ALTER DATABASE %I SET %I TO %L");
        assert_eq!(s.args, ["d", "work_mem", "7MB"]);
    }
}
