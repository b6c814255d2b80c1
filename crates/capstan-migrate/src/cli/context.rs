//! What every command resolves first: the flags shared by all, the config
//! file, the migration set, the database URL and the settings.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;

use super::exit::{Exit, Failure, Kind};
use super::output::{program, quiet, Output};
use super::preflight::Preflight;
use super::MigrationSource;
use crate::archive::Detector;
use crate::config::{Config, CONFIG_FILE};
use crate::migrator::{Database, Error, Migrator, Settings};
use crate::source::{parse_duration, parse_timeout, MigrationSet};
use crate::url::{DatabaseUrl, DEFAULT_URL};

/// Options shared by every command that reads migrations and a database.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Database URL (postgres://… or sqlite://file.db). Default: DATABASE_URL, then
    /// capstan.toml, then sqlite://capstan.db.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Migration directory. Default: capstan.toml's migrations_dir, then ./migrations.
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    /// Config file (default: ./capstan.toml if it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (see docs/json.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// The service to act for: its migrations, history, fleet, archive and
    /// runner lock. Default: the one capstan.toml declares, else `default`.
    #[arg(long, global = true, env = "CAPSTAN_SERVICE", value_name = "NAME")]
    pub service: Option<String>,
}

/// The timeouts of the commands that run migrations (`migrate …`); `gate`,
/// `fleet` and `archive` run none, so they take none.
#[derive(Debug, Clone, Default, Args)]
pub struct TimeoutArgs {
    /// Lock timeout for DDL, like 3s: whole milliseconds, at most about 24
    /// days; 0 waits for locks as long as it takes (overrides capstan.toml).
    #[arg(long, global = true, value_name = "DURATION")]
    pub lock_timeout: Option<String>,
    /// Retries after a lock timeout (overrides capstan.toml).
    #[arg(long, global = true, value_name = "N")]
    pub lock_retries: Option<u32>,
    /// Statement timeout, like 5m; 0 for none (overrides capstan.toml).
    #[arg(long, global = true, value_name = "DURATION")]
    pub statement_timeout: Option<String>,
    /// How long to wait for another runner to release the migration lock,
    /// like 10m (default); 0 to give up at once (overrides capstan.toml).
    #[arg(long, global = true, value_name = "DURATION")]
    pub runner_lock_timeout: Option<String>,
}

/// Everything a command needs, resolved from flags, environment and config.
pub(crate) struct Context<'p> {
    pub(crate) preflight: Option<&'p dyn Preflight>,
    pub(crate) detector: Option<Arc<dyn Detector>>,
    pub(crate) args: ConnArgs,
    pub(crate) timeouts: TimeoutArgs,
    pub(crate) source: MigrationSource,
    pub(crate) config: Config,
    pub(crate) config_path: PathBuf,
    pub(crate) dir: PathBuf,
    /// The declared service the command acts for (`None` when capstan.toml
    /// declares none).
    pub(crate) declared: Option<capstan_service::Service>,
    /// The name of the service whose rows and runner lock the command uses.
    pub(crate) acting: String,
    /// Why no service can be chosen (several declared, none named): a
    /// command that opens the database is refused with it.
    pub(crate) unchosen: Option<String>,
    /// Where results, notes and errors go.
    pub(crate) out: Output,
}

impl Context<'_> {
    /// The database URL in effect; says once, on stderr, which database
    /// (password hidden) and where its URL came from.
    pub(crate) fn url(&self) -> Result<DatabaseUrl, Failure> {
        let (url, whence) = self.url_and_source()?;
        if !quiet() && !ANNOUNCED.swap(true, Ordering::Relaxed) {
            eprintln!("using database {url} (from {whence})");
        }
        Ok(url)
    }

    /// With no URL anywhere, `up` would create `./capstan.db`: refused when
    /// the migrations are plainly written for Postgres.
    pub(crate) fn check_default_fits(&self) -> Result<(), Failure> {
        if self.url_and_source()?.1 != DEFAULT_WHENCE {
            return Ok(());
        }
        for m in self.set()?.migrations() {
            if let Some((line, what)) = crate::url::postgres_only(&m.up.sql) {
                return Err(Failure::bad_input(format!(
                        "no database URL was given (--database, DATABASE_URL or database_url in capstan.toml), so capstan would use its embedded default {DEFAULT_URL}, but these migrations are written for Postgres: {} line {} uses {what}. Set DATABASE_URL or pass --database postgres://…; to use SQLite on purpose, pass --database {DEFAULT_URL}. Nothing was run",
                        m.path.display(),
                        m.up.first_line + line,
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The URL and where it came from: `--database`, `DATABASE_URL`,
    /// capstan.toml, or [`DEFAULT_WHENCE`].
    pub(crate) fn url_and_source(&self) -> Result<(DatabaseUrl, String), Failure> {
        // An empty URL is a mistake (an unset CI secret, a typo), never a
        // request for the default SQLite file.
        let empty = |whence: &str| {
            Failure::bad_input(format!("the database URL from {whence} is empty; give a postgres:// or sqlite:// URL (without one, capstan uses capstan.toml's database_url, then {DEFAULT_URL})"),
            )
        };
        let raw = match &self.args.database {
            Some(s) if s.trim().is_empty() => {
                return Err(empty(
                    if std::env::var("DATABASE_URL").as_deref() == Ok(s) {
                        "--database or DATABASE_URL"
                    } else {
                        "--database"
                    },
                ))
            }
            Some(s) if std::env::var("DATABASE_URL").as_deref() == Ok(s) => {
                (s.clone(), "DATABASE_URL".to_string())
            }
            Some(s) => (s.clone(), "--database".to_string()),
            None if std::env::var_os("DATABASE_URL").is_some_and(|v| v.is_empty()) => {
                return Err(empty("DATABASE_URL"))
            }
            None => match &self.config.database_url {
                Some(s) if s.trim().is_empty() => {
                    return Err(empty(&format!(
                        "{} (database_url)",
                        self.config_path.display()
                    )))
                }
                Some(s) => (
                    s.clone(),
                    format!("{} (database_url)", self.config_path.display()),
                ),
                None => (DEFAULT_URL.to_string(), DEFAULT_WHENCE.to_string()),
            },
        };
        let (raw, whence) = raw;
        let url =
            DatabaseUrl::parse(&raw).map_err(|e| Failure::bad_input(format!("{whence}: {e}")))?;
        Ok((url, whence))
    }

    /// The settings: capstan.toml's, overridden by the timeout flags.
    pub(crate) fn settings(&self) -> Result<Settings, Failure> {
        let mut s = self.config.settings(&self.config_path)?;
        let bad = |flag: &str, e: String| Failure::bad_input(format!("--{flag}: {e}"));
        if let Some(v) = &self.timeouts.lock_timeout {
            s.lock_timeout = parse_timeout(v).map_err(|e| bad("lock-timeout", e))?;
        }
        if let Some(v) = &self.timeouts.statement_timeout {
            s.statement_timeout = parse_timeout(v).map_err(|e| bad("statement-timeout", e))?;
        }
        if let Some(n) = self.timeouts.lock_retries {
            s.lock_retries = n;
        }
        if let Some(v) = &self.timeouts.runner_lock_timeout {
            s.runner_lock_timeout = parse_duration(v).map_err(|e| bad("runner-lock-timeout", e))?;
        }
        Ok(s)
    }

    /// The migration set, from the directory or the binary.
    pub(crate) fn set(&self) -> Result<MigrationSet, Failure> {
        match &self.source {
            MigrationSource::Dir => {
                if self.dir.exists() && !self.dir.is_dir() {
                    return Err(Failure::bad_input(format!(
                            "migration directory {} is not a directory (--dir names the directory that holds the .sql files)",
                            self.dir.display()
                        ),
                    ));
                }
                if !self.dir.is_dir() {
                    return Err(Failure::bad_input(format!(
                            "migration directory {} does not exist (use --dir, or create it with `{} migrate new NAME`)",
                            self.dir.display(),
                            program()
                        ),
                    ));
                }
                Ok(MigrationSet::from_dir(&self.dir)?)
            }
            MigrationSource::Embedded { files, .. } => Ok(MigrationSet::from_embedded(files)?),
        }
    }

    /// The engine over [`Self::set`], with the settings and the detector.
    pub(crate) fn migrator(&self) -> Result<Migrator, Failure> {
        self.chosen()?;
        let mut m = Migrator::new(self.set()?).with_settings(self.settings()?);
        if let MigrationSource::Embedded { binary_version, .. } = &self.source {
            m = m.with_binary_version(binary_version.clone());
        }
        if let Some(d) = &self.detector {
            m = m.with_detector(d.clone());
        }
        if let Some(s) = &self.declared {
            m = m.with_service(s.clone());
        }
        Ok(m)
    }

    /// After `up`/`down`: rewrites `--dump-schema FILE`, else capstan.toml's
    /// `schema_file`, if either is set.
    pub(crate) async fn keep_schema(
        &self,
        db: &mut Database,
        flag: Option<PathBuf>,
    ) -> Result<(), Failure> {
        let Some(path) = flag.or_else(|| self.config.schema_file.clone()) else {
            return Ok(());
        };
        let dump = crate::schema_dump::dump(db, &self.url()?)
            .await
            .map_err(|e| Failure::from(Error::from(e)))?;
        crate::schema_dump::write(&path, &dump.sql).map_err(|e| {
            Failure::new(
                Exit::Failed,
                Kind::SchemaDump,
                format!(
                    "the run is done, but writing the schema to {} failed: {e}",
                    path.display()
                ),
            )
        })?;
        self.out
            .note(format_args!("wrote the schema to {}", path.display()));
        Ok(())
    }

    /// Refuses a command that edits the directory when the migrations are embedded.
    pub(crate) fn needs_dir(&self, what: &str) -> Result<(), Failure> {
        match self.source {
            MigrationSource::Dir => Ok(()),
            MigrationSource::Embedded { .. } => Err(Failure::usage(format!(
                "`migrate {what}` edits a migration directory; run it with the capstan CLI in your source tree"
            ))),
        }
    }

    /// Resolves the config file and the migration directory.
    pub(crate) fn new(
        args: ConnArgs,
        source: MigrationSource,
    ) -> Result<Context<'static>, Failure> {
        Self::new_for_app(args, source, None)
    }

    /// [`Context::new`] for a command that names the application (`gate`,
    /// `fleet run`, `fleet join` with `--app`): without `--service` (or a
    /// `--dir` naming one), an `app` that is the name of a service
    /// capstan.toml declares chooses that service. Any other application
    /// name chooses nothing (it stays the application's name only).
    pub(crate) fn new_for_app(
        args: ConnArgs,
        source: MigrationSource,
        app: Option<&str>,
    ) -> Result<Context<'static>, Failure> {
        let (config_path, required) = match &args.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(CONFIG_FILE), false),
        };
        let config = Config::load(&config_path, required)?;
        // Without --service, a --dir that is a declared service's `dir`
        // names that service (as `capstan lint` reads it).
        let by_dir = match (&args.service, &args.dir) {
            (None, Some(dir)) => std::env::current_dir().ok().and_then(|cwd| {
                let base = cwd.join(config_path.parent().unwrap_or(Path::new("")));
                config
                    .services
                    .for_dir(&base, &cwd.join(dir))
                    .map(|s| s.name.clone())
            }),
            _ => None,
        };
        let by_app = app.filter(|a| config.services.get(a).is_ok());
        let (declared, acting, unchosen) = select_service(
            &config,
            &config_path,
            args.service.as_deref().or(by_dir.as_deref()).or(by_app),
        )?;
        // A service's own directory is relative to capstan.toml's.
        let service_dir = declared.as_ref().and_then(|s| s.dir.as_ref()).map(|d| {
            config_path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| d.clone(), |p| p.join(d))
        });
        let dir = args
            .dir
            .clone()
            .or(service_dir)
            .or_else(|| config.migrations_dir.clone())
            .unwrap_or_else(|| PathBuf::from("migrations"));
        Ok(Context {
            out: Output::new(args.json).for_source(&source),
            preflight: None,
            detector: None,
            args,
            timeouts: TimeoutArgs::default(),
            source,
            config,
            config_path,
            dir,
            declared,
            acting,
            unchosen,
        })
    }

    /// The name of the service the command acts for (its rows, its runner
    /// lock): the declared one, else the one `--service` names, else
    /// [`crate::driver::DEFAULT_SERVICE`].
    pub(crate) fn service(&self) -> &str {
        &self.acting
    }

    /// Prints the result of a command that shows one service's rows: JSON
    /// carries a `service` field first; text names the service unless it is
    /// the default one.
    pub(crate) fn service_result<T: serde::Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) {
        #[derive(serde::Serialize)]
        struct ForService<'a, T> {
            service: &'a str,
            #[serde(flatten)]
            value: &'a T,
        }
        self.out.result(
            &ForService {
                service: &self.acting,
                value,
            },
            || {
                let text = human();
                if self.acting == crate::driver::DEFAULT_SERVICE {
                    text
                } else {
                    format!("service: {}\n{text}", self.acting)
                }
            },
        );
    }

    /// Refuses a command that needs a service when none can be chosen.
    pub(crate) fn chosen(&self) -> Result<(), Failure> {
        match &self.unchosen {
            Some(why) => Err(Failure::bad_input(why.clone())),
            None => Ok(()),
        }
    }

    /// Opens the database for the service (creating a missing SQLite file).
    pub(crate) async fn connect(&self) -> Result<Database, Failure> {
        self.chosen()?;
        Ok(Database::connect(&self.url()?)
            .await?
            .for_service(&self.acting))
    }

    /// Opens the database for the service, for reading.
    pub(crate) async fn connect_read_only(&self) -> Result<Database, Failure> {
        self.chosen()?;
        Ok(Database::connect_read_only(&self.url()?)
            .await?
            .for_service(&self.acting))
    }
}

/// The service a command acts for: `name` (from `--service` or
/// `CAPSTAN_SERVICE`) must be one capstan.toml declares when it declares
/// any; with none declared, any valid name is a service that owns nothing
/// (an embedded application naming itself). Not named: the lone declared
/// service, else `default`; several declared and none named leaves the
/// reason no service is chosen (commands that open the database refuse it).
#[allow(clippy::type_complexity)]
fn select_service(
    config: &Config,
    config_path: &std::path::Path,
    name: Option<&str>,
) -> Result<(Option<capstan_service::Service>, String, Option<String>), Failure> {
    let services = &config.services;
    let default = crate::driver::DEFAULT_SERVICE.to_string();
    if services.is_empty() {
        return match name {
            None => Ok((None, default, None)),
            Some(n) if capstan_service::valid_name(n) => Ok((None, n.to_string(), None)),
            Some(n) => Err(Failure::new(
                Exit::BadInput,
                Kind::UnknownService,
                format!("--service {n:?} is not a valid service name: use lower-case letters, digits, `_` and `-`, starting with a letter, at most 63 bytes. Nothing was run"),
            )),
        };
    }
    match services.select(name) {
        Ok(Some(s)) => Ok((Some(s.clone()), s.name.clone(), None)),
        Ok(None) => Ok((
            None,
            default,
            Some(format!(
                "{} declares several services ({}): choose one with --service NAME (or CAPSTAN_SERVICE). Nothing was run",
                config_path.display(),
                services.names().join(", ")
            )),
        )),
        Err(e) => Err(Failure::new(
            Exit::BadInput,
            Kind::UnknownService,
            format!("--service: {e} ({}). Nothing was run", config_path.display()),
        )),
    }
}

/// Where the URL came from when nothing names one.
const DEFAULT_WHENCE: &str =
    "the embedded default: no --database, DATABASE_URL or database_url in capstan.toml";

/// The "using database" line was printed (once per process).
static ANNOUNCED: AtomicBool = AtomicBool::new(false);
