//! Rule documentation, generated from the rules themselves: `docs/rules/<rule>.md`,
//! `docs/rules/README.md`, and `capstan lint --explain RULE`.

use crate::rules::{Rule, ALL};
use std::fmt::Write;

/// The full text of one rule, as Markdown.
pub fn render_rule(rule: &Rule) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# `{}`\n", rule.name);
    let _ = writeln!(s, "**Severity:** {} · {}\n", rule.severity, rule.summary);
    let sqlite = if crate::rules::SQLITE.contains(&rule.name) {
        "yes"
    } else {
        "no (Postgres only)"
    };
    let _ = writeln!(s, "**Applies to SQLite migrations:** {sqlite}\n");
    if !rule.lock.is_empty() {
        let _ = writeln!(s, "**Lock:** {}\n", rule.lock);
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
        rule.name, rule.name
    );
    s
}

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
            r.name,
            r.name,
            r.severity,
            r.summary.replace('|', "\\|")
        );
    }
    s
}

/// Every generated file: (file name under `docs/rules/`, contents).
pub fn generate() -> Vec<(String, String)> {
    let mut out = vec![("README.md".to_string(), render_index())];
    for r in ALL {
        out.push((format!("{}.md", r.name), render_rule(r)));
    }
    out
}
