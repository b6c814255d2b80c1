//! The `capstan lint` command: arguments, file discovery, rendering (human, JSON,
//! SARIF, GitHub annotations) and exit codes. The `capstan` binary mounts it with
//! `Lint(capstan_lint::cli::LintArgs)` and calls [`run`].
//!
//! Exit codes: 0 clean, 1 findings at or above `--fail-on`, 2 usage error,
//! 3 bad input (SQL Postgres rejects, unreadable path, invalid UTF-8, bad
//! config, unreachable `--schema-from` database).

mod live;
mod parse_cache;
mod render;

use crate::config::{Config, ConfigError};
use crate::engine::{Input, Linter};
use crate::finding::{Finding, Severity};
use crate::rules;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Exit code: no finding at or above `--fail-on`.
pub const EXIT_OK: i32 = 0;
/// Exit code: findings at or above `--fail-on`.
pub const EXIT_FINDINGS: i32 = 1;
/// Exit code: usage error.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: bad input (SQL that Postgres rejects, unreadable file, invalid UTF-8, bad configuration, unreachable database).
pub const EXIT_BAD_INPUT: i32 = 3;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: each finding with its source lines, like rustc.
    Human,
    /// `{"findings":[...],"summary":{...}}`, a stable, versioned shape.
    Json,
    /// SARIF 2.1.0, for code-scanning tools.
    Sarif,
    /// GitHub Actions workflow commands (`::error file=...`), which annotate pull requests.
    Github,
}

/// The database the migrations target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DialectArg {
    /// Postgres: every rule.
    Postgres,
    /// SQLite: phase and compatibility rules; Postgres lock rules do not apply.
    Sqlite,
}

/// A severity threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// Fail on any finding.
    Info,
    /// Fail on warnings and errors.
    Warning,
    /// Fail on errors only (the default).
    Error,
}

impl From<Level> for Severity {
    fn from(l: Level) -> Severity {
        match l {
            Level::Info => Severity::Info,
            Level::Warning => Severity::Warning,
            Level::Error => Severity::Error,
        }
    }
}

/// Lint migrations for dangerous locks, breaking changes and phase mistakes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LintArgs {
    /// Migration directories or files to lint; `-` reads one file from standard input.
    /// Default: `migrations`.
    #[arg(value_name = "PATHS")]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Option<Format>,
    /// Exit 1 when a finding is at or above this severity (default: error, or the config's `fail_on`).
    #[arg(long, value_enum)]
    pub fail_on: Option<Level>,
    /// Same as `--fail-on warning`.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Target Postgres major version (default: the config's `pg_version`, else 15).
    #[arg(long, value_name = "MAJOR")]
    pub pg_version: Option<u32>,
    /// Configuration file (default: `capstan.toml` in the current directory, if present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read the schema model from a live database instead of replaying earlier migrations.
    #[arg(long, value_name = "DATABASE_URL")]
    pub schema_from: Option<String>,
    /// The first migration version of the release being deployed: tables created by
    /// migrations from this version on stay exempt from locking rules in the later
    /// migrations of the release (nobody uses them yet). `--schema-from` implies it.
    #[arg(long, value_name = "VERSION")]
    pub release_from: Option<u64>,
    /// Switch a rule off for this run (repeatable).
    #[arg(long, value_name = "RULE")]
    pub disable: Vec<String>,
    /// The database the migrations target (default: the config's `dialect`, else postgres).
    #[arg(long, value_enum)]
    pub dialect: Option<DialectArg>,
    /// Do not lint `-- capstan:down` sections.
    #[arg(long)]
    pub no_down: bool,
    /// Print the full documentation of a rule and exit.
    #[arg(long, value_name = "RULE")]
    pub explain: Option<String>,
    /// List every rule and exit.
    #[arg(long)]
    pub list_rules: bool,
    /// A migration directory to lint (as a PATH). Default, with no PATHS: the
    /// `migrations_dir` of capstan.toml, else `migrations`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Lint only the migrations added or changed since this git ref (the
    /// merge base of REF and HEAD, to the working tree, untracked files
    /// included): the files a pull request touches. Earlier migrations are
    /// still replayed into the schema model.
    #[arg(long, value_name = "GIT_REF")]
    pub changed_since: Option<String>,
    /// Do not read or write the parse cache (`$CAPSTAN_LINT_CACHE`, else
    /// `$XDG_CACHE_HOME/capstan`, else `~/.cache/capstan`; `CAPSTAN_LINT_CACHE=off`
    /// disables it too).
    #[arg(long)]
    pub no_cache: bool,
    /// Lint a directory written for another tool in place: diesel, sqlx,
    /// goose, dbmate or golang-migrate. Detected when the directory holds no
    /// capstan migration; name it when the layout is ambiguous (sqlx and
    /// golang-migrate both use `.up.sql`/`.down.sql`).
    #[arg(long = "from", value_name = "TOOL")]
    pub from: Option<String>,
}

/// Why `capstan lint` stopped before reporting findings. Each variant names the file,
/// key or flag at fault, and maps to a documented exit code ([`CliError::exit_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A flag with a bad value (unknown rule, unsupported version, no path to lint).
    #[error("{0}")]
    Usage(String),
    /// A path that cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The path.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A path that does not exist.
    #[error("{path}: no such file or directory")]
    Missing {
        /// The path.
        path: String,
    },
    /// A file that is not UTF-8.
    #[error("{path}:{line}: invalid UTF-8 (byte {byte}); migrations must be UTF-8")]
    InvalidUtf8 {
        /// The file.
        path: String,
        /// The line of the first invalid byte.
        line: usize,
        /// Its byte offset.
        byte: usize,
    },
    /// A bad `capstan.toml`.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--schema-from` could not read the database (the URL is never included).
    #[error("{0}")]
    SchemaFrom(String),
    /// The output could not be written.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// A directory in another tool's layout that cannot be read as such (the
    /// message names the file and line), or whose layout is not recognised.
    #[error("{0}")]
    Layout(String),
}

impl CliError {
    /// The documented exit code: 2 for usage errors, 3 for bad input.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            _ => EXIT_BAD_INPUT,
        }
    }
}

fn read_error(path: &Path, source: std::io::Error) -> CliError {
    CliError::Read {
        path: path.display().to_string(),
        source,
    }
}

fn utf8_error(path: &str, bytes: &[u8], byte: usize) -> CliError {
    let line = bytes[..byte].iter().filter(|&&b| b == b'\n').count() + 1;
    CliError::InvalidUtf8 {
        path: path.to_string(),
        line,
        byte,
    }
}

/// Runs `capstan lint`; returns the exit code.
pub fn run(args: &LintArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    match run_inner(args, stdout) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(stderr, "error: {e}");
            e.exit_code()
        }
    }
}

fn run_inner(args: &LintArgs, out: &mut dyn Write) -> Result<i32, CliError> {
    let io = CliError::Output;
    if let Some(name) = &args.explain {
        let rule = rules::find(name).ok_or_else(|| {
            CliError::Usage(format!(
                "unknown rule `{name}` (see `capstan lint --list-rules`)"
            ))
        })?;
        write!(out, "{}", crate::docs::render_rule(rule)).map_err(io)?;
        return Ok(EXIT_OK);
    }
    if args.list_rules {
        for r in rules::ALL {
            writeln!(
                out,
                "{:<36} {:<8} {}",
                r.name,
                r.severity.as_str(),
                r.summary
            )
            .map_err(io)?;
        }
        return Ok(EXIT_OK);
    }
    let config = load_config(args)?;
    let mut sources = collect(args)?;
    if let Some(git_ref) = &args.changed_since {
        keep_changed(&mut sources, git_ref)?;
    }
    let schema = match &args.schema_from {
        Some(url) => Some(live::read_schema(url).map_err(CliError::SchemaFrom)?),
        None => None,
    };
    // Parse every section ahead, on all cores (or read it from the cache).
    let mut sections = Vec::new();
    for f in sources.iter().flat_map(|g| g.files.iter()) {
        if f.lint || schema.is_none() {
            sections.extend(crate::engine::whole_sections(
                &f.text,
                f.lint,
                config.lint_down,
            ));
        }
    }
    let cache = parse_cache::cache_file(args.no_cache);
    let parsed: std::sync::Arc<dyn crate::engine::SectionParser> =
        std::sync::Arc::new(parse_cache::prepare(sections, cache.as_deref()));
    let mut findings: Vec<Finding> = Vec::new();
    let mut linted = 0usize;
    for group in &sources {
        let linter = match &schema {
            Some(s) => Linter::with_schema(config.clone(), s.clone()),
            None => Linter::new(config.clone()),
        };
        let mut linter = linter.with_parser(parsed.clone());
        for f in &group.files {
            if let (Some(from), Some(v)) = (args.release_from, f.version) {
                if v >= from {
                    linter.begin_release();
                }
            }
            let input = Input {
                file: &f.display,
                source: &f.text,
            };
            if f.lint {
                linted += 1;
                let mut found = linter.lint(input);
                if !f.origin.is_empty() {
                    for finding in &mut found {
                        remap(finding, &f.origin, &f.display);
                    }
                }
                findings.extend(found);
            } else if schema.is_none() {
                linter.replay(input);
            }
        }
    }
    let mut texts: BTreeMap<&str, &str> = BTreeMap::new();
    for f in sources
        .iter()
        .flat_map(|g| g.files.iter())
        .filter(|f| f.lint)
    {
        if f.origin.is_empty() {
            texts.insert(f.display.as_str(), f.text.as_str());
        } else {
            for (name, text) in &f.originals {
                texts.insert(name.as_str(), text.as_str());
            }
        }
    }
    let summary = render::Summary::new(&findings, linted, config.fail_on);
    let format = args.format.unwrap_or(Format::Human);
    match format {
        Format::Human => render::human(out, &findings, &texts, &summary),
        Format::Json => render::json(out, &findings, &summary),
        Format::Sarif => render::sarif(out, &findings),
        Format::Github => render::github(out, &findings, &summary),
    }
    .map_err(io)?;
    if findings
        .iter()
        .any(|f| f.rule == rules::syntax_error::RULE.name && f.severity == Severity::Error)
    {
        return Ok(EXIT_BAD_INPUT);
    }
    Ok(if summary.failed {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

fn load_config(args: &LintArgs) -> Result<Config, CliError> {
    let path = config_path(args);
    let mut config = match path {
        Some(p) => {
            let bytes = std::fs::read(&p).map_err(|e| read_error(&p, e))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let byte = e.utf8_error().valid_up_to();
                utf8_error(&p.display().to_string(), e.as_bytes(), byte)
            })?;
            Config::from_toml(&text, &p.display().to_string())?
        }
        None => Config::default(),
    };
    if let Some(v) = args.pg_version {
        config.set_pg_version(v).map_err(|()| {
            CliError::Usage(format!(
                "--pg-version {v}: give a Postgres major version from 9 to 18"
            ))
        })?;
    }
    if let Some(level) = args.fail_on {
        config.fail_on = level.into();
    }
    if args.deny_warnings {
        config.fail_on = config.fail_on.min(Severity::Warning);
    }
    for rule in &args.disable {
        if rules::find(rule).is_none() {
            return Err(CliError::Usage(format!(
                "--disable {rule}: unknown rule (see `capstan lint --list-rules`)"
            )));
        }
        config.disabled.push(rule.clone());
    }
    if args.no_down {
        config.lint_down = false;
    }
    match args.dialect {
        Some(DialectArg::Postgres) => config.dialect = crate::config::Dialect::Postgres,
        Some(DialectArg::Sqlite) => config.dialect = crate::config::Dialect::Sqlite,
        None => {}
    }
    Ok(config)
}

/// One file to read: linted, or replayed to build the schema model.
struct SourceFile {
    display: String,
    text: String,
    lint: bool,
    version: Option<u64>,
    /// For a migration of another tool's layout, converted to capstan's
    /// format: where each line of `text` came from, so findings name the
    /// original file and line; empty for a capstan file.
    origin: Vec<Option<(PathBuf, usize)>>,
    /// The original files of such a migration: (display, text), for snippets.
    originals: Vec<(String, String)>,
}

/// Files sharing one schema history (one migration directory), in order.
struct Group {
    files: Vec<SourceFile>,
}

fn read_text(path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let byte = e.utf8_error().valid_up_to();
        utf8_error(&path.display().to_string(), e.as_bytes(), byte)
    })
}

/// The versioned migration files of a directory, sorted by version.
fn migration_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(v) = crate::source::version_of(&name) {
            if path.is_file() {
                files.push((v, path));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `dir` is a capstan directory: it has a `capstan.sum`, or one of
/// its migration files carries a `-- capstan:` directive.
fn is_capstan_dir(dir: &Path, files: &[(u64, PathBuf)]) -> Result<bool, CliError> {
    if dir.join("capstan.sum").is_file() {
        return Ok(true);
    }
    for (_, p) in files {
        let text = std::fs::read(p).map_err(|e| read_error(p, e))?;
        let text = String::from_utf8_lossy(&text);
        if text
            .lines()
            .any(|l| crate::source::directive_of(l.trim()).is_some())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The layout of a directory with no capstan migration: diesel (directories
/// holding `up.sql`), goose (`-- +goose` annotations), dbmate (`--
/// migrate:up`), sqlx (versioned `.sql` files), golang-migrate. `None` for a
/// directory with no SQL at all; an error when there is SQL in no layout
/// capstan knows, or when sqlx and golang-migrate cannot be told apart.
fn detect_layout(dir: &Path) -> Result<Option<capstan_migrate::import::Tool>, CliError> {
    use capstan_migrate::import::Tool;
    let entries = std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let (mut diesel, mut goose, mut dbmate, mut paired, mut single, mut sql) =
        (false, false, false, false, false, false);
    let mut sqlx_marker = false;
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            diesel |= path.join("up.sql").is_file();
            continue;
        }
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        sql = true;
        let versioned = name
            .split_once('_')
            .is_some_and(|(v, _)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
        let head = std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).to_ascii_lowercase())
            .unwrap_or_default();
        sqlx_marker |= head.starts_with("-- no-transaction");
        if head.contains("+goose") {
            goose = true;
        } else if head.contains("migrate:up") {
            dbmate = true;
        } else if versioned && (stem.ends_with(".up") || stem.ends_with(".down")) {
            paired = true;
        } else if versioned {
            single = true;
        }
    }
    Ok(match (diesel, goose, dbmate, paired, single) {
        (true, ..) => Some(Tool::Diesel),
        (_, true, ..) => Some(Tool::Goose),
        (_, _, true, ..) => Some(Tool::Dbmate),
        // Plain versioned files read the same as capstan files, unless
        // sqlx's own marker is there to honour.
        (_, _, _, _, true) => sqlx_marker.then_some(Tool::Sqlx),
        (_, _, _, true, false) => {
            return Err(CliError::Usage(format!(
                "{}: no capstan migrations (NNNN_name.sql); its VERSION_name.up.sql/.down.sql files are sqlx's or golang-migrate's layout: pass --from sqlx or --from golang-migrate to lint them in place",
                dir.display()
            )))
        }
        _ if sql => {
            return Err(CliError::Layout(format!(
                "{}: no capstan migrations (NNNN_name.sql) and no diesel, sqlx, goose, dbmate or golang-migrate layout: nothing to lint (pass the files themselves to lint them as plain SQL)",
                dir.display()
            )))
        }
        _ => None,
    })
}

/// The migrations of `dir`, in `tool`'s layout and order, converted as
/// `capstan migrate import` converts them (up and down sections, the tool's
/// no-transaction markers, phases, suppressions), without writing anything.
fn foreign_group(tool: capstan_migrate::import::Tool, dir: &Path) -> Result<Group, CliError> {
    let converted =
        capstan_migrate::import::convert_with(tool, dir, Some(&crate::hooks::PhaseSorter))
            .map_err(|e| {
                CliError::Layout(format!(
                    "{e} (linting {} as a {tool} directory)",
                    dir.display()
                ))
            })?;
    let mut files = Vec::new();
    for (i, c) in converted.into_iter().enumerate() {
        let mut originals = Vec::new();
        for p in &c.source {
            if p.extension().is_some_and(|x| x == "sql") {
                originals.push((display(p), read_text(p)?));
            }
        }
        files.push(SourceFile {
            display: c.source.first().map(|p| display(p)).unwrap_or_default(),
            text: c.text,
            lint: true,
            version: Some(i as u64 + 1),
            origin: c.origin,
            originals,
        });
    }
    Ok(Group { files })
}

/// Puts a finding on a converted migration back on the original file and line.
fn remap(f: &mut Finding, origin: &[Option<(PathBuf, usize)>], fallback: &str) {
    let at = |line: usize| origin.get(line.wrapping_sub(1)).cloned().flatten();
    match at(f.line) {
        Some((path, line)) => {
            let file = display(&path);
            match at(f.end_line) {
                Some((end_path, end_line)) if end_path == path => f.end_line = end_line,
                _ => {
                    f.end_line = line;
                    f.end_column = f.column;
                }
            }
            f.file = file;
            f.line = line;
        }
        None => {
            // A line the conversion wrote (its header): the migration's first file.
            f.file = fallback.to_string();
            f.line = 1;
            f.column = 1;
            f.end_line = 1;
            f.end_column = 1;
        }
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The config file `capstan lint` reads: `--config`, else `./capstan.toml` if present.
fn config_path(args: &LintArgs) -> Option<PathBuf> {
    match &args.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("capstan.toml")).filter(|p| p.is_file()),
    }
}

/// `migrations_dir` from the config file, as the other commands read it.
fn configured_dir(args: &LintArgs) -> Result<Option<PathBuf>, CliError> {
    let Some(path) = config_path(args) else {
        return Ok(None);
    };
    let text = read_text(&path)?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        CliError::Usage(format!("{}: {}", path.display(), e.message()))
    })?;
    match table.get("migrations_dir") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(PathBuf::from(s))),
        Some(_) => Err(CliError::Usage(format!(
            "{}: migrations_dir must be a string (a directory)",
            path.display()
        ))),
    }
}

fn collect(args: &LintArgs) -> Result<Vec<Group>, CliError> {
    let mut paths = args.paths.clone();
    paths.extend(args.dir.clone());
    if paths.is_empty() {
        let (default, whence) = match configured_dir(args)? {
            Some(d) => (d, "the migrations_dir of capstan.toml"),
            None => (PathBuf::from("migrations"), "the default"),
        };
        if !default.is_dir() {
            return Err(CliError::Usage(format!(
                "no migration directory `{}` ({whence}): pass --dir DIR or the files to lint",
                default.display()
            )));
        }
        paths.push(default);
    }
    let mut groups: Vec<Group> = Vec::new();
    // Explicit files, by directory, so that earlier migrations are replayed once.
    let mut by_dir: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for path in &paths {
        if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| read_error(Path::new("<stdin>"), e))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let byte = e.utf8_error().valid_up_to();
                utf8_error("<stdin>", e.as_bytes(), byte)
            })?;
            groups.push(Group {
                files: vec![SourceFile {
                    display: "<stdin>".into(),
                    text,
                    lint: true,
                    version: None,
                    origin: Vec::new(),
                    originals: Vec::new(),
                }],
            });
        } else if path.is_dir() {
            let capstan_files = migration_files(path)?;
            let tool = match &args.from {
                Some(t) => Some(
                    t.parse::<capstan_migrate::import::Tool>()
                        .map_err(|e| CliError::Usage(e.to_string()))?,
                ),
                None if !is_capstan_dir(path, &capstan_files)? => detect_layout(path)?,
                None => None,
            };
            if let Some(tool) = tool {
                groups.push(foreign_group(tool, path)?);
                continue;
            }
            let mut files = Vec::new();
            for (v, p) in capstan_files {
                files.push(SourceFile {
                    display: display(&p),
                    text: read_text(&p)?,
                    lint: true,
                    version: Some(v),
                    origin: Vec::new(),
                    originals: Vec::new(),
                });
            }
            groups.push(Group { files });
        } else if path.exists() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if crate::source::version_of(&name).is_some() {
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                by_dir.entry(dir).or_default().push(path.clone());
            } else {
                groups.push(Group {
                    files: vec![SourceFile {
                        display: display(path),
                        text: read_text(path)?,
                        lint: true,
                        version: None,
                        origin: Vec::new(),
                        originals: Vec::new(),
                    }],
                });
            }
        } else {
            return Err(CliError::Missing {
                path: path.display().to_string(),
            });
        }
    }
    for (dir, targets) in by_dir {
        let list_dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.clone()
        };
        let all = migration_files(&list_dir)?;
        let names: Vec<_> = targets
            .iter()
            .map(|t| t.file_name().map(|n| n.to_os_string()))
            .collect();
        let last = all
            .iter()
            .filter(|(_, p)| names.contains(&p.file_name().map(|n| n.to_os_string())))
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(0);
        let mut files = Vec::new();
        for (v, p) in all {
            let target = targets.iter().find(|t| t.file_name() == p.file_name());
            if let Some(t) = target {
                files.push(SourceFile {
                    display: display(t),
                    text: read_text(t)?,
                    lint: true,
                    version: Some(v),
                    origin: Vec::new(),
                    originals: Vec::new(),
                });
            } else if v < last {
                files.push(SourceFile {
                    display: display(&p),
                    text: read_text(&p)?,
                    lint: false,
                    version: Some(v),
                    origin: Vec::new(),
                    originals: Vec::new(),
                });
            }
        }
        groups.push(Group { files });
    }
    Ok(groups)
}

/// Runs git; its stdout, or a usage error with git's own message.
fn git(dir: &Path, args: &[&str]) -> Result<String, CliError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CliError::Usage(format!("--changed-since needs git: {e}")))?;
    if !out.status.success() {
        return Err(CliError::Usage(format!(
            "--changed-since: git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Files (canonical paths) added or changed in `dir`'s repository since the
/// merge base of `git_ref` and HEAD, including uncommitted and untracked ones.
fn changed_files(
    dir: &Path,
    git_ref: &str,
) -> Result<std::collections::BTreeSet<PathBuf>, CliError> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?.trim());
    // Resolve the ref first, so a typo is named as such.
    git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{git_ref}^{{commit}}"),
        ],
    )
    .map_err(|_| CliError::Usage(format!("--changed-since {git_ref}: no such git ref")))?;
    let base = git(dir, &["merge-base", git_ref, "HEAD"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| git_ref.to_string());
    let mut names = git(
        dir,
        &[
            "diff",
            "--name-only",
            "--diff-filter=ACMR",
            &base,
            "--",
            ".",
        ],
    )?;
    names.push_str(&git(
        dir,
        &[
            "ls-files",
            "--others",
            "--exclude-standard",
            "--full-name",
            "--",
            ".",
        ],
    )?);
    Ok(names
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| top.join(l).canonicalize().ok())
        .collect())
}

/// `--changed-since`: lint only the changed files; keep the earlier ones of
/// each directory for replay, drop the later ones.
fn keep_changed(groups: &mut [Group], git_ref: &str) -> Result<(), CliError> {
    let mut cache: BTreeMap<PathBuf, std::collections::BTreeSet<PathBuf>> = BTreeMap::new();
    for group in groups.iter_mut() {
        for f in group.files.iter_mut() {
            if f.display == "<stdin>" {
                continue;
            }
            let path = Path::new(&f.display);
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let dir = dir.canonicalize().map_err(|e| read_error(&dir, e))?;
            if !cache.contains_key(&dir) {
                cache.insert(dir.clone(), changed_files(&dir, git_ref)?);
            }
            let changed = path
                .canonicalize()
                .map(|p| cache[&dir].contains(&p))
                .unwrap_or(false);
            f.lint = f.lint && changed;
        }
        if let Some(last) = group.files.iter().rposition(|f| f.lint) {
            group.files.truncate(last + 1);
        } else {
            group.files.clear();
        }
    }
    Ok(())
}
