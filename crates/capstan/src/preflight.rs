//! The linter as the preflight of `migrate plan`, `migrate up` and `migrate
//! down`: pending migrations with unsuppressed error findings are refused
//! (unless `--unsafe-ok`). Applied migrations are replayed into the schema
//! model first; tables created by the pending migrations count as this
//! release's. `up` lints the up sections it runs, `down` the down sections it
//! runs (and only reports: a rollback is not refused). With the live
//! database's sizes, a lock or rewrite finding on a table that is small right
//! now is a warning. It also carries the error budget gate a contract
//! migration consults.

use std::collections::BTreeSet;
use std::path::Path;

use capstan_lint::{Config, Finding, Input, Linter, RuleId, Severity};
use capstan_migrate::cli::{Preflight, PreflightFinding};
use capstan_migrate::{Dialect, LiveDb, MigrationSet};

/// `capstan lint`, run on the migrations `plan`, `up` and `down` are about to run.
pub struct LintPreflight;

fn config(config: Option<&Path>, dialect: Dialect) -> Result<Config, String> {
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
    Ok(lint_config)
}

/// The service the run acts for: the one the CLI names, else the service
/// whose `dir` holds the migrations, else the only one declared.
fn acting_service(
    lint: &Config,
    config: Option<&Path>,
    set: &MigrationSet,
    named: Option<&str>,
) -> Result<Option<String>, String> {
    if let Some(name) = named {
        return lint
            .services
            .get(name)
            .map(|s| Some(s.name.clone()))
            .map_err(|e| e.to_string());
    }
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let base = config
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = set.migrations().first().and_then(|m| m.path.parent());
    if let Some(s) = dir.and_then(|d| lint.services.for_dir(&absolute(base), &absolute(d))) {
        return Ok(Some(s.name.clone()));
    }
    Ok(lint
        .services
        .select(None)
        .map_err(|e| e.to_string())?
        .map(|s| s.name.clone()))
}

fn live(live: &LiveDb) -> capstan_lint::Live {
    capstan_lint::Live {
        tables: live
            .tables
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    capstan_lint::TableSize {
                        rows: t.rows,
                        bytes: t.bytes,
                    },
                )
            })
            .collect(),
        time_zone: live.time_zone.clone(),
    }
}

/// The findings worth printing: errors (which refuse), and the lock findings
/// the table sizes turned into warnings (which say why they do not).
/// A service boundary violation refuses whatever the flags; a cross-service
/// reference is printed as a warning and never refuses.
fn keep(config: &Config, version: u64, f: Finding) -> Option<PreflightFinding> {
    let downgraded = f.severity == Severity::Warning
        && capstan_lint::find_rule(&f.rule).is_some_and(|r| {
            r.size_bound && config.severity_of(&f.rule, r.severity) >= Severity::Error
        });
    let coupling =
        f.rule == RuleId::CrossServiceReference.name() && f.severity >= Severity::Warning;
    let refuses = f.severity >= Severity::Error && !coupling;
    let absolute = refuses && f.rule == RuleId::ServiceBoundary.name();
    (refuses || downgraded || coupling).then(|| PreflightFinding {
        version,
        text: format!(
            "{}:{}:{}: {}{}: {}",
            f.file,
            f.line,
            f.column,
            if refuses { "" } else { "warning: " },
            f.rule,
            f.message
        ),
        detail: serde_json::to_value(&f).ok(),
        refuses,
        absolute,
        first_deploy: absolute || coupling,
    })
}

impl Preflight for LintPreflight {
    fn check(
        &self,
        set: &MigrationSet,
        pending: &[u64],
        dialect: Dialect,
        config: Option<&Path>,
        service: Option<&str>,
    ) -> Result<Vec<PreflightFinding>, String> {
        self.check_live(set, pending, dialect, config, service, &LiveDb::default())
    }

    fn check_live(
        &self,
        set: &MigrationSet,
        pending: &[u64],
        dialect: Dialect,
        config: Option<&Path>,
        service: Option<&str>,
        db: &LiveDb,
    ) -> Result<Vec<PreflightFinding>, String> {
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let mut lint_config = self::config(config, dialect)?;
        lint_config.service = acting_service(&lint_config, config, set, service)?;
        // `up` runs up sections only: a down section is checked by the `down`
        // that runs it, and must not block an `up`.
        lint_config.lint_down = false;
        let pending: BTreeSet<u64> = pending.iter().copied().collect();
        let mut linter = Linter::new(lint_config.clone()).with_live(live(db));
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
            found.extend(
                linter
                    .lint(input)
                    .into_iter()
                    .filter_map(|f| keep(&lint_config, m.version, f)),
            );
        }
        Ok(found)
    }

    fn check_down(
        &self,
        set: &MigrationSet,
        reverting: &[u64],
        dialect: Dialect,
        config: Option<&Path>,
        service: Option<&str>,
        db: &LiveDb,
    ) -> Result<Vec<PreflightFinding>, String> {
        let mut lint_config = self::config(config, dialect)?;
        lint_config.service = acting_service(&lint_config, config, set, service)?;
        let mut found = Vec::new();
        for &version in reverting {
            // The database as it is before this down runs: every migration up
            // to and including this one applied, none of it new.
            let mut linter = Linter::new(lint_config.clone()).with_live(live(db));
            let mut target = None;
            for m in set.migrations() {
                if m.version > version {
                    break;
                }
                let file = m.path.display().to_string();
                linter.replay(Input {
                    file: &file,
                    source: &m.text,
                });
                if m.version == version {
                    target = Some(m);
                }
            }
            let Some(m) = target else {
                continue;
            };
            let file = m.path.display().to_string();
            found.extend(
                linter
                    .lint_down(Input {
                        file: &file,
                        source: &m.text,
                    })
                    .into_iter()
                    .filter_map(|f| keep(&lint_config, version, f)),
            );
        }
        Ok(found)
    }

    /// The error budget gate (`[slo.policy]`), before a contract migration.
    fn contract_gate(
        &self,
        _contracts: &[u64],
        config: Option<&Path>,
    ) -> Result<Option<String>, String> {
        capstan_slo::contract_gate(config)
    }

    /// `migrate import` marks the migrations the linter classifies as contract.
    fn phase_classifier(&self) -> Option<&dyn capstan_migrate::import::PhaseClassifier> {
        Some(&capstan_lint::PhaseSorter)
    }
}

#[cfg(test)]
mod tests {
    /// `migrate up` counts unanalyzed tables up to the linter's row threshold.
    #[test]
    fn the_count_limit_is_the_linters_threshold() {
        assert_eq!(
            capstan_migrate::DEFAULT_COUNT_UP_TO,
            capstan_lint::DEFAULT_SMALL_TABLE_ROWS
        );
    }
}
