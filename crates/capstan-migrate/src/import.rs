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
/// (`capstan_lint::hooks::PhaseSorter`).
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

// ---------------------------------------------------------------------------
// Reading the source directory.

/// A directory entry of the source, hidden entries left out.
struct Entry {
    name: String,
    path: PathBuf,
    is_dir: bool,
}

fn list_dir(src: &Path) -> Result<Vec<Entry>, ImportError> {
    let dir_err = |source| ImportError::Dir {
        path: src.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(src).map_err(dir_err)? {
        let e = e.map_err(dir_err)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        out.push(Entry {
            name,
            is_dir: path.is_dir(),
            path,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads a file as UTF-8 text (a leading byte-order mark dropped).
fn read_text(path: &Path) -> Result<String, ImportError> {
    let meta = std::fs::metadata(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(ImportError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        ImportError::NotUtf8 {
            path: path.to_path_buf(),
            line: bytes[..offset].iter().filter(|&&c| c == b'\n').count() + 1,
            offset,
        }
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// The order of a migration in its tool. sqlx, goose and golang-migrate
/// parse versions as integers: `(digits without leading zeros, their
/// count)`, so `9` sorts before `10`. diesel compares version strings and
/// dbmate file names byte by byte (`10_x.sql` before `9_x.sql`): `(0, the
/// string)`, see [`text_key`].
type VersionKey = (usize, String);

fn version_key(digits: &str) -> VersionKey {
    let t = digits.trim_start_matches('0');
    (t.len(), t.to_string())
}

/// The key of a tool that orders by string (diesel, dbmate).
fn text_key(s: &str) -> VersionKey {
    (0, s.to_string())
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// A section of SQL taken from a source file, with the line in that file of
/// each of its lines (for messages).
#[derive(Debug, Clone)]
struct Part {
    path: PathBuf,
    rel: String,
    text: String,
    lines: Vec<usize>,
}

impl Part {
    fn new(path: &Path, rel: String) -> Self {
        Part {
            path: path.to_path_buf(),
            rel,
            text: String::new(),
            lines: Vec::new(),
        }
    }

    /// The whole file.
    fn whole(path: &Path, rel: String, text: &str) -> Self {
        let mut p = Part::new(path, rel);
        for (i, line) in text.split('\n').enumerate() {
            p.push(i + 1, line);
        }
        p
    }

    /// Appends `line` (without its newline), line `no` of the file.
    fn push(&mut self, no: usize, line: &str) {
        if !self.lines.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
        self.lines.push(no);
    }

    /// The file line of the part's 0-based line `offset`.
    fn line(&self, offset: usize) -> usize {
        self.lines
            .get(offset)
            .or(self.lines.last())
            .copied()
            .unwrap_or(1)
    }

    /// Removes `range` from the text, keeping `lines` in step: a range that
    /// starts a line and ends after a newline removes whole lines; otherwise
    /// the lines it spans join the first.
    fn remove(&mut self, range: Range<usize>) {
        let first = self.text[..range.start].matches('\n').count();
        let k = self.text[range.clone()].matches('\n').count();
        let whole = (range.start == 0 || self.text.as_bytes()[range.start - 1] == b'\n')
            && self.text[range.clone()].ends_with('\n');
        let (from, to) = if whole {
            (first, first + k)
        } else {
            (first + 1, first + 1 + k)
        };
        let to = to.min(self.lines.len());
        if from < to {
            self.lines.drain(from..to);
        }
        self.text.replace_range(range, "");
    }

    fn at(&self, offset: usize) -> String {
        format!("{}:{}", self.rel, self.line(offset))
    }

    fn statements(&self) -> Result<Vec<Statement>, ImportError> {
        split::split(&self.text, Dialect::Postgres).map_err(|e| ImportError::Malformed {
            path: self.path.clone(),
            line: Some(self.line(e.line_offset)),
            message: format!("{} is never closed", e.what),
        })
    }
}

/// One source migration, read but not yet converted.
struct Draft {
    original_version: String,
    name: String,
    source: Vec<PathBuf>,
    up: Part,
    down: Option<Part>,
    no_transaction: bool,
    notes: Vec<String>,
    warnings: Vec<String>,
}

type Drafts = BTreeMap<VersionKey, Draft>;

fn relative(src: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(src).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn insert(
    tool: Tool,
    drafts: &mut Drafts,
    key: VersionKey,
    draft: Draft,
    path: &Path,
) -> Result<(), ImportError> {
    if let Some(existing) = drafts.get(&key) {
        return Err(ImportError::DuplicateVersion {
            tool,
            version: draft.original_version,
            first: existing.source[0].clone(),
            second: path.to_path_buf(),
        });
    }
    drafts.insert(key, draft);
    Ok(())
}

fn malformed(path: &Path, line: usize, message: impl Into<String>) -> ImportError {
    ImportError::Malformed {
        path: path.to_path_buf(),
        line: Some(line),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// diesel

/// diesel: one directory per migration, `<version>_<name>`, the version being
/// digits and dashes (`2024-01-31-120000`); diesel records it without dashes.
/// Files beside the directories are ignored, as diesel ignores them.
fn diesel(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut drafts = Drafts::new();
    for e in entries.iter().filter(|e| e.is_dir) {
        // diesel skips an empty directory.
        if std::fs::read_dir(&e.path).is_ok_and(|mut d| d.next().is_none()) {
            continue;
        }
        let bad = || ImportError::BadFileName {
            path: e.path.clone(),
            tool: Tool::Diesel,
        };
        let (version, name) = e.name.split_once('_').ok_or_else(bad)?;
        let digits: String = version.chars().filter(|&c| c != '-').collect();
        if !all_digits(&digits) || !version.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
            return Err(bad());
        }
        let up_path = e.path.join("up.sql");
        if !up_path.is_file() {
            return Err(ImportError::Malformed {
                path: e.path.clone(),
                line: None,
                message: "no up.sql in this diesel migration directory".into(),
            });
        }
        let mut source = vec![up_path.clone()];
        let up = Part::whole(&up_path, relative(src, &up_path), &read_text(&up_path)?);
        let down_path = e.path.join("down.sql");
        let down = if down_path.is_file() {
            source.push(down_path.clone());
            Some(Part::whole(
                &down_path,
                relative(src, &down_path),
                &read_text(&down_path)?,
            ))
        } else {
            None
        };
        let mut notes = Vec::new();
        let mut no_transaction = false;
        let meta_path = e.path.join("metadata.toml");
        if meta_path.is_file() {
            source.push(meta_path.clone());
            let rel = relative(src, &meta_path);
            no_transaction =
                !diesel_metadata(&meta_path, &rel, &read_text(&meta_path)?, &mut notes)?;
        }
        if digits.bytes().all(|c| c == b'0') && name == "diesel_initial_setup" {
            notes.push("diesel's own setup migration (helper functions such as diesel_manage_updated_at); kept first because later migrations may call them".into());
        }
        let draft = Draft {
            original_version: digits.clone(),
            name: name.to_string(),
            source,
            up,
            down,
            no_transaction,
            notes,
            warnings: Vec::new(),
        };
        // diesel sorts by the version string (`MigrationVersion` is a string).
        insert(Tool::Diesel, &mut drafts, text_key(&digits), draft, &e.path)?;
    }
    Ok(drafts)
}

/// Reads `run_in_transaction` from a diesel `metadata.toml` (true when absent);
/// other keys are noted as ignored.
fn diesel_metadata(
    path: &Path,
    rel: &str,
    text: &str,
    notes: &mut Vec<String>,
) -> Result<bool, ImportError> {
    let mut run_in_transaction = true;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            notes.push(format!(
                "{rel}: table {line} is diesel-specific metadata; ignored"
            ));
            break;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(malformed(path, i + 1, "expected `key = value`"));
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "run_in_transaction" {
            run_in_transaction = match value {
                "true" => true,
                "false" => false,
                other => {
                    return Err(malformed(
                        path,
                        i + 1,
                        format!("run_in_transaction must be true or false, found `{other}`"),
                    ))
                }
            };
        } else {
            notes.push(format!(
                "{rel}: key `{key}` has no capstan equivalent; ignored"
            ));
        }
    }
    Ok(run_in_transaction)
}

// ---------------------------------------------------------------------------
// sqlx

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Up only (sqlx's simple migration) or the up file of a pair.
    Up,
    /// The down file of a pair.
    Down,
}

/// A file of a tool that keeps up and down in separate files.
struct PairFile {
    path: PathBuf,
    original_version: String,
    name: String,
    kind: Kind,
}

/// Pairs up and down files by version; a down file alone is refused.
fn pair(
    tool: Tool,
    files: Vec<PairFile>,
    up_suffix: &'static str,
) -> Result<BTreeMap<VersionKey, (PairFile, Option<PairFile>)>, ImportError> {
    let mut ups: BTreeMap<VersionKey, PairFile> = BTreeMap::new();
    let mut downs: BTreeMap<VersionKey, PairFile> = BTreeMap::new();
    for f in files {
        let key = version_key(&f.original_version);
        let slot = if f.kind == Kind::Up {
            &mut ups
        } else {
            &mut downs
        };
        if let Some(existing) = slot.get(&key) {
            return Err(ImportError::DuplicateVersion {
                tool,
                version: f.original_version,
                first: existing.path.clone(),
                second: f.path,
            });
        }
        slot.insert(key, f);
    }
    let mut out = BTreeMap::new();
    for (key, down) in downs.iter() {
        if !ups.contains_key(key) {
            return Err(ImportError::DownWithoutUp {
                path: down.path.clone(),
                version: down.original_version.clone(),
                up_suffix,
            });
        }
    }
    for (key, up) in ups {
        let down = downs.remove(&key);
        out.insert(key, (up, down));
    }
    Ok(out)
}

/// sqlx: `<VERSION>_<DESCRIPTION>.sql`, `.up.sql`, `.down.sql`; a file whose
/// first bytes are `-- no-transaction` runs outside a transaction.
fn sqlx(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut files = Vec::new();
    for e in entries
        .iter()
        .filter(|e| !e.is_dir && e.name.ends_with(".sql"))
    {
        let bad = || ImportError::BadFileName {
            path: e.path.clone(),
            tool: Tool::Sqlx,
        };
        let (version, rest) = e.name.split_once('_').ok_or_else(bad)?;
        if !all_digits(version) {
            return Err(bad());
        }
        let version: i64 = version.parse().map_err(|_| bad())?;
        let (name, kind) = if let Some(n) = rest.strip_suffix(".up.sql") {
            (n, Kind::Up)
        } else if let Some(n) = rest.strip_suffix(".down.sql") {
            (n, Kind::Down)
        } else {
            (rest.strip_suffix(".sql").unwrap_or(rest), Kind::Up)
        };
        files.push(PairFile {
            path: e.path.clone(),
            original_version: version.to_string(),
            name: name.to_string(),
            kind,
        });
    }
    let mut drafts = Drafts::new();
    for (key, (up, down)) in pair(Tool::Sqlx, files, ".up.sql")? {
        let mut notes = Vec::new();
        let (up_part, up_no_tx) = sqlx_part(src, &up.path, &mut notes)?;
        let mut source = vec![up.path.clone()];
        let mut no_transaction = up_no_tx;
        let down_part = match &down {
            Some(d) => {
                source.push(d.path.clone());
                let (part, down_no_tx) = sqlx_part(src, &d.path, &mut notes)?;
                if down_no_tx != up_no_tx {
                    let (marked, other) = if down_no_tx {
                        (&part.rel, &up_part.rel)
                    } else {
                        (&up_part.rel, &part.rel)
                    };
                    notes.push(format!("{marked} is marked `-- no-transaction` and {other} is not; capstan has one setting per file: imported as no-transaction"));
                }
                no_transaction |= down_no_tx;
                Some(part)
            }
            None => None,
        };
        let draft = Draft {
            original_version: up.original_version.clone(),
            name: up.name.clone(),
            source,
            up: up_part,
            down: down_part,
            no_transaction,
            notes,
            warnings: Vec::new(),
        };
        drafts.insert(key, draft);
    }
    Ok(drafts)
}

/// Reads a sqlx file; returns its SQL (without the `-- no-transaction` line)
/// and whether it had that marker.
fn sqlx_part(
    src: &Path,
    path: &Path,
    notes: &mut Vec<String>,
) -> Result<(Part, bool), ImportError> {
    let text = read_text(path)?;
    let rel = relative(src, path);
    let no_tx = text.starts_with("-- no-transaction");
    let mut part = Part::new(path, rel.clone());
    for (i, line) in text.split('\n').enumerate() {
        if i == 0 && no_tx {
            continue;
        }
        if line.trim() == "-- no-transaction" {
            notes.push(format!("{rel}:{}: sqlx honours `-- no-transaction` only at the very start of a file, so this one was a plain comment; kept as one", i + 1));
        }
        part.push(i + 1, line);
    }
    Ok((part, no_tx))
}

// ---------------------------------------------------------------------------
// goose

/// goose: `<VERSION>_<name>.sql` with annotations; `.go` files are Go
/// migrations (those without a version prefix, and `_test.go`, are not
/// migrations and are ignored, as goose ignores them).
fn goose(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut drafts = Drafts::new();
    for e in entries.iter().filter(|e| !e.is_dir) {
        let version = e
            .name
            .split_once('_')
            .map(|(v, _)| v)
            .filter(|v| all_digits(v));
        if e.name.ends_with(".go") {
            if version.is_some() && !e.name.ends_with("_test.go") {
                return Err(ImportError::GoMigration {
                    path: e.path.clone(),
                });
            }
            continue;
        }
        let Some(stem) = e.name.strip_suffix(".sql") else {
            continue;
        };
        let bad = || ImportError::BadFileName {
            path: e.path.clone(),
            tool: Tool::Goose,
        };
        let (version, name) = stem.split_once('_').ok_or_else(bad)?;
        if !all_digits(version) {
            return Err(bad());
        }
        let version: i64 = version.parse().map_err(|_| bad())?;
        if version < 1 {
            return Err(bad());
        }
        let draft = goose_file(src, &e.path, version.to_string(), name)?;
        insert(
            Tool::Goose,
            &mut drafts,
            version_key(&draft.original_version),
            draft,
            &e.path,
        )?;
    }
    Ok(drafts)
}

fn goose_file(src: &Path, path: &Path, version: String, name: &str) -> Result<Draft, ImportError> {
    #[derive(PartialEq)]
    enum State {
        Start,
        Up,
        Down,
    }
    let text = read_text(path)?;
    let rel = relative(src, path);
    let mut up = Part::new(path, rel.clone());
    let mut down: Option<Part> = None;
    let mut state = State::Start;
    let mut block: Option<(usize, String)> = None; // StatementBegin line, block SQL
    let mut blocks: Vec<(usize, usize, String)> = Vec::new();
    let mut no_transaction = false;
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let no = i + 1;
        // goose reads every comment line that mentions `+goose` as an annotation.
        let annotation = (line.trim_start().starts_with("--") && line.contains("+goose"))
            .then(|| goose_annotation(line));
        match annotation {
            Some(Ok(a)) => {
                match a {
                    Goose::Up => {
                        if state != State::Start {
                            return Err(malformed(path, no, "a second `-- +goose Up`"));
                        }
                        state = State::Up;
                    }
                    Goose::Down => {
                        if state != State::Up {
                            return Err(malformed(
                                path,
                                no,
                                "`-- +goose Down` must follow `-- +goose Up`",
                            ));
                        }
                        if let Some((begin, _)) = &block {
                            return Err(malformed(
                                path,
                                *begin,
                                "`-- +goose StatementBegin` without `-- +goose StatementEnd`",
                            ));
                        }
                        state = State::Down;
                        down = Some(Part::new(path, rel.clone()));
                    }
                    Goose::StatementBegin => {
                        if state == State::Start {
                            return Err(malformed(
                                path,
                                no,
                                "`-- +goose StatementBegin` must follow `-- +goose Up` or `-- +goose Down`",
                            ));
                        }
                        if block.is_some() {
                            return Err(malformed(
                                path,
                                no,
                                "`-- +goose StatementBegin` inside another StatementBegin block",
                            ));
                        }
                        block = Some((no, String::new()));
                    }
                    Goose::StatementEnd => {
                        let Some((begin, sql)) = block.take() else {
                            return Err(malformed(
                                path,
                                no,
                                "`-- +goose StatementEnd` without `-- +goose StatementBegin`",
                            ));
                        };
                        blocks.push((begin, no, sql));
                    }
                    Goose::NoTransaction => no_transaction = true,
                    Goose::EnvsubOn => notes.push(format!(
                        "{rel}:{no}: goose substituted ${{VAR}} references from the environment after `-- +goose ENVSUB ON`; capstan does not, so the SQL is kept as written: replace them before running it"
                    )),
                    Goose::EnvsubOff => {}
                }
                continue;
            }
            Some(Err(why)) => warnings.push(format!(
                "{rel}:{no}: {why}; goose refuses this file, so no database ran it with goose: the line is kept as a plain comment, check that the up and down sections hold what you meant"
            )),
            None => {}
        }
        if let Some((_, sql)) = &mut block {
            sql.push_str(line);
            sql.push('\n');
        }
        match state {
            State::Start => {
                let t = line.trim();
                if !t.is_empty() && !t.starts_with("--") {
                    return Err(malformed(
                        path,
                        no,
                        "SQL before `-- +goose Up`; goose refuses this file too",
                    ));
                }
                up.push(no, line);
            }
            State::Up => up.push(no, line),
            State::Down => down
                .get_or_insert_with(|| Part::new(path, rel.clone()))
                .push(no, line),
        }
    }
    if state == State::Start {
        return Err(ImportError::Malformed {
            path: path.to_path_buf(),
            line: None,
            message: "no `-- +goose Up` annotation".into(),
        });
    }
    if let Some((begin, _)) = block {
        return Err(malformed(
            path,
            begin,
            "`-- +goose StatementBegin` without `-- +goose StatementEnd`",
        ));
    }
    for (begin, end, sql) in &blocks {
        let n = split::split(sql, Dialect::Postgres).map_or(0, |s| s.len());
        if n > 1 {
            notes.push(format!("{rel}:{begin}-{end}: goose ran this StatementBegin/StatementEnd block as one statement; capstan's splitter sees {n} statements in it, so check how it splits"));
        }
    }
    Ok(Draft {
        original_version: version,
        name: name.to_string(),
        source: vec![path.to_path_buf()],
        up,
        down,
        no_transaction,
        notes,
        warnings,
    })
}

/// A goose annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goose {
    Up,
    Down,
    StatementBegin,
    StatementEnd,
    NoTransaction,
    EnvsubOn,
    EnvsubOff,
}

/// Reads a `-- +goose …` line as goose does (`extractAnnotation`): no
/// leading whitespace, every `--` removed, one `+goose`, the rest trimmed
/// and compared without regard to case. Err: why goose refuses it.
fn goose_annotation(line: &str) -> Result<Goose, String> {
    const KNOWN: [(&str, Goose); 7] = [
        ("Up", Goose::Up),
        ("Down", Goose::Down),
        ("StatementBegin", Goose::StatementBegin),
        ("StatementEnd", Goose::StatementEnd),
        ("NO TRANSACTION", Goose::NoTransaction),
        ("ENVSUB ON", Goose::EnvsubOn),
        ("ENVSUB OFF", Goose::EnvsubOff),
    ];
    let line = line.trim_end_matches('\r');
    if line.starts_with([' ', '\t']) {
        return Err("a goose annotation indented with whitespace".into());
    }
    let cmd = line.replace("--", "").replacen("+goose", "", 1);
    if cmd.contains("+goose") {
        return Err("two `+goose` annotations on one line".into());
    }
    let cmd = cmd.trim();
    if cmd.is_empty() {
        return Err("an empty `-- +goose` annotation".into());
    }
    KNOWN
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(cmd))
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            format!("unknown goose annotation `+goose {cmd}` (goose knows Up, Down, StatementBegin, StatementEnd, NO TRANSACTION, ENVSUB ON, ENVSUB OFF, in any case)")
        })
}

// ---------------------------------------------------------------------------
// dbmate

/// dbmate: `<VERSION>_name.sql` (any `.sql` whose name starts with digits),
/// with `-- migrate:up` and `-- migrate:down`, each optionally followed by
/// `transaction:false`.
fn dbmate(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut drafts = Drafts::new();
    let mut versions: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in entries.iter().filter(|e| !e.is_dir) {
        let Some(stem) = e.name.strip_suffix(".sql") else {
            continue;
        };
        let digits_end = stem
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(stem.len());
        let (version, name) = stem.split_at(digits_end);
        if version.is_empty() {
            return Err(ImportError::BadFileName {
                path: e.path.clone(),
                tool: Tool::Dbmate,
            });
        }
        let name = name.trim_start_matches(['_', '-', '.']);
        let draft = dbmate_file(src, &e.path, version.to_string(), name)?;
        // dbmate applies files in file-name order and records the version
        // string: `10_x.sql` runs before `9_x.sql`, `01_a` and `1_b` are two versions.
        if let Some(first) = versions.insert(version.to_string(), e.path.clone()) {
            return Err(ImportError::DuplicateVersion {
                tool: Tool::Dbmate,
                version: version.to_string(),
                first,
                second: e.path.clone(),
            });
        }
        insert(Tool::Dbmate, &mut drafts, text_key(&e.name), draft, &e.path)?;
    }
    Ok(drafts)
}

/// `-- migrate:up OPTIONS` → `(true, OPTIONS)`, `-- migrate:down OPTIONS` → `(false, OPTIONS)`.
fn dbmate_directive(line: &str) -> Option<(bool, &str)> {
    let rest = line.strip_prefix("--")?.trim_start();
    let (up, after) = if let Some(a) = rest.strip_prefix("migrate:up") {
        (true, a)
    } else {
        (false, rest.strip_prefix("migrate:down")?)
    };
    if !after.is_empty() && !after.starts_with(char::is_whitespace) {
        return None;
    }
    Some((up, after.trim()))
}

fn dbmate_file(src: &Path, path: &Path, version: String, name: &str) -> Result<Draft, ImportError> {
    let text = read_text(path)?;
    let rel = relative(src, path);
    let mut up: Option<Part> = None;
    let mut down: Option<Part> = None;
    let mut pre: Vec<(usize, &str)> = Vec::new();
    let mut notes = Vec::new();
    let mut tx_off = [false, false]; // up, down
    for (i, line) in text.split('\n').enumerate() {
        let no = i + 1;
        let directive = dbmate_directive(line).filter(|(is_up, _)| {
            // Only the first up and the first down are directives, as in dbmate.
            if *is_up {
                up.is_none()
            } else {
                down.is_none()
            }
        });
        if let Some((is_up, options)) = directive {
            if !is_up && up.is_none() {
                return Err(malformed(
                    path,
                    no,
                    "`-- migrate:down` before `-- migrate:up`; dbmate requires the up block first",
                ));
            }
            for opt in options.split_whitespace() {
                match opt.split_once(':') {
                    Some(("transaction", "false")) => tx_off[usize::from(!is_up)] = true,
                    Some(("transaction", "true")) => {}
                    _ => notes.push(format!(
                        "{rel}:{no}: dbmate option `{opt}` has no capstan equivalent; dropped"
                    )),
                }
            }
            if is_up {
                let mut part = Part::new(path, rel.clone());
                for (n, l) in pre.drain(..) {
                    part.push(n, l);
                }
                up = Some(part);
            } else {
                down = Some(Part::new(path, rel.clone()));
            }
            continue;
        }
        if let Some(d) = &mut down {
            d.push(no, line);
        } else if let Some(u) = &mut up {
            u.push(no, line);
        } else {
            let t = line.trim();
            if !t.is_empty() && !t.starts_with("--") {
                return Err(malformed(
                    path,
                    no,
                    "SQL before `-- migrate:up`; dbmate refuses this file too",
                ));
            }
            pre.push((no, line));
        }
    }
    let Some(up) = up else {
        return Err(ImportError::Malformed {
            path: path.to_path_buf(),
            line: None,
            message: "no `-- migrate:up` line".into(),
        });
    };
    if tx_off[0] != tx_off[1] && down.is_some() {
        let which = if tx_off[0] { "up" } else { "down" };
        notes.push(format!("{rel}: only the {which} block is marked transaction:false; capstan has one setting per file: imported as no-transaction"));
    }
    Ok(Draft {
        original_version: version,
        name: name.to_string(),
        source: vec![path.to_path_buf()],
        up,
        down,
        no_transaction: tx_off[0] || tx_off[1],
        notes,
        warnings: Vec::new(),
    })
}

// ---------------------------------------------------------------------------
// golang-migrate

/// golang-migrate: `<VERSION>_<title>.up.sql` and `.down.sql` (its pattern is
/// `^([0-9]+)_(.*)\.(down|up)\.(.*)$`; only SQL files can be imported).
fn golang_migrate(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut files = Vec::new();
    for e in entries.iter().filter(|e| !e.is_dir) {
        let parsed = golang_migrate_name(&e.name);
        let is_sql = e.name.ends_with(".sql");
        let bad = || ImportError::BadFileName {
            path: e.path.clone(),
            tool: Tool::GolangMigrate,
        };
        match parsed {
            Some((version, name, kind, ext)) => {
                if ext != "sql" {
                    return Err(bad());
                }
                let version: u64 = version.parse().map_err(|_| bad())?;
                files.push(PairFile {
                    path: e.path.clone(),
                    original_version: version.to_string(),
                    name: name.to_string(),
                    kind,
                });
            }
            None if is_sql => return Err(bad()),
            None => {}
        }
    }
    let mut drafts = Drafts::new();
    for (key, (up, down)) in pair(Tool::GolangMigrate, files, ".up.sql")? {
        let up_part = Part::whole(&up.path, relative(src, &up.path), &read_text(&up.path)?);
        let mut source = vec![up.path.clone()];
        let down_part = match &down {
            Some(d) => {
                source.push(d.path.clone());
                Some(Part::whole(
                    &d.path,
                    relative(src, &d.path),
                    &read_text(&d.path)?,
                ))
            }
            None => None,
        };
        drafts.insert(
            key,
            Draft {
                original_version: up.original_version,
                name: up.name,
                source,
                up: up_part,
                down: down_part,
                no_transaction: false,
                notes: Vec::new(),
                warnings: Vec::new(),
            },
        );
    }
    Ok(drafts)
}

/// `^([0-9]+)_(.*)\.(down|up)\.(.*)$` → (version, title, kind, extension).
fn golang_migrate_name(name: &str) -> Option<(&str, &str, Kind, &str)> {
    let (version, rest) = name.split_once('_')?;
    if !all_digits(version) {
        return None;
    }
    // `(.*)` is greedy: the direction is the last `.up.` / `.down.`.
    let up = rest.rfind(".up.").map(|i| (i, Kind::Up, 4));
    let down = rest.rfind(".down.").map(|i| (i, Kind::Down, 6));
    let (i, kind, len) = match (up, down) {
        (Some(u), Some(d)) => {
            if u.0 > d.0 {
                u
            } else {
                d
            }
        }
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => return None,
    };
    Some((version, &rest[..i], kind, &rest[i + len..]))
}

// ---------------------------------------------------------------------------
// Turning a draft into a capstan file.

/// How a section uses transaction control statements.
enum Control {
    /// None.
    None,
    /// Exactly one plain `BEGIN` first and one `COMMIT` last: byte ranges to remove.
    Wrapped {
        begin: Range<usize>,
        commit: Range<usize>,
        lines: (usize, usize),
    },
    /// Anything else: the first such statement's line offset and keyword.
    Own { offset: usize, what: String },
}

fn finish(tool: Tool, src: &Path, number: u64, d: Draft) -> Result<Converted, ImportError> {
    let Draft {
        original_version,
        name,
        source,
        mut up,
        down,
        mut no_transaction,
        mut notes,
        warnings,
    } = d;

    convert_suppressions(&mut up, &mut notes);
    let up_stmts = up.statements()?;
    let mut down = match down {
        Some(mut part) => {
            convert_suppressions(&mut part, &mut notes);
            let stmts = part.statements()?;
            if stmts.is_empty() && tool == Tool::Diesel && part.text.is_empty() {
                notes.push(format!(
                    "{}: an empty file, which diesel refuses to run (\"empty migration\"); imported without a down section",
                    part.rel
                ));
                None
            } else {
                if stmts.is_empty() {
                    notes.push(format!(
                        "{}: the down section holds no statement; imported as a down section that does nothing, as {tool} runs it",
                        part.rel
                    ));
                }
                Some((part, stmts))
            }
        }
        None => None,
    };
    let mut up = (up, up_stmts);

    // Transaction control and statements that cannot run in a transaction.
    let mut sections: Vec<&mut (Part, Vec<Statement>)> = vec![&mut up];
    if let Some(d) = down.as_mut() {
        sections.push(d);
    }
    let controls: Vec<Control> = sections.iter().map(|(p, s)| control(p, s)).collect();
    let non_tx: Option<(String, &'static str)> = sections.iter().find_map(|(p, stmts)| {
        stmts.iter().find_map(|s| {
            cannot_run_in_transaction(&words(&p.text[s.range.clone()]))
                .map(|what| (p.at(s.line_offset), what))
        })
    });
    if no_transaction {
        // The source already runs the file outside a transaction: keep it as written.
    } else if let Some((i, Control::Own { offset, what })) = controls
        .iter()
        .enumerate()
        .find(|(_, c)| matches!(c, Control::Own { .. }))
    {
        no_transaction = true;
        notes.push(format!(
            "{}: the file controls its own transactions (`{what}`); imported as no-transaction so they run as written",
            sections[i].0.at(*offset)
        ));
    } else if let (Tool::GolangMigrate, Some((at, what))) = (tool, &non_tx) {
        no_transaction = true;
        notes.push(format!("golang-migrate ran this migration without a transaction; imported as no-transaction because {at}: {what} cannot run inside one"));
    } else {
        for (section, c) in sections.iter_mut().zip(&controls) {
            if let Control::Wrapped {
                begin,
                commit,
                lines,
            } = c
            {
                let part = &mut section.0;
                let at = (part.line(lines.0), part.line(lines.1));
                part.remove(commit.clone());
                part.remove(begin.clone());
                notes.push(format!(
                    "{}: removed the BEGIN (line {}) and COMMIT (line {}) around the statements: capstan runs the migration in its own transaction",
                    part.rel, at.0, at.1
                ));
            }
        }
        if tool == Tool::GolangMigrate {
            notes.push("golang-migrate ran this migration without a transaction; imported as transactional: no statement in it needs to run outside one".into());
        } else if let Some((at, what)) = &non_tx {
            notes.push(format!("{at}: {what} cannot run inside a transaction, and {tool} ran this migration in one too; mark the file `-- capstan:no-transaction` if it must run outside one"));
        }
    }

    // Render, keeping where each line came from.
    let rels: Vec<String> = source.iter().map(|p| relative(src, p)).collect();
    let mut out = Rendered::default();
    out.line(
        &format!(
            "-- imported from {tool} version {original_version}: {}",
            rels.join(", ")
        ),
        None,
    );
    if no_transaction {
        out.line("-- capstan:no-transaction", None);
    }
    out.line("-- capstan:up", None);
    let up_empty =
        up.1.is_empty() || split::split(&up.0.text, Dialect::Postgres).is_ok_and(|s| s.is_empty());
    let up_len = out.section(&up.0);
    if up_empty {
        notes.push(format!(
            "{}: the up section holds no statement; capstan needs one, so it is `SELECT 1;` (does nothing)",
            up.0.rel
        ));
        out.line("SELECT 1;", None);
    } else if up_len == 0 {
        out.line("SELECT 1;", None);
    }
    if let Some((part, _)) = &down {
        out.line("", None);
        out.line("-- capstan:down", None);
        out.section(part);
    }

    Ok(Converted {
        source,
        original_version,
        file_name: format!("{number:04}_{}.sql", snake_name(&name)),
        text: out.text,
        no_transaction,
        notes,
        warnings,
        phase: crate::source::Phase::Expand,
        origin: out.origin,
    })
}

/// A converted file being written, line by line, with each line's origin.
#[derive(Default)]
struct Rendered {
    text: String,
    origin: Vec<Option<(PathBuf, usize)>>,
}

impl Rendered {
    fn line(&mut self, text: &str, origin: Option<(PathBuf, usize)>) {
        self.text.push_str(text);
        self.text.push('\n');
        self.origin.push(origin);
    }

    /// Appends a section trimmed to its text ([`trim_section`]); the number of lines written.
    fn section(&mut self, part: &Part) -> usize {
        let trimmed = trim_section(&part.text);
        if trimmed.is_empty() {
            return 0;
        }
        let start = trimmed.as_ptr() as usize - part.text.as_ptr() as usize;
        let first = part.text[..start].matches('\n').count();
        let mut n = 0;
        for (i, l) in trimmed.split('\n').enumerate() {
            self.line(l, Some((part.path.clone(), part.line(first + i))));
            n += 1;
        }
        n
    }
}

/// squawk's and Atlas's suppression comments, as capstan rule names.
///
/// squawk: `-- squawk-ignore RULE[, RULE] -- reason` before a statement,
/// `-- squawk-ignore-file …` for the file; no rule means every rule. Atlas:
/// `-- atlas:nolint [ANALYZER|CODE …]` before a statement, or at the top of
/// the file followed by a blank line for the whole file.
pub const SUPPRESSIONS: &[(&str, &[&str])] = &[
    // squawk rules
    ("adding-field-with-default", &["adding-volatile-default"]),
    (
        "adding-foreign-key-constraint",
        &["adding-foreign-key-constraint"],
    ),
    ("adding-not-nullable-field", &["setting-not-null"]),
    (
        "adding-primary-key-constraint",
        &["adding-primary-key-constraint"],
    ),
    ("adding-required-field", &["adding-required-column"]),
    (
        "adding-serial-primary-key-field",
        &["adding-serial-or-identity-column"],
    ),
    (
        "ban-alter-domain-with-add-constraint",
        &["domain-check-constraint"],
    ),
    ("ban-char-field", &["prefer-text"]),
    (
        "ban-concurrent-index-creation-in-transaction",
        &["concurrently-in-transaction"],
    ),
    (
        "ban-create-domain-with-constraint",
        &["domain-check-constraint"],
    ),
    ("ban-drop-column", &["dropping-column"]),
    ("ban-drop-database", &["dropping-object"]),
    ("ban-drop-not-null", &["dropping-not-null"]),
    ("ban-drop-table", &["dropping-table"]),
    ("ban-truncate-cascade", &["truncate-cascade"]),
    ("changing-column-type", &["changing-column-type"]),
    (
        "constraint-missing-not-valid",
        &["adding-check-constraint", "adding-foreign-key-constraint"],
    ),
    (
        "disallowed-unique-constraint",
        &["adding-unique-constraint"],
    ),
    ("identifier-too-long", &["identifier-too-long"]),
    ("prefer-big-int", &["prefer-bigint"]),
    ("prefer-bigint-over-int", &["prefer-bigint"]),
    ("prefer-bigint-over-smallint", &["prefer-bigint"]),
    ("prefer-identity", &["prefer-identity"]),
    ("prefer-robust-stmts", &["non-idempotent-no-transaction"]),
    ("prefer-text-field", &["prefer-text"]),
    ("prefer-timestamp-tz", &["prefer-timestamptz"]),
    ("prefer-timestamptz", &["prefer-timestamptz"]),
    ("renaming-column", &["renaming-column"]),
    ("renaming-table", &["renaming-table"]),
    (
        "require-concurrent-index-creation",
        &["require-concurrent-index-creation"],
    ),
    (
        "require-concurrent-index-deletion",
        &["require-concurrent-index-deletion"],
    ),
    (
        "require-concurrent-partition-detach",
        &["require-concurrent-detach-partition"],
    ),
    (
        "require-concurrent-reindex",
        &["require-concurrent-reindex"],
    ),
    ("transaction-nesting", &["transaction-nesting"]),
    // Atlas analyzers and checks
    (
        "destructive",
        &["dropping-table", "dropping-column", "dropping-object"],
    ),
    ("ds101", &["dropping-object"]),
    ("ds102", &["dropping-table"]),
    ("ds103", &["dropping-column"]),
    (
        "backward_incompatible",
        &["renaming-table", "renaming-column"],
    ),
    ("bc101", &["renaming-table"]),
    ("bc102", &["renaming-column"]),
    (
        "data_depend",
        &[
            "adding-unique-constraint",
            "adding-required-column",
            "setting-not-null",
        ],
    ),
    ("mf101", &["adding-unique-constraint"]),
    ("mf102", &["adding-unique-constraint"]),
    ("mf103", &["adding-required-column"]),
    ("mf104", &["setting-not-null"]),
    (
        "concurrent_index",
        &[
            "require-concurrent-index-creation",
            "require-concurrent-index-deletion",
        ],
    ),
    ("pg101", &["require-concurrent-index-creation"]),
    ("pg102", &["require-concurrent-index-deletion"]),
    ("pg103", &["concurrently-in-transaction"]),
];

/// A squawk or Atlas suppression comment read from one line: file-wide or
/// not, the names it lists (none: every rule), the reason written with it.
fn foreign_suppression(line: &str) -> Option<(bool, Vec<String>, String, &'static str)> {
    let body = line.trim().strip_prefix("--")?.trim_start();
    if let Some(rest) = body.strip_prefix("squawk-ignore") {
        let (file, rest) = match rest.strip_prefix("-file") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let (names, reason) = match rest.find("--") {
            Some(i) => (&rest[..i], rest[i + 2..].trim()),
            None => (rest, ""),
        };
        let names = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        return Some((file, names, reason.to_string(), "squawk-ignore"));
    }
    let rest = body.strip_prefix("atlas:nolint")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let (names, reason) = match rest.find("--") {
        Some(i) => (&rest[..i], rest[i + 2..].trim()),
        None => (rest, ""),
    };
    let names = names.split_whitespace().map(str::to_string).collect();
    Some((false, names, reason.to_string(), "atlas:nolint"))
}

/// Rewrites squawk and Atlas suppressions in `part` as `-- capstan:ignore`
/// (same line, so line numbers hold); names with no capstan equivalent are
/// said in a note, and a comment naming none of capstan's rules is kept.
fn convert_suppressions(part: &mut Part, notes: &mut Vec<String>) {
    let lines: Vec<&str> = part.text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut changed = false;
    // Atlas reads a directive in the file's first comment block, followed by
    // a blank line, as file-wide.
    let top_block_end = lines
        .iter()
        .position(|l| !l.trim().starts_with("--"))
        .unwrap_or(lines.len());
    let file_wide_top = lines
        .get(top_block_end)
        .is_some_and(|l| l.trim().is_empty());
    for (i, line) in lines.iter().enumerate() {
        let Some((mut file, names, reason, tool)) = foreign_suppression(line) else {
            out.push((*line).to_string());
            continue;
        };
        if tool == "atlas:nolint" && i < top_block_end && file_wide_top {
            file = true;
        }
        let mut rules: Vec<&str> = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        for n in &names {
            match SUPPRESSIONS.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)) {
                Some((_, r)) => {
                    for r in *r {
                        if !rules.contains(r) {
                            rules.push(r);
                        }
                    }
                }
                None => unknown.push(n),
            }
        }
        let at = part.at(i);
        if !unknown.is_empty() {
            notes.push(format!(
                "{at}: `{tool}` names {} with no capstan equivalent; not carried over",
                unknown
                    .iter()
                    .map(|u| format!("`{u}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if names.is_empty() {
            rules.push("all");
        }
        if rules.is_empty() {
            out.push((*line).to_string());
            continue;
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let directive = if file { "ignore-file" } else { "ignore" };
        let original = line.trim().trim_start_matches('-').trim();
        let why = if reason.is_empty() {
            format!("(was `{original}`)")
        } else {
            format!("{reason} (was `{original}`)")
        };
        out.push(format!(
            "{indent}-- capstan:{directive} {} {why}",
            rules.join(",")
        ));
        notes.push(format!(
            "{at}: `{tool}` suppression converted to `-- capstan:{directive} {}`",
            rules.join(",")
        ));
        changed = true;
    }
    if changed {
        part.text = out.join("\n");
    }
}

/// Drops blank lines before the first line with text, and trailing whitespace.
fn trim_section(text: &str) -> &str {
    let Some(first) = text.find(|c: char| !c.is_whitespace()) else {
        return "";
    };
    let start = text[..first].rfind('\n').map_or(0, |i| i + 1);
    text[start..].trim_end()
}

fn is_transaction_control(words: &[String]) -> bool {
    match words.first().map(String::as_str) {
        Some("BEGIN" | "COMMIT" | "ROLLBACK" | "END" | "ABORT" | "SAVEPOINT" | "RELEASE") => true,
        Some("START") => words.get(1).map(String::as_str) == Some("TRANSACTION"),
        _ => false,
    }
}

fn control(part: &Part, stmts: &[Statement]) -> Control {
    let words: Vec<Vec<String>> = stmts
        .iter()
        .map(|s| words(&part.text[s.range.clone()]))
        .collect();
    let tc: Vec<usize> = (0..stmts.len())
        .filter(|&i| is_transaction_control(&words[i]))
        .collect();
    let Some(&first) = tc.first() else {
        return Control::None;
    };
    let plain = |w: &[String], options: &[&[&str]]| {
        options
            .iter()
            .any(|o| o.len() == w.len() && o.iter().zip(w).all(|(a, b)| a == b))
    };
    let last = stmts.len() - 1;
    if tc == [0, last]
        && last > 0
        && plain(
            &words[0],
            &[
                &["BEGIN"],
                &["BEGIN", "WORK"],
                &["BEGIN", "TRANSACTION"],
                &["START", "TRANSACTION"],
            ],
        )
        && plain(
            &words[last],
            &[
                &["COMMIT"],
                &["COMMIT", "WORK"],
                &["COMMIT", "TRANSACTION"],
                &["END"],
                &["END", "WORK"],
                &["END", "TRANSACTION"],
            ],
        )
    {
        return Control::Wrapped {
            begin: statement_span(&part.text, &stmts[0].range),
            commit: statement_span(&part.text, &stmts[last].range),
            lines: (stmts[0].line_offset, stmts[last].line_offset),
        };
    }
    Control::Own {
        offset: stmts[first].line_offset,
        what: words[first].join(" "),
    }
}

/// The bytes to remove for a statement: its text, its `;`, and its whole line
/// when nothing else is on it.
fn statement_span(text: &str, range: &Range<usize>) -> Range<usize> {
    let b = text.as_bytes();
    let mut end = range.end;
    if b.get(end) == Some(&b';') {
        end += 1;
    }
    let mut after = end;
    while matches!(b.get(after), Some(b' ' | b'\t' | b'\r')) {
        after += 1;
    }
    let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let alone_before = text[line_start..range.start].trim().is_empty();
    if alone_before && (after == b.len() || b[after] == b'\n') {
        line_start..(after + 1).min(b.len())
    } else {
        range.start..end
    }
}

/// What makes a statement impossible inside a transaction block, if anything.
fn cannot_run_in_transaction(words: &[String]) -> Option<&'static str> {
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    let has = |x: &str| words.iter().any(|v| v == x);
    match (w(0), w(1)) {
        ("VACUUM", _) => Some("VACUUM"),
        ("CREATE", "DATABASE") => Some("CREATE DATABASE"),
        ("DROP", "DATABASE") => Some("DROP DATABASE"),
        ("CREATE", "TABLESPACE") => Some("CREATE TABLESPACE"),
        ("DROP", "TABLESPACE") => Some("DROP TABLESPACE"),
        ("ALTER", "SYSTEM") => Some("ALTER SYSTEM"),
        ("CREATE", "INDEX") if w(2) == "CONCURRENTLY" => Some("CREATE INDEX CONCURRENTLY"),
        ("CREATE", "UNIQUE") if w(2) == "INDEX" && w(3) == "CONCURRENTLY" => {
            Some("CREATE UNIQUE INDEX CONCURRENTLY")
        }
        ("DROP", "INDEX") if w(2) == "CONCURRENTLY" => Some("DROP INDEX CONCURRENTLY"),
        ("REINDEX", _) if has("CONCURRENTLY") => Some("REINDEX CONCURRENTLY"),
        ("REINDEX", _) if has("SYSTEM") || has("DATABASE") => Some("REINDEX DATABASE/SYSTEM"),
        ("ALTER", "TABLE")
            if has("DETACH") && words.last().is_some_and(|l| l == "CONCURRENTLY") =>
        {
            Some("DETACH PARTITION … CONCURRENTLY")
        }
        _ => None,
    }
}

/// A source name in capstan's `[a-z][a-z0-9_]*`: lower-case, anything else
/// to `_`, repeats collapsed, `m_` in front of a leading digit, `migration`
/// when nothing is left.
pub fn snake_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_matches('_');
    if trimmed.is_empty() {
        return "migration".into();
    }
    if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        format!("m_{trimmed}")
    } else {
        trimmed.to_string()
    }
}

// ---------------------------------------------------------------------------
// The old tool's history, for `baseline --from TOOL`.

/// One row of another tool's history table: the version it records, and
/// whether that row says the version is applied (sqlx `success`, goose
/// `is_applied`, golang-migrate not `dirty`; always true for diesel and dbmate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolHistoryRow {
    /// The version, as text.
    pub version: String,
    /// Whether the row counts the version as applied.
    pub ok: bool,
}

impl Tool {
    /// The history table the tool writes by default.
    pub fn history_table(self) -> &'static str {
        match self {
            Tool::Diesel => "__diesel_schema_migrations",
            Tool::Sqlx => "_sqlx_migrations",
            Tool::Goose => "goose_db_version",
            Tool::Dbmate | Tool::GolangMigrate => "schema_migrations",
        }
    }

    /// The query reading `table` (already quoted): version as text and the
    /// applied flag as 1/0, in the order the rows were written where the
    /// table keeps one. Valid on Postgres and SQLite.
    pub fn history_query(self, table: &str) -> String {
        match self {
            Tool::Diesel | Tool::Dbmate => {
                format!("SELECT CAST(version AS TEXT), 1 FROM {table}")
            }
            Tool::Sqlx => format!(
                "SELECT CAST(version AS TEXT), CASE WHEN success THEN 1 ELSE 0 END FROM {table}"
            ),
            Tool::Goose => format!(
                "SELECT CAST(version_id AS TEXT), CASE WHEN is_applied THEN 1 ELSE 0 END FROM {table} ORDER BY id"
            ),
            Tool::GolangMigrate => format!(
                "SELECT CAST(version AS TEXT), CASE WHEN dirty THEN 0 ELSE 1 END FROM {table}"
            ),
        }
    }
}

/// `name` or `schema.name` as a quoted SQL identifier.
pub fn quote_table(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// A migration of the directory, as baseline maps it: its capstan version
/// and file name, and what it was imported from (see [`imported_from`]).
#[derive(Debug, Clone)]
pub struct Imported {
    /// The capstan version.
    pub version: u64,
    /// The capstan file name.
    pub file_name: String,
    /// The tool and the version its history records, if the file says.
    pub from: Option<(Tool, String)>,
}

/// The capstan version up to which a database the old `tool` migrated is
/// already migrated, from that tool's history `rows` (None: it applied
/// nothing). Pure.
///
/// Refuses, naming versions and files, when a row is failed or dirty, when
/// the history names a version no file was imported from, or when what the
/// tool applied is not a prefix of the directory (the tool ran a later
/// migration while an earlier one is still pending): capstan records a prefix.
pub fn map_history(
    tool: Tool,
    migrations: &[Imported],
    rows: &[ToolHistoryRow],
) -> Result<Option<u64>, String> {
    let number = |v: &str| v.trim_start_matches('0').to_string();
    let key = |v: &str| match tool {
        Tool::Diesel | Tool::Dbmate => v.to_string(),
        _ => number(v),
    };
    let original = |m: &Imported| -> Option<String> {
        m.from
            .as_ref()
            .filter(|(t, _)| *t == tool)
            .map(|(_, v)| key(v))
    };
    // What the tool counts as applied.
    let mut applied: BTreeMap<String, String> = BTreeMap::new(); // key -> as recorded
    match tool {
        Tool::GolangMigrate => {
            let Some(row) = rows.last() else {
                return Ok(None);
            };
            if !row.ok {
                return Err(format!("golang-migrate's history marks version {} dirty (it failed partway): fix the database and clear the flag with `migrate force` first", row.version));
            }
            let current = number(&row.version);
            let known = migrations
                .iter()
                .any(|m| original(m) == Some(current.clone()));
            if !known {
                return Err(format!("the database is at golang-migrate version {}, which no migration in the directory was imported from", row.version));
            }
            let as_num = |k: &str| (k.len(), k.to_string());
            for m in migrations {
                if let Some(k) = original(m) {
                    if as_num(&k) <= as_num(&current) {
                        applied.insert(k.clone(), k);
                    }
                }
            }
        }
        Tool::Goose => {
            let mut last: BTreeMap<String, (String, bool)> = BTreeMap::new();
            for r in rows {
                if number(&r.version).is_empty() {
                    continue; // goose's own version 0 row
                }
                last.insert(number(&r.version), (r.version.clone(), r.ok));
            }
            for (k, (v, ok)) in last {
                if ok {
                    applied.insert(k, v);
                }
            }
        }
        _ => {
            for r in rows {
                if !r.ok {
                    return Err(format!(
                        "{tool}'s history records version {} as failed: fix it with {tool} first",
                        r.version
                    ));
                }
                applied.insert(key(&r.version), r.version.clone());
            }
        }
    }
    if applied.is_empty() {
        return Ok(None);
    }
    let mut prefix_end: Option<usize> = None;
    for (i, m) in migrations.iter().enumerate() {
        match original(m) {
            Some(k) if applied.contains_key(&k) => prefix_end = Some(i),
            _ => break,
        }
    }
    let n = prefix_end.map_or(0, |i| i + 1);
    for (k, v) in &applied {
        match migrations.iter().position(|m| original(m).as_deref() == Some(k)) {
            None => {
                return Err(format!("the database records {tool} version {v}, which no migration in the directory was imported from"))
            }
            Some(i) if i >= n => {
                let gap = &migrations[n];
                let gap_what = match &gap.from {
                    Some((t, gv)) if *t == tool => format!("{} ({tool} version {gv})", gap.file_name),
                    _ => gap.file_name.clone(),
                };
                return Err(format!(
                    "{tool} applied version {v} ({}) but not {gap_what}, which comes before it in {tool}'s order; capstan records applied migrations as a prefix: apply the missing one first, then baseline",
                    migrations[i].file_name
                ));
            }
            Some(_) => {}
        }
    }
    Ok(prefix_end.map(|i| migrations[i].version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_round_trip() {
        for t in Tool::ALL {
            assert_eq!(t.as_str().parse::<Tool>().unwrap(), t);
        }
        let err = "flyway".parse::<Tool>().unwrap_err();
        assert!(err.to_string().contains("golang-migrate"), "{err}");
        assert_eq!(
            serde_json::to_string(&Tool::GolangMigrate).unwrap(),
            "\"golang-migrate\""
        );
    }

    #[test]
    fn names_become_snake_case() {
        for (from, to) in [
            ("create_users", "create_users"),
            ("Create Users", "create_users"),
            ("add-email--to users!", "add_email_to_users"),
            ("AddUsers", "addusers"),
            ("2fa_secrets", "m_2fa_secrets"),
            ("__x__", "x"),
            ("", "migration"),
            ("été", "t"),
            ("ß", "migration"),
        ] {
            assert_eq!(snake_name(from), to, "{from}");
        }
    }

    #[test]
    fn golang_migrate_names_follow_its_pattern() {
        assert!(matches!(
            golang_migrate_name("000001_create_users.up.sql"),
            Some(("000001", "create_users", Kind::Up, "sql"))
        ));
        assert!(matches!(
            golang_migrate_name("2_a.up.b.down.sql"),
            Some(("2", "a.up.b", Kind::Down, "sql"))
        ));
        assert!(golang_migrate_name("1_create_users.sql").is_none());
        assert!(golang_migrate_name("v1_x.up.sql").is_none());
    }

    fn part(text: &str) -> (Part, Vec<Statement>) {
        let p = Part::whole(Path::new("x.sql"), "x.sql".into(), text);
        let s = p.statements().unwrap();
        (p, s)
    }

    #[test]
    fn a_wrapping_begin_commit_is_found_with_its_lines() {
        let (p, s) = part("-- c\nBEGIN;\nCREATE TABLE a (id int);\n  COMMIT ;  \n");
        let Control::Wrapped {
            begin,
            commit,
            lines,
        } = control(&p, &s)
        else {
            panic!("not wrapped");
        };
        assert_eq!((p.line(lines.0), p.line(lines.1)), (2, 4));
        let mut t = p.text.clone();
        t.replace_range(commit, "");
        t.replace_range(begin, "");
        assert_eq!(t, "-- c\nCREATE TABLE a (id int);\n");
    }

    #[test]
    fn other_transaction_control_is_the_files_own() {
        for sql in [
            "BEGIN; SELECT 1; COMMIT; BEGIN; SELECT 2; COMMIT;",
            "SELECT 1; SAVEPOINT a; SELECT 2;",
            "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1; COMMIT;",
            "BEGIN; SELECT 1; ROLLBACK;",
        ] {
            let (p, s) = part(sql);
            assert!(matches!(control(&p, &s), Control::Own { .. }), "{sql}");
        }
        let (p, s) = part("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\nSELECT $$BEGIN;$$;");
        assert!(matches!(control(&p, &s), Control::None));
    }

    #[test]
    fn statements_that_cannot_run_in_a_transaction_are_found() {
        let found = |sql: &str| cannot_run_in_transaction(&words(sql));
        assert_eq!(
            found("create index concurrently i on t (a)"),
            Some("CREATE INDEX CONCURRENTLY")
        );
        assert_eq!(
            found("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)"),
            Some("CREATE UNIQUE INDEX CONCURRENTLY")
        );
        assert_eq!(
            found("DROP INDEX CONCURRENTLY i"),
            Some("DROP INDEX CONCURRENTLY")
        );
        assert_eq!(found("VACUUM ANALYZE t"), Some("VACUUM"));
        assert_eq!(
            found("ALTER SYSTEM SET work_mem = '64MB'"),
            Some("ALTER SYSTEM")
        );
        assert_eq!(found("CREATE DATABASE x"), Some("CREATE DATABASE"));
        assert_eq!(
            found("ALTER TABLE m DETACH PARTITION m_2020 CONCURRENTLY"),
            Some("DETACH PARTITION … CONCURRENTLY")
        );
        assert_eq!(found("CREATE INDEX i ON t (a)"), None);
        assert_eq!(
            found("INSERT INTO notes VALUES ('create index concurrently')"),
            None
        );
        assert_eq!(found("CREATE INDEX /* CONCURRENTLY */ i ON t (a)"), None);
        assert_eq!(found("REFRESH MATERIALIZED VIEW CONCURRENTLY v"), None);
    }

    #[test]
    fn words_skip_strings_comments_and_dollar_quotes() {
        assert_eq!(
            words("select 'a b' , \"c d\", $x$ e $x$, $1 -- f\n/* g /* h */ */ i"),
            vec!["SELECT", "I"]
        );
    }

    #[test]
    fn dbmate_directives_take_options() {
        assert_eq!(
            dbmate_directive("-- migrate:up transaction:false"),
            Some((true, "transaction:false"))
        );
        assert_eq!(dbmate_directive("--migrate:down"), Some((false, "")));
        assert_eq!(dbmate_directive("-- migrate:upgrade"), None);
        assert_eq!(dbmate_directive("  -- migrate:up"), None);
    }

    #[test]
    fn diesel_metadata_reads_run_in_transaction() {
        let mut notes = Vec::new();
        let p = Path::new("m/metadata.toml");
        assert!(
            !diesel_metadata(p, "m", "# x\nrun_in_transaction = false # y\n", &mut notes).unwrap()
        );
        assert!(diesel_metadata(
            p,
            "m",
            "run_in_transaction=true\nauthor = \"x\"\n[t]\nrun_in_transaction = false\n",
            &mut notes
        )
        .unwrap());
        assert_eq!(notes.len(), 2, "{notes:?}");
        let err =
            diesel_metadata(p, "m", "\nrun_in_transaction = maybe\n", &mut notes).unwrap_err();
        assert!(err.to_string().starts_with("m/metadata.toml:2: "), "{err}");
    }

    fn imported(tool: Tool, versions: &[&str]) -> Vec<Imported> {
        versions
            .iter()
            .enumerate()
            .map(|(i, v)| Imported {
                version: i as u64 + 1,
                file_name: format!("{:04}_m.sql", i + 1),
                from: Some((tool, v.to_string())),
            })
            .collect()
    }

    fn rows(list: &[(&str, bool)]) -> Vec<ToolHistoryRow> {
        list.iter()
            .map(|(v, ok)| ToolHistoryRow {
                version: v.to_string(),
                ok: *ok,
            })
            .collect()
    }

    #[test]
    fn history_maps_to_the_applied_prefix_in_each_tools_terms() {
        // goose: the latest row per version decides; version 0 is goose's own.
        let goose = imported(Tool::Goose, &["1", "2", "3"]);
        let h = rows(&[
            ("0", true),
            ("1", true),
            ("2", true),
            ("3", true),
            ("3", false),
        ]);
        assert_eq!(map_history(Tool::Goose, &goose, &h), Ok(Some(2)));
        assert_eq!(
            map_history(Tool::Goose, &goose, &rows(&[("0", true)])),
            Ok(None)
        );
        // golang-migrate: one row, everything up to it; dirty is refused.
        let gm = imported(Tool::GolangMigrate, &["1", "5", "9"]);
        assert_eq!(
            map_history(Tool::GolangMigrate, &gm, &rows(&[("5", true)])),
            Ok(Some(2))
        );
        let err = map_history(Tool::GolangMigrate, &gm, &rows(&[("5", false)])).unwrap_err();
        assert!(err.contains("dirty"), "{err}");
        let err = map_history(Tool::GolangMigrate, &gm, &rows(&[("4", true)])).unwrap_err();
        assert!(err.contains("version 4, which no migration"), "{err}");
        // sqlx: a failed row is refused.
        let sqlx = imported(Tool::Sqlx, &["10", "20"]);
        let err = map_history(Tool::Sqlx, &sqlx, &rows(&[("10", false)])).unwrap_err();
        assert!(err.contains("as failed"), "{err}");
        // dbmate compares strings: `01` is not `1`.
        let dbmate = imported(Tool::Dbmate, &["01", "1"]);
        assert_eq!(
            map_history(Tool::Dbmate, &dbmate, &rows(&[("01", true)])),
            Ok(Some(1))
        );
        // Not a prefix: refused, naming both.
        let err = map_history(Tool::Sqlx, &sqlx, &rows(&[("20", true)])).unwrap_err();
        assert!(
            err.contains("applied version 20 (0002_m.sql) but not 0001_m.sql (sqlx version 10)"),
            "{err}"
        );
        // A file imported from another tool is not one of this tool's.
        let mut mixed = imported(Tool::Sqlx, &["10"]);
        mixed.push(Imported {
            version: 2,
            file_name: "0002_new.sql".into(),
            from: None,
        });
        assert_eq!(
            map_history(Tool::Sqlx, &mixed, &rows(&[("10", true)])),
            Ok(Some(1))
        );
    }

    #[test]
    fn the_first_line_names_tool_and_version() {
        assert_eq!(
            imported_from("-- imported from golang-migrate version 7: 7_a.up.sql\n-- capstan:up\n"),
            Some((Tool::GolangMigrate, "7".into()))
        );
        assert_eq!(imported_from("-- imported from goose: 1_a.sql\n"), None);
        assert_eq!(imported_from("-- capstan:up\nSELECT 1;"), None);
    }

    #[test]
    fn goose_annotations_follow_goose() {
        assert_eq!(goose_annotation("-- +goose up"), Ok(Goose::Up));
        assert_eq!(
            goose_annotation("--+goose NO TRANSACTION\r"),
            Ok(Goose::NoTransaction)
        );
        assert_eq!(
            goose_annotation("-- +goose envsub off"),
            Ok(Goose::EnvsubOff)
        );
        assert!(goose_annotation("-- +goose ENVSUBST ON").is_err());
        assert!(goose_annotation("  -- +goose Up").is_err());
        assert!(goose_annotation("-- +goose NO  TRANSACTION").is_err());
        assert!(goose_annotation("-- +goose").is_err());
    }

    #[test]
    fn sections_are_trimmed_to_their_text() {
        assert_eq!(trim_section("\n \n  SELECT 1;\n\n"), "  SELECT 1;");
        assert_eq!(trim_section("\n\n"), "");
    }
}
