//! The rules. One rule, one file: each file holds the rule's documentation (the fields
//! of its [`Rule`]), its check and its tests. [`ALL`] is the registry; `docs/rules/`
//! is generated from these fields.
//!
//! A rule file imports the rule API ([`crate::rule`]), the shared statement facts
//! ([`crate::facts`]) and its family's helper ([`family`]); never the engine, and
//! never another rule.

use crate::rule::{Rule, RuleId};

pub(crate) mod family;

/// The services the boundary rules' examples and tests assume: `users`
/// owns schema `users`, `chirps` owns schema `chirps`.
#[cfg(test)]
pub(crate) const SERVICES_TOML: &str = "[[service]]\nname = \"users\"\nowns = [\"users\"]\n[[service]]\nname = \"chirps\"\nowns = [\"chirps\"]\n";

macro_rules! rules {
    ($($m:ident),* $(,)?) => {
        $(mod $m;)*
        /// Every rule, in documentation order (the order of [`RuleId::ALL`]).
        pub static ALL: &[&Rule] = &[$(&$m::RULE),*];

        /// The module name of each rule in [`ALL`], for the test that holds each
        /// rule's name to its file's.
        #[cfg(test)]
        const FILES: &[&str] = &[$(stringify!($m)),*];
    };
}

rules! {
    require_concurrent_index_creation,
    require_concurrent_index_deletion,
    require_concurrent_reindex,
    require_concurrent_detach_partition,
    require_concurrent_refresh,
    concurrently_in_transaction,
    ban_vacuum_full,
    ban_cluster,
    adding_foreign_key_constraint,
    adding_check_constraint,
    adding_unique_constraint,
    adding_primary_key_constraint,
    adding_exclusion_constraint,
    validate_in_same_transaction,
    setting_not_null,
    adding_required_column,
    adding_volatile_default,
    adding_stored_generated_column,
    adding_serial_or_identity_column,
    changing_column_type,
    dropping_column,
    dropping_table,
    dropping_object,
    dropping_constraint,
    dropping_default,
    dropping_not_null,
    renaming_column,
    renaming_table,
    renaming_object,
    changing_schema,
    truncate_cascade,
    domain_check_constraint,
    enum_add_value,
    attach_partition_without_check,
    lock_table,
    creating_trigger,
    set_logged_unlogged,
    prefer_jsonb,
    transaction_nesting,
    non_idempotent_no_transaction,
    unbounded_backfill,
    prefer_bigint,
    prefer_identity,
    prefer_timestamptz,
    prefer_text,
    identifier_too_long,
    wrong_phase,
    service_boundary,
    cross_service_reference,
    syntax_error,
    migration_format,
    unused_ignore,
}

/// The rule with this id.
pub fn get(id: RuleId) -> &'static Rule {
    ALL[id as usize]
}

/// Whether a finding of `id` already says "move this to a contract
/// migration", so that `wrong-phase` on the same statement would repeat it.
pub(crate) fn supersedes_wrong_phase(id: RuleId) -> bool {
    wrong_phase::SUPERSEDED_BY.contains(&id)
}

/// Finds a rule by its kebab-case name.
pub fn find(name: &str) -> Option<&'static Rule> {
    RuleId::from_name(name).map(get)
}

/// The schema most rule examples start from.
pub(crate) const STD_SETUP: &str = "\
CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text, name varchar(20), age integer, created_at timestamptz);
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id bigint, total numeric(10,2), status text);
CREATE INDEX orders_status_idx ON orders (status);
";

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the rule tests.
    use super::Rule;
    use crate::{Config, Finding, Input, Linter};
    use std::fmt::Write;

    /// Lints `sql` as migration 2, after replaying `setup` as migration 1.
    pub fn run(config: &Config, setup: &str, sql: &str) -> Vec<Finding> {
        let mut linter = Linter::new(config.clone());
        if !setup.is_empty() {
            linter.replay(Input {
                file: "0001_setup.sql",
                source: setup,
            });
        }
        linter.lint(Input {
            file: "0002_case.sql",
            source: sql,
        })
    }

    /// Asserts that `rule` fires on every `fire` case and on its documented bad example,
    /// and not on any `pass` case nor on its documented safe alternative; returns a
    /// rendering for a snapshot.
    pub fn check(rule: &Rule, fire: &[&str], pass: &[&str]) -> String {
        check_with(&Config::default(), rule, fire, pass)
    }

    /// [`check`] with a configuration (e.g. another Postgres version).
    pub fn check_with(config: &Config, rule: &Rule, fire: &[&str], pass: &[&str]) -> String {
        let mut snap = String::new();
        let bad = (!rule.bad.is_empty()).then_some(rule.bad);
        for sql in fire.iter().copied().chain(bad) {
            let all = run(config, rule.setup, sql);
            let mine: Vec<&Finding> = all.iter().filter(|f| f.rule == rule.name()).collect();
            assert!(
                !mine.is_empty(),
                "{} should fire on:\n{sql}\nfindings: {all:#?}",
                rule.name()
            );
            writeln!(snap, "---- fires on:\n{}", sql.trim_end()).unwrap();
            for f in mine {
                writeln!(
                    snap,
                    "{}:{} {} {}: {}",
                    f.line, f.column, f.severity, f.rule, f.message
                )
                .unwrap();
            }
        }
        // The documented safe alternative targets the default Postgres version.
        let safe = (!rule.safe.is_empty() && *config == Config::default()).then_some(rule.safe);
        for sql in pass.iter().copied().chain(safe) {
            let all = run(config, rule.setup, sql);
            let mine: Vec<&Finding> = all.iter().filter(|f| f.rule == rule.name()).collect();
            assert!(
                mine.is_empty(),
                "{} should not fire on:\n{sql}\nfindings: {mine:#?}",
                rule.name()
            );
            writeln!(snap, "---- passes:\n{}", sql.trim_end()).unwrap();
        }
        snap
    }

    /// A configuration for another Postgres major version.
    pub fn pg(version: u32) -> Config {
        let mut c = Config::default();
        c.set_pg_version(version).unwrap();
        c
    }
}

#[cfg(test)]
mod catalogue_tests {
    use super::ALL;
    use crate::finding::Severity;

    /// The documented safe alternative is clean under every rule, not just its own: the
    /// advice must not trade one finding for another.
    #[test]
    fn safe_alternatives_are_clean_under_every_rule() {
        let mut dirty = Vec::new();
        for rule in ALL {
            if rule.safe.is_empty() {
                continue;
            }
            let f = super::testing::run(&crate::Config::default(), rule.setup, rule.safe);
            for f in f.iter().filter(|f| f.severity >= Severity::Warning) {
                dirty.push(format!("{}: {} {}", rule.name(), f.rule, f.message));
            }
        }
        assert!(dirty.is_empty(), "{}", dirty.join("\n"));
    }
}

#[cfg(test)]
mod registry_tests {
    use super::{ALL, FILES};
    use crate::rule::RuleId;

    /// The registry and the ids agree: `ALL[id]` is the rule of `id`, and every
    /// rule is named after its file.
    #[test]
    fn every_id_has_its_rule_in_its_file() {
        assert_eq!(ALL.len(), RuleId::ALL.len());
        for (i, (rule, id)) in ALL.iter().zip(RuleId::ALL).enumerate() {
            assert_eq!(rule.id, *id);
            assert_eq!(*id as usize, i);
            assert_eq!(rule.name(), FILES[i].replace('_', "-"));
        }
    }
}
