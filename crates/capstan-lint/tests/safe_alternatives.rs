//! The safe alternative in every rule's help text is executed against a real Postgres,
//! after the rule's setup schema, so the advice is known to work.

mod common;

use capstan_lint::RULES as ALL;
use common::{apply, Connect, TestDb};

#[test]
fn every_safe_alternative_runs_on_postgres() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for rule in ALL {
        if rule.safe.is_empty() {
            continue;
        }
        let db = TestDb::new("lint_safe");
        let mut client = db.connect();
        if let Err(e) = apply(&mut client, rule.setup) {
            failures.push(format!("{}: setup failed: {e}", rule.name()));
            continue;
        }
        match apply(&mut client, rule.safe) {
            Ok(()) => ran += 1,
            Err(e) => failures.push(format!("{}: safe alternative failed: {e}", rule.name())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ran >= 40, "only {ran} safe alternatives ran");
}

#[test]
fn every_flagged_example_is_sql_postgres_accepts_grammatically() {
    for rule in ALL {
        if rule.name() == "syntax-error" {
            continue;
        }
        let up = common::up_section(rule.bad);
        assert!(
            pg_query::parse(up, 0).is_ok(),
            "{}: its flagged example does not parse",
            rule.name()
        );
    }
}
