//! The migration directory: file names, directives, sections and checksums.
//!
//! ```sql
//! -- capstan:phase contract
//! -- capstan:lock-timeout 2s
//! -- capstan:up
//! ALTER TABLE users DROP COLUMN name;
//! -- capstan:down
//! ALTER TABLE users ADD COLUMN name text;
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::split::{self, Dialect, Statement};
use crate::sum;

/// Files larger than this are refused: a migration is code, not a data dump.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// The phase of a migration (see DESIGN: expand/contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Leaves the schema usable by the binary running now. The default.
    #[default]
    Expand,
    /// Removes or changes something an older binary may still use.
    Contract,
}

impl Phase {
    /// `expand` or `contract`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::Contract => "contract",
        }
    }

    /// Parses `expand` or `contract`.
    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "expand" => Some(Phase::Expand),
            "contract" => Some(Phase::Contract),
            _ => None,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An up or down section of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The SQL of the section, exactly as in the file.
    pub sql: String,
    /// 1-based line of the file on which `sql` begins.
    pub first_line: usize,
}

impl Section {
    /// True when the section holds no statement (only blanks and comments).
    pub fn is_empty(&self) -> bool {
        split::split(&self.sql, Dialect::Postgres).is_ok_and(|s| s.is_empty())
    }

    /// The statements of the section, for `dialect`.
    pub fn statements(&self, dialect: Dialect) -> Result<Vec<Statement>, split::SplitError> {
        split::split(&self.sql, dialect)
    }
}

/// One parsed migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number in the file name.
    pub version: u64,
    /// The snake_case name after the number.
    pub name: String,
    /// The file name, `0001_create_users.sql`.
    pub file_name: String,
    /// Where the file was read from (for messages); the file name for an embedded set.
    pub path: PathBuf,
    /// Declared phase (`expand` unless `-- capstan:phase contract`).
    pub phase: Phase,
    /// `-- capstan:no-transaction`: run statement by statement, outside a transaction.
    pub no_transaction: bool,
    /// `-- capstan:lock-timeout D`: overrides the configured lock timeout.
    pub lock_timeout: Option<Duration>,
    /// `-- capstan:statement-timeout D`: overrides the configured statement timeout.
    pub statement_timeout: Option<Duration>,
    /// The up section.
    pub up: Section,
    /// The down section, when the file has one.
    pub down: Option<Section>,
    /// SHA-256 of the file's bytes, lower-case hex.
    pub checksum: String,
    /// SHA-256 of the up section's SQL with line endings and trailing
    /// whitespace normalised ([`section_checksum`]): what drift is about.
    pub up_checksum: String,
    /// The same hash of the down section, when the file has one. An edit
    /// here is no drift: it is recorded, and the edited section is what
    /// `down` runs.
    pub down_checksum: Option<String>,
    /// The whole file, as read (without a leading byte-order mark).
    pub text: String,
}

impl Migration {
    /// `0007_drop_name`: the version (at least four digits) and the name.
    pub fn label(&self) -> String {
        format!("{:04}_{}", self.version, self.name)
    }
}

/// Why a migration file or directory was refused. Every variant names the file
/// and, where there is one, the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The directory could not be read.
    #[error("cannot read migration directory {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A `*.sql` entry of the migration directory that is not a readable
    /// regular file (a directory, a dangling link, a link loop, a FIFO), or
    /// a migration file whose extension is not lower-case `.sql`.
    #[error("{}: {what}; nothing was run (a migration is a regular file named like 0001_snake_name.sql, or a symbolic link to one)", path.display())]
    NotAMigrationFile {
        /// The entry.
        path: PathBuf,
        /// What it is instead.
        what: String,
    },
    /// A `.sql` file whose name is not `NNNN_snake_name.sql`.
    #[error("{}: file name must look like 0001_snake_name.sql (digits, underscore, lower-case letters, digits and underscores, .sql)", path.display())]
    BadFileName {
        /// The file.
        path: PathBuf,
    },
    /// A file that is not UTF-8.
    #[error("{}:{line}: not valid UTF-8 (byte offset {offset}); save the file as UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Line of the first invalid byte.
        line: usize,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// A file over [`MAX_FILE_BYTES`].
    #[error("{}: {size} bytes is over the {MAX_FILE_BYTES}-byte limit for a migration file; load bulk data another way", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// An empty file.
    #[error("{}: the file is empty; a migration needs a `-- capstan:up` section with SQL", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A directive that is malformed, unknown, duplicated or misplaced.
    #[error("{}:{line}: {message}", path.display())]
    Directive {
        /// The file.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No `-- capstan:up`, or an up section without a statement.
    #[error("{}: {message}", path.display())]
    MissingUp {
        /// The file.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// An unterminated quote or comment, or transaction control in a transactional migration.
    #[error("{}:{line}: {message}", path.display())]
    Sql {
        /// The file.
        path: PathBuf,
        /// Its line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Two files with the same version.
    #[error("version {version:04} is used twice: {} and {}; renumber one with `capstan migrate rebase`", first.display(), second.display())]
    DuplicateVersion {
        /// The version.
        version: u64,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A version number is missing between two files.
    #[error("migration {missing:04} is missing: {} is followed by {} (versions must have no gaps)", before.display(), after.display())]
    Gap {
        /// The missing version.
        missing: u64,
        /// The file before the gap.
        before: PathBuf,
        /// The file after it.
        after: PathBuf,
    },
    /// The sum file is missing, stale or malformed.
    #[error(transparent)]
    Sum(#[from] sum::SumError),
}

impl SourceError {
    /// Shorthand for a directive error.
    fn directive(path: &Path, line: usize, message: impl Into<String>) -> Self {
        SourceError::Directive {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// Parses a file name `NNNN_snake_name.sql` into its version and name.
pub fn parse_file_name(file_name: &str) -> Option<(u64, String)> {
    let stem = file_name.strip_suffix(".sql")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.len() < 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !name_ok {
        return None;
    }
    Some((digits.parse().ok()?, name.to_string()))
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn checksum(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The hash of a section as drift sees it: SHA-256 (lower-case hex) of its
/// SQL with CRLF and CR line endings turned into LF, trailing whitespace cut
/// from every line, and blank lines at the start and end dropped. An editor
/// that rewrites line endings or trims spaces changes no hash.
pub fn section_checksum(sql: &str) -> String {
    let lines: Vec<&str> = sql
        .split('\n')
        .flat_map(|l| l.split('\r'))
        .map(str::trim_end)
        .collect();
    let first = lines.iter().position(|l| !l.is_empty());
    let last = lines.iter().rposition(|l| !l.is_empty());
    let body = match (first, last) {
        (Some(a), Some(b)) => lines[a..=b].join("\n"),
        _ => String::new(),
    };
    checksum(body.as_bytes())
}

impl Migration {
    /// True when `recorded`, a whole-file checksum in history, is this
    /// file's: its bytes as they are, or with CRLF line endings made LF (a
    /// checkout with git's autocrlf holds the same migration).
    pub fn matches_file_checksum(&self, recorded: &str) -> bool {
        recorded == self.checksum
            || (self.text.contains('\r')
                && recorded == checksum(self.text.replace("\r\n", "\n").as_bytes()))
    }
}

/// Parses one migration file from its bytes. `path` is used in messages.
pub fn parse_migration(path: &Path, bytes: &[u8]) -> Result<Migration, SourceError> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let (version, name) = parse_file_name(&file_name).ok_or_else(|| SourceError::BadFileName {
        path: path.to_path_buf(),
    })?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(SourceError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        SourceError::NotUtf8 {
            path: path.to_path_buf(),
            line: bytes[..offset].iter().filter(|&&c| c == b'\n').count() + 1,
            offset,
        }
    })?;
    // A byte-order mark some editors write is not SQL before the up section.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(SourceError::Empty {
            path: path.to_path_buf(),
        });
    }

    let mut phase = None;
    let mut no_transaction = false;
    let mut lock_timeout = None;
    let mut statement_timeout = None;
    // (line index of the marker, byte offset just after the marker line)
    let mut up: Option<(usize, usize)> = None;
    let mut down: Option<(usize, usize)> = None;
    let mut up_end = text.len();

    let mut offset = 0;
    for (idx, raw) in text.split_inclusive('\n').enumerate() {
        let line_no = idx + 1;
        let line_start = offset;
        offset += raw.len();
        let line = raw.trim();
        let Some(rest) = directive_body(line) else {
            if up.is_none() && !line.is_empty() && !line.starts_with("--") {
                if line.starts_with("/*") {
                    continue;
                }
                return Err(SourceError::directive(
                    path,
                    line_no,
                    "SQL before `-- capstan:up`; put statements in the up section",
                ));
            }
            continue;
        };
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            return Err(SourceError::directive(
                path,
                line_no,
                "a `-- capstan:` directive follows the colon without a space, like `-- capstan:no-transaction`",
            ));
        }
        let mut parts = rest.split_whitespace();
        // Directives are case-insensitive, like SQL keywords: `-- CAPSTAN:UP`
        // is `-- capstan:up`, never a comment that silently does nothing.
        let key = parts.next().unwrap_or("").to_ascii_lowercase();
        let key = key.as_str();
        let args: Vec<&str> = parts.collect();
        let no_args = |what: &str| -> Result<(), SourceError> {
            if args.is_empty() {
                Ok(())
            } else {
                Err(SourceError::directive(
                    path,
                    line_no,
                    format!(
                        "`-- capstan:{what}` takes no argument, found `{}`",
                        args.join(" ")
                    ),
                ))
            }
        };
        let header = |what: &str| -> Result<(), SourceError> {
            if up.is_some() {
                Err(SourceError::directive(
                    path,
                    line_no,
                    format!("`-- capstan:{what}` must come before `-- capstan:up`"),
                ))
            } else {
                Ok(())
            }
        };
        match key {
            "up" => {
                no_args("up")?;
                if up.is_some() {
                    return Err(SourceError::directive(
                        path,
                        line_no,
                        "second `-- capstan:up`",
                    ));
                }
                up = Some((line_no, offset));
            }
            "down" => {
                no_args("down")?;
                if up.is_none() {
                    return Err(SourceError::directive(
                        path,
                        line_no,
                        "`-- capstan:down` before `-- capstan:up`; the up section comes first",
                    ));
                }
                if down.is_some() {
                    return Err(SourceError::directive(
                        path,
                        line_no,
                        "second `-- capstan:down`",
                    ));
                }
                up_end = line_start;
                down = Some((line_no, offset));
            }
            "phase" => {
                header("phase")?;
                if phase.is_some() {
                    return Err(SourceError::directive(
                        path,
                        line_no,
                        "phase is declared twice",
                    ));
                }
                let [value] = args[..] else {
                    return Err(SourceError::directive(
                        path,
                        line_no,
                        "`-- capstan:phase` needs one value: expand or contract",
                    ));
                };
                phase = Some(Phase::parse(&value.to_ascii_lowercase()).ok_or_else(|| {
                    SourceError::directive(
                        path,
                        line_no,
                        format!("unknown phase `{value}`; use expand or contract"),
                    )
                })?);
            }
            "no-transaction" => {
                header("no-transaction")?;
                no_args("no-transaction")?;
                if no_transaction {
                    return Err(SourceError::directive(
                        path,
                        line_no,
                        "no-transaction is declared twice",
                    ));
                }
                no_transaction = true;
            }
            "lock-timeout" | "statement-timeout" => {
                header(key)?;
                let [value] = args[..] else {
                    return Err(SourceError::directive(
                        path,
                        line_no,
                        format!("`-- capstan:{key}` needs one duration, like 2s or 500ms"),
                    ));
                };
                let d = parse_timeout(value).map_err(|e| {
                    SourceError::directive(path, line_no, format!("{key} `{value}`: {e}"))
                })?;
                let slot = if key == "lock-timeout" {
                    &mut lock_timeout
                } else {
                    &mut statement_timeout
                };
                if slot.replace(d).is_some() {
                    return Err(SourceError::directive(
                        path,
                        line_no,
                        format!("{key} is declared twice"),
                    ));
                }
            }
            // Read by `capstan lint` (suppressions).
            "ignore" | "ignore-file" => {}
            other if other.starts_with("lint-") => {}
            other => {
                return Err(SourceError::directive(
                    path,
                    line_no,
                    format!(
                        "unknown directive `-- capstan:{other}`; known: up, down, phase, no-transaction, lock-timeout, statement-timeout, ignore"
                    ),
                ));
            }
        }
    }

    let Some((up_line, up_start)) = up else {
        return Err(SourceError::MissingUp {
            path: path.to_path_buf(),
            message: "no `-- capstan:up` line; put it above the migration's SQL".into(),
        });
    };
    let up = Section {
        sql: text[up_start..up_end].to_string(),
        first_line: up_line + 1,
    };
    let down = down.map(|(line, start)| Section {
        sql: text[start..].to_string(),
        first_line: line + 1,
    });

    let migration = Migration {
        version,
        name,
        file_name,
        path: path.to_path_buf(),
        phase: phase.unwrap_or_default(),
        no_transaction,
        lock_timeout,
        statement_timeout,
        up_checksum: section_checksum(&up.sql),
        down_checksum: down.as_ref().map(|d| section_checksum(&d.sql)),
        up,
        down,
        checksum: checksum(bytes),
        text: text.to_string(),
    };
    check_sql(&migration)?;
    Ok(migration)
}

/// `-- capstan:KEY ARGS` → `KEY ARGS` (`capstan:` in any case).
fn directive_body(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("--")?.trim_start();
    let prefix = rest.get(..8)?;
    prefix.eq_ignore_ascii_case("capstan:").then(|| &rest[8..])
}

/// The longest timeout Postgres accepts: `lock_timeout` and
/// `statement_timeout` are whole milliseconds in a 32-bit integer.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Parses a lock or statement timeout: a duration such as `2s`, `500ms` or
/// `1m`, in whole milliseconds, at most [`MAX_TIMEOUT`] (about 24 days).
/// `0` turns the timeout off (wait as long as it takes). A value the database
/// would round to 0 (`500us`) or refuse (`999999999s`) is refused here, so a
/// typo never turns the timeout off or fails only when the migration runs.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Ok(d);
    }
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "`{s}` is not a whole number of milliseconds; timeouts are counted in milliseconds (0 turns the timeout off)"
        ));
    }
    if d > MAX_TIMEOUT {
        return Err(format!(
            "`{s}` is longer than the longest timeout Postgres accepts ({}); 0 turns the timeout off",
            humantime::format_duration(MAX_TIMEOUT)
        ));
    }
    Ok(d)
}

/// Parses a duration such as `2s`, `500ms`, `1m`; `0` disables the timeout.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (write it like 2s, 500ms or 1m)"))
}

/// Splits both sections and refuses unterminated quotes, an empty up section,
/// and transaction control inside a transactional migration.
fn check_sql(m: &Migration) -> Result<(), SourceError> {
    for (what, section) in [("up", Some(&m.up)), ("down", m.down.as_ref())] {
        let Some(section) = section else { continue };
        let stmts = section
            .statements(Dialect::Postgres)
            .map_err(|e| SourceError::Sql {
                path: m.path.clone(),
                line: section.first_line + e.line_offset,
                message: format!("{} is never closed", e.what),
            })?;
        if what == "up" && stmts.is_empty() {
            return Err(SourceError::MissingUp {
                path: m.path.clone(),
                message: "the up section holds no SQL statement".into(),
            });
        }
        if !m.no_transaction {
            for s in &stmts {
                let text = &section.sql[s.range.clone()];
                if is_transaction_control(&s.keyword, text) {
                    return Err(SourceError::Sql {
                        path: m.path.clone(),
                        line: section.first_line + s.line_offset,
                        message: format!(
                            "`{}` in the {what} section: capstan already runs each migration in a transaction; remove it, or mark the file `-- capstan:no-transaction`",
                            s.keyword
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

fn is_transaction_control(keyword: &str, text: &str) -> bool {
    match keyword {
        "COMMIT" | "ROLLBACK" | "END" | "ABORT" | "SAVEPOINT" | "RELEASE" => true,
        "START" => text.to_ascii_uppercase().split_whitespace().nth(1) == Some("TRANSACTION"),
        "BEGIN" => true,
        _ => false,
    }
}

/// An ordered, validated set of migrations: no duplicate versions, no gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
}

impl MigrationSet {
    /// Builds a set from parsed migrations; sorts them and refuses duplicates and gaps.
    pub fn new(mut migrations: Vec<Migration>) -> Result<Self, SourceError> {
        migrations.sort_by(|a, b| a.version.cmp(&b.version).then(a.path.cmp(&b.path)));
        for w in migrations.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if a.version == b.version {
                return Err(SourceError::DuplicateVersion {
                    version: a.version,
                    first: a.path.clone(),
                    second: b.path.clone(),
                });
            }
            if b.version != a.version + 1 {
                return Err(SourceError::Gap {
                    missing: a.version + 1,
                    before: a.path.clone(),
                    after: b.path.clone(),
                });
            }
        }
        Ok(MigrationSet { migrations })
    }

    /// Reads and validates a migration directory, including its `capstan.sum`.
    pub fn from_dir(dir: &Path) -> Result<Self, SourceError> {
        let files = read_dir_files(dir)?;
        // Files first: a duplicate version explains a conflicted sum better than the sum does.
        let set = Self::from_files(&files)?;
        sum::verify(dir, &files)?;
        Ok(set)
    }

    /// Reads a directory without checking `capstan.sum` (for `hash`, `new`, `rebase`).
    pub fn from_dir_unchecked(dir: &Path) -> Result<Self, SourceError> {
        Self::from_files(&read_dir_files(dir)?)
    }

    /// Builds a set from `(path, bytes)` pairs.
    pub fn from_files(files: &[(PathBuf, Vec<u8>)]) -> Result<Self, SourceError> {
        let migrations = files
            .iter()
            .map(|(p, b)| parse_migration(p, b))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(migrations)
    }

    /// Builds a set from files embedded at compile time (see [`crate::include_migrations!`]).
    pub fn from_embedded(files: &[(&str, &str)]) -> Result<Self, SourceError> {
        let owned: Vec<(PathBuf, Vec<u8>)> = files
            .iter()
            .map(|(n, t)| (PathBuf::from(n), t.as_bytes().to_vec()))
            .collect();
        Self::from_files(&owned)
    }

    /// The migrations, oldest first.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The migration with `version`.
    pub fn get(&self, version: u64) -> Option<&Migration> {
        let first = self.migrations.first()?.version;
        self.migrations
            .get(usize::try_from(version.checked_sub(first)?).ok()?)
    }

    /// The newest version, if any.
    pub fn latest(&self) -> Option<u64> {
        self.migrations.last().map(|m| m.version)
    }

    /// True when the set has no migration.
    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty()
    }

    /// Hash over every version and checksum: identifies the set (used by the fleet registry).
    pub fn set_hash(&self) -> String {
        let mut h = Sha256::new();
        for m in &self.migrations {
            h.update(format!("{} {}\n", m.file_name, m.checksum));
        }
        checksum_hex(&h.finalize())
    }
}

fn checksum_hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the directory entry `path`, named like a migration, cannot be one;
/// `None` for a regular file (or a link to one) named `*.sql`.
fn not_a_migration(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str()?;
    if !ext.eq_ignore_ascii_case("sql") {
        return None;
    }
    if ext != "sql" {
        return Some(format!(
            "the extension is `.{ext}`; migration files end in lower-case `.sql` (rename it)"
        ));
    }
    let link = std::fs::read_link(path).ok();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && link.is_some() => {
            return Some(format!(
                "a symbolic link to {}, which does not exist",
                link.unwrap_or_default().display()
            ))
        }
        // ELOOP: the link leads back to itself.
        Err(e) if link.is_some() && e.raw_os_error() == Some(40) => {
            return Some("a symbolic link loop".into())
        }
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    let ft = meta.file_type();
    if ft.is_file() {
        return None;
    }
    let kind = if ft.is_dir() {
        "a directory"
    } else {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if ft.is_fifo() {
                "a FIFO (named pipe)"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device"
            } else {
                "not a regular file"
            }
        }
        #[cfg(not(unix))]
        {
            "not a regular file"
        }
    };
    Some(match link {
        Some(target) => format!("a symbolic link to {}, which is {kind}", target.display()),
        None => format!("{kind}, not a file"),
    })
}

/// Reads every `*.sql` file of `dir` (sorted by name) as `(path, bytes)`.
/// Other files are ignored, except that a `.sql` name not matching the pattern
/// is refused later by the parser, and an entry named like a migration that
/// is no regular file (`*.SQL`, a directory, a dangling link, a link loop, a
/// FIFO) is refused here, so no command (`hash` included) silently leaves it
/// out of the set.
pub fn read_dir_files(dir: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, SourceError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SourceError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for e in entries {
        let e = e.map_err(|source| SourceError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = e.path();
        if let Some(what) = not_a_migration(&path) {
            return Err(SourceError::NotAMigrationFile { path, what });
        }
        if path.extension().is_some_and(|x| x == "sql") {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).map_err(|source| SourceError::Read {
                path: p.clone(),
                source,
            })?;
            if meta.len() > MAX_FILE_BYTES as u64 {
                return Err(SourceError::TooLarge {
                    path: p,
                    size: meta.len(),
                });
            }
            let bytes = std::fs::read(&p).map_err(|source| SourceError::Read {
                path: p.clone(),
                source,
            })?;
            Ok((p, bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<Migration, SourceError> {
        parse_migration(Path::new(name), text.as_bytes())
    }

    #[test]
    fn parses_directives_and_sections() {
        let m = parse(
            "0002_drop_name.sql",
            "-- capstan:phase contract\n-- capstan:lock-timeout 2s\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\n-- capstan:down\nALTER TABLE users ADD COLUMN name text;\n",
        )
        .unwrap();
        assert_eq!(m.version, 2);
        assert_eq!(m.name, "drop_name");
        assert_eq!(m.phase, Phase::Contract);
        assert_eq!(m.lock_timeout, Some(Duration::from_secs(2)));
        assert_eq!(m.up.first_line, 4);
        assert_eq!(m.up.sql, "ALTER TABLE users DROP COLUMN name;\n");
        let down = m.down.unwrap();
        assert_eq!(down.first_line, 6);
        assert!(!m.no_transaction);
    }

    #[test]
    fn section_hashes_ignore_line_endings_and_trailing_whitespace_only() {
        let lf = parse(
            "0001_a.sql",
            "-- capstan:up\nCREATE TABLE a (id int);\n-- capstan:down\nDROP TABLE a;\n",
        )
        .unwrap();
        let crlf = parse(
            "0001_a.sql",
            "-- capstan:up\r\n\r\nCREATE TABLE a (id int);  \t\r\n\r\n-- capstan:down\r\nDROP TABLE a;\r\n",
        )
        .unwrap();
        assert_eq!(lf.up_checksum, crlf.up_checksum);
        assert_eq!(lf.down_checksum, crlf.down_checksum);
        assert_ne!(lf.checksum, crlf.checksum);
        assert!(crlf.matches_file_checksum(&checksum(
            "-- capstan:up\n\nCREATE TABLE a (id int);  \t\n\n-- capstan:down\nDROP TABLE a;\n"
                .as_bytes()
        )));
        let edited_down = parse(
            "0001_a.sql",
            "-- capstan:up\nCREATE TABLE a (id int);\n-- capstan:down\nDROP TABLE IF EXISTS a;\n",
        )
        .unwrap();
        assert_eq!(lf.up_checksum, edited_down.up_checksum);
        assert_ne!(lf.down_checksum, edited_down.down_checksum);
        let edited_up = parse("0001_a.sql", "-- capstan:up\nCREATE TABLE a (id  int);\n").unwrap();
        assert_ne!(lf.up_checksum, edited_up.up_checksum, "inner spaces count");
        assert_eq!(edited_up.down_checksum, None);
    }

    #[test]
    fn phase_defaults_to_expand() {
        let m = parse("0001_a.sql", "-- capstan:up\nCREATE TABLE a (id int);").unwrap();
        assert_eq!(m.phase, Phase::Expand);
        assert!(m.down.is_none());
    }

    #[test]
    fn bad_inputs_name_the_line() {
        let cases = [
            (
                "-- capstan:phase sideways\n-- capstan:up\nSELECT 1;",
                1,
                "unknown phase",
            ),
            (
                "-- capstan:frobnicate\n-- capstan:up\nSELECT 1;",
                1,
                "unknown directive",
            ),
            (
                "-- capstan:up\nSELECT 1;\n-- capstan:phase contract\n",
                3,
                "must come before",
            ),
            (
                "-- capstan:lock-timeout soon\n-- capstan:up\nSELECT 1;",
                1,
                "lock-timeout",
            ),
            ("-- capstan:up now\nSELECT 1;", 1, "takes no argument"),
            (
                "-- capstan:down\n-- capstan:up\nSELECT 1;",
                1,
                "before `-- capstan:up`",
            ),
            (
                "CREATE TABLE a (id int);\n-- capstan:up\nSELECT 1;",
                1,
                "SQL before",
            ),
        ];
        for (text, line, needle) in cases {
            let err = parse("0001_a.sql", text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("0001_a.sql:{line}:")), "{msg}");
            assert!(msg.contains(needle), "{msg} should contain {needle}");
        }
    }

    #[test]
    fn missing_or_empty_up_is_refused() {
        assert!(matches!(
            parse("0001_a.sql", "CREATE TABLE a();").unwrap_err(),
            SourceError::Directive { .. }
        ));
        assert!(matches!(
            parse("0001_a.sql", "-- just a comment\n").unwrap_err(),
            SourceError::MissingUp { .. }
        ));
        assert!(matches!(
            parse(
                "0001_a.sql",
                "-- capstan:up\n-- nothing\n-- capstan:down\nDROP TABLE a;"
            )
            .unwrap_err(),
            SourceError::MissingUp { .. }
        ));
        assert!(matches!(
            parse("0001_a.sql", "  \n\n").unwrap_err(),
            SourceError::Empty { .. }
        ));
    }

    #[test]
    fn non_utf8_names_the_line() {
        let err =
            parse_migration(Path::new("0001_a.sql"), b"-- capstan:up\nSELECT '\xff';").unwrap_err();
        assert!(
            matches!(
                err,
                SourceError::NotUtf8 {
                    line: 2,
                    offset: 22,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn file_names_follow_the_pattern() {
        assert_eq!(
            parse_file_name("0001_create_users.sql"),
            Some((1, "create_users".into()))
        );
        assert_eq!(
            parse_file_name("20240101_x.sql"),
            Some((20240101, "x".into()))
        );
        for bad in [
            "1_a.sql",
            "0001-a.sql",
            "0001_A.sql",
            "0001_.sql",
            "0001_a.txt",
            "abcd_a.sql",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn transaction_control_is_refused_unless_no_transaction() {
        let err = parse(
            "0001_a.sql",
            "-- capstan:up\nBEGIN;\nCREATE TABLE a (id int);\nCOMMIT;",
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("0001_a.sql:2:"), "{err}");
        parse(
            "0001_a.sql",
            "-- capstan:no-transaction\n-- capstan:up\nCREATE INDEX CONCURRENTLY i ON a (id);",
        )
        .unwrap();
    }

    #[test]
    fn unterminated_string_is_refused_with_line() {
        let err = parse("0001_a.sql", "-- capstan:up\nSELECT 1;\nSELECT 'x;\n").unwrap_err();
        assert!(err.to_string().starts_with("0001_a.sql:3:"), "{err}");
    }

    #[test]
    fn sets_refuse_duplicates_and_gaps() {
        let m = |n: &str| parse(n, "-- capstan:up\nSELECT 1;").unwrap();
        let dup = MigrationSet::new(vec![m("0001_a.sql"), m("0001_b.sql")]).unwrap_err();
        assert!(matches!(
            dup,
            SourceError::DuplicateVersion { version: 1, .. }
        ));
        let gap = MigrationSet::new(vec![m("0001_a.sql"), m("0003_c.sql")]).unwrap_err();
        assert!(matches!(gap, SourceError::Gap { missing: 2, .. }));
        let ok = MigrationSet::new(vec![m("0002_b.sql"), m("0001_a.sql")]).unwrap();
        assert_eq!(ok.get(2).unwrap().name, "b");
        assert_eq!(ok.latest(), Some(2));
    }

    #[test]
    fn directives_are_case_insensitive_and_a_bom_is_stripped() {
        let m = parse(
            "0001_a.sql",
            "\u{feff}-- CAPSTAN:NO-TRANSACTION\n-- Capstan:Phase CONTRACT\n-- capstan:UP\nSELECT 1;\n-- CAPSTAN:down\nSELECT 2;\n",
        )
        .unwrap();
        assert!(m.no_transaction);
        assert_eq!(m.phase, Phase::Contract);
        assert_eq!(m.up.sql, "SELECT 1;\n");
        assert!(m.down.is_some());
        assert!(!m.text.starts_with('\u{feff}'));
        let err = parse(
            "0001_a.sql",
            "-- CAPSTAN:no-transation\n-- capstan:up\nSELECT 1;\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown directive `-- capstan:no-transation`"),
            "{err}"
        );
        let err = parse("0001_a.sql", "-- capstan: up\nSELECT 1;\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a space"), "{err}");
    }

    #[test]
    fn timeouts_are_whole_milliseconds_within_postgres_range() {
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("24days"), Ok(Duration::from_secs(24 * 86400)));
        for bad in ["500us", "1500us", "999999999s", "25days", "soon"] {
            let err = parse_timeout(bad).unwrap_err();
            assert!(err.contains(bad) || bad == "soon", "{bad}: {err}");
        }
        assert!(parse_timeout("500us")
            .unwrap_err()
            .contains("0 turns the timeout off"));
        let err = parse(
            "0001_a.sql",
            "-- capstan:lock-timeout 500us\n-- capstan:up\nSELECT 1;\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("0001_a.sql:1:") && err.contains("milliseconds"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn entries_named_like_migrations_that_are_no_files_are_refused() {
        let refused = |setup: &dyn Fn(&Path), needle: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("0001_a.sql"), "-- capstan:up\nSELECT 1;\n").unwrap();
            setup(dir.path());
            let err = read_dir_files(dir.path()).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        };
        use std::os::unix::fs::symlink;
        refused(
            &|d| std::fs::write(d.join("0002_b.SQL"), "-- capstan:up\nSELECT 1;\n").unwrap(),
            "0002_b.SQL: the extension is `.SQL`",
        );
        refused(
            &|d| symlink(d.join("gone.sql"), d.join("0002_b.sql")).unwrap(),
            "0002_b.sql: a symbolic link to",
        );
        refused(
            &|d| {
                symlink(d.join("0003_c.sql"), d.join("0002_b.sql")).unwrap();
                symlink(d.join("0002_b.sql"), d.join("0003_c.sql")).unwrap();
            },
            "a symbolic link loop",
        );
        refused(
            &|d| std::fs::create_dir(d.join("0002_b.sql")).unwrap(),
            "0002_b.sql: a directory, not a file",
        );
        refused(
            &|d| {
                let ok = std::process::Command::new("mkfifo")
                    .arg(d.join("0002_b.sql"))
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "mkfifo failed");
            },
            "0002_b.sql: a FIFO (named pipe), not a file",
        );
        // A link to a regular file is a migration like any other.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real"), "-- capstan:up\nSELECT 1;\n").unwrap();
        symlink(dir.path().join("real"), dir.path().join("0001_a.sql")).unwrap();
        assert_eq!(read_dir_files(dir.path()).unwrap().len(), 1);
    }
}
