//! Linter configuration: the `[lint]` table of `capstan.toml`, plus command-line overrides.

use crate::finding::Severity;
use crate::rule::RuleId;
use crate::rules;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The Postgres major version assumed when none is configured.
pub const DEFAULT_PG_VERSION: u32 = 15;

/// Default `small_table_rows`: a table with at most this many rows (and at most
/// [`DEFAULT_SMALL_TABLE_BYTES`]) is rewritten, scanned or indexed in
/// milliseconds, so a lock finding on it is a warning when `migrate up` sees it.
pub const DEFAULT_SMALL_TABLE_ROWS: u64 = 10_000;

/// Default `small_table_bytes` (8 MiB, table + indexes + TOAST): reading and
/// writing it all takes well under 100 ms even on network storage.
pub const DEFAULT_SMALL_TABLE_BYTES: u64 = 8 << 20;

/// How the linter behaves. Build it with [`Config::default`] or [`Config::from_toml`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Postgres major version of the target server (verdicts that depend on it change).
    pub pg_version: u32,
    /// Rules that are switched off.
    pub disabled: Vec<String>,
    /// Rules whose severity is changed.
    pub severity: BTreeMap<String, Severity>,
    /// The lowest severity that makes `capstan lint` exit 1.
    pub fail_on: Severity,
    /// Whether `-- capstan:down` sections are linted too (they also run in production).
    pub lint_down: bool,
    /// The database the migrations are written for.
    pub dialect: Dialect,
    /// With [`crate::Live`] sizes: a table with at most this many rows (and at
    /// most `small_table_bytes`) is small, and a lock or rewrite finding on it is
    /// a warning. 0 makes no table small.
    pub small_table_rows: u64,
    /// See `small_table_rows`: the byte bound (table, indexes and TOAST).
    pub small_table_bytes: u64,
    /// The session time zone the migrations run with, when known from
    /// `capstan.toml` (a migration's own `SET TIME ZONE`, then the live
    /// server's, take precedence).
    pub time_zone: Option<String>,
    /// The services sharing the database (`capstan.toml`'s `service` key);
    /// empty when it declares none, and then the boundary rules are silent.
    pub services: capstan_service::Services,
    /// The service whose migrations are linted (`--service`, the service
    /// whose `dir` is the linted directory, or the only one declared);
    /// `service-boundary` needs it.
    pub service: Option<String>,
}

/// The database a migration directory targets: Postgres (the default, every
/// rule) or SQLite (phase classification and the rules about compatibility,
/// transactions and backfills; none of the Postgres lock rules; SQLite-only
/// syntax the Postgres grammar cannot read is reported as `info` and left
/// unchecked).
pub use capstan_format::Dialect;

impl Default for Config {
    fn default() -> Self {
        Config {
            pg_version: DEFAULT_PG_VERSION,
            disabled: Vec::new(),
            severity: BTreeMap::new(),
            fail_on: Severity::Error,
            lint_down: true,
            dialect: Dialect::Postgres,
            small_table_rows: DEFAULT_SMALL_TABLE_ROWS,
            small_table_bytes: DEFAULT_SMALL_TABLE_BYTES,
            time_zone: None,
            services: capstan_service::Services::default(),
            service: None,
        }
    }
}

/// A configuration that could not be used. Each variant names the offending key or rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file is not valid TOML, or a `[lint]` key is unknown or has the wrong type.
    #[error("{origin}: {message}")]
    Invalid {
        /// Where the configuration came from (a file name).
        origin: String,
        /// The parser's description, which names the key.
        message: String,
    },
    /// A rule named in the configuration does not exist.
    #[error("{origin}: unknown rule `{rule}` in [lint].{key} (see `capstan lint --list-rules`)")]
    UnknownRule {
        /// Where the configuration came from.
        origin: String,
        /// The key that named it.
        key: String,
        /// The unknown rule name.
        rule: String,
    },
    /// A severity that is not `info`, `warning` or `error`.
    #[error(
        "{origin}: [lint].{key}: unknown severity `{value}` (expected info, warning or error)"
    )]
    BadSeverity {
        /// Where the configuration came from.
        origin: String,
        /// The key.
        key: String,
        /// The value given.
        value: String,
    },
    /// The `service` key is invalid (the error names the file and line).
    #[error(transparent)]
    Services(#[from] capstan_service::ServiceError),
    /// An unsupported Postgres version.
    #[error("{origin}: [lint].pg_version = {version}: capstan lint supports Postgres 9.6 to 18 (give the major version, e.g. 15)")]
    BadPgVersion {
        /// Where the configuration came from.
        origin: String,
        /// The version given.
        version: u32,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LintTable {
    pg_version: Option<u32>,
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default)]
    severity: BTreeMap<String, String>,
    fail_on: Option<String>,
    lint_down: Option<bool>,
    dialect: Option<String>,
    small_table_rows: Option<u64>,
    small_table_bytes: Option<u64>,
    time_zone: Option<String>,
}

impl Config {
    /// Reads the `[lint]` table of a `capstan.toml` document; other tables are ignored.
    /// Unknown keys inside `[lint]`, unknown rules and bad values are errors naming them.
    ///
    /// ```
    /// let cfg = capstan_lint::Config::from_toml(
    ///     "[lint]\npg_version = 11\ndisable = [\"prefer-text\"]\n",
    ///     "capstan.toml",
    /// ).unwrap();
    /// assert_eq!(cfg.pg_version, 11);
    /// ```
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let doc: toml::Table =
            toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        let mut config = Config {
            services: capstan_service::Services::parse(text, std::path::Path::new(origin))?,
            ..Config::default()
        };
        let Some(lint) = doc.get("lint") else {
            return Ok(config);
        };
        let table: LintTable = lint
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| invalid(format!("[lint]: {}", e.message())))?;
        if let Some(v) = table.pg_version {
            config
                .set_pg_version(v)
                .map_err(|()| ConfigError::BadPgVersion {
                    origin: origin.to_string(),
                    version: v,
                })?;
        }
        for rule in table.disable {
            if rules::find(&rule).is_none() {
                return Err(ConfigError::UnknownRule {
                    origin: origin.to_string(),
                    key: "disable".into(),
                    rule,
                });
            }
            config.disabled.push(rule);
        }
        for (rule, level) in table.severity {
            if rules::find(&rule).is_none() {
                return Err(ConfigError::UnknownRule {
                    origin: origin.to_string(),
                    key: "severity".into(),
                    rule,
                });
            }
            let sev = Severity::parse(&level).ok_or_else(|| ConfigError::BadSeverity {
                origin: origin.to_string(),
                key: format!("severity.{rule}"),
                value: level.clone(),
            })?;
            config.severity.insert(rule, sev);
        }
        if let Some(level) = table.fail_on {
            config.fail_on = Severity::parse(&level).ok_or_else(|| ConfigError::BadSeverity {
                origin: origin.to_string(),
                key: "fail_on".into(),
                value: level.clone(),
            })?;
        }
        if let Some(down) = table.lint_down {
            config.lint_down = down;
        }
        if let Some(rows) = table.small_table_rows {
            config.small_table_rows = rows;
        }
        if let Some(bytes) = table.small_table_bytes {
            config.small_table_bytes = bytes;
        }
        config.time_zone = table.time_zone;
        if let Some(d) = table.dialect {
            config.dialect = match d.as_str() {
                "postgres" | "postgresql" => Dialect::Postgres,
                "sqlite" => Dialect::Sqlite,
                _ => {
                    return Err(ConfigError::Invalid {
                        origin: origin.to_string(),
                        message: format!(
                            "[lint].dialect: unknown dialect `{d}` (expected postgres or sqlite)"
                        ),
                    })
                }
            };
        }
        Ok(config)
    }

    /// Sets the target Postgres major version (9 for 9.6, or 10 to 18).
    #[allow(clippy::result_unit_err)]
    pub fn set_pg_version(&mut self, version: u32) -> Result<(), ()> {
        if (9..=18).contains(&version) {
            self.pg_version = version;
            Ok(())
        } else {
            Err(())
        }
    }

    /// Whether a rule is switched on.
    pub fn enabled(&self, rule: &str) -> bool {
        !self.disabled.iter().any(|d| d == rule)
            && rules::find(rule).map_or(self.dialect == Dialect::Postgres, |r| {
                r.applies_to(self.dialect)
            })
    }

    /// The severity a rule reports with, after overrides.
    pub fn severity_of(&self, rule: &str, default: Severity) -> Severity {
        if let Some(s) = self.severity.get(rule) {
            return *s;
        }
        if self.dialect == Dialect::Sqlite && rule == RuleId::SyntaxError.name() {
            // SQLite syntax the Postgres grammar does not know: unchecked, not wrong.
            return Severity::Info;
        }
        default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[lint]\npg_verison = 12\n", "capstan.toml").unwrap_err();
        assert!(err.to_string().contains("pg_verison"), "{err}");
    }

    #[test]
    fn unknown_rule_is_named() {
        let err = Config::from_toml("[lint]\ndisable = [\"nope\"]\n", "capstan.toml").unwrap_err();
        assert!(err.to_string().contains("`nope`"), "{err}");
    }

    #[test]
    fn other_tables_are_ignored_and_overrides_apply() {
        let cfg = Config::from_toml(
            "[migrate]\nx = 1\n[lint]\nfail_on = \"warning\"\n[lint.severity]\nprefer-text = \"error\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(cfg.fail_on, Severity::Warning);
        assert_eq!(
            cfg.severity_of("prefer-text", Severity::Info),
            Severity::Error
        );
    }

    #[test]
    fn dialect() {
        let cfg = Config::from_toml("[lint]\ndialect = \"sqlite\"\n", "c").unwrap();
        assert_eq!(cfg.dialect, Dialect::Sqlite);
        assert!(!cfg.enabled("require-concurrent-index-creation"));
        assert!(cfg.enabled("renaming-column"));
        assert!(Config::from_toml("[lint]\ndialect = \"mysql\"\n", "c")
            .unwrap_err()
            .to_string()
            .contains("mysql"));
    }

    #[test]
    fn bad_severity_and_version() {
        assert!(
            Config::from_toml("[lint.severity]\nprefer-text = \"loud\"\n", "c")
                .unwrap_err()
                .to_string()
                .contains("loud")
        );
        assert!(Config::from_toml("[lint]\npg_version = 42\n", "c").is_err());
    }
}
