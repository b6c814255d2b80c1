//! `prefer-text`: a `varchar(n)` or `char(n)` column.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use super::family::prefer_type;
use crate::finding::Severity;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::PreferText,
    severity: Severity::Warning,
    summary: "a column of type varchar(n) or char(n)",
    lock: "",
    why: "In Postgres, varchar(n) is text with a length check and no performance benefit; lowering the limit \
later scans the table under an ACCESS EXCLUSIVE lock, and the limit usually encodes a business rule better \
expressed (and changed online) as a CHECK constraint. char(n) pads with spaces, which surprises comparisons and \
wastes space. Use text, with a CHECK (length(col) <= n) where a limit matters. An `ALTER COLUMN ... TYPE` that keeps the column's type (widening a legacy `varchar(20)` \
to `varchar(255)`) is not flagged: the type was chosen by the migration that created the column \
(the same holds for the other type-preference rules).",
    help: "use text, with a CHECK (length(col) <= n) constraint if a limit matters",
    setup: "",
    bad: "CREATE TABLE users (id bigint, email varchar(255));\n",
    safe: "CREATE TABLE users (id bigint, email text CHECK (length(email) <= 255));\n",
    up_only: true,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    prefer_type(&RULE, stmt, ctx, out, |_, ty, _| {
        let flagged = match ty.name.as_str() {
            "varchar" => !ty.mods.is_empty(),
            "bpchar" => true,
            _ => false,
        };
        flagged.then(|| {
            format!(
                "{}: prefer text (with a CHECK on its length if needed)",
                ty.display().replace("bpchar", "char")
            )
        })
    });
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::{check, run};

    /// Regression: widening a legacy column is not where its type was chosen.
    #[test]
    fn widening_a_legacy_column_is_not_flagged() {
        let setup = "CREATE TABLE users (id bigint, name varchar(20));\n";
        let found = |sql: &str| {
            run(&crate::Config::default(), setup, sql)
                .into_iter()
                .filter(|f| f.rule == RULE.name())
                .count()
        };
        assert_eq!(found("ALTER TABLE users ALTER COLUMN name TYPE varchar(255);"), 0);
        // Choosing the type now is flagged.
        assert_eq!(found("ALTER TABLE users ALTER COLUMN id TYPE varchar(40);"), 1);
        assert_eq!(found("ALTER TABLE users ADD COLUMN nick varchar(20);"), 1);
    }

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &["CREATE TABLE t (a varchar(10));", "CREATE TABLE t (a char(2));", "CREATE TABLE t (a text);\nALTER TABLE t ADD COLUMN b character varying(40);"],
            &["CREATE TABLE t (a text);", "CREATE TABLE t (a varchar);", "CREATE TABLE t (a citext);"],
        ));
    }
}
