//! Invalid indexes: what a failed `CREATE INDEX CONCURRENTLY` leaves behind.
//!
//! Postgres keeps the half-built index, marked `indisvalid = false`: it is
//! maintained on every write but never used, and a unique one enforces
//! nothing. `CREATE INDEX … IF NOT EXISTS` then skips it, so a retried or
//! re-run migration would look applied while the index does not work. The
//! engine drops such an index before retrying the statement that failed,
//! checks after a no-transaction migration that every index it names is
//! valid, and `status`, `gate`, `verify` and `repair` report invalid ones.

use serde::Serialize;

/// An index Postgres marks invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidIndex {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// The table it is on.
    pub table: String,
    /// `CREATE [UNIQUE] INDEX …` as Postgres shows it.
    pub definition: String,
}

impl InvalidIndex {
    /// `schema.name`, quoted where needed.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote(&self.schema), quote(&self.name))
    }

    /// The statement that drops it without blocking writes.
    pub fn drop_sql(&self) -> String {
        format!("DROP INDEX CONCURRENTLY IF EXISTS {};", self.qualified())
    }

    /// True when `name` (as [`created_index_names`] returns it: bare or
    /// `schema.name`, unquoted) names this index.
    pub fn named_by(&self, name: &str) -> bool {
        match name.split_once('.') {
            Some((schema, bare)) => schema == self.schema && bare == self.name,
            None => name == self.name,
        }
    }
}

fn quote(ident: &str) -> String {
    let plain = ident
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !ident.starts_with(|c: char| c.is_ascii_digit());
    if plain && !ident.is_empty() {
        ident.to_string()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

/// The name an SQL statement gives the index it creates (`CREATE [UNIQUE]
/// INDEX [CONCURRENTLY] [IF NOT EXISTS] name ON …`), unquoted, folded to
/// lower case unless quoted, `schema.name` when qualified. `None` for any
/// other statement, or an index without a name.
pub fn created_index_name(sql: &str) -> Option<String> {
    let mut words = Words::new(sql);
    let mut next = || words.next();
    if !next()?.eq_ignore_ascii_case("create") {
        return None;
    }
    let mut w = next()?;
    if w.eq_ignore_ascii_case("unique") {
        w = next()?;
    }
    if !w.eq_ignore_ascii_case("index") {
        return None;
    }
    let mut w = next()?;
    if w.eq_ignore_ascii_case("concurrently") {
        w = next()?;
    }
    if w.eq_ignore_ascii_case("if") {
        next()?; // not
        next()?; // exists
        w = next()?;
    }
    if w.eq_ignore_ascii_case("on") {
        return None;
    }
    Some(unquote_qualified(&w))
}

/// The names of the indexes the statements create, in order.
pub fn created_index_names<'a>(statements: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    statements
        .into_iter()
        .filter_map(created_index_name)
        .collect()
}

fn unquote_qualified(word: &str) -> String {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = word.chars().peekable();
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(std::mem::take(&mut cur));
            }
            c if quoted => cur.push(c),
            c => cur.push(c.to_ascii_lowercase()),
        }
    }
    let _ = was_quoted;
    parts.push(cur);
    parts.join(".")
}

/// Words of an SQL statement, skipping comments; a quoted identifier, with
/// any `schema.` before it, is one word; `(` ends a word.
struct Words<'a> {
    rest: &'a str,
}

impl<'a> Words<'a> {
    fn new(sql: &'a str) -> Self {
        Words { rest: sql }
    }
}

impl Iterator for Words<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            self.rest = self.rest.trim_start();
            if let Some(r) = self.rest.strip_prefix("--") {
                self.rest = r.split_once('\n').map_or("", |(_, after)| after);
            } else if let Some(r) = self.rest.strip_prefix("/*") {
                self.rest = r.split_once("*/").map_or("", |(_, after)| after);
            } else {
                break;
            }
        }
        if self.rest.is_empty() {
            return None;
        }
        let mut word = String::new();
        let mut quoted = false;
        let mut end = self.rest.len();
        for (i, c) in self.rest.char_indices() {
            if c == '"' {
                quoted = !quoted;
            } else if !quoted && (c.is_whitespace() || c == '(' || c == ';') {
                end = i;
                break;
            }
            word.push(c);
        }
        if word.is_empty() {
            // A lone `(` or `;`.
            let c = self.rest.chars().next()?;
            self.rest = &self.rest[c.len_utf8()..];
            return Some(c.to_string());
        }
        self.rest = &self.rest[end..];
        Some(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_created_indexes() {
        for (sql, name) in [
            (
                "CREATE INDEX CONCURRENTLY items_v_idx ON items (v)",
                Some("items_v_idx"),
            ),
            (
                "create unique index concurrently if not exists Users_Email on users(email)",
                Some("users_email"),
            ),
            (
                "-- why\nCREATE INDEX \"Odd Name\" ON t (a)",
                Some("Odd Name"),
            ),
            (
                "CREATE INDEX CONCURRENTLY app.i1 ON app.t (a)",
                Some("app.i1"),
            ),
            ("CREATE INDEX ON t (a)", None),
            ("CREATE TABLE t (a int)", None),
        ] {
            assert_eq!(created_index_name(sql).as_deref(), name, "{sql}");
        }
    }
}
