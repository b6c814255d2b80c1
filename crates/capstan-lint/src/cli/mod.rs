//! The `capstan lint` command: arguments, file discovery, rendering (human, JSON,
//! SARIF, GitHub annotations) and exit codes. The `capstan` binary mounts it with
//! `Lint(capstan_lint::cli::LintArgs)` and calls [`run`].
//!
//! Exit codes: 0 clean, 1 findings at or above `--fail-on`, 2 usage error,
//! 3 bad input (SQL Postgres rejects, unreadable path, invalid UTF-8, bad
//! config, unreachable `--schema-from` database).

pub(crate) mod deps;
mod layouts;
mod live;
mod parse_cache;
mod render;

use crate::config::{Config, ConfigError};
use crate::engine::{Input, Linter};
use crate::finding::{Finding, Severity};
use crate::rule::RuleId;
use crate::rules;
use layouts::{collect, keep_changed, remap};
use std::collections::BTreeMap;
use std::io::Write;
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
    /// The service whose migrations these are, when capstan.toml declares
    /// services (`[[service]]`): its boundaries are checked. Default: the
    /// service whose `dir` is the linted directory, else the only one declared.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
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
    /// `capstan deps` cannot map the services: none declared, a service's
    /// directory missing, or its `--database` unreadable (the URL's password
    /// is never included).
    #[error("{0}")]
    Deps(String),
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
                r.name(),
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
        let mut config = config.clone();
        config.service = acting_service(args, &config, group.dir.as_deref())?;
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
        .any(|f| f.rule == RuleId::SyntaxError.name() && f.severity == Severity::Error)
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

/// The service a group of migrations belongs to: `--service` (which must be
/// declared), else the service whose `dir` is the group's directory, else the
/// only one declared.
fn acting_service(
    args: &LintArgs,
    config: &Config,
    dir: Option<&Path>,
) -> Result<Option<String>, CliError> {
    if let Some(name) = &args.service {
        let service = config.services.get(name).map_err(ConfigError::from)?;
        return Ok(Some(service.name.clone()));
    }
    let base = config_path(args)
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if let Some(s) = dir.and_then(|d| config.services.for_dir(&absolute(&base), &absolute(d))) {
        return Ok(Some(s.name.clone()));
    }
    Ok(config
        .services
        .select(None)
        .map_err(ConfigError::from)?
        .map(|s| s.name.clone()))
}

/// The config file `capstan lint` reads: `--config`, else `./capstan.toml` if present.
fn config_path(args: &LintArgs) -> Option<PathBuf> {
    match &args.config {
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from("capstan.toml")).filter(|p| p.is_file()),
    }
}
