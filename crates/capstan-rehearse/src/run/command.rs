//! A release's command line, environment and ready URL with `${…}` expanded
//! for one start of it.

use std::path::Path;

use crate::config::{expand, Config, Migrations, Release};
use crate::Error;

/// A program with its arguments, and its environment.
pub(super) type ProgramEnv = (Vec<String>, Vec<(String, String)>);

/// The built-in `${…}` values of one start of `release`.
pub(super) fn builtins(
    config: &Config,
    release: &Release,
    port: u16,
    url: &str,
) -> [(&'static str, String); 5] {
    let dir = match &release.migrations {
        Migrations::Dir(d) => d.display().to_string(),
        Migrations::Embedded => String::new(),
    };
    [
        ("PORT", port.to_string()),
        ("DATABASE_URL", url.to_string()),
        ("MIGRATIONS_DIR", dir),
        ("REHEARSE_DIR", config.base_dir.display().to_string()),
        ("SERVICE", release.service.clone().unwrap_or_default()),
    ]
}

/// Expands `s`, the `key` of `release`, for one start of it.
pub(super) fn expand_for(
    config: &Config,
    release: &Release,
    values: &[(&'static str, String)],
    key: &str,
    s: &str,
) -> Result<String, Error> {
    let lookup = |name: &str| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    expand(s, &lookup).map_err(|m| {
        let index = config
            .releases
            .iter()
            .position(|r| r.name == release.name)
            .unwrap_or(0);
        config.origin.error(Some((index, &release.name)), key, m)
    })
}

/// Program and environment of `release`, `${…}` expanded.
pub(super) fn command_of(
    config: &Config,
    release: &Release,
    port: u16,
    url: &str,
) -> Result<ProgramEnv, Error> {
    let values = builtins(config, release, port, url);
    let mut argv = release
        .command
        .iter()
        .map(|c| expand_for(config, release, &values, "command", c))
        .collect::<Result<Vec<_>, _>>()?;
    if argv[0].contains('/') && Path::new(&argv[0]).is_relative() {
        argv[0] = config.base_dir.join(&argv[0]).display().to_string();
    }
    let mut env = release
        .env
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                expand_for(config, release, &values, &format!("env.{k}"), v)?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // The service a capstan-built binary acts for, serving or migrating.
    if let Some(s) = &release.service {
        if !env.iter().any(|(k, _)| k == "CAPSTAN_SERVICE") {
            env.push(("CAPSTAN_SERVICE".into(), s.clone()));
        }
    }
    env.push((release.database_env.clone(), url.to_string()));
    Ok((argv, env))
}

pub(super) fn ready_url(
    config: &Config,
    release: &Release,
    port: u16,
    url: &str,
) -> Result<String, Error> {
    let values = builtins(config, release, port, url);
    let r = expand_for(config, release, &values, "ready", &release.ready)?;
    Ok(if r.starts_with('/') {
        format!("http://127.0.0.1:{port}{r}")
    } else {
        r
    })
}
