//! Importing a migration directory written for another tool.
//!
//! `capstan migrate import --from TOOL DIR` reads the migrations of diesel,
//! sqlx, goose, dbmate or golang-migrate, converts each one into a capstan file
//! (`NNNN_snake_name.sql`, numbered from 0001 in the source tool's order) and
//! writes them with a fresh `capstan.sum`. [`convert`] is the pure part: it
//! reads the source and returns the files it would write; [`import`] checks
//! that every produced file parses as a capstan migration, refuses a
//! destination that already holds migrations, and writes.
//!
//! Each file starts with `-- imported from TOOL: ORIGINAL FILES`. What the
//! source tool expressed differently, capstan's way is chosen and said in the
//! file's notes:
//!
//! - the tool's no-transaction marker becomes `-- capstan:no-transaction`;
//! - capstan refuses `BEGIN`/`COMMIT` inside a transactional migration, so a
//!   section wrapped in one `BEGIN … COMMIT` loses those two statements (capstan
//!   runs the migration in its own transaction), and a section that controls
//!   its transactions in any other way is imported as no-transaction, as written;
//! - golang-migrate runs files without a transaction: a file is imported as
//!   transactional unless one of its statements cannot run inside a
//!   transaction (`CREATE INDEX CONCURRENTLY`, `VACUUM`, …);
//! - a down section with no statement (only comments) stays a down section
//!   that does nothing, as the source tool runs it (diesel refuses a 0-byte
//!   `down.sql`, so that one is left out); an up section without a statement
//!   becomes `SELECT 1;`, so the numbering still follows the source's history;
//! - squawk (`-- squawk-ignore`) and Atlas (`-- atlas:nolint`) suppressions
//!   become `-- capstan:ignore` on the same line, their reason kept ([`SUPPRESSIONS`]).
//!
//! The order is the source tool's own: sqlx, goose and golang-migrate compare
//! versions as integers, diesel compares version strings and dbmate file
//! names byte by byte (so dbmate runs `10_x.sql` before `9_x.sql`). The first
//! line records the tool and the version its history table holds
//! (`-- imported from goose version 5: …`, read back by [`imported_from`]),
//! which is how `capstan migrate baseline --from TOOL` maps a database the old
//! tool migrated. goose annotations are read as goose reads them (any case);
//! one goose refuses is a warning naming file and line, not a failed import.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::source::{self, MigrationSet, SourceError, MAX_FILE_BYTES};
use crate::split::{self, Dialect, Statement};
use crate::sum::{self, SumError, SUM_FILE};
use capstan_format::words;

mod dbmate;
mod diesel;
mod finish;
mod golang_migrate;
mod goose;
mod history;
mod read;
mod sql;
mod sqlx;
mod suppress;

#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) use self::history::quote_table;
pub(crate) use self::history::{map_history, Imported, ToolHistoryRow};
pub(crate) use self::sql::snake_name;
pub use self::suppress::SUPPRESSIONS;
use self::{
    dbmate::*, diesel::*, finish::*, golang_migrate::*, goose::*, read::*, sql::*, sqlx::*,
    suppress::*,
};

/// A migration tool whose directory can be imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// diesel: `<version>_<name>/` directories with `up.sql`, `down.sql`, `metadata.toml`.
    Diesel,
    /// sqlx: `<VERSION>_<DESCRIPTION>.sql`, or `.up.sql` and `.down.sql`.
    Sqlx,
    /// goose: `<VERSION>_<name>.sql` with `-- +goose Up` / `-- +goose Down`.
    Goose,
    /// dbmate: `<VERSION>_name.sql` with `-- migrate:up` / `-- migrate:down`.
    Dbmate,
    /// golang-migrate: `<VERSION>_<title>.up.sql` and `.down.sql`.
    GolangMigrate,
}

impl Tool {
    /// Every tool, in the order the CLI lists them.
    pub const ALL: [Tool; 5] = [
        Tool::Diesel,
        Tool::Sqlx,
        Tool::Goose,
        Tool::Dbmate,
        Tool::GolangMigrate,
    ];

    /// The name used on the command line: `diesel`, `sqlx`, `goose`, `dbmate`, `golang-migrate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Diesel => "diesel",
            Tool::Sqlx => "sqlx",
            Tool::Goose => "goose",
            Tool::Dbmate => "dbmate",
            Tool::GolangMigrate => "golang-migrate",
        }
    }

    /// What a migration of this tool is named like, for error messages.
    pub fn expected_names(self) -> &'static str {
        match self {
            Tool::Diesel => "a directory <version>_<name>/ holding up.sql (like 2024-01-31-120000_create_users/)",
            Tool::Sqlx => "<VERSION>_<DESCRIPTION>.sql, or .up.sql and .down.sql, with VERSION in digits (like 20240131120000_create_users.sql)",
            Tool::Goose => "<VERSION>_<name>.sql with VERSION a number above zero (like 20240131120000_create_users.sql)",
            Tool::Dbmate => "<VERSION>_name.sql with VERSION in digits (like 20240131120000_create_users.sql)",
            Tool::GolangMigrate => "<VERSION>_<title>.up.sql and .down.sql with VERSION in digits (like 000001_create_users.up.sql)",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tool name that [`Tool::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown migration tool `{0}`; expected one of diesel, sqlx, goose, dbmate, golang-migrate"
)]
pub struct UnknownTool(pub String);

impl FromStr for Tool {
    type Err = UnknownTool;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tool::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTool(s.to_string()))
    }
}

/// One migration converted to capstan's format, not yet written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Converted {
    /// The original file(s) it was made from (up, down, metadata), under the source directory.
    pub source: Vec<PathBuf>,
    /// The version as the source tool records it in its history table.
    pub original_version: String,
    /// The capstan file name, `0001_create_users.sql`.
    pub file_name: String,
    /// The whole file.
    pub text: String,
    /// Whether the file is marked `-- capstan:no-transaction`.
    pub no_transaction: bool,
    /// What the conversion decided or dropped, one sentence each.
    pub notes: Vec<String>,
    /// What the source tool itself would refuse and the conversion let
    /// through (named `FILE:LINE`): review these before running the file.
    pub warnings: Vec<String>,
    /// The phase chosen: `contract` when the classifier found a statement
    /// that removes or restricts something a running binary may use.
    pub phase: crate::source::Phase,
    /// For each line of `text`, the source file and line it came from
    /// (`None` for the lines the conversion added), so findings on the
    /// converted file can be reported on the original.
    #[serde(skip)]
    pub origin: Vec<Option<(PathBuf, usize)>>,
}

/// One line of an [`ImportReport`]: an original migration and the file it became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportedMigration {
    /// The original file(s).
    pub source: Vec<PathBuf>,
    /// The version as the source tool records it.
    pub original_version: String,
    /// The capstan file written.
    pub file_name: String,
    /// Whether it is a no-transaction migration.
    pub no_transaction: bool,
    /// What the conversion decided or dropped.
    pub notes: Vec<String>,
    /// What the source tool would refuse and the conversion let through.
    pub warnings: Vec<String>,
    /// The phase the file was given.
    pub phase: crate::source::Phase,
}

/// What [`import`] wrote. `Display` renders it for a terminal; it serializes for `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The tool imported from.
    pub tool: Tool,
    /// The directory read.
    pub source_dir: PathBuf,
    /// The directory written.
    pub dest_dir: PathBuf,
    /// The migrations, oldest first.
    pub migrations: Vec<ImportedMigration>,
    /// The `capstan.sum` written.
    pub sum_file: PathBuf,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "imported {} {} migration{} from {} into {}",
            self.migrations.len(),
            self.tool,
            if self.migrations.len() == 1 { "" } else { "s" },
            self.source_dir.display(),
            self.dest_dir.display()
        )?;
        for m in &self.migrations {
            let sources: Vec<String> = m
                .source
                .iter()
                .map(|p| relative(&self.source_dir, p))
                .collect();
            write!(f, "  {} -> {}", sources.join(", "), m.file_name)?;
            let mut marks = Vec::new();
            if m.phase == crate::source::Phase::Contract {
                marks.push("contract");
            }
            if m.no_transaction {
                marks.push("no-transaction");
            }
            if !marks.is_empty() {
                write!(f, " ({})", marks.join(", "))?;
            }
            f.write_str("\n")?;
            for warning in &m.warnings {
                writeln!(f, "      warning: {warning}")?;
            }
            for note in &m.notes {
                writeln!(f, "      note: {note}")?;
            }
        }
        writeln!(f, "wrote {}", self.sum_file.display())
    }
}

/// Why an import was refused. Nothing is written when any of these is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The source directory (or the destination, when checking it) could not be read.
    #[error("cannot read directory {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A source file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A source file over [`MAX_FILE_BYTES`].
    #[error("{}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit for a migration file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A source file that is not UTF-8.
    #[error("{}:{line}: not valid UTF-8 (byte offset {offset}); save the file as UTF-8 and import again", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Line of the first invalid byte.
        line: usize,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// A file or directory whose name does not follow the tool's pattern.
    #[error("{}: not a {tool} migration name; expected {}", path.display(), tool.expected_names())]
    BadFileName {
        /// The file or directory.
        path: PathBuf,
        /// The tool whose pattern it breaks.
        tool: Tool,
    },
    /// Two migrations with the same version (compared as numbers).
    #[error("{tool} version {version} is used twice: {} and {}; remove or renumber one before importing", first.display(), second.display())]
    DuplicateVersion {
        /// The tool.
        tool: Tool,
        /// The version, as the tool records it.
        version: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A down file with no up file of the same version.
    #[error("{}: a down migration without its up migration (no {} of version {version})", path.display(), up_suffix)]
    DownWithoutUp {
        /// The down file.
        path: PathBuf,
        /// The version.
        version: String,
        /// The up file suffix that was looked for.
        up_suffix: &'static str,
    },
    /// A goose migration written in Go.
    #[error("{}: a goose Go migration cannot be imported: capstan runs SQL files only; rewrite it as a .sql migration first", path.display())]
    GoMigration {
        /// The `.go` file.
        path: PathBuf,
    },
    /// A migration whose content the tool itself would refuse, or that cannot be split.
    #[error("{}: {message}", location(path, *line))]
    Malformed {
        /// The file (or diesel directory).
        path: PathBuf,
        /// The line, when there is one.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// The source directory holds no migration of the tool.
    #[error("{}: no {tool} migrations to import; expected {}", path.display(), tool.expected_names())]
    NothingToImport {
        /// The source directory.
        path: PathBuf,
        /// The tool.
        tool: Tool,
    },
    /// The destination already holds migrations or a sum file.
    #[error("{}: already holds {}; import into a new or empty directory", path.display(), found.display())]
    DestinationNotEmpty {
        /// The destination directory.
        path: PathBuf,
        /// The first migration or sum file found there.
        found: PathBuf,
    },
    /// The destination exists and is not a directory.
    #[error("{}: exists and is not a directory", path.display())]
    DestinationNotDir {
        /// The path.
        path: PathBuf,
    },
    /// A produced file would not be accepted by capstan (for instance the
    /// source SQL holds a line that reads as a `-- capstan:` directive).
    #[error("the migration converted from {} is not a valid capstan migration: {source}", from.display())]
    Invalid {
        /// The original file.
        from: PathBuf,
        /// Why capstan refuses the produced file.
        source: SourceError,
    },
    /// The produced files do not form a valid set.
    #[error("the converted migrations do not form a valid set: {0}")]
    InvalidSet(SourceError),
    /// A file could not be written (what was written is removed again).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// `capstan.sum` could not be written (the migrations written are removed again).
    #[error(transparent)]
    Sum(#[from] SumError),
}

fn location(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

/// Classifies converted migrations into expand and contract. The engine has
/// no SQL parser: the `capstan` binary plugs the linter's phase classifier in
/// (`capstan_lint::PhaseSorter`).
pub trait PhaseClassifier {
    /// For each file of `files` (capstan file name, whole text), oldest
    /// first, the first statement of its up section that makes it a
    /// contract migration: its line in the text, and what it does (`drops
    /// column users.name`). `None` when the file is expand. Earlier files
    /// are read as the schema the later ones change.
    fn contract_statements(&self, files: &[(&str, &str)]) -> Vec<Option<(usize, String)>>;
}

/// Reads the migrations of `tool` in `src` and converts them, oldest first,
/// numbered from 0001. Reads only; writes nothing. Every migration is
/// `expand`; [`convert_with`] classifies them.
pub fn convert(tool: Tool, src: &Path) -> Result<Vec<Converted>, ImportError> {
    convert_with(tool, src, None)
}

/// [`convert`], then marks `-- capstan:phase contract` each migration in
/// which `classifier` finds a contract statement (saying which, in a note).
pub fn convert_with(
    tool: Tool,
    src: &Path,
    classifier: Option<&dyn PhaseClassifier>,
) -> Result<Vec<Converted>, ImportError> {
    let mut converted = convert_unclassified(tool, src)?;
    if let Some(classifier) = classifier {
        let files: Vec<(&str, &str)> = converted
            .iter()
            .map(|c| (c.file_name.as_str(), c.text.as_str()))
            .collect();
        let found = classifier.contract_statements(&files);
        for (c, found) in converted.iter_mut().zip(found) {
            if let Some((line, why)) = found {
                mark_contract(c, line, &why);
            }
        }
    }
    Ok(converted)
}

/// Adds `-- capstan:phase contract` after the first line of `c`, with a note
/// naming the statement (on the source file's line).
fn mark_contract(c: &mut Converted, line: usize, why: &str) {
    let at = match c.origin.get(line.saturating_sub(1)).cloned().flatten() {
        Some((path, l)) => format!("{}:{l}", path.display()),
        None => format!("{}:{line}", c.file_name),
    };
    let first_end = c.text.find('\n').map_or(c.text.len(), |i| i + 1);
    c.text.insert_str(first_end, "-- capstan:phase contract\n");
    c.origin.insert(1, None);
    c.phase = crate::source::Phase::Contract;
    c.notes.push(format!(
        "{at}: this statement {why}: imported as a contract migration (it runs once no running instance still needs what it removes)"
    ));
}

/// The tool and original version a capstan file was imported from, read
/// from its first line (`-- imported from goose version 5: …`).
pub fn imported_from(text: &str) -> Option<(Tool, String)> {
    let first = text.trim_start_matches('\u{feff}').lines().next()?;
    let rest = first.strip_prefix("-- imported from ")?;
    let (tool, rest) = rest.split_once(' ')?;
    let tool: Tool = tool.parse().ok()?;
    let rest = rest.strip_prefix("version ")?;
    let (version, _) = rest.split_once(':')?;
    (!version.is_empty()).then(|| (tool, version.to_string()))
}

fn convert_unclassified(tool: Tool, src: &Path) -> Result<Vec<Converted>, ImportError> {
    let entries = list_dir(src)?;
    let drafts = match tool {
        Tool::Diesel => diesel(src, &entries)?,
        Tool::Sqlx => sqlx(src, &entries)?,
        Tool::Goose => goose(src, &entries)?,
        Tool::Dbmate => dbmate(src, &entries)?,
        Tool::GolangMigrate => golang_migrate(src, &entries)?,
    };
    if drafts.is_empty() {
        return Err(ImportError::NothingToImport {
            path: src.to_path_buf(),
            tool,
        });
    }
    drafts
        .into_values()
        .enumerate()
        .map(|(i, d)| finish(tool, src, i as u64 + 1, d))
        .collect()
}

/// Converts the migrations of `tool` in `src` and writes them, with a
/// `capstan.sum`, into `dest_dir` (created if missing).
///
/// Refuses, changing nothing, when `dest_dir` already holds `.sql` files or a
/// `capstan.sum`, or when a converted file would not parse as a capstan
/// migration. If a write fails, the files already written are removed again.
pub fn import(tool: Tool, src: &Path, dest_dir: &Path) -> Result<ImportReport, ImportError> {
    import_with(tool, src, dest_dir, None)
}

/// [`import`], with the migrations classified by `classifier` (see [`convert_with`]).
pub fn import_with(
    tool: Tool,
    src: &Path,
    dest_dir: &Path,
    classifier: Option<&dyn PhaseClassifier>,
) -> Result<ImportReport, ImportError> {
    let converted = convert_with(tool, src, classifier)?;

    // Every file must be one capstan accepts, and together a valid set,
    // before anything is written.
    let mut parsed = Vec::with_capacity(converted.len());
    for c in &converted {
        let m = source::parse_migration(&dest_dir.join(&c.file_name), c.text.as_bytes()).map_err(
            |source| ImportError::Invalid {
                from: c.source.first().cloned().unwrap_or_default(),
                source,
            },
        )?;
        parsed.push(m);
    }
    MigrationSet::new(parsed).map_err(ImportError::InvalidSet)?;

    check_destination(dest_dir)?;
    let created = !dest_dir.exists();
    std::fs::create_dir_all(dest_dir).map_err(|source| ImportError::Write {
        path: dest_dir.to_path_buf(),
        source,
    })?;

    let files: Vec<(PathBuf, Vec<u8>)> = converted
        .iter()
        .map(|c| (dest_dir.join(&c.file_name), c.text.clone().into_bytes()))
        .collect();
    let mut written: Vec<PathBuf> = Vec::new();
    let undo = |written: &[PathBuf]| {
        for p in written {
            let _ = std::fs::remove_file(p);
        }
        if created {
            let _ = std::fs::remove_dir(dest_dir);
        }
    };
    for (path, bytes) in &files {
        if let Err(source) = std::fs::write(path, bytes) {
            undo(&written);
            return Err(ImportError::Write {
                path: path.clone(),
                source,
            });
        }
        written.push(path.clone());
    }
    if let Err(e) = sum::write(dest_dir, &files) {
        written.push(dest_dir.join(SUM_FILE));
        undo(&written);
        return Err(e.into());
    }

    Ok(ImportReport {
        tool,
        source_dir: src.to_path_buf(),
        dest_dir: dest_dir.to_path_buf(),
        migrations: converted
            .into_iter()
            .map(|c| ImportedMigration {
                source: c.source,
                original_version: c.original_version,
                file_name: c.file_name,
                no_transaction: c.no_transaction,
                notes: c.notes,
                warnings: c.warnings,
                phase: c.phase,
            })
            .collect(),
        sum_file: dest_dir.join(SUM_FILE),
    })
}

/// Refuses a destination that is a file or already holds migrations.
fn check_destination(dest: &Path) -> Result<(), ImportError> {
    if !dest.exists() {
        return Ok(());
    }
    if !dest.is_dir() {
        return Err(ImportError::DestinationNotDir {
            path: dest.to_path_buf(),
        });
    }
    let dir_err = |source| ImportError::Dir {
        path: dest.to_path_buf(),
        source,
    };
    let mut found: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(dest).map_err(dir_err)? {
        let path = e.map_err(dir_err)?.path();
        let is_sql = path.extension().is_some_and(|x| x == "sql");
        if is_sql || path.file_name().is_some_and(|n| n == SUM_FILE) {
            found.push(path);
        }
    }
    found.sort();
    match found.into_iter().next() {
        Some(found) => Err(ImportError::DestinationNotEmpty {
            path: dest.to_path_buf(),
            found,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
