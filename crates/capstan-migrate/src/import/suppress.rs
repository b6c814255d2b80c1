//! squawk's and Atlas's suppression comments, as capstan's.

use super::*;

/// squawk's and Atlas's suppression comments, as capstan rule names.
///
/// squawk: `-- squawk-ignore RULE[, RULE] -- reason` before a statement,
/// `-- squawk-ignore-file …` for the file; no rule means every rule. Atlas:
/// `-- atlas:nolint [ANALYZER|CODE …]` before a statement, or at the top of
/// the file followed by a blank line for the whole file.
pub const SUPPRESSIONS: &[(&str, &[&str])] = &[
    // squawk rules
    ("adding-field-with-default", &["adding-volatile-default"]),
    (
        "adding-foreign-key-constraint",
        &["adding-foreign-key-constraint"],
    ),
    ("adding-not-nullable-field", &["setting-not-null"]),
    (
        "adding-primary-key-constraint",
        &["adding-primary-key-constraint"],
    ),
    ("adding-required-field", &["adding-required-column"]),
    (
        "adding-serial-primary-key-field",
        &["adding-serial-or-identity-column"],
    ),
    (
        "ban-alter-domain-with-add-constraint",
        &["domain-check-constraint"],
    ),
    ("ban-char-field", &["prefer-text"]),
    (
        "ban-concurrent-index-creation-in-transaction",
        &["concurrently-in-transaction"],
    ),
    (
        "ban-create-domain-with-constraint",
        &["domain-check-constraint"],
    ),
    ("ban-drop-column", &["dropping-column"]),
    ("ban-drop-database", &["dropping-object"]),
    ("ban-drop-not-null", &["dropping-not-null"]),
    ("ban-drop-table", &["dropping-table"]),
    ("ban-truncate-cascade", &["truncate-cascade"]),
    ("changing-column-type", &["changing-column-type"]),
    (
        "constraint-missing-not-valid",
        &["adding-check-constraint", "adding-foreign-key-constraint"],
    ),
    (
        "disallowed-unique-constraint",
        &["adding-unique-constraint"],
    ),
    ("identifier-too-long", &["identifier-too-long"]),
    ("prefer-big-int", &["prefer-bigint"]),
    ("prefer-bigint-over-int", &["prefer-bigint"]),
    ("prefer-bigint-over-smallint", &["prefer-bigint"]),
    ("prefer-identity", &["prefer-identity"]),
    ("prefer-robust-stmts", &["non-idempotent-no-transaction"]),
    ("prefer-text-field", &["prefer-text"]),
    ("prefer-timestamp-tz", &["prefer-timestamptz"]),
    ("prefer-timestamptz", &["prefer-timestamptz"]),
    ("renaming-column", &["renaming-column"]),
    ("renaming-table", &["renaming-table"]),
    (
        "require-concurrent-index-creation",
        &["require-concurrent-index-creation"],
    ),
    (
        "require-concurrent-index-deletion",
        &["require-concurrent-index-deletion"],
    ),
    (
        "require-concurrent-partition-detach",
        &["require-concurrent-detach-partition"],
    ),
    (
        "require-concurrent-reindex",
        &["require-concurrent-reindex"],
    ),
    ("transaction-nesting", &["transaction-nesting"]),
    // Atlas analyzers and checks
    (
        "destructive",
        &["dropping-table", "dropping-column", "dropping-object"],
    ),
    ("ds101", &["dropping-object"]),
    ("ds102", &["dropping-table"]),
    ("ds103", &["dropping-column"]),
    (
        "backward_incompatible",
        &["renaming-table", "renaming-column"],
    ),
    ("bc101", &["renaming-table"]),
    ("bc102", &["renaming-column"]),
    (
        "data_depend",
        &[
            "adding-unique-constraint",
            "adding-required-column",
            "setting-not-null",
        ],
    ),
    ("mf101", &["adding-unique-constraint"]),
    ("mf102", &["adding-unique-constraint"]),
    ("mf103", &["adding-required-column"]),
    ("mf104", &["setting-not-null"]),
    (
        "concurrent_index",
        &[
            "require-concurrent-index-creation",
            "require-concurrent-index-deletion",
        ],
    ),
    ("pg101", &["require-concurrent-index-creation"]),
    ("pg102", &["require-concurrent-index-deletion"]),
    ("pg103", &["concurrently-in-transaction"]),
];

/// A squawk or Atlas suppression comment read from one line: file-wide or
/// not, the names it lists (none: every rule), the reason written with it.
pub(super) fn foreign_suppression(line: &str) -> Option<(bool, Vec<String>, String, &'static str)> {
    let body = line.trim().strip_prefix("--")?.trim_start();
    if let Some(rest) = body.strip_prefix("squawk-ignore") {
        let (file, rest) = match rest.strip_prefix("-file") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let (names, reason) = match rest.find("--") {
            Some(i) => (&rest[..i], rest[i + 2..].trim()),
            None => (rest, ""),
        };
        let names = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        return Some((file, names, reason.to_string(), "squawk-ignore"));
    }
    let rest = body.strip_prefix("atlas:nolint")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (names, reason) = match rest.find("--") {
        Some(i) => (&rest[..i], rest[i + 2..].trim()),
        None => (rest, ""),
    };
    let names = names.split_whitespace().map(str::to_string).collect();
    Some((false, names, reason.to_string(), "atlas:nolint"))
}

/// Rewrites squawk and Atlas suppressions in `part` as `-- capstan:ignore`
/// (same line, so line numbers hold); names with no capstan equivalent are
/// said in a note, and a comment naming none of capstan's rules is kept.
pub(super) fn convert_suppressions(part: &mut Part, notes: &mut Vec<String>) {
    let lines: Vec<&str> = part.text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut changed = false;
    // Atlas reads a directive in the file's first comment block, followed by
    // a blank line, as file-wide.
    let top_block_end = lines
        .iter()
        .position(|l| !l.trim().starts_with("--"))
        .unwrap_or(lines.len());
    let file_wide_top = lines
        .get(top_block_end)
        .is_some_and(|l| l.trim().is_empty());
    for (i, line) in lines.iter().enumerate() {
        let Some((mut file, names, reason, tool)) = foreign_suppression(line) else {
            out.push((*line).to_string());
            continue;
        };
        if tool == "atlas:nolint" && i < top_block_end && file_wide_top {
            file = true;
        }
        let mut rules: Vec<&str> = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        for n in &names {
            match SUPPRESSIONS.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)) {
                Some((_, r)) => {
                    for r in *r {
                        if !rules.contains(r) {
                            rules.push(r);
                        }
                    }
                }
                None => unknown.push(n),
            }
        }
        let at = part.at(i);
        if !unknown.is_empty() {
            notes.push(format!(
                "{at}: `{tool}` names {} with no capstan equivalent; not carried over",
                unknown
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if names.is_empty() {
            rules.push("all");
        }
        if rules.is_empty() {
            out.push((*line).to_string());
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let directive = if file { "ignore-file" } else { "ignore" };
        let original = line.trim().trim_start_matches('-').trim();
        let why = if reason.is_empty() {
            format!("(was `{original}`)")
        } else {
            format!("{reason} (was `{original}`)")
        };
        out.push(format!(
            "{indent}-- capstan:{directive} {} {why}",
            rules.join(",")
        ));
        notes.push(format!(
            "{at}: `{tool}` suppression converted to `-- capstan:{directive} {}`",
            rules.join(",")
        ));
        changed = true;
    }
    if changed {
        part.text = out.join("\n");
    }
}
