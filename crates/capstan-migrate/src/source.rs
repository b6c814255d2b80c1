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

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::split::{self, Dialect, Statement};
use crate::sum;

/// Files larger than this are refused: a migration is code, not a data dump.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

pub use capstan_format::{MigrationId, Phase};

/// Parses a lock or statement timeout ([`capstan_format::parse_timeout`]):
/// whole milliseconds, at most [`capstan_format::MAX_TIMEOUT`], `0` for none. The error
/// names the value.
#[cfg(feature = "cli")]
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    capstan_format::parse_timeout(s).map_err(|e| e.to_string())
}

/// Parses a duration such as `2s`, `500ms`, `1m`
/// ([`capstan_format::parse_duration`]); `0` is no time at all.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    capstan_format::parse_duration(s).map_err(|e| e.to_string())
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
        capstan_format::label(self.version, &self.name).to_string()
    }

    /// The migration's id: its version and name.
    pub fn id(&self) -> MigrationId {
        MigrationId::new(self.version, self.name.clone())
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

/// Parses a file name `NNNN_snake_name.sql` into its version and name
/// ([`capstan_format::parse_file_name`]).
pub fn parse_file_name(file_name: &str) -> Option<(u64, String)> {
    capstan_format::parse_file_name(file_name).map(|id| (id.version, id.name))
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

    let layout = capstan_format::scan(text);
    if let Some(p) = layout.problems.first() {
        return Err(SourceError::directive(path, p.line, p.message.clone()));
    }
    let Some(up) = layout.up else {
        return Err(SourceError::MissingUp {
            path: path.to_path_buf(),
            message: "no `-- capstan:up` line; put it above the migration's SQL".into(),
        });
    };
    let up_range = layout.up_range(text.len()).unwrap_or(up.body..text.len());
    let up = Section {
        sql: text[up_range].to_string(),
        first_line: up.line + 1,
    };
    let down = layout.down.map(|d| Section {
        sql: text[d.body..].to_string(),
        first_line: d.line + 1,
    });

    let migration = Migration {
        version,
        name,
        file_name,
        path: path.to_path_buf(),
        phase: layout.phase.unwrap_or_default(),
        no_transaction: layout.no_transaction,
        lock_timeout: layout.lock_timeout,
        statement_timeout: layout.statement_timeout,
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
mod tests;
