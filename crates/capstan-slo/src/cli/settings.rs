//! Settings: flags over the environment over `capstan.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_service::Services;

use crate::policy::Policy;

/// Settings resolved from flags, the environment and `capstan.toml`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// SLO files or directories.
    pub slo_paths: Vec<PathBuf>,
    /// The event store file (also holds the deploy log).
    pub store: PathBuf,
    /// Prometheus base URL.
    pub prometheus: Option<String>,
    /// Bound on Prometheus requests.
    pub timeout: Duration,
    /// `[slo.policy]`, if configured.
    pub policy: Option<Policy>,
    /// Database feeding the deploy log.
    pub database: Option<String>,
    /// Read each capstan-sourced SLO's per-minute counts over its whole
    /// window (what a chart of the window needs) instead of the last days
    /// and sums of older spans (what the numbers alone need, and faster).
    pub whole_series: bool,
    /// The file the settings were read from (named by messages about it).
    pub config: PathBuf,
    /// The services `capstan.toml` declares (`[[service]]`), with their
    /// dependencies; empty when it declares none.
    pub services: Services,
}

impl Settings {
    /// Reads `config` (a missing file is the defaults).
    pub fn load(config: &Path) -> Result<Settings, String> {
        let c = capstan_migrate::Config::load(config, false).map_err(|e| e.to_string())?;
        let policy = match &c.slo.policy {
            Some(p) => {
                Some(Policy::from_config(p).map_err(|e| format!("{}: {e}", config.display()))?)
            }
            None => None,
        };
        let services = match (&c.service, std::fs::read_to_string(config)) {
            (Some(_), Ok(text)) => Services::parse(&text, config).map_err(|e| e.to_string())?,
            _ => Services::default(),
        };
        Ok(Settings {
            slo_paths: vec![c.slo.dir.clone().unwrap_or_else(|| PathBuf::from("slos"))],
            store: c
                .slo
                .store
                .clone()
                .unwrap_or_else(|| PathBuf::from("capstan-events.db")),
            prometheus: c.slo.prometheus.clone(),
            timeout: Duration::from_secs(10),
            policy,
            database: std::env::var("DATABASE_URL")
                .ok()
                .filter(|s| !s.is_empty())
                .or(c.database_url.clone()),
            whole_series: false,
            config: config.to_path_buf(),
            services,
        })
    }
}
