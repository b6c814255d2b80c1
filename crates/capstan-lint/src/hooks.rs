//! The linter plugged into the migration engine (feature `migrate`): the
//! [`Archivist`] finds the statements whose data `capstan migrate up` and
//! `down` archive first, and the [`PhaseSorter`] classifies the migrations
//! `capstan migrate import` converts into expand and contract.
//!
//! An application that embeds its migrations gets the same archive by passing
//! it to the engine:
//!
//! ```no_run
//! use std::sync::Arc;
//! # fn demo(set: capstan_migrate::MigrationSet) {
//! let migrator = capstan_migrate::Migrator::new(set)
//!     .with_detector(Arc::new(capstan_lint::Archivist));
//! # }
//! ```

use capstan_migrate::{Destruction, Detected, Detector, Dialect, Direction, MigrationSet, Section};

use crate::destroy::Tracker;
use crate::{Config, Input, Linter};

/// Finds data-destroying statements with the Postgres parser and the schema
/// model replayed from the migration set (SQLite migrations are read with the
/// same grammar; a statement it cannot parse is not archived).
#[derive(Debug, Clone, Copy, Default)]
pub struct Archivist;

fn scan(
    tracker: &mut Tracker,
    section: &Section,
    dialect: Dialect,
) -> Result<Vec<Destruction>, String> {
    let statements = section
        .statements(dialect)
        .map_err(|e| format!("{} is never closed", e.what))?;
    let mut out = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        for mut d in tracker.statement(&section.sql[s.range.clone()]) {
            d.statement = i;
            out.push(d);
        }
    }
    Ok(out)
}

impl Detector for Archivist {
    fn detect(
        &self,
        set: &MigrationSet,
        dialect: Dialect,
        wanted: &[(u64, Direction)],
    ) -> Result<Detected, String> {
        let mut linter = Linter::new(Config::default());
        let mut out = Detected::new();
        let last = wanted.iter().map(|(v, _)| *v).max().unwrap_or(0);
        for m in set.migrations().iter().take_while(|m| m.version <= last) {
            let file = m.path.display().to_string();
            if wanted.contains(&(m.version, Direction::Up)) {
                let mut t = Tracker::new(linter.schema().clone());
                let found = scan(&mut t, &m.up, dialect).map_err(|e| format!("{file}: {e}"))?;
                out.insert((m.version, Direction::Up), found);
            }
            linter.replay(Input {
                file: &file,
                source: &m.text,
            });
            if let (true, Some(down)) = (wanted.contains(&(m.version, Direction::Down)), &m.down) {
                let mut t = Tracker::new(linter.schema().clone());
                let found = scan(&mut t, down, dialect).map_err(|e| format!("{file}: {e}"))?;
                out.insert((m.version, Direction::Down), found);
            }
        }
        Ok(out)
    }
}

/// Classifies imported migrations with the linter's phase classifier: a
/// migration is contract when a statement of its up section drops, renames,
/// retypes or newly restricts something that existed before it (the
/// statements `wrong-phase` reports in an expand migration). Earlier files are
/// replayed into the schema model, so a table created in the same file, or in
/// the same run, is judged as the linter judges it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PhaseSorter;

impl capstan_migrate::import::PhaseClassifier for PhaseSorter {
    fn contract_statements(&self, files: &[(&str, &str)]) -> Vec<Option<(usize, String)>> {
        let mut linter = Linter::new(Config::default());
        files
            .iter()
            .map(|(file, text)| linter.lint_classified(Input { file, source: text }).1)
            .collect()
    }
}
