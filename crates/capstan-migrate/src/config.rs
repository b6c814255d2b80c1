//! `capstan.toml`: project settings. Flags win over the environment, which
//! wins over this file, which wins over the defaults.
//!
//! ```toml
//! database_url = "postgres://app@db.internal/app"
//! migrations_dir = "migrations"
//! schema_file = "schema.sql"   # rewritten after every up and down
//!
//! [migrate]
//! lock_timeout = "3s"          # whole ms, at most ~24 days; "0" waits forever
//! lock_retries = 10
//! statement_timeout = "0"       # "0": no statement timeout
//! runner_lock_timeout = "10m"  # wait for another runner at most this long
//! pooler = "none"              # or "session"; "transaction" is refused
//!
//! [archive]
//! enabled = true          # copy what a migration destroys before it runs
//! max_size = "1GiB"       # per object; a bigger copy refuses the migration
//! retention = "30d"       # what `capstan archive purge` removes
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::migrator::Settings;
use crate::source::{parse_duration, parse_timeout};

/// The default config file name, looked up in the working directory.
pub const CONFIG_FILE: &str = "capstan.toml";

/// The parsed `capstan.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Database URL used when neither `--database` nor `DATABASE_URL` is given.
    pub database_url: Option<String>,
    /// Migration directory used when `--dir` is not given.
    pub migrations_dir: Option<PathBuf>,
    /// Rewritten with the application's schema after every `up` and `down`
    /// (`capstan schema dump -o FILE`), like `schema.sql`.
    pub schema_file: Option<PathBuf>,
    /// `[migrate]`: how migrations run.
    #[serde(default)]
    pub migrate: MigrateConfig,
    /// `[lint]`: read by `capstan lint`.
    pub lint: Option<toml::Table>,
    /// `[fleet]`: the fleet registry.
    #[serde(default)]
    pub fleet: FleetConfig,
    /// `[archive]`: what migrations keep before destroying data.
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// `[slo]`: read by the SLO commands; `[slo.policy]` is the error budget gate.
    #[serde(default)]
    pub slo: SloConfig,
    /// `[service]` or `[[service]]`, as written: the services of the
    /// project, read into [`Config::services`].
    pub service: Option<toml::Value>,
    /// The services `service` declares, validated (none when it is absent).
    #[serde(skip)]
    pub services: capstan_service::Services,
}

/// The `[slo]` table: where `capstan slo` reads SLOs and counts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// SLO files: a directory or a file (default `slos`).
    pub dir: Option<PathBuf>,
    /// The event store file (default `capstan-events.db`).
    pub store: Option<PathBuf>,
    /// Base URL of Prometheus, for Prometheus-sourced SLOs.
    pub prometheus: Option<String>,
    /// `[slo.policy]`: the error budget policy. When present, a contract
    /// migration and every rollout step consult the gate.
    pub policy: Option<SloPolicyConfig>,
}

/// The `[slo.policy]` table: when the error budget gate freezes deploys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloPolicyConfig {
    /// Freeze when less than this share of a budget is left, from 0 to 1
    /// (default 0: freeze once a budget is spent).
    pub freeze_below: Option<f64>,
    /// Freeze while a page alert fires (default true).
    pub freeze_on_page: Option<bool>,
    /// How long an override lets deploys through, like `1h` (the default).
    pub override_for: Option<String>,
    /// Services whose SLOs the gate reads (default: every SLO).
    pub services: Option<Vec<String>>,
}

/// The `[migrate]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateConfig {
    /// Default lock timeout, like `3s`.
    pub lock_timeout: Option<String>,
    /// Retries after a lock timeout.
    pub lock_retries: Option<u32>,
    /// Default statement timeout, like `5m` (`0`: none).
    pub statement_timeout: Option<String>,
    /// How long a runner waits for another one to release the runner lock,
    /// like `10m` (`0`: do not wait).
    pub runner_lock_timeout: Option<String>,
    /// What the database URL leads to: `none` (Postgres itself), `session`
    /// (a session-mode pool) or `transaction` (a transaction-mode pool,
    /// which capstan refuses).
    pub pooler: Option<String>,
}

/// The `[fleet]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// An instance not seen for this long is no longer live, like `30s`.
    pub ttl: Option<String>,
}

/// The `[archive]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Archive before destroying (default true).
    pub enabled: Option<bool>,
    /// Largest copy of one object, like `1GiB` (`0`: no limit; default 1 GiB).
    pub max_size: Option<String>,
    /// How long entries are kept before `archive purge` removes them, like `30d`.
    pub retention: Option<String>,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// Invalid TOML, unknown key or wrong type (the message names line and key).
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A `[service]` that cannot be used (the message names file and line).
    #[error(transparent)]
    Service(#[from] capstan_service::ServiceError),
}

impl Config {
    /// Reads `path`; a missing file is the empty config unless `required`.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default())
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut config: Config = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: describe_toml_error(&text, &e),
        })?;
        config.settings(path)?;
        config.services = capstan_service::Services::parse(&text, path)?;
        Ok(config)
    }

    /// The `[migrate]` settings over the defaults.
    pub fn settings(&self, path: &Path) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        let bad = |key: &str, e: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: format!("[migrate] {key}: {e}"),
        };
        if let Some(v) = &self.migrate.lock_timeout {
            s.lock_timeout = parse_timeout(v).map_err(|e| bad("lock_timeout", e))?;
        }
        if let Some(v) = &self.migrate.statement_timeout {
            s.statement_timeout = parse_timeout(v).map_err(|e| bad("statement_timeout", e))?;
        }
        if let Some(v) = &self.fleet.ttl {
            s.fleet_ttl = parse_duration(v).map_err(|e| ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!("[fleet] ttl: {e}"),
            })?;
        }
        if let Some(n) = self.migrate.lock_retries {
            s.lock_retries = n;
        }
        if let Some(v) = &self.migrate.pooler {
            s.transaction_pooler = match v.as_str() {
                "none" | "session" => false,
                "transaction" | "statement" => true,
                other => {
                    return Err(bad(
                        "pooler",
                        format!("{other:?} is not one of \"none\", \"session\", \"transaction\""),
                    ))
                }
            };
        }
        if let Some(v) = &self.migrate.runner_lock_timeout {
            s.runner_lock_timeout = parse_duration(v).map_err(|e| bad("runner_lock_timeout", e))?;
        }
        let bad_archive = |key: &str, e: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: format!("[archive] {key}: {e}"),
        };
        if let Some(on) = self.archive.enabled {
            s.archive = on;
        }
        if let Some(v) = &self.archive.max_size {
            let n = crate::archive::parse_size(v).map_err(|e| bad_archive("max_size", e))?;
            s.archive_max_bytes = (n > 0).then_some(n);
        }
        if let Some(v) = &self.archive.retention {
            s.archive_retention = Some(parse_duration(v).map_err(|e| bad_archive("retention", e))?);
        }
        Ok(s)
    }
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    // A message may quote the value; a database_url may hold a password.
    let msg = crate::url::redact_text(e.message().trim());
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {msg}")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("capstan.toml");
        std::fs::write(
            &p,
            "database_url = \"sqlite://x.db\"\n[migrate]\nlock_timout = \"2s\"\n",
        )
        .unwrap();
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("lock_timout"), "{err}");
    }

    #[test]
    fn bad_durations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("capstan.toml");
        std::fs::write(&p, "[migrate]\nlock_timeout = \"soon\"\n").unwrap();
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("[migrate] lock_timeout"), "{err}");
    }

    #[test]
    fn services_are_read_with_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("capstan.toml");
        std::fs::write(
            &p,
            "[[service]]\nname = \"api\"\ndir = \"api/migrations\"\nowns = [\"api\"]\n\n[[service]]\nname = \"billing\"\n",
        )
        .unwrap();
        let c = Config::load(&p, true).unwrap();
        assert_eq!(c.services.names(), ["api", "billing"]);
        assert_eq!(c.services.get("billing").unwrap().line, 7);
        std::fs::write(&p, "[service]\nname = \"Bad Name\"\n").unwrap();
        let err = Config::load(&p, true).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("Bad Name"), "{err}");
    }

    #[test]
    fn missing_optional_file_is_empty() {
        let c = Config::load(Path::new("/nonexistent/capstan.toml"), false).unwrap();
        assert!(c.database_url.is_none());
    }
}
