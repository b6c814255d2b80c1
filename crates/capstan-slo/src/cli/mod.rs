//! `capstan slo`: check, status, rules, gate, deploys, record. Reads
//! `capstan.toml`'s `[slo]` table; prints; maps failures to exit codes.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::deploys::{Deploy, DeployKind, DeployLog};
use crate::math::rfc3339;
use crate::policy::Verdict;
use crate::source::SourceError;
use crate::spec::{self, SpecError};

mod deploys;
mod gate;
mod settings;
mod status;
mod threshold;

pub use deploys::import_deploys;
use deploys::sync_deploys;
pub use gate::{contract_gate, gate, StatusError};
pub use settings::Settings;
use status::load_slos;
pub use status::{evaluate_all, render_status, status, ObjectiveStatus, StatusReport};

/// Exit code: success; for `gate`, ship.
pub const EXIT_OK: i32 = 0;
/// Exit code: `check --deny-warnings`: the files are valid but the
/// dependency check warned.
pub const EXIT_WARNINGS: i32 = 1;
/// Exit code: usage (unknown flag, bad `--at`).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: bad input: an SLO file or `capstan.toml` is invalid; nothing was changed.
pub const EXIT_BAD_INPUT: i32 = 3;
/// Exit code: a source could not answer (event store unreadable, Prometheus
/// unreachable or refusing the query).
pub const EXIT_SOURCE: i32 = 4;
/// Exit code: `gate`: frozen by the error budget policy.
pub const EXIT_FROZEN: i32 = capstan_migrate::cli::EXIT_FROZEN;

/// `capstan slo`: service level objectives, error budgets and the budget gate.
#[derive(Debug, Args)]
pub struct SloArgs {
    #[command(subcommand)]
    command: SloCommand,
    /// Project settings (`[slo]`, `[slo.policy]`, `database_url`).
    #[arg(long, short = 'c', global = true, default_value = "capstan.toml")]
    config: PathBuf,
    /// SLO files or directories (default: `[slo] dir`, else `slos/`).
    #[arg(long = "slos", global = true, value_name = "PATH")]
    slos: Vec<PathBuf>,
    /// The event store file (default: `[slo] store`, else `capstan-events.db`).
    #[arg(long, global = true, value_name = "FILE")]
    store: Option<PathBuf>,
    /// Prometheus base URL for Prometheus-sourced SLOs (default: `[slo] prometheus`).
    #[arg(long, global = true, value_name = "URL")]
    prometheus: Option<String>,
    /// Bound on every Prometheus request, connection included.
    #[arg(long, global = true, default_value = "10s")]
    timeout: String,
    /// Evaluate as of this time (RFC 3339) instead of now.
    #[arg(long, global = true, value_name = "TIME")]
    at: Option<String>,
    /// Database whose migration history and fleet registry feed the deploy
    /// log (default: `DATABASE_URL`, else `database_url` in `capstan.toml`).
    #[arg(long, global = true, value_name = "URL")]
    database: Option<String>,
    /// Print JSON (see docs/slo.md).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum SloCommand {
    /// Validate SLO files; every error names the file, line and field. Warns
    /// when an objective promises more than its service's hard dependencies
    /// (`depends_on` in `capstan.toml`) publish.
    Check {
        /// Files or directories (default: `slos/`).
        paths: Vec<PathBuf>,
        /// Exit 1 when there are warnings.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Every SLO: SLI, budget left, burn rates, alert state, forecast, budget spent per deploy.
    Status {
        /// Only the SLOs of this service.
        #[arg(long)]
        service: Option<String>,
    },
    /// Prometheus recording and alerting rules (Sloth's names) for Prometheus-sourced SLOs.
    Rules {
        /// Files or directories (default: `slos/`).
        paths: Vec<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// The error budget policy: exit 0 to ship, 10 when frozen.
    Gate {
        /// Only the SLOs of this service.
        #[arg(long)]
        service: Option<String>,
        /// Go ahead although frozen; the reason is recorded in the deploy log.
        #[arg(long = "override", value_name = "REASON")]
        override_reason: Option<String>,
    },
    /// The deploy log: releases, migrations, rollout steps, rollbacks, overrides.
    Deploys {
        /// Only this service's deploys (and those for every service).
        #[arg(long)]
        service: Option<String>,
        /// How far back, like `30d`.
        #[arg(long, default_value = "30d")]
        since: String,
    },
    /// Record a deploy event (a rollout step, a rollback) in the deploy log.
    Record {
        /// rollout, rollback or release.
        #[arg(value_parser = ["rollout", "rollback", "release"])]
        kind: String,
        /// What was deployed, like `2.1.0 25%`.
        subject: String,
        /// The service (default: every service).
        #[arg(long, default_value = "")]
        service: String,
        /// A note.
        #[arg(long, default_value = "")]
        detail: String,
    },
}

/// A failure with its exit code.
#[derive(Debug)]
struct Failure {
    code: i32,
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(code: i32, kind: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            kind,
            message: message.into(),
        }
    }
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Unsupported(m) => Failure::new(EXIT_BAD_INPUT, "bad-input", m),
            other => Failure::new(EXIT_SOURCE, "source", other.to_string()),
        }
    }
}

impl From<crate::deploys::DeployLogError> for Failure {
    fn from(e: crate::deploys::DeployLogError) -> Self {
        Failure::new(EXIT_SOURCE, "source", e.to_string())
    }
}

fn parse_at(at: &Option<String>) -> Result<i64, Failure> {
    match at {
        None => Ok(chrono::Utc::now().timestamp_millis()),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .map_err(|e| {
                Failure::new(
                    EXIT_USAGE,
                    "usage",
                    format!("--at `{s}`: {e}; use RFC 3339 like 2026-11-30T12:00:00Z"),
                )
            }),
    }
}

/// Runs `capstan slo`; returns the exit code.
pub async fn run(args: SloArgs) -> i32 {
    let json = args.json;
    match run_inner(args).await {
        Ok(code) => code,
        Err(f) => {
            eprintln!("error: {}", f.message);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": {"kind": f.kind, "message": f.message, "exit_code": f.code}})
                );
            }
            f.code
        }
    }
}

async fn run_inner(args: SloArgs) -> Result<i32, Failure> {
    let mut settings =
        Settings::load(&args.config).map_err(|e| Failure::new(EXIT_BAD_INPUT, "bad-input", e))?;
    if !args.slos.is_empty() {
        settings.slo_paths = args.slos.clone();
    }
    if let Some(s) = &args.store {
        settings.store = s.clone();
    }
    if args.prometheus.is_some() {
        settings.prometheus = args.prometheus.clone();
    }
    if args.database.is_some() {
        settings.database = args.database.clone();
    }
    settings.timeout = capstan_migrate::parse_duration(&args.timeout)
        .map_err(|e| Failure::new(EXIT_USAGE, "usage", format!("--timeout: {e}")))?;
    let now = parse_at(&args.at)?;
    let json = args.json;
    let spec_failure = |errs: Vec<SpecError>| {
        for e in &errs {
            eprintln!("{e}");
        }
        if json {
            println!("{}", serde_json::json!({"ok": false, "errors": errs}));
        }
        Failure::new(
            EXIT_BAD_INPUT,
            "bad-input",
            format!("{} error(s) in SLO files; nothing was changed", errs.len()),
        )
    };
    match args.command {
        SloCommand::Check {
            paths,
            deny_warnings,
        } => {
            let paths = if paths.is_empty() {
                settings.slo_paths.clone()
            } else {
                paths
            };
            let files = spec::collect_files(&paths).map_err(|e| spec_failure(vec![e]))?;
            let c = spec::load_files(&files).map_err(spec_failure)?;
            let warnings = crate::deps::check(&settings.services, &settings.config, &c.slos);
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "files": files, "slos": c.slos.iter().map(|s| &s.name).collect::<Vec<_>>(), "slis": c.slis, "warnings": warnings})
                );
            } else {
                println!(
                    "ok: {} SLO(s) and {} SLI(s) in {} file(s){}",
                    c.slos.len(),
                    c.slis.len(),
                    files.len(),
                    if warnings.is_empty() {
                        String::new()
                    } else {
                        format!(", {} warning(s)", warnings.len())
                    }
                );
            }
            Ok(if deny_warnings && !warnings.is_empty() {
                EXIT_WARNINGS
            } else {
                EXIT_OK
            })
        }
        SloCommand::Rules { paths, output } => {
            let paths = if paths.is_empty() {
                settings.slo_paths.clone()
            } else {
                paths
            };
            let c = load_slos(&paths).map_err(spec_failure)?;
            let (text, skipped) = crate::rules::render(&c.slos);
            for s in &skipped {
                eprintln!("note: SLO {s} does not read Prometheus; no rules for it");
            }
            match output {
                Some(p) => std::fs::write(&p, text).map_err(|e| {
                    Failure::new(
                        EXIT_BAD_INPUT,
                        "bad-input",
                        format!("cannot write {}: {e}", p.display()),
                    )
                })?,
                None => print!("{text}"),
            }
            Ok(EXIT_OK)
        }
        SloCommand::Status { service } => {
            let report = status(&settings, service.as_deref(), now, &mut |_, _| {})
                .await
                .map_err(|e| match e {
                    StatusError::Spec(errs) => spec_failure(errs),
                    StatusError::Source(s) => Failure::from(s),
                })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serializable")
                );
            } else {
                print!("{}", render_status(&report.slos));
            }
            Ok(EXIT_OK)
        }
        SloCommand::Gate {
            service,
            override_reason,
        } => {
            let policy = settings.policy.clone().unwrap_or_default();
            sync_deploys(&settings).await;
            let (verdict, _) = gate(&settings, &policy, service.as_deref(), now)
                .await
                .map_err(|e| match e {
                    StatusError::Spec(errs) => spec_failure(errs),
                    StatusError::Source(s) => Failure::from(s),
                })?;
            let verdict = match (verdict, override_reason) {
                (Verdict::Frozen { reasons }, Some(reason)) => {
                    if reason.trim().is_empty() {
                        return Err(Failure::new(
                            EXIT_USAGE,
                            "usage",
                            "--override needs a reason",
                        ));
                    }
                    let log = DeployLog::open(&settings.store)?;
                    let d = Deploy {
                        time_ms: now,
                        service: service.clone().unwrap_or_default(),
                        kind: DeployKind::Override,
                        subject: "gate".into(),
                        detail: format!("{reason} (over: {})", reasons.join("; ")),
                    };
                    log.record(&d, None)?;
                    Verdict::Overridden { reasons, by: d }
                }
                (v, _) => v,
            };
            if json {
                println!("{}", serde_json::to_string(&verdict).expect("serializable"));
            }
            Ok(match verdict {
                Verdict::Ship => {
                    if !json {
                        println!("ship: every error budget is within the policy");
                    }
                    EXIT_OK
                }
                Verdict::Overridden { reasons, by } => {
                    if !json {
                        println!(
                            "ship (overridden at {}: {}): {}",
                            rfc3339(by.time_ms),
                            by.detail,
                            reasons.join("; ")
                        );
                    }
                    EXIT_OK
                }
                Verdict::Frozen { reasons } => {
                    for r in &reasons {
                        eprintln!("frozen: {r}");
                    }
                    if !json {
                        eprintln!("deploys are frozen by the error budget policy; override with --override \"reason\" (recorded in the deploy log)");
                    }
                    EXIT_FROZEN
                }
            })
        }
        SloCommand::Deploys { service, since } => {
            let d = capstan_migrate::parse_duration(&since)
                .map_err(|e| Failure::new(EXIT_USAGE, "usage", format!("--since: {e}")))?;
            sync_deploys(&settings).await;
            let rows = match DeployLog::open_existing(&settings.store)? {
                Some(log) => log.list(service.as_deref(), now - d.as_millis() as i64, i64::MAX)?,
                None => Vec::new(),
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).expect("serializable")
                );
            } else {
                for r in &rows {
                    println!(
                        "{}  {:<9} {:<12} {}{}",
                        rfc3339(r.time_ms),
                        r.kind.as_str(),
                        if r.service.is_empty() {
                            "*"
                        } else {
                            &r.service
                        },
                        r.subject,
                        if r.detail.is_empty() {
                            String::new()
                        } else {
                            format!("  ({})", r.detail)
                        }
                    );
                }
                if rows.is_empty() {
                    println!(
                        "no deploys recorded since {}",
                        rfc3339(now - d.as_millis() as i64)
                    );
                }
            }
            Ok(EXIT_OK)
        }
        SloCommand::Record {
            kind,
            subject,
            service,
            detail,
        } => {
            let kind = match kind.as_str() {
                "rollout" => DeployKind::Rollout,
                "rollback" => DeployKind::Rollback,
                _ => DeployKind::Release,
            };
            let log = DeployLog::open(&settings.store)?;
            log.record(
                &Deploy {
                    time_ms: now,
                    service,
                    kind,
                    subject,
                    detail,
                },
                None,
            )?;
            Ok(EXIT_OK)
        }
    }
}
