//! Exit codes and the typed error of the CLI: every failure is a [`Failure`]
//! carrying its [`Exit`] code and its JSON [`Kind`]. The codes are a
//! documented contract (`docs/exit-codes.md`, generated from the `capstan`
//! binary's table, which names these codes).

use crate::archive::ArchiveError;
use crate::config::ConfigError;
use crate::driver::FailureKind;
use crate::migrator::Error;
use crate::source::SourceError;
use crate::workdir::WorkdirError;

/// How a command of the `migrate` family (`migrate`, `gate`, `fleet`,
/// `archive`, `schema`) ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// 0: success.
    Ok,
    /// 1: a migration failed, or `verify` found differences.
    Failed,
    /// 2: bad command-line usage (clap's own code).
    Usage,
    /// 3: bad input (migration files, `capstan.sum`, config, URL); nothing was changed.
    BadInput,
    /// 4: the database is unreachable or refused a privilege.
    Database,
    /// 5: refused by the database's state (dirty, drift, out of order, no down).
    Refused,
    /// 6: `up` stopped before a contract migration; what could run, ran.
    ContractHeld,
    /// 7: a lock was not granted after every retry.
    LockTimeout,
    /// 8: `gate` found the migration set incompatible with the database.
    Gate,
    /// 9: `plan`/`up` refused pending migrations with lint errors.
    Lint,
    /// 10: `up` refused a contract migration: the error budget policy froze deploys.
    Frozen,
    /// 130: SIGINT or SIGTERM stopped `up` or `down`.
    Interrupted,
    /// `fleet run`: the child's own code (126, 127, 128 + a signal, or any other).
    Child(i32),
}

impl Exit {
    /// Every code with a fixed number, in the order the documentation lists them.
    pub const ALL: [Exit; 12] = [
        Exit::Ok,
        Exit::Failed,
        Exit::Usage,
        Exit::BadInput,
        Exit::Database,
        Exit::Refused,
        Exit::ContractHeld,
        Exit::LockTimeout,
        Exit::Gate,
        Exit::Lint,
        Exit::Frozen,
        Exit::Interrupted,
    ];

    /// The process exit code.
    pub const fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::BadInput => 3,
            Exit::Database => 4,
            Exit::Refused => 5,
            Exit::ContractHeld => 6,
            Exit::LockTimeout => 7,
            Exit::Gate => 8,
            Exit::Lint => 9,
            Exit::Frozen => 10,
            Exit::Interrupted => 130,
            Exit::Child(code) => code,
        }
    }
}

/// Exit code: success.
pub const EXIT_OK: i32 = Exit::Ok.code();
/// Exit code: a migration failed, or `verify` found differences.
pub const EXIT_FAILED: i32 = Exit::Failed.code();
/// Exit code: bad command-line usage (clap's own code).
pub const EXIT_USAGE: i32 = Exit::Usage.code();
/// Exit code: bad input — migration files, `capstan.sum`, config, URL.
pub const EXIT_BAD_INPUT: i32 = Exit::BadInput.code();
/// Exit code: the database is unreachable or refused a privilege.
pub const EXIT_DATABASE: i32 = Exit::Database.code();
/// Exit code: refused by the database's state (dirty, drift, out of order, no down).
pub const EXIT_REFUSED: i32 = Exit::Refused.code();
/// Exit code: `up` stopped before a contract migration; what could run, ran.
pub const EXIT_CONTRACT_HELD: i32 = Exit::ContractHeld.code();
/// Exit code: a lock was not granted after every retry.
pub const EXIT_LOCK_TIMEOUT: i32 = Exit::LockTimeout.code();
/// Exit code: `gate` found the migration set incompatible with the database.
pub const EXIT_GATE: i32 = Exit::Gate.code();
/// Exit code: `plan`/`up` refused pending migrations with lint errors (see `--unsafe-ok`).
pub const EXIT_LINT: i32 = Exit::Lint.code();
/// Exit code: SIGINT or SIGTERM stopped `up` or `down` (what ran is reported;
/// see the engine's `interrupt` module).
pub const EXIT_INTERRUPTED: i32 = Exit::Interrupted.code();
/// Exit code: `up` refused a contract migration: the error budget policy froze deploys.
pub const EXIT_FROZEN: i32 = Exit::Frozen.code();

/// The `kind` of `{"error":{"kind","message","exit_code"}}`, the JSON a
/// failure prints with `--json` (see `docs/json.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// `bad-input`.
    BadInput,
    /// `database`.
    Database,
    /// `permission-denied`.
    PermissionDenied,
    /// `dirty`.
    Dirty,
    /// `drift`.
    Drift,
    /// `collision`.
    Collision,
    /// `not-applied`.
    NotApplied,
    /// `out-of-order`.
    OutOfOrder,
    /// `no-down`.
    NoDown,
    /// `already-recorded`.
    AlreadyRecorded,
    /// `unknown-version`.
    UnknownVersion,
    /// `not-dirty`.
    NotDirty,
    /// `tool-history`.
    ToolHistory,
    /// `migration-failed`.
    MigrationFailed,
    /// `lock-timeout`.
    LockTimeout,
    /// `interrupted`.
    Interrupted,
    /// `usage`.
    Usage,
    /// `lint` (with `findings`).
    Lint,
    /// `not-found`.
    NotFound,
    /// `restore-refused`.
    RestoreRefused,
    /// `untrusted-schema`.
    UntrustedSchema,
    /// `bad-history`.
    BadHistory,
    /// `frozen`.
    Frozen,
    /// `schema-dump`: the run is done, writing the schema file failed.
    SchemaDump,
    /// `spawn`: `fleet run` could not start or wait for its child.
    Spawn,
    /// `unknown-service`: `--service` names a service capstan.toml does
    /// not declare (or no valid name).
    UnknownService,
    /// `service-overlap`: another service registered in the database owns
    /// what this one claims.
    ServiceOverlap,
}

impl Kind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [Kind; 27] = [
        Kind::BadInput,
        Kind::Database,
        Kind::PermissionDenied,
        Kind::Dirty,
        Kind::Drift,
        Kind::Collision,
        Kind::NotApplied,
        Kind::OutOfOrder,
        Kind::NoDown,
        Kind::AlreadyRecorded,
        Kind::UnknownVersion,
        Kind::NotDirty,
        Kind::ToolHistory,
        Kind::MigrationFailed,
        Kind::LockTimeout,
        Kind::Interrupted,
        Kind::Usage,
        Kind::Lint,
        Kind::NotFound,
        Kind::RestoreRefused,
        Kind::UntrustedSchema,
        Kind::BadHistory,
        Kind::Frozen,
        Kind::SchemaDump,
        Kind::Spawn,
        Kind::UnknownService,
        Kind::ServiceOverlap,
    ];

    /// The string JSON carries.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::BadInput => "bad-input",
            Kind::Database => "database",
            Kind::PermissionDenied => "permission-denied",
            Kind::Dirty => "dirty",
            Kind::Drift => "drift",
            Kind::Collision => "collision",
            Kind::NotApplied => "not-applied",
            Kind::OutOfOrder => "out-of-order",
            Kind::NoDown => "no-down",
            Kind::AlreadyRecorded => "already-recorded",
            Kind::UnknownVersion => "unknown-version",
            Kind::NotDirty => "not-dirty",
            Kind::ToolHistory => "tool-history",
            Kind::MigrationFailed => "migration-failed",
            Kind::LockTimeout => "lock-timeout",
            Kind::Interrupted => "interrupted",
            Kind::Usage => "usage",
            Kind::Lint => "lint",
            Kind::NotFound => "not-found",
            Kind::RestoreRefused => "restore-refused",
            Kind::UntrustedSchema => "untrusted-schema",
            Kind::BadHistory => "bad-history",
            Kind::Frozen => "frozen",
            Kind::SchemaDump => "schema-dump",
            Kind::Spawn => "spawn",
            Kind::UnknownService => "unknown-service",
            Kind::ServiceOverlap => "service-overlap",
        }
    }
}

/// Why a command failed: its exit code, its JSON kind and the message
/// (advice in it names `capstan`; [`super::output::Output`] renames it to
/// the binary the user ran).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) kind: Kind,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(exit: Exit, kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            exit,
            kind,
            message: message.into(),
        }
    }

    /// Bad input (exit 3, `bad-input`).
    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Failure::new(Exit::BadInput, Kind::BadInput, message)
    }

    /// Usage (exit 2, `usage`).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure::new(Exit::Usage, Kind::Usage, message)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        let (exit, kind) = match &e {
            Error::Source(_) | Error::Url(_) => (Exit::BadInput, Kind::BadInput),
            Error::Db(d) => db_exit(d.kind),
            Error::Dirty(_) => (Exit::Refused, Kind::Dirty),
            Error::Drift(_) => (Exit::Refused, Kind::Drift),
            Error::Collision(_) => (Exit::Refused, Kind::Collision),
            Error::NotApplied(_) => (Exit::Refused, Kind::NotApplied),
            Error::MissingReason => (Exit::Usage, Kind::Usage),
            Error::OutOfOrder { .. } => (Exit::Refused, Kind::OutOfOrder),
            Error::NoDown(_) => (Exit::Refused, Kind::NoDown),
            Error::AlreadyRecorded(_) => (Exit::Refused, Kind::AlreadyRecorded),
            Error::UnknownVersion(_) => (Exit::Refused, Kind::UnknownVersion),
            Error::NotDirty(_) => (Exit::Refused, Kind::NotDirty),
            Error::ToolHistory { .. } => (Exit::Refused, Kind::ToolHistory),
            Error::Failed(f) if f.failure.kind.retryable() => {
                (Exit::LockTimeout, Kind::LockTimeout)
            }
            Error::Failed(f) if f.failure.kind == FailureKind::Interrupted => {
                (Exit::Interrupted, Kind::Interrupted)
            }
            Error::Interrupted { .. } => (Exit::Interrupted, Kind::Interrupted),
            Error::ServiceOverlap { .. } => (Exit::BadInput, Kind::ServiceOverlap),
            Error::Failed(f)
                if matches!(
                    f.failure.kind,
                    FailureKind::PermissionDenied
                        | FailureKind::Untrusted
                        | FailureKind::BadHistory
                ) =>
            {
                db_exit(f.failure.kind)
            }
            Error::Failed(_) => (Exit::Failed, Kind::MigrationFailed),
            Error::Archive(a) => match a {
                ArchiveError::NotFound(_) => (Exit::BadInput, Kind::NotFound),
                ArchiveError::Refused { .. } => (Exit::Refused, Kind::RestoreRefused),
                ArchiveError::NoRetention => (Exit::Usage, Kind::Usage),
                ArchiveError::Detector(_) | ArchiveError::UnknownObject { .. } => {
                    (Exit::BadInput, Kind::BadInput)
                }
                ArchiveError::Db(d) => db_exit(d.kind),
            },
        };
        Failure::new(exit, kind, message)
    }
}

/// The exit code and JSON `kind` of a database error outside a migration.
fn db_exit(kind: FailureKind) -> (Exit, Kind) {
    match kind {
        FailureKind::PermissionDenied => (Exit::Database, Kind::PermissionDenied),
        // Another runner held the runner lock past --runner-lock-timeout.
        FailureKind::LockTimeout => (Exit::LockTimeout, Kind::LockTimeout),
        FailureKind::Interrupted => (Exit::Interrupted, Kind::Interrupted),
        FailureKind::Untrusted => (Exit::Refused, Kind::UntrustedSchema),
        FailureKind::BadHistory => (Exit::Refused, Kind::BadHistory),
        _ => (Exit::Database, Kind::Database),
    }
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::bad_input(e.to_string())
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::bad_input(e.to_string())
    }
}

impl From<WorkdirError> for Failure {
    fn from(e: WorkdirError) -> Self {
        let exit = match e {
            WorkdirError::AlreadyApplied(_) => Exit::Refused,
            _ => Exit::BadInput,
        };
        Failure::new(exit, Kind::BadInput, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constants_are_the_codes_of_the_enum() {
        let codes: Vec<i32> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 130]);
        assert_eq!(EXIT_BAD_INPUT, 3);
        assert_eq!(EXIT_FROZEN, 10);
        assert_eq!(Exit::Child(127).code(), 127);
    }

    #[test]
    fn kinds_are_distinct_kebab_case() {
        let mut seen = std::collections::BTreeSet::new();
        for k in Kind::ALL {
            let s = k.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '-'), "{s}");
            assert!(seen.insert(s), "{s} twice");
        }
    }
}
