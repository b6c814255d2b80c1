//! `rehearse.toml`: the releases, in deploy order, and how to run each one.
//!
//! ```toml
//! seed = "seed.sql"                       # optional, loaded once N's schema exists
//! smoke = "smoke.toml"                    # default smoke test of every release
//! env = { CHIRPY_DRAIN = "0s" }           # default environment of every release
//! ready_timeout = "30s"
//!
//! [[release]]
//! name = "1.0.0"
//! migrations = "embedded"                 # or a directory, relative to this file
//! command = ["chirpy-v1"]                 # PATH lookup; `./x` is relative to this file
//! env = { CHIRPY_ADDR = "127.0.0.1:${PORT}" }
//! ready = "/readyz"
//! ```
//!
//! Relative paths are relative to the file. `${NAME}` in `command`, `env` and
//! `ready` expands to a built-in (`PORT`, `DATABASE_URL`, `MIGRATIONS_DIR`,
//! `REHEARSE_DIR`) or, failing that, to the environment of `capstan rehearse`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::smoke::SmokeFile;
use crate::Error;

/// The built-in `${…}` variables.
pub const BUILTINS: &[&str] = &[
    "PORT",
    "DATABASE_URL",
    "MIGRATIONS_DIR",
    "REHEARSE_DIR",
    "SERVICE",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database: Option<String>,
    seed: Option<PathBuf>,
    smoke: Option<SmokeSpec>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    ready_timeout: Option<String>,
    services: Option<PathBuf>,
    #[serde(rename = "move")]
    moving: Option<crate::moving::MoveFile>,
    #[serde(default, rename = "release")]
    releases: Vec<ReleaseFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseFile {
    name: String,
    migrations: String,
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    port: Option<u16>,
    ready: Option<String>,
    smoke: Option<SmokeSpec>,
    seed: Option<PathBuf>,
    database_env: Option<String>,
    service: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SmokeSpec {
    File(PathBuf),
    Table(SmokeTable),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmokeTable {
    requests: Option<PathBuf>,
    command: Option<Vec<String>>,
}

/// A rehearsal plan: releases in deploy order.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory of `rehearse.toml` (with flags, the current one);
    /// relative paths start here.
    pub base_dir: PathBuf,
    /// The releases, oldest first.
    pub releases: Vec<Release>,
    /// The database (`postgres://…` server to create scratch databases on, or
    /// `sqlite`), unless the command line names one.
    pub database: Option<String>,
    /// How long a binary may take to become ready.
    pub ready_timeout: Duration,
    /// Where the plan came from, for errors found while it runs.
    pub origin: Origin,
    /// `[move]`: the plan is a table's move from the first release's service
    /// to the second's, walked across both services' histories.
    pub moving: Option<crate::moving::Move>,
}

/// Where a plan came from: its errors name the file and key, or the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `rehearse.toml` (or another file given with `-c`).
    File(PathBuf),
    /// The `--release` flags.
    Flags,
}

impl Origin {
    /// An error about `key` (rehearse.toml's name for it; empty for the
    /// release itself) of `release` (its index and name), or of the whole
    /// plan when `release` is `None`.
    pub fn error(
        &self,
        release: Option<(usize, &str)>,
        key: &str,
        message: impl std::fmt::Display,
    ) -> Error {
        match self {
            Origin::File(path) => {
                let mut m = String::new();
                if let Some((i, name)) = release {
                    m.push_str(&format!("release {} (`{name}`): ", i + 1));
                }
                if !key.is_empty() {
                    m.push_str(key);
                    m.push_str(": ");
                }
                bad(path, format!("{m}{message}"))
            }
            Origin::Flags => {
                let name = release.map_or("", |(_, n)| n);
                let flag = match key {
                    "ready_timeout" => "--ready-timeout".to_string(),
                    "seed" => "--seed".into(),
                    "smoke" => "--smoke-command".into(),
                    "ready" => "--ready".into(),
                    "migrations" => format!("--migrations {name}"),
                    k if k.starts_with("env.") => format!("--env {}", &k["env.".len()..]),
                    _ if name.is_empty() => "--release".into(),
                    _ => format!("--release {name}"),
                };
                bad(Path::new(&flag), message.to_string())
            }
        }
    }
}

/// Where a release's migrations come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Migrations {
    /// The binary's own embedded set, through its `migrate` subcommand.
    Embedded,
    /// A migration directory (with `capstan.sum`), run by capstan's engine.
    Dir(PathBuf),
}

/// How a release is smoke-tested.
#[derive(Debug, Clone)]
pub enum Smoke {
    /// No smoke test: starting and becoming ready is the test.
    None,
    /// HTTP requests with expected statuses and JSON fields.
    Requests {
        /// The file.
        path: PathBuf,
        /// Its requests.
        file: SmokeFile,
    },
    /// A command that must exit 0 (env: `BASE_URL`, `DATABASE_URL`,
    /// `REHEARSE_RELEASE`, `REHEARSE_CELL`).
    Command(Vec<String>),
}

/// One release of the service.
#[derive(Debug, Clone)]
pub struct Release {
    /// Its name, like `1.0.0`.
    pub name: String,
    /// Its migration set.
    pub migrations: Migrations,
    /// Program and arguments (before `${…}` expansion).
    pub command: Vec<String>,
    /// Environment (before `${…}` expansion); the file's `env`, then the release's.
    pub env: Vec<(String, String)>,
    /// A fixed port, or a free one per start when `None`.
    pub port: Option<u16>,
    /// The readiness URL, or a path on `http://127.0.0.1:${PORT}`.
    pub ready: String,
    /// The smoke test.
    pub smoke: Smoke,
    /// SQL loaded on the fresh database once this release's schema exists, at
    /// the start of the step from this release.
    pub seed: Option<PathBuf>,
    /// The variable that carries the database URL (default `DATABASE_URL`).
    pub database_env: String,
    /// The service the release belongs to: its migrations, history and
    /// fleet (`CAPSTAN_SERVICE` in its environment, `${SERVICE}`); `None`
    /// acts for capstan's default service, as before services existed.
    pub service: Option<String>,
    /// The service as `services` (a `capstan.toml`) declares it, when it
    /// does: migrations from a directory register it, as `capstan migrate
    /// up --service` would.
    pub declared: Option<capstan_service::Service>,
}

/// A rehearsal plan on the command line: `capstan rehearse --release
/// 1.0.0=app-v1 --release 2.0.0=app-v2 --smoke smoke.toml`. Every release
/// gets the same environment, readiness path and smoke test; relative paths
/// start at the current directory.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "plan", multiple = true)]
pub struct Flags {
    /// A release, oldest first, at least two: NAME=COMMAND, like
    /// `1.0.0=./bin/app-v1` (split into words like a shell does; its
    /// migrations are the binary's own, through its `migrate` subcommand).
    /// Replaces rehearse.toml.
    #[arg(long = "release", value_name = "NAME=COMMAND")]
    pub releases: Vec<String>,
    /// NAME=DIR: that release's migrations come from DIR (with capstan.sum).
    #[arg(long, value_name = "NAME=DIR", requires = "releases")]
    pub migrations: Vec<String>,
    /// KEY=VALUE in every release's environment; `${PORT}` and
    /// `${DATABASE_URL}` expand as in rehearse.toml.
    #[arg(long, value_name = "KEY=VALUE", requires = "releases")]
    pub env: Vec<String>,
    /// Smoke file (HTTP requests) of every release.
    #[arg(long, value_name = "FILE", requires = "releases")]
    pub smoke: Option<PathBuf>,
    /// Smoke command of every release: must exit 0.
    #[arg(
        long,
        value_name = "COMMAND",
        requires = "releases",
        conflicts_with = "smoke"
    )]
    pub smoke_command: Option<String>,
    /// Seed SQL, loaded at the start of every step once the older release's
    /// schema exists.
    #[arg(long, value_name = "FILE", requires = "releases")]
    pub seed: Option<PathBuf>,
    /// Readiness path or URL of every release [default: /readyz].
    #[arg(long, value_name = "PATH", requires = "releases")]
    pub ready: Option<String>,
    /// How long a binary may take to become ready [default: 30s].
    #[arg(long, value_name = "DURATION", requires = "releases")]
    pub ready_timeout: Option<String>,
}

fn bad(file: &Path, message: impl Into<String>) -> Error {
    Error::Config {
        file: file.to_path_buf(),
        message: message.into(),
    }
}

impl Config {
    /// Reads and checks `rehearse.toml`, its smoke files and its migration directories.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| bad(path, e.to_string()))?;
        Self::parse(path, &text)
    }

    /// Parses `text` as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        let file: FileConfig = toml::from_str(text).map_err(|e| bad(path, e.to_string()))?;
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        Self::check(Origin::File(path.to_path_buf()), base_dir, file)
    }

    /// The plan given on the command line instead of in a file. Relative
    /// paths are relative to the current directory; errors name the flag.
    pub fn from_flags(flags: &Flags) -> Result<Config, Error> {
        let flag = |name: &str, message: String| bad(Path::new(name), message);
        let pair = |name: &str, value: &str, what: &str| -> Result<(String, String), Error> {
            match value.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
                _ => Err(flag(name, format!("`{value}`: expected {what}"))),
            }
        };
        let words = |name: &str, line: &str| -> Result<Vec<String>, Error> {
            match shlex::split(line) {
                Some(w) if !w.is_empty() => Ok(w),
                Some(_) => Err(flag(name, format!("`{line}`: the command is empty"))),
                None => Err(flag(
                    name,
                    format!("`{line}`: unbalanced quotes or a trailing `\\`"),
                )),
            }
        };
        let mut releases = Vec::new();
        for r in &flags.releases {
            let (name, command) = pair("--release", r, "NAME=COMMAND, like 1.0.0=./bin/app-v1")?;
            releases.push(ReleaseFile {
                command: words(&format!("--release {name}"), &command)?,
                name,
                migrations: "embedded".into(),
                env: BTreeMap::new(),
                port: None,
                ready: flags.ready.clone(),
                smoke: None,
                seed: None,
                database_env: None,
                service: None,
            });
        }
        for m in &flags.migrations {
            let (name, dir) = pair("--migrations", m, "NAME=DIR, like 2.0.0=migrations")?;
            let dir = dir.trim();
            match releases.iter_mut().find(|r| r.name == name) {
                Some(r) if r.migrations != "embedded" => {
                    return Err(flag(
                        "--migrations",
                        format!("`{m}`: release `{name}` has a --migrations already"),
                    ))
                }
                Some(r) => r.migrations = dir.to_string(),
                None => {
                    let known: Vec<&str> = releases.iter().map(|r| r.name.as_str()).collect();
                    return Err(flag(
                        "--migrations",
                        format!(
                            "`{m}`: no --release is named `{name}` (releases: {})",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut env = BTreeMap::new();
        for e in &flags.env {
            let (k, v) = pair("--env", e, "KEY=VALUE")?;
            env.insert(k, v);
        }
        let smoke = match (&flags.smoke, &flags.smoke_command) {
            (Some(f), _) => Some(SmokeSpec::File(f.clone())),
            (None, Some(c)) => Some(SmokeSpec::Table(SmokeTable {
                requests: None,
                command: Some(words("--smoke-command", c)?),
            })),
            (None, None) => None,
        };
        let file = FileConfig {
            database: None,
            seed: flags.seed.clone(),
            smoke,
            env,
            ready_timeout: flags.ready_timeout.clone(),
            services: None,
            moving: None,
            releases,
        };
        Self::check(Origin::Flags, PathBuf::from("."), file)
    }

    /// Checks a parsed plan; errors name the key (or flag) by `origin`.
    fn check(origin: Origin, base_dir: PathBuf, file: FileConfig) -> Result<Config, Error> {
        let base_dir = std::fs::canonicalize(&base_dir).unwrap_or(base_dir);
        if file.releases.len() < 2 {
            let given = match origin {
                Origin::Flags => "release(s) given",
                Origin::File(_) => "[[release]] table(s)",
            };
            return Err(origin.error(
                None,
                "",
                format!(
                    "{} {given}: a rehearsal needs at least two releases, oldest first",
                    file.releases.len()
                ),
            ));
        }
        let ready_timeout = match &file.ready_timeout {
            Some(s) => capstan_migrate::parse_duration(s)
                .map_err(|e| origin.error(None, "ready_timeout", e))?,
            None => Duration::from_secs(30),
        };
        let default_smoke = file
            .smoke
            .as_ref()
            .map(|s| load_smoke(&origin, None, &base_dir, s))
            .transpose()?;
        let services = file
            .services
            .as_ref()
            .map(|p| crate::moving::load_services(&origin, &base_dir, p))
            .transpose()?;
        let mut releases = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, r) in file.releases.into_iter().enumerate() {
            let name = r.name.clone();
            let at = Some((i, name.as_str()));
            if !names.insert(r.name.clone()) {
                return Err(origin.error(at, "", "the name is used twice"));
            }
            if r.command.is_empty() {
                return Err(origin.error(at, "", "`command` is empty"));
            }
            let migrations = if r.migrations == "embedded" {
                Migrations::Embedded
            } else {
                let dir = base_dir.join(&r.migrations);
                capstan_migrate::MigrationSet::from_dir(&dir)
                    .map_err(|e| origin.error(at, "migrations", e))?;
                Migrations::Dir(std::fs::canonicalize(&dir).unwrap_or(dir))
            };
            let smoke = match &r.smoke {
                Some(s) => load_smoke(&origin, at, &base_dir, s)?,
                None => default_smoke.clone().unwrap_or(Smoke::None),
            };
            let mut env: Vec<(String, String)> = file
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in r.env {
                env.retain(|(old, _)| *old != k);
                env.push((k, v));
            }
            let seed = r
                .seed
                .as_ref()
                .or(file.seed.as_ref())
                .map(|s| base_dir.join(s));
            if let Some(s) = &seed {
                if !s.is_file() {
                    return Err(origin.error(at, "seed", format!("{} not found", s.display())));
                }
            }
            let declared = match (&r.service, &services) {
                (Some(s), Some((path, list))) => Some(
                    list.get(s)
                        .map_err(|e| origin.error(at, "service", format!("{e} ({path})")))?
                        .clone(),
                ),
                (Some(s), None) if !capstan_service::valid_name(s) => {
                    return Err(origin.error(
                        at,
                        "service",
                        format!("`{s}` is not a valid service name: use lower-case letters, digits, `_` and `-`, starting with a letter"),
                    ))
                }
                _ => None,
            };
            let release = Release {
                name: r.name,
                migrations,
                command: r.command,
                env,
                port: r.port,
                ready: r.ready.unwrap_or_else(|| "/readyz".into()),
                smoke,
                seed,
                database_env: r.database_env.unwrap_or_else(|| "DATABASE_URL".into()),
                service: r.service,
                declared,
            };
            // Every `${NAME}` that is not a built-in must be set now.
            let check = |s: &str, field: &str| -> Result<(), Error> {
                expand(s, &|_| Some(String::new()))
                    .map(|_| ())
                    .map_err(|e| origin.error(at, field, e))
            };
            for c in &release.command {
                check(c, "command")?;
            }
            for (k, v) in &release.env {
                check(v, &format!("env.{k}"))?;
            }
            check(&release.ready, "ready")?;
            releases.push(release);
        }
        let moving = crate::moving::check(
            &origin,
            &base_dir,
            services.as_ref(),
            file.moving,
            &releases,
        )?;
        Ok(Config {
            base_dir,
            releases,
            database: file.database,
            ready_timeout,
            origin,
            moving,
        })
    }
}

fn load_smoke(
    origin: &Origin,
    release: Option<(usize, &str)>,
    base: &Path,
    spec: &SmokeSpec,
) -> Result<Smoke, Error> {
    let file = match spec {
        SmokeSpec::File(f) => f.clone(),
        SmokeSpec::Table(SmokeTable {
            requests: Some(f),
            command: None,
        }) => f.clone(),
        SmokeSpec::Table(SmokeTable {
            requests: None,
            command: Some(c),
        }) => {
            if c.is_empty() {
                return Err(origin.error(release, "smoke", "`command` is empty"));
            }
            return Ok(Smoke::Command(c.clone()));
        }
        SmokeSpec::Table(_) => {
            return Err(origin.error(
                release,
                "smoke",
                "give either `requests = \"FILE\"` or `command = [\"PROGRAM\", …]`",
            ))
        }
    };
    let full = base.join(file);
    let parsed = SmokeFile::load(&full)?;
    Ok(Smoke::Requests {
        path: full,
        file: parsed,
    })
}

/// Expands `${NAME}` with `lookup`, then the process environment. `$$` is a `$`.
pub fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{s}`"))?;
            let name = &body[..end];
            let value = if BUILTINS.contains(&name) {
                lookup(name)
            } else {
                std::env::var(name).ok()
            };
            let value = value.ok_or_else(|| {
                format!(
                    "`${{{name}}}` is not set (built-ins: {}; anything else comes from the environment)",
                    BUILTINS.join(", ")
                )
            })?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_builtins_and_environment() {
        let got = expand("127.0.0.1:${PORT}/$${x}", &|n| {
            (n == "PORT").then(|| "80".into())
        })
        .unwrap();
        assert_eq!(got, "127.0.0.1:80/${x}");
        let err = expand("${CAPSTAN_REHEARSE_SURELY_UNSET}", &|_| None).unwrap_err();
        assert!(err.contains("CAPSTAN_REHEARSE_SURELY_UNSET"), "{err}");
    }

    #[test]
    fn a_single_release_is_refused_naming_the_file() {
        let err = Config::parse(
            Path::new("/tmp/r.toml"),
            "[[release]]\nname = \"1\"\nmigrations = \"embedded\"\ncommand = [\"x\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/tmp/r.toml") && err.contains("at least two"),
            "{err}"
        );
    }

    fn flags(releases: &[&str]) -> Flags {
        Flags {
            releases: releases.iter().map(|r| r.to_string()).collect(),
            ..Flags::default()
        }
    }

    /// Two good releases, then `change`.
    fn two(change: impl FnOnce(&mut Flags)) -> Flags {
        let mut f = flags(&["1=a", "2=b"]);
        change(&mut f);
        f
    }

    fn flag_error(f: Flags) -> String {
        Config::from_flags(&f).unwrap_err().to_string()
    }

    #[test]
    fn flags_make_the_same_plan_a_file_would() {
        let migrations =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chirpy/migrations");
        let f = Flags {
            migrations: vec![format!("2.0.0={}", migrations.display())],
            env: vec!["ADDR=127.0.0.1:${PORT}".into(), "MODE=a=b".into()],
            smoke_command: Some("./smoke.sh 'two words'".into()),
            ready: Some("/healthz".into()),
            ready_timeout: Some("5s".into()),
            ..flags(&["1.0.0=app --flag 'a b'", "2.0.0 = ./bin/app-v2"])
        };
        let c = Config::from_flags(&f).unwrap();
        assert_eq!(c.ready_timeout, Duration::from_secs(5));
        let (one, two) = (&c.releases[0], &c.releases[1]);
        assert_eq!((one.name.as_str(), two.name.as_str()), ("1.0.0", "2.0.0"));
        assert_eq!(one.command, ["app", "--flag", "a b"]);
        assert_eq!(two.command, ["./bin/app-v2"]);
        assert_eq!(one.migrations, Migrations::Embedded);
        assert!(matches!(&two.migrations, Migrations::Dir(d) if d.ends_with("chirpy/migrations")));
        for r in [one, two] {
            assert_eq!(r.ready, "/healthz");
            assert_eq!(
                r.env,
                [
                    ("ADDR".to_string(), "127.0.0.1:${PORT}".to_string()),
                    ("MODE".to_string(), "a=b".to_string())
                ]
            );
            assert!(matches!(&r.smoke, Smoke::Command(c) if c == &["./smoke.sh", "two words"]));
            assert_eq!(r.database_env, "DATABASE_URL");
        }
    }

    #[test]
    fn bad_flags_are_refused_naming_the_flag() {
        let cases = [
            (flags(&["1.0.0=app"]), "--release: 1 release(s) given"),
            (
                flags(&["1.0.0=app", "2.0.0"]),
                "--release: `2.0.0`: expected NAME=COMMAND",
            ),
            (
                flags(&["1.0.0=app", "=app"]),
                "--release: `=app`: expected NAME=COMMAND",
            ),
            (
                flags(&["1.0.0=app", "2.0.0="]),
                "--release 2.0.0: ``: the command is empty",
            ),
            (
                flags(&["1.0.0=app", "2.0.0=app 'x"]),
                "--release 2.0.0: `app 'x`: unbalanced quotes",
            ),
            (
                flags(&["1=app", "1=app"]),
                "--release 1: the name is used twice",
            ),
            (
                two(|f| f.migrations = vec!["3=m".into()]),
                "--migrations: `3=m`: no --release is named `3` (releases: 1, 2)",
            ),
            (
                two(|f| f.env = vec!["NOEQUALS".into()]),
                "--env: `NOEQUALS`: expected KEY=VALUE",
            ),
            (
                two(|f| f.migrations = vec!["2=m".into(), "2=n".into()]),
                "--migrations: `2=n`: release `2` has a --migrations already",
            ),
            (
                two(|f| f.migrations = vec!["2 = surely-no-such-dir".into()]),
                "--migrations 2: cannot read migration directory",
            ),
            (
                two(|f| f.env = vec!["X=${CAPSTAN_REHEARSE_SURELY_UNSET}".into()]),
                "--env X: `${CAPSTAN_REHEARSE_SURELY_UNSET}` is not set",
            ),
            (
                flags(&["1=a", "2=b ${CAPSTAN_REHEARSE_SURELY_UNSET}"]),
                "--release 2: `${CAPSTAN_REHEARSE_SURELY_UNSET}` is not set",
            ),
            (
                two(|f| f.ready = Some("${CAPSTAN_REHEARSE_SURELY_UNSET}".into())),
                "--ready: `${CAPSTAN_REHEARSE_SURELY_UNSET}` is not set",
            ),
            (
                two(|f| f.ready_timeout = Some("soon".into())),
                "--ready-timeout: ",
            ),
            (
                two(|f| f.seed = Some("surely-no-such-seed.sql".into())),
                "--seed: ",
            ),
        ];
        for (f, want) in cases {
            let got = flag_error(f);
            assert!(got.contains(want), "{got}\nwanted: {want}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::parse(Path::new("r.toml"), "sede = \"x.sql\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sede"), "{err}");
    }
}
