//! Running a release's migrations: a directory through capstan's engine, or
//! the binary's embedded set through its `migrate` subcommand.

use std::path::Path;
use std::time::{Duration, Instant};

use capstan_migrate::{
    ContractPolicy, Database, DatabaseUrl, Error as MigrateError, MigrationSet, Migrator, Phase,
    UpOptions,
};
use serde::Deserialize;

use crate::config::{Migrations, Release};

/// One migration of a release's set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationInfo {
    /// Version.
    pub version: u64,
    /// `0002_add_users_handle`.
    pub label: String,
    /// Expand or contract.
    pub phase: Phase,
}

/// What a migration command did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Labels of the migrations run, in order.
    pub ran: Vec<String>,
    /// Wall time.
    pub duration: Duration,
    /// When it started and ended.
    pub window: (Instant, Instant),
}

/// Why a migration command did not do its job.
#[derive(Debug, Clone)]
pub enum MigrationError {
    /// `down` refused: a migration has no down section.
    NoDown(String),
    /// It failed: the command (or call) and its output.
    Failed {
        /// `chirpy-v2 migrate up --to 2`.
        command: String,
        /// Its output or the engine's error.
        output: String,
        /// Wall time.
        duration: Duration,
    },
}

/// Runs migrations of one release on one database.
pub struct Runner<'a> {
    release: &'a Release,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    url: String,
}

#[derive(Deserialize)]
struct StatusJson {
    migrations: Vec<StatusEntry>,
}

#[derive(Deserialize)]
struct StatusEntry {
    version: u64,
    name: String,
    phase: String,
    state: String,
}

#[derive(Deserialize)]
struct ErrorJson {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    kind: String,
    message: String,
}

impl<'a> Runner<'a> {
    /// A runner for `release` on `url`; `argv` and `env` are the release's
    /// command and environment, expanded.
    pub fn new(
        release: &'a Release,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        url: &str,
    ) -> Self {
        Runner {
            release,
            argv,
            env,
            url: url.to_string(),
        }
    }

    /// The database, acting for the release's service.
    async fn connect(&self) -> Result<Database, MigrateError> {
        let url = DatabaseUrl::parse(&self.url)?;
        let db = Database::connect(&url).await?;
        Ok(match &self.release.service {
            Some(s) => db.for_service(s),
            None => db,
        })
    }

    /// The engine over `set`, registering the release's declared service.
    fn migrator(&self, set: MigrationSet) -> Migrator {
        let m = Migrator::new(set);
        match &self.release.declared {
            Some(s) => m.with_service(s.clone()),
            None => m,
        }
    }

    /// ` --service NAME`, for the commands shown in a report.
    fn service_flag(&self) -> String {
        self.release
            .service
            .as_ref()
            .map_or(String::new(), |s| format!(" --service {s}"))
    }

    fn dir_set(dir: &Path) -> Result<MigrationSet, MigrationError> {
        MigrationSet::from_dir(dir).map_err(|e| MigrationError::Failed {
            command: format!("read {}", dir.display()),
            output: e.to_string(),
            duration: Duration::ZERO,
        })
    }

    async fn run_binary(&self, args: &[String]) -> (Option<i32>, String, String, Duration) {
        let started = Instant::now();
        let out = tokio::process::Command::new(&self.argv[0])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DATABASE_URL", &self.url)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await;
        let took = started.elapsed();
        match out {
            Ok(o) => (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
                took,
            ),
            Err(e) => (
                None,
                String::new(),
                format!("cannot run {}: {e}", self.argv[0]),
                took,
            ),
        }
    }

    fn shown(&self, args: &[String]) -> String {
        let program = Path::new(&self.argv[0])
            .file_name()
            .map_or(self.argv[0].clone(), |f| f.to_string_lossy().into_owned());
        format!("{program} {}", args.join(" "))
    }

    /// The release's migration set: versions, labels, phases.
    pub async fn describe(&self) -> Result<Vec<MigrationInfo>, MigrationError> {
        match &self.release.migrations {
            Migrations::Dir(dir) => Ok(Self::dir_set(dir)?
                .migrations()
                .iter()
                .map(|m| MigrationInfo {
                    version: m.version,
                    label: m.label(),
                    phase: m.phase,
                })
                .collect()),
            Migrations::Embedded => {
                let args: Vec<String> = ["migrate", "status", "--json"].map(String::from).to_vec();
                let (code, out, err, took) = self.run_binary(&args).await;
                let parsed: Option<StatusJson> = serde_json::from_str(&out).ok();
                match (code, parsed) {
                    (Some(0), Some(s)) => Ok(s
                        .migrations
                        .into_iter()
                        .filter(|e| e.state != "ahead")
                        .map(|e| MigrationInfo {
                            version: e.version,
                            label: capstan_format::label(e.version, &e.name).to_string(),
                            phase: Phase::parse(&e.phase).unwrap_or(Phase::Expand),
                        })
                        .collect()),
                    _ => Err(MigrationError::Failed {
                        command: self.shown(&args),
                        output: format!("exit {code:?}\n{out}{err}"),
                        duration: took,
                    }),
                }
            }
        }
    }

    /// `up`, to `to` (inclusive) or everything.
    pub async fn up(&self, to: Option<u64>) -> Result<Applied, MigrationError> {
        let started = Instant::now();
        match &self.release.migrations {
            Migrations::Dir(dir) => {
                let set = Self::dir_set(dir)?;
                let shown = match to {
                    Some(v) => format!(
                        "capstan migrate up{} --dir {} --to {v}",
                        self.service_flag(),
                        dir.display()
                    ),
                    None => format!(
                        "capstan migrate up{} --dir {}",
                        self.service_flag(),
                        dir.display()
                    ),
                };
                let result = async {
                    let mut db = self.connect().await?;
                    self.migrator(set)
                        .with_binary_version(format!("capstan rehearse ({})", self.release.name))
                        .up_with(
                            &mut db,
                            &UpOptions {
                                to,
                                contract: ContractPolicy::Fleet,
                                ..UpOptions::default()
                            },
                            &mut |_| {},
                        )
                        .await
                }
                .await;
                let duration = started.elapsed();
                match result {
                    Ok(r) if r.held_back.is_none() => Ok(Applied {
                        ran: r
                            .ran
                            .iter()
                            .map(|m| capstan_format::label(m.version, &m.name).to_string())
                            .collect(),
                        duration,
                        window: (started, Instant::now()),
                    }),
                    Ok(r) => {
                        let h = r.held_back.expect("checked");
                        Err(MigrationError::Failed {
                            command: shown,
                            output: format!(
                                "stopped before contract migration {}: {}; live instances: {}",
                                capstan_format::label(h.version, &h.name),
                                h.reason,
                                h.blockers
                                    .iter()
                                    .map(|b| b.describe())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            duration,
                        })
                    }
                    Err(e) => Err(MigrationError::Failed {
                        command: shown,
                        output: e.to_string(),
                        duration,
                    }),
                }
            }
            Migrations::Embedded => {
                let mut args: Vec<String> = ["migrate", "up", "--json"].map(String::from).to_vec();
                if let Some(v) = to {
                    args.extend(["--to".into(), v.to_string()]);
                }
                let (code, out, err, took) = self.run_binary(&args).await;
                if code == Some(0) {
                    let ran = serde_json::from_str::<serde_json::Value>(&out)
                        .ok()
                        .and_then(|v| v.get("ran").and_then(|r| r.as_array()).cloned())
                        .unwrap_or_default()
                        .iter()
                        .map(|r| {
                            capstan_format::label(
                                r["version"].as_u64().unwrap_or(0),
                                r["name"].as_str().unwrap_or(""),
                            )
                            .to_string()
                        })
                        .collect();
                    Ok(Applied {
                        ran,
                        duration: took,
                        window: (started, Instant::now()),
                    })
                } else {
                    Err(MigrationError::Failed {
                        command: self.shown(&args),
                        output: format!(
                            "exit {}\n{}{}",
                            code.map_or("by signal".into(), |c| c.to_string()),
                            err,
                            error_message(&out)
                        ),
                        duration: took,
                    })
                }
            }
        }
    }

    /// `down` to `to`: rolls back every migration newer than it.
    pub async fn down(&self, to: u64) -> Result<Applied, MigrationError> {
        let started = Instant::now();
        match &self.release.migrations {
            Migrations::Dir(dir) => {
                let set = Self::dir_set(dir)?;
                let result = async {
                    let mut db = self.connect().await?;
                    self.migrator(set)
                        .down(&mut db, Some(to), &mut |_| {})
                        .await
                }
                .await;
                let duration = started.elapsed();
                match result {
                    Ok(r) => Ok(Applied {
                        ran: r
                            .ran
                            .iter()
                            .map(|m| capstan_format::label(m.version, &m.name).to_string())
                            .collect(),
                        duration,
                        window: (started, Instant::now()),
                    }),
                    Err(MigrateError::NoDown(why)) => Err(MigrationError::NoDown(why.join("; "))),
                    Err(e) => Err(MigrationError::Failed {
                        command: format!(
                            "capstan migrate down{} --dir {} --to {to}",
                            self.service_flag(),
                            dir.display()
                        ),
                        output: e.to_string(),
                        duration,
                    }),
                }
            }
            Migrations::Embedded => {
                let args: Vec<String> = vec![
                    "migrate".into(),
                    "down".into(),
                    "--json".into(),
                    "--to".into(),
                    to.to_string(),
                ];
                let (code, out, err, took) = self.run_binary(&args).await;
                if code == Some(0) {
                    return Ok(Applied {
                        ran: Vec::new(),
                        duration: took,
                        window: (started, Instant::now()),
                    });
                }
                if let Ok(e) = serde_json::from_str::<ErrorJson>(&out) {
                    if e.error.kind == "no-down" {
                        return Err(MigrationError::NoDown(e.error.message));
                    }
                }
                Err(MigrationError::Failed {
                    command: self.shown(&args),
                    output: format!(
                        "exit {}\n{}{}",
                        code.map_or("by signal".into(), |c| c.to_string()),
                        err,
                        error_message(&out)
                    ),
                    duration: took,
                })
            }
        }
    }
}

fn error_message(stdout: &str) -> String {
    match serde_json::from_str::<ErrorJson>(stdout) {
        Ok(e) if !e.error.message.is_empty() => String::new(),
        _ => stdout.to_string(),
    }
}
