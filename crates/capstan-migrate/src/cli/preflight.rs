//! The seams the `capstan` binary plugs into the CLI: the linter as the
//! preflight of `plan`, `up` and `down`, the error budget gate, the archive's
//! detector; and how the CLI consults them.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::context::Context;
use super::exit::{Exit, Failure};
use super::output::plural;
use crate::archive::Detector;
use crate::migrator::{Database, Migrator};
use crate::source::MigrationSet;

/// What the `capstan` binary plugs into the engine: the linter as the
/// preflight of `plan`/`up`, and the detector of data-destroying statements
/// the archive needs. An application that embeds its migrations may pass
/// `capstan_lint::Archivist` too, or nothing.
#[derive(Clone, Default)]
pub struct Hooks<'a> {
    /// Checks pending migrations before `plan` and `up`.
    pub preflight: Option<&'a dyn Preflight>,
    /// Finds the statements whose data `up` and `down` archive first.
    pub detector: Option<Arc<dyn Detector>>,
}

/// A finding that stops `plan` and `up` (an error-level lint finding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightFinding {
    /// The migration it is in.
    pub version: u64,
    /// `file:line:column: rule: message`.
    pub text: String,
    /// The finding as `capstan lint --format json` prints it (an object with
    /// `rule`, `severity`, `file`, `line`, …), when the preflight has one.
    pub detail: Option<serde_json::Value>,
    /// Whether it refuses the run. A finding that does not (a lock finding on
    /// a table that is small right now) is printed as a warning.
    pub refuses: bool,
    /// Whether it refuses the run even with `--unsafe-ok`, and on a database
    /// where nothing is applied yet: a migration changing what another
    /// service owns (fix ownership in `capstan.toml` instead).
    pub absolute: bool,
    /// Whether it is reported on a database where nothing is applied yet,
    /// where the rules that protect a live schema are skipped: service
    /// boundaries (which refuse) and cross-service references (which warn),
    /// since a service's first migrations are where coupling usually starts.
    pub first_deploy: bool,
}

/// Findings for JSON output: each in the shape of `capstan lint --format
/// json`'s findings, plus the `version` of the migration it is in.
pub(crate) fn findings_json(found: &[PreflightFinding]) -> Vec<serde_json::Value> {
    found
        .iter()
        .map(|f| match &f.detail {
            Some(serde_json::Value::Object(o)) => {
                let mut o = o.clone();
                o.insert("version".into(), f.version.into());
                serde_json::Value::Object(o)
            }
            _ => serde_json::json!({"version": f.version, "message": f.text}),
        })
        .collect()
}

/// Checks pending migrations before `plan` and `up` run them. The `capstan`
/// binary plugs its linter in here; an application that embeds its migrations
/// passes none (its migrations were linted before it was built).
pub trait Preflight: Send + Sync {
    /// The findings that refuse the run, for the `pending` migrations of `set`,
    /// written for `dialect`; `config` is the `capstan.toml` in effect, if any;
    /// `service` the service the run acts for (`--service`, or the only one
    /// `capstan.toml` declares), `None` when it declares none.
    fn check(
        &self,
        set: &MigrationSet,
        pending: &[u64],
        dialect: crate::split::Dialect,
        config: Option<&Path>,
        service: Option<&str>,
    ) -> Result<Vec<PreflightFinding>, String>;

    /// [`Preflight::check`], knowing the live database (`live`: its table
    /// sizes and session time zone). The default ignores it.
    fn check_live(
        &self,
        set: &MigrationSet,
        pending: &[u64],
        dialect: crate::split::Dialect,
        config: Option<&Path>,
        service: Option<&str>,
        live: &crate::live::LiveDb,
    ) -> Result<Vec<PreflightFinding>, String> {
        let _ = live;
        self.check(set, pending, dialect, config, service)
    }

    /// The findings in the down sections `down` is about to run
    /// (`reverting`, newest first). `down` prints them and goes ahead: a
    /// rollback is not refused. The default finds nothing.
    fn check_down(
        &self,
        set: &MigrationSet,
        reverting: &[u64],
        dialect: crate::split::Dialect,
        config: Option<&Path>,
        service: Option<&str>,
        live: &crate::live::LiveDb,
    ) -> Result<Vec<PreflightFinding>, String> {
        let _ = (set, reverting, dialect, config, service, live);
        Ok(Vec::new())
    }

    /// Consulted before `up` applies the contract migrations `contracts`:
    /// `Ok(Some(reason))` freezes the run (nothing is applied). The `capstan`
    /// binary plugs the error budget gate in here; the default lets it run.
    fn contract_gate(
        &self,
        contracts: &[u64],
        config: Option<&Path>,
    ) -> Result<Option<String>, String> {
        let _ = (contracts, config);
        Ok(None)
    }

    /// The phase classifier `migrate import` marks contract migrations
    /// with; the default imports every migration as expand.
    fn phase_classifier(&self) -> Option<&dyn crate::import::PhaseClassifier> {
        None
    }
}

impl Context<'_> {
    /// The service the run acts for, as the preflight is told it.
    pub(crate) fn service_name(&self) -> Option<&str> {
        self.declared.as_ref().map(|s| s.name.as_str())
    }

    async fn run_preflight(
        &self,
        preflight: &dyn Preflight,
        m: &Migrator,
        db: &mut Database,
        pending: &[u64],
    ) -> Result<Vec<PreflightFinding>, Failure> {
        let config = self
            .config_path
            .exists()
            .then_some(self.config_path.as_path());
        let live = self.live(db).await?;
        preflight
            .check_live(
                m.set(),
                pending,
                db.driver().dialect(),
                config,
                self.service_name(),
                &live,
            )
            .map_err(Failure::bad_input)
    }

    /// The live database's table sizes and time zone, for the preflight.
    /// When they cannot be read (a table the role may not read), the lint
    /// goes on without them: every table counts as large.
    async fn live(&self, db: &mut Database) -> Result<crate::live::LiveDb, Failure> {
        let limit = crate::live::count_up_to(self.config.lint.as_ref());
        match db.driver().live(limit).await {
            Ok(live) => Ok(live),
            Err(e) => {
                self.out.warn(format_args!("warning: cannot read the table sizes ({e}); every table counts as large for the lint"));
                Ok(crate::live::LiveDb::default())
            }
        }
    }

    /// Before `down`: lints the down sections of `reverting` and prints what
    /// it finds on stderr. A rollback goes ahead whatever it finds.
    pub(crate) async fn lint_down(
        &self,
        m: &Migrator,
        db: &mut Database,
        reverting: &[u64],
    ) -> Result<(), Failure> {
        let Some(preflight) = self.preflight else {
            return Ok(());
        };
        if reverting.is_empty() {
            return Ok(());
        }
        let config = self
            .config_path
            .exists()
            .then_some(self.config_path.as_path());
        let live = self.live(db).await?;
        let found = preflight
            .check_down(
                m.set(),
                reverting,
                db.driver().dialect(),
                config,
                self.service_name(),
                &live,
            )
            .map_err(Failure::bad_input)?;
        for f in &found {
            self.out.warn(&f.text);
        }
        if !found.is_empty() {
            self.out.warn(format_args!(
                "warning: {} in the down sections about to run; rolling back anyway (a rollback is not refused)",
                plural(found.len(), "lint error", "lint errors")
            ));
        }
        Ok(())
    }

    /// Runs the preflight on `pending` and prints what it found. Returns `None`
    /// when the findings refuse the run (no `--unsafe-ok`), else the findings
    /// overridden (empty when there were none).
    pub(crate) async fn lint_pending(
        &self,
        m: &Migrator,
        db: &mut Database,
        pending: &[u64],
        unsafe_ok: bool,
    ) -> Result<Option<Vec<PreflightFinding>>, Failure> {
        let (found, refused) = self.lint_findings(m, db, pending, unsafe_ok).await?;
        if !refused {
            return Ok(Some(found));
        }
        self.out.json_error(serde_json::json!({"kind": "lint", "message": "lint errors in pending migrations", "exit_code": Exit::Lint.code(), "findings": findings_json(&found)}));
        Ok(None)
    }

    /// [`Self::lint_pending`] without the JSON error: the findings (printed on
    /// stderr) and whether they refuse the run.
    pub(crate) async fn lint_findings(
        &self,
        m: &Migrator,
        db: &mut Database,
        pending: &[u64],
        unsafe_ok: bool,
    ) -> Result<(Vec<PreflightFinding>, bool), Failure> {
        let Some(preflight) = self.preflight else {
            return Ok((Vec::new(), false));
        };
        // A database where nothing is applied yet serves no binary and holds no
        // data: the lock and phase rules protect a live schema, so they wait
        // for the first deploy after this one. Service boundaries and
        // cross-service references hold from the first migration on.
        let first = db.history().await?.is_empty();
        let (found, warned): (Vec<_>, Vec<_>) = self
            .run_preflight(preflight, m, db, pending)
            .await?
            .into_iter()
            .filter(|f| !first || f.absolute || f.first_deploy)
            .partition(|f| f.refuses);
        for f in &warned {
            self.out.warn(&f.text);
        }
        if found.is_empty() {
            return Ok((found, false));
        }
        for f in &found {
            self.out.warn(&f.text);
        }
        let absolute = found.iter().filter(|f| f.absolute).count();
        if absolute > 0 {
            self.out.warn(format_args!(
                "error: {} in pending migrations: a migration changes what another service (or no service) owns; nothing was run, and --unsafe-ok does not override it. Move the change to the owning service's migrations, or fix ownership in capstan.toml (`owns`)",
                plural(absolute, "service boundary violation", "service boundary violations")
            ));
            return Ok((found, true));
        }
        if unsafe_ok {
            self.out.warn(format_args!(
                "WARNING: {} in pending migrations; going ahead because of --unsafe-ok (recorded in history)",
                plural(found.len(), "lint error", "lint errors")
            ));
            return Ok((found, false));
        }
        self.out.warn(format_args!(
            "error: {} in pending migrations; nothing was run. Fix them, suppress one with `-- capstan:ignore RULE reason` on the line before the statement, or pass --unsafe-ok (recorded in history); details: `capstan lint`",
            plural(found.len(), "lint error", "lint errors")
        ));
        Ok((found, true))
    }
}
