//! What the engine reports: events as they happen, and the reports of
//! `up`, `down`, `plan`, `repair` and `verify`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::compare::Entry;
use crate::archive::{self, ArchiveEntry};
use crate::driver::InstanceRow;
use crate::driver::{AppliedRow, Direction, Notice};
use crate::indexes::InvalidIndex;
use crate::source::{Migration, Phase};

/// Something the engine did, reported as it happens (for progress output).
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Another runner holds the migration lock; this one waits for it.
    LockWait,
    /// A migration section starts.
    Start {
        /// The migration.
        migration: &'a Migration,
        /// Up or down.
        direction: Direction,
    },
    /// A lock was not granted in time; the migration will be tried again.
    Retry {
        /// The migration.
        migration: &'a Migration,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// How long capstan waits before the next attempt.
        wait: Duration,
        /// The server's message.
        message: &'a str,
    },
    /// The server sent a notice.
    Notice {
        /// The migration.
        migration: &'a Migration,
        /// The notice.
        notice: &'a Notice,
        /// The file line of the statement that raised it, when known.
        line: Option<usize>,
    },
    /// Live instances block a contract migration; `up` waits for them to leave.
    Waiting {
        /// The contract migration.
        migration: &'a Migration,
        /// The instances whose binary does not embed it.
        blockers: &'a [InstanceRow],
    },
    /// A contract migration runs although live instances do not embed it.
    Forced {
        /// The contract migration.
        migration: &'a Migration,
        /// The instances overridden.
        blockers: &'a [InstanceRow],
    },
    /// What a statement is about to destroy was copied into the archive
    /// (reported once the migration committed).
    Archived {
        /// The migration.
        migration: &'a Migration,
        /// The archive entry.
        entry: &'a ArchiveEntry,
    },
    /// A migration section finished.
    Done {
        /// The migration.
        migration: &'a Migration,
        /// Up or down.
        direction: Direction,
        /// Time taken.
        duration: Duration,
        /// False when another runner had already done it.
        done_here: bool,
    },
}

/// One migration run by `up` or `down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ran {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Up or down.
    pub direction: Direction,
    /// Milliseconds.
    pub duration_ms: u64,
}

/// A contract migration `up` stopped before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBack {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Why it did not run.
    pub reason: String,
    /// The live instances whose binary does not embed it.
    pub blockers: Vec<InstanceRow>,
}

/// What `up` or `down` did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// Migrations run, in order.
    pub ran: Vec<Ran>,
    /// Migrations another runner did first (SQLite's concurrent runners).
    pub done_by_other_runner: Vec<u64>,
    /// The contract migration `up` stopped before, if it did.
    pub held_back: Option<HeldBack>,
    /// What the migrations destroyed and capstan archived first.
    pub archived: Vec<ArchiveEntry>,
}

/// What `up` does with a contract migration that live instances still need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ContractPolicy {
    /// Apply it only when no live instance blocks it; otherwise stop before it.
    #[default]
    Fleet,
    /// Wait up to this long for the blocking instances to leave, then stop.
    Wait(Duration),
    /// Apply it anyway; recorded in history with the instances it overrode.
    Force,
}

/// Options of `up`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpOptions {
    /// Apply up to and including this version.
    pub to: Option<u64>,
    /// Contract migrations and the fleet.
    pub contract: ContractPolicy,
    /// Notes recorded in history with these versions (e.g. lint errors overridden).
    pub notes: std::collections::BTreeMap<u64, String>,
    /// Objects (`users.name`, `users`) destroyed without an archive copy
    /// (recorded in history).
    pub no_archive: Vec<String>,
}

/// One step of `plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanStep {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Phase.
    pub phase: Phase,
    /// Runs outside a transaction.
    pub no_transaction: bool,
    /// The file.
    pub file: PathBuf,
    /// The SQL that would run.
    pub sql: String,
    /// Lock timeout that would apply, in milliseconds.
    pub lock_timeout_ms: u64,
    /// What it would archive before destroying it.
    pub archive: Vec<archive::PlannedArchive>,
}

/// What `up` would do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Steps `up` would run, in order.
    pub steps: Vec<PlanStep>,
    /// The contract migration `up` would stop before (if the fleet stays as it is).
    pub held_back: Option<HeldBack>,
}

/// A dirty migration, as `repair` explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirtyInfo {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// The recorded error.
    pub error: Option<String>,
    /// Which section failed part-way: `up`, or `down` (a rollback that
    /// stopped: the migration is neither applied nor rolled back).
    pub direction: Direction,
    /// When it started.
    pub started_at: String,
    /// Who ran it.
    pub applied_by: String,
    /// Invalid indexes the migration creates (its failed `CREATE INDEX
    /// CONCURRENTLY` left them); drop each before running it again.
    pub invalid_indexes: Vec<InvalidIndex>,
}

/// A version under which the database ran a different migration than the
/// file of that number (two branches took the same number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollisionInfo {
    /// The version both claim.
    pub version: u64,
    /// The file's migration, `0005_add_bio`: it did not run.
    pub file_label: String,
    /// The file.
    pub file: PathBuf,
    /// The migration that ran as this version, `0005_add_email` (from history).
    pub applied_label: String,
    /// When it ran.
    pub applied_at: String,
    /// Who ran it.
    pub applied_by: String,
    /// From which binary.
    pub binary_version: String,
}

impl CollisionInfo {
    pub(crate) fn of(e: &Entry) -> Option<CollisionInfo> {
        let row = e.applied.as_ref()?;
        Some(CollisionInfo {
            version: e.version,
            file_label: e.label(),
            file: e.file.clone()?,
            applied_label: capstan_format::label(row.version, &row.name).to_string(),
            applied_at: row.applied_at.clone(),
            applied_by: row.applied_by.clone(),
            binary_version: row.binary_version.clone(),
        })
    }
}

impl fmt::Display for CollisionInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{v:04} is {applied} in the database (applied {at} by {by}, {bin}), but {file} is {mine}: a different migration, never run (two branches took number {v:04}). Renumber yours after it with `capstan migrate rebase {file}`, and bring {applied}.sql into this directory (merge the branch that added it)",
            v = self.version,
            applied = self.applied_label,
            at = self.applied_at,
            by = self.applied_by,
            bin = self.binary_version,
            file = self.file.display(),
            mine = self.file_label,
        )
    }
}

/// What `migrate hash --accept` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// False when history already matched the file: nothing was recorded.
    pub recorded: bool,
    /// The up section's hash before (from history; `None` in a row an
    /// older capstan wrote).
    pub previous_up_checksum: Option<String>,
    /// The up section's hash now recorded.
    pub up_checksum: String,
}

/// What the operator says happened to a dirty migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairAction {
    /// Its effects are complete (finished by hand): record it applied.
    MarkApplied(u64),
    /// Its effects are undone (reverted by hand): forget it so `up` runs it again.
    MarkRolledBack(u64),
}

/// The outcome of one migration under `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyStep {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Whether down-then-up was checked (false: no down section).
    pub down_checked: bool,
    /// Every schema difference found; empty when the step is sound.
    pub differences: Vec<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Steps, in order.
    pub steps: Vec<VerifyStep>,
    /// Invalid indexes on the application's tables in the database `verify`
    /// was pointed at (not the scratch one): each fails `verify`.
    pub invalid_indexes: Vec<InvalidIndex>,
}

impl VerifyReport {
    /// True when no step found a difference and no index is invalid.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.differences.is_empty()) && self.invalid_indexes.is_empty()
    }
}

/// What [`Migrator::baseline_from`] recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ToolBaseline {
    /// The tool whose history was read.
    pub tool: crate::import::Tool,
    /// Its history table.
    pub table: String,
    /// The rows that table holds.
    pub rows: usize,
    /// The capstan versions recorded as applied (empty: the tool applied nothing).
    pub baselined: Vec<u64>,
}

impl From<&AppliedRow> for DirtyInfo {
    fn from(r: &AppliedRow) -> Self {
        DirtyInfo {
            version: r.version,
            name: r.name.clone(),
            error: r.error.clone(),
            direction: if r.is_dirty_going_down() {
                Direction::Down
            } else {
                Direction::Up
            },
            started_at: r.applied_at.clone(),
            applied_by: r.applied_by.clone(),
            invalid_indexes: Vec::new(),
        }
    }
}

/// The dirty rows of `history`.
pub(crate) fn dirty_of(history: &[AppliedRow]) -> Vec<DirtyInfo> {
    history
        .iter()
        .filter(|r| r.is_dirty())
        .map(DirtyInfo::from)
        .collect()
}
