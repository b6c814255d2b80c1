//! The engine: compares a migration set with a database's history and runs
//! what is needed, under the runner lock, with lock timeouts and retries.

use std::sync::Arc;
use std::time::Duration;

use crate::archive::{self, ArchiveError, Destruction, Detected, Detector};
use crate::driver::{
    AppliedRow, DbError, Direction, ExecFailure, FailureKind, Identity, Job, Record, SectionUpdate,
};
use crate::fleet::{blockers, InstanceRow};
use crate::source::{Migration, MigrationSet, Phase, SourceError};

mod admin;
pub(crate) mod compare;
mod down;
pub(crate) mod report;
mod run;
#[cfg(test)]
mod tests;

pub use crate::database::Database;
pub use crate::error::{Error, MigrationFailure};
pub use compare::{classify, compare, Entry, State, Status};
use report::dirty_of;
pub use report::{
    Accepted, CollisionInfo, ContractPolicy, DirtyInfo, Event, HeldBack, Plan, PlanStep, Ran,
    RepairAction, RunReport, ToolBaseline, UpOptions, VerifyReport, VerifyStep,
};

/// How migrations run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `lock_timeout` for DDL unless a migration says otherwise (zero: none).
    pub lock_timeout: Duration,
    /// How many times a migration that hit the lock timeout is tried again.
    pub lock_retries: u32,
    /// First wait before a retry; doubles each time up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Longest wait between retries.
    pub retry_backoff_max: Duration,
    /// `statement_timeout` unless a migration says otherwise (zero: none).
    pub statement_timeout: Duration,
    /// An instance not seen for this long no longer counts as live in the fleet.
    pub fleet_ttl: Duration,
    /// Archive what a migration destroys before it runs (needs a [`Detector`]).
    pub archive: bool,
    /// Largest archive copy of one object; a bigger one refuses the migration
    /// unless `--no-archive` names the object (`None`: no limit).
    pub archive_max_bytes: Option<u64>,
    /// How long archive entries are kept before `archive purge` removes them.
    pub archive_retention: Option<Duration>,
    /// How long a runner waits for another runner to release the runner
    /// lock before giving up (zero: try once).
    pub runner_lock_timeout: Duration,
    /// The database URL leads to a transaction-mode pool (PgBouncer
    /// `pool_mode = transaction`), as declared in `[migrate] pooler`: runs
    /// are refused at once (capstan also detects such a pool by itself).
    pub transaction_pooler: bool,
}

/// The default [`Settings::runner_lock_timeout`].
pub const DEFAULT_RUNNER_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_timeout: Duration::from_secs(3),
            lock_retries: 10,
            retry_backoff: Duration::from_millis(500),
            retry_backoff_max: Duration::from_secs(10),
            statement_timeout: Duration::ZERO,
            fleet_ttl: crate::fleet::DEFAULT_TTL,
            archive: true,
            archive_max_bytes: Some(archive::DEFAULT_MAX_BYTES),
            archive_retention: None,
            runner_lock_timeout: DEFAULT_RUNNER_LOCK_TIMEOUT,
            transaction_pooler: false,
        }
    }
}

/// Runs a migration set against databases.
#[derive(Debug, Clone)]
pub struct Migrator {
    set: MigrationSet,
    settings: Settings,
    identity: Identity,
    detector: Option<Arc<dyn Detector>>,
    service: Option<capstan_service::Service>,
}

fn no_events(_: Event<'_>) {}

impl Migrator {
    /// A migrator for `set`, with default settings, recorded as `capstan <version>`.
    pub fn new(set: MigrationSet) -> Self {
        Migrator {
            set,
            settings: Settings::default(),
            identity: Identity::current(concat!("capstan ", env!("CARGO_PKG_VERSION"))),
            detector: None,
            service: None,
        }
    }

    /// Acts for the declared `service`: `up` records it in the database's
    /// registry of services (refusing when another registered service owns
    /// what it claims). Open the database with
    /// [`Database::for_service`] and the same name.
    pub fn with_service(mut self, service: capstan_service::Service) -> Self {
        self.service = Some(service);
        self
    }

    /// Finds data-destroying statements with `detector`, so `up` and `down`
    /// archive what they destroy (see [`crate::archive`]).
    pub fn with_detector(mut self, detector: Arc<dyn Detector>) -> Self {
        self.detector = Some(detector);
        self
    }

    /// Refuses `--no-archive` names that match nothing this run would
    /// archive (a typo would otherwise go unnoticed until the size limit
    /// refuses again). Only checked when archiving applies.
    async fn check_no_archive(
        &self,
        db: &mut Database,
        history: &[AppliedRow],
        detected: &Detected,
        names: &[String],
    ) -> Result<(), Error> {
        if names.is_empty() || !self.archives(history) {
            return Ok(());
        }
        let mut all = Vec::new();
        for found in detected.values() {
            all.extend(
                archive::resolve(db.driver.as_mut(), found)
                    .await?
                    .into_iter()
                    .map(|(d, _)| d),
            );
        }
        for name in names {
            if !all.iter().any(|d| d.named_by(name)) {
                let mut known: Vec<String> = all.iter().map(Destruction::object).collect();
                known.sort();
                known.dedup();
                return Err(Error::Archive(ArchiveError::UnknownObject {
                    name: name.clone(),
                    known,
                }));
            }
        }
        Ok(())
    }

    /// Whether this run archives: a detector is set, archiving is on, and
    /// the database holds data (something is applied).
    fn archives(&self, history: &[AppliedRow]) -> bool {
        self.detector.is_some() && self.settings.archive && !history.is_empty()
    }

    /// The destroying statements of `todo` in `direction`, when this run
    /// [archives](Migrator::archives).
    fn detect(
        &self,
        history: &[AppliedRow],
        todo: &[&Migration],
        direction: Direction,
        dialect: crate::split::Dialect,
    ) -> Result<Detected, Error> {
        let Some(detector) = self.detector.as_ref().filter(|_| self.archives(history)) else {
            return Ok(Detected::new());
        };
        if todo.is_empty() {
            return Ok(Detected::new());
        }
        let wanted: Vec<(u64, Direction)> = todo.iter().map(|m| (m.version, direction)).collect();
        detector
            .detect(&self.set, dialect, &wanted)
            .map_err(|e| Error::Archive(ArchiveError::Detector(e)))
    }

    /// Sets how migrations run.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Sets the binary version recorded in history (`myapp 1.4.2`).
    pub fn with_binary_version(mut self, version: impl Into<String>) -> Self {
        self.identity.binary_version = version.into();
        self
    }

    /// The set.
    pub fn set(&self) -> &MigrationSet {
        &self.set
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The fleet registry, live and departed instances. Changes nothing.
    pub async fn fleet(&self, db: &mut Database) -> Result<Vec<InstanceRow>, Error> {
        Ok(db.driver.fleet_list().await?)
    }

    /// Every migration's state. Changes nothing.
    pub async fn status(&self, db: &mut Database) -> Result<Status, Error> {
        let history = db.driver.history().await?;
        let mut migrations = compare(&self.set, &history);
        mark_in_progress(db, &mut migrations).await?;
        let invalid_indexes = db.driver.invalid_indexes().await?;
        Ok(Status {
            migrations,
            invalid_indexes,
        })
    }

    /// What `up` would run, with its SQL. Changes nothing.
    pub async fn plan(&self, db: &mut Database, opts: &UpOptions) -> Result<Plan, Error> {
        self.plan_with(db, opts, true).await
    }

    /// The versions `up` would run (contract migrations included whatever the
    /// fleet says), without sizing archive copies. Changes nothing.
    pub async fn pending_versions(
        &self,
        db: &mut Database,
        opts: &UpOptions,
    ) -> Result<Vec<u64>, Error> {
        let opts = UpOptions {
            contract: ContractPolicy::Force,
            ..opts.clone()
        };
        let plan = self.plan_with(db, &opts, false).await?;
        Ok(plan.steps.iter().map(|s| s.version).collect())
    }

    /// The versions `down` with this `to` would roll back, newest first (the
    /// ones in this directory; `down` itself refuses the others).
    pub async fn reverting(&self, db: &mut Database, to: Option<u64>) -> Result<Vec<u64>, Error> {
        let history = db.driver.history().await?;
        let applied: Vec<u64> = compare(&self.set, &history)
            .iter()
            .filter(|e| matches!(e.state, State::Applied | State::Ahead))
            .map(|e| e.version)
            .collect();
        let Some(&newest) = applied.last() else {
            return Ok(Vec::new());
        };
        let to = to.unwrap_or(newest.saturating_sub(1));
        Ok(applied
            .into_iter()
            .rev()
            .filter(|v| *v > to && self.set.get(*v).is_some())
            .collect())
    }

    /// [`Migrator::plan`]; `size_archive` false skips reading the tables
    /// whose data the steps would archive.
    async fn plan_with(
        &self,
        db: &mut Database,
        opts: &UpOptions,
        size_archive: bool,
    ) -> Result<Plan, Error> {
        let history = db.driver.history().await?;
        let mut todo = self.pending(&history, opts)?;
        let fleet = db.driver.fleet_list().await?;
        let mut held_back = None;
        if let Some(i) = todo.iter().position(|m| {
            m.phase == Phase::Contract && !blockers(&fleet, m, self.settings.fleet_ttl).is_empty()
        }) {
            if opts.contract != ContractPolicy::Force {
                held_back = Some(self.held_back(todo[i], &fleet, None));
                todo.truncate(i);
            }
        }
        let detected = if size_archive {
            self.detect(&history, &todo, Direction::Up, db.driver.dialect())?
        } else {
            Detected::new()
        };
        let mut steps = Vec::new();
        for m in todo {
            let mut planned = Vec::new();
            if let Some(found) = detected.get(&(m.version, Direction::Up)) {
                let statements = m.up.statements(db.driver.dialect()).unwrap_or_default();
                let work = archive::model(archive::resolve(db.driver.as_mut(), found).await?);
                for (d, info) in &work {
                    let line =
                        m.up.first_line + statements.get(d.statement).map_or(0, |s| s.line_offset);
                    planned.push(
                        archive::estimate(
                            db.driver.as_mut(),
                            d,
                            info.as_ref(),
                            line,
                            self.settings.archive_max_bytes,
                            &opts.no_archive,
                        )
                        .await?,
                    );
                }
            }
            steps.push(PlanStep {
                version: m.version,
                name: m.name.clone(),
                phase: m.phase,
                no_transaction: m.no_transaction,
                file: m.path.clone(),
                sql: m.up.sql.clone(),
                lock_timeout_ms: m
                    .lock_timeout
                    .unwrap_or(self.settings.lock_timeout)
                    .as_millis() as u64,
                archive: planned,
            });
        }
        Ok(Plan { steps, held_back })
    }
}

/// Stops before `next` once SIGINT or SIGTERM asked to (see [`crate::interrupt`]).
fn stop_if_asked(
    next: &Migration,
    direction: Direction,
    report: &mut RunReport,
) -> Result<(), Error> {
    if crate::interrupt::stop_between_migrations() {
        return Err(Error::Interrupted {
            direction,
            signal: crate::interrupt::signal_name().unwrap_or("a signal"),
            next: next.label(),
            report: Box::new(std::mem::take(report)),
        });
    }
    Ok(())
}

/// Reports a dirty migration as in progress while another runner holds the
/// runner lock: its row says dirty only until that runner finishes it.
/// (A runner that died released the lock, so its dirty row stays dirty.)
pub async fn mark_in_progress(db: &mut Database, entries: &mut [Entry]) -> Result<(), Error> {
    if !entries.iter().any(|e| e.state == State::Dirty) {
        return Ok(());
    }
    if db.driver.lock_holder().await?.is_some() {
        for e in entries.iter_mut().filter(|e| e.state == State::Dirty) {
            e.state = State::InProgress;
        }
    }
    Ok(())
}

/// Refuses dirty and drifted states.
fn check_clean(entries: &[Entry]) -> Result<(), Error> {
    let dirty: Vec<DirtyInfo> = entries
        .iter()
        .filter(|e| e.state == State::Dirty)
        .filter_map(|e| e.applied.as_ref())
        .map(DirtyInfo::from)
        .collect();
    if !dirty.is_empty() {
        return Err(Error::Dirty(dirty));
    }
    let collisions: Vec<CollisionInfo> = entries
        .iter()
        .filter(|e| e.state == State::Collision)
        .filter_map(CollisionInfo::of)
        .collect();
    if !collisions.is_empty() {
        return Err(Error::Collision(collisions));
    }
    let drifted: Vec<String> = entries
        .iter()
        .filter(|e| e.state == State::Drifted)
        .map(|e| {
            let file = e
                .file
                .as_ref()
                .map_or_else(|| e.label(), |p| p.display().to_string());
            match e.applied.as_ref().filter(|a| a.up_checksum.is_none()) {
                Some(_) => format!(
                    "{file} (recorded by an older capstan as a whole-file checksum, so an edit of only its down section cannot be told apart)"
                ),
                None => file,
            }
        })
        .collect();
    if !drifted.is_empty() {
        return Err(Error::Drift(drifted));
    }
    Ok(())
}
