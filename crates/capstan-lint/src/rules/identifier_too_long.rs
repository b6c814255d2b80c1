//! `identifier-too-long`: an identifier longer than 63 bytes.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::IdentifierTooLong,
    severity: Severity::Error,
    summary: "a table, column, index, constraint or other name longer than 63 bytes",
    lock: "",
    why: "Postgres silently truncates identifiers to 63 bytes (NAMEDATALEN - 1), with only a NOTICE. The object \
is created under a different name than the migration says, so a later migration or the application referring to \
the full name fails, and two long names sharing their first 63 bytes collide. Use a shorter name.",
    help: "shorten the name to 63 bytes or less",
    setup: "",
    bad: "CREATE TABLE customer_subscription_billing_history_entries_with_adjustments_2024 (id bigint);\n",
    safe: "CREATE TABLE customer_billing_history_2024 (id bigint);\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

const LIMIT: usize = 63;

/// Identifiers in `sql` longer than the limit, with their byte offset. The parser has
/// already truncated them in the tree, so this reads the text: string literals,
/// dollar-quoted bodies and comments are skipped.
fn long_identifiers(sql: &str) -> Vec<(usize, String)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c >= 0x80;
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' {
            i += 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i += 1;
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if c == b'$' {
            // $tag$ ... $tag$
            let tag_end = sql[i + 1..].find('$').map(|e| i + 1 + e);
            match tag_end {
                Some(te) if sql[i + 1..te].bytes().all(|x| ident_char(x) && x != b'$') => {
                    let tag = &sql[i..=te];
                    i = sql[te + 1..].find(tag).map_or(b.len(), |e| te + 1 + e + tag.len());
                }
                _ => i += 1,
            }
        } else if c == b'"' {
            let start = i;
            let mut name = String::new();
            i += 1;
            while i < b.len() {
                if b[i] == b'"' {
                    if b.get(i + 1) == Some(&b'"') {
                        name.push('"');
                        i += 2;
                        continue;
                    }
                    break;
                }
                let ch = sql[i..].chars().next().unwrap_or(' ');
                name.push(ch);
                i += ch.len_utf8();
            }
            i += 1;
            if name.len() > LIMIT {
                out.push((start, name));
            }
        } else if ident_start(c) {
            let start = i;
            while i < b.len() && ident_char(b[i]) {
                i += 1;
            }
            if i - start > LIMIT {
                out.push((start, sql[start..i].to_string()));
            }
        } else {
            i += 1;
        }
    }
    out
}

fn check(stmt: &Stmt<'_>, _ctx: &Ctx<'_>, out: &mut Hits) {
    if !crate::facts::is_ddl(stmt.node) {
        return;
    }
    for (offset, name) in long_identifiers(stmt.sql) {
        let mut cut = LIMIT;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(
            &RULE,
            stmt.start + offset,
            format!("identifier \"{name}\" is {} bytes: Postgres silently truncates it to \"{}\"", name.len(), &name[..cut]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::check;

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &[
                "CREATE TABLE t (a_column_name_that_goes_on_and_on_and_on_well_past_the_limit_of_sixty_three int);",
                "CREATE INDEX an_index_name_that_goes_on_and_on_and_on_well_past_the_limit_of_63_b ON t (a);",
                "ALTER TABLE t RENAME TO a_table_name_that_goes_on_and_on_and_on_well_past_the_limit_of_63_bytes;",
            ],
            &[
                "CREATE TABLE t (exactly_sixty_three_bytes_long_name_xxxxxxxxxxxxxxxxxxxxxxxxxxx int);",
                "CREATE TABLE short (id bigint);",
                "SELECT 'a string that is much longer than sixty three bytes is not an identifier at all';",
            ],
        ));
    }
}
