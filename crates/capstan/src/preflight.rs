//! The linter as the preflight of `migrate plan` and `migrate up`: pending
//! migrations with unsuppressed error findings are refused (unless
//! `--unsafe-ok`). Applied migrations are replayed into the schema model first;
//! tables created by the pending migrations count as this release's.
//! It also carries the error budget gate a contract migration consults.

use std::collections::BTreeSet;
use std::path::Path;

use capstan_lint::{Config, Input, Linter, Severity};
use capstan_migrate::cli::{Preflight, PreflightFinding};
use capstan_migrate::split::Dialect;
use capstan_migrate::MigrationSet;

/// `capstan lint`, run on the migrations `plan` and `up` are about to apply.
pub struct LintPreflight;

impl Preflight for LintPreflight {
    fn check(
        &self,
        set: &MigrationSet,
        pending: &[u64],
        dialect: Dialect,
        config: Option<&Path>,
    ) -> Result<Vec<PreflightFinding>, String> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut lint_config = match config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Config::from_toml(&text, &path.display().to_string()).map_err(|e| e.to_string())?
            }
            None => Config::default(),
        };
        lint_config.dialect = match dialect {
            Dialect::Postgres => capstan_lint::Dialect::Postgres,
            Dialect::Sqlite => capstan_lint::Dialect::Sqlite,
        };
        // `up` runs up sections only: a down section is checked by the `down`
        // that runs it, and must not block an `up`.
        lint_config.lint_down = false;
        let pending: BTreeSet<u64> = pending.iter().copied().collect();
        let mut linter = Linter::new(lint_config);
        let mut found = Vec::new();
        let mut release_started = false;
        for m in set.migrations() {
            let file = m.path.display().to_string();
            let input = Input {
                file: &file,
                source: &m.text,
            };
            if !pending.contains(&m.version) {
                linter.replay(input);
                continue;
            }
            if !release_started {
                linter.begin_release();
                release_started = true;
            }
            for f in linter.lint(input) {
                if f.severity >= Severity::Error {
                    found.push(PreflightFinding {
                        version: m.version,
                        text: format!(
                            "{}:{}:{}: {}: {}",
                            f.file, f.line, f.column, f.rule, f.message
                        ),
                        detail: serde_json::to_value(&f).ok(),
                    });
                }
            }
        }
        Ok(found)
    }

    /// The error budget gate (`[slo.policy]`), before a contract migration.
    fn contract_gate(
        &self,
        _contracts: &[u64],
        config: Option<&Path>,
    ) -> Result<Option<String>, String> {
        capstan_slo::cli::contract_gate(config)
    }
}
