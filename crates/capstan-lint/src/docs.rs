//! Rule documentation, generated from the rules themselves: `docs/rules/<rule>.md`,
//! `docs/rules/README.md`, and `capstan lint --explain RULE`.

use crate::rule::Rule;
use crate::rules::ALL;
use std::fmt::Write;

/// The full text of one rule, as Markdown.
pub fn render_rule(rule: &Rule) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# `{}`\n", rule.name());
    let _ = writeln!(s, "**Severity:** {} · {}\n", rule.severity, rule.summary);
    let sqlite = if rule.applies_to(crate::Dialect::Sqlite) {
        "yes"
    } else {
        "no (Postgres only)"
    };
    let _ = writeln!(s, "**Applies to SQLite migrations:** {sqlite}\n");
    if !rule.lock.is_empty() {
        let _ = writeln!(s, "**Lock:** {}\n", rule.lock);
    }
    if rule.size_bound {
        let _ = writeln!(s, "{SIZED}\n");
    }
    let _ = writeln!(s, "## Why\n\n{}\n", rule.why);
    let _ = writeln!(s, "## What to do\n\n{}\n", capitalise(rule.help));
    if !rule.setup.is_empty() {
        let _ = writeln!(
            s,
            "Given this schema (an earlier migration):\n\n```sql\n{}```\n",
            rule.setup
        );
    }
    if !rule.bad.is_empty() {
        let _ = writeln!(s, "### Flagged\n\n```sql\n{}```\n", rule.bad);
    }
    if rule.safe.is_empty() {
        let _ = writeln!(
            s,
            "### Safe alternative\n\nNone exists online; see above.\n"
        );
    } else {
        let _ = writeln!(
            s,
            "### Safe alternative\n\nThis migration passes the rule, and is run against a real Postgres in capstan's tests:\n\n```sql\n{}```\n",
            rule.safe
        );
    }
    let _ = writeln!(
        s,
        "## Suppressing\n\n```sql\n-- capstan:ignore {} <reason>\n```\n\non the line before the statement, or in `capstan.toml`:\n\n```toml\n[lint]\ndisable = [\"{}\"]\n```",
        rule.name(), rule.name()
    );
    s
}

/// What the size-bound rules' pages and the index say about `migrate up`.
const SIZED: &str = "**Sized against the live database:** before `capstan migrate up` (and `down`) runs it, \
a finding of this rule on a table that holds at most `small_table_rows` rows (default 10,000) and \
`small_table_bytes` bytes (default 8 MiB, table + indexes + TOAST) right now is a warning that says so, \
not a refusal: the lock is held for milliseconds. See [the thresholds](README.md#sized-against-the-live-database).";

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + ".",
        None => String::new(),
    }
}

/// The index page listing every rule.
pub fn render_index() -> String {
    let mut s = String::from(
        "# capstan lint rules\n\n<!-- Generated from crates/capstan-lint/src/rules by `CAPSTAN_BLESS_DOCS=1 cargo test -p capstan-lint --test docs`; do not edit. -->\n\n\
| rule | severity | catches |\n|---|---|---|\n",
    );
    for r in ALL {
        let _ = writeln!(
            s,
            "| [`{}`]({}.md) | {} | {} |",
            r.name(),
            r.name(),
            r.severity,
            r.summary.replace('|', "\\|")
        );
    }
    let sized: Vec<String> = ALL
        .iter()
        .filter(|r| r.size_bound)
        .map(|r| format!("[`{0}`]({0}.md)", r.name()))
        .collect();
    let _ = write!(
        s,
        "\n## Sized against the live database\n\n\
`capstan migrate up` lints the up sections it is about to run (and `migrate down` the down sections), \
against the database they run on. It reads each table's size first: on Postgres the planner's row \
estimate (`pg_class.reltuples`; a table never analyzed is counted, stopping at `small_table_rows` + 1) \
and `pg_total_relation_size` (table, indexes, TOAST); on SQLite a count stopped the same way (bytes are \
not measured there). A finding of a rule whose harm grows with the table — it holds a lock while every \
row is rewritten, scanned, indexed or updated — on a table at or under both thresholds is printed as a \
warning that says why (\"users has 1,204 rows (72 kB) right now: the SHARE lock is held for \
milliseconds\"), and does not refuse the run:\n\n{}.\n\n\
The defaults, in the `[lint]` table of `capstan.toml`: `small_table_rows = 10000` and \
`small_table_bytes = 8388608` (8 MiB). Rewriting, scanning or indexing 8 MiB reads and writes it once or \
twice: tens of milliseconds on any disk, shorter than the 3 s default lock timeout and than most \
client timeouts; 10,000 rows of a narrow table fit in that. Set `small_table_rows = 0` to size no \
table (every such finding refuses). The rules about compatibility with running binaries (drops, \
renames, `wrong-phase`, required columns) stay errors whatever the size: an older binary may be \
live. The lock is still queued behind long transactions on a busy table; capstan's lock timeout and \
retries bound that wait.\n\n\
The session time zone is known the same way: a migration's own `SET TIME ZONE`, else the live \
server's `TimeZone` (for `up`), else `[lint] time_zone` in `capstan.toml`. With a zone of offset zero on \
Postgres 12+, `timestamp` ↔ `timestamptz` rewrites no rows (`changing-column-type` says it rebuilds the \
column's indexes instead).\n",
        sized.join(", ")
    );
    s
}

/// Every generated file: (file name under `docs/rules/`, contents).
pub fn generate() -> Vec<(String, String)> {
    let mut out = vec![("README.md".to_string(), render_index())];
    for r in ALL {
        out.push((format!("{}.md", r.name()), render_rule(r)));
    }
    out
}
