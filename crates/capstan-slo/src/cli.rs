//! `capstan slo`: check, status, rules, gate, deploys, record. Reads
//! `capstan.toml`'s `[slo]` table; prints; maps failures to exit codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::deploys::{Deploy, DeployKind, DeployLog};
use crate::math::{self, rfc3339, DeployMark, Evaluation, Method, Severity};
use crate::policy::{self, Policy, Verdict};
use crate::source::{self, Loaded, Prometheus, SourceError};
use crate::spec::{self, Budgeting, Indicator, Slo, SpecError, TimeWindow};

/// Exit code: success; for `gate`, ship.
pub const EXIT_OK: i32 = 0;
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
    /// Validate SLO files; every error names the file, line and field.
    Check {
        /// Files or directories (default: `slos/`).
        paths: Vec<PathBuf>,
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
}

impl Settings {
    /// Reads `config` (a missing file is the defaults).
    pub fn load(config: &Path) -> Result<Settings, String> {
        let c = capstan_migrate::config::Config::load(config, false).map_err(|e| e.to_string())?;
        let policy = match &c.slo.policy {
            Some(p) => {
                Some(Policy::from_config(p).map_err(|e| format!("{}: {e}", config.display()))?)
            }
            None => None,
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
        })
    }
}

/// One objective's status.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveStatus {
    /// The SLO's name.
    pub slo: String,
    /// Its service.
    pub service: String,
    /// The objective's display name, if any.
    pub objective: Option<String>,
    /// `capstan` or `prometheus`.
    pub source: &'static str,
    /// Like `30d rolling` or `1M calendar (Europe/Paris)`.
    pub window: String,
    /// The budgeting method.
    pub budgeting: Budgeting,
    /// Whether the budget is also shown in minutes of downtime.
    pub availability: bool,
    /// The numbers.
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

fn window_label(w: &TimeWindow) -> String {
    match w {
        TimeWindow::Rolling { minutes } => format!("{} rolling", policy::minutes_label(*minutes)),
        TimeWindow::Calendar {
            count, unit, zone, ..
        } => {
            let u = match unit {
                spec::CalendarUnit::Day => "d",
                spec::CalendarUnit::Week => "w",
                spec::CalendarUnit::Month => "M",
                spec::CalendarUnit::Quarter => "Q",
                spec::CalendarUnit::Year => "Y",
            };
            format!("{count}{u} calendar ({})", zone.name())
        }
    }
}

fn load_slos(paths: &[PathBuf]) -> Result<spec::Catalog, Vec<SpecError>> {
    let files = spec::collect_files(paths).map_err(|e| vec![e])?;
    spec::load_files(&files)
}

/// The document `capstan slo status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When the SLOs were evaluated, unix ms.
    pub at_ms: i64,
    /// The same, RFC 3339.
    pub at: String,
    /// Every objective, in file order.
    pub slos: Vec<ObjectiveStatus>,
}

/// `capstan slo status`: reads the SLO files `settings` names, brings the
/// deploy log up to date from the database (a failure is a warning on
/// stderr) and evaluates every objective (of `service`, when given) at
/// `now_ms`. `inspect` sees each SLO's counts once, before its objectives are
/// evaluated (the dashboard draws its charts from them). The CLI and the
/// dashboard both call this, so their numbers never disagree.
pub async fn status(
    settings: &Settings,
    service: Option<&str>,
    now_ms: i64,
    inspect: &mut (dyn FnMut(&Slo, &Loaded) + Send),
) -> Result<StatusReport, Failure2> {
    let c = load_slos(&settings.slo_paths).map_err(Failure2::Spec)?;
    sync_deploys(settings).await;
    let slos = evaluate_each(settings, &c.slos, service, now_ms, inspect)
        .await
        .map_err(Failure2::Source)?;
    Ok(StatusReport {
        at_ms: now_ms,
        at: rfc3339(now_ms),
        slos,
    })
}

/// Evaluates every objective of `slos` (of `service`, when given) at `now_ms`.
pub async fn evaluate_all(
    settings: &Settings,
    slos: &[Slo],
    service: Option<&str>,
    now_ms: i64,
) -> Result<Vec<ObjectiveStatus>, SourceError> {
    evaluate_each(settings, slos, service, now_ms, &mut |_, _| {}).await
}

async fn evaluate_each(
    settings: &Settings,
    slos: &[Slo],
    service: Option<&str>,
    now_ms: i64,
    inspect: &mut (dyn FnMut(&Slo, &Loaded) + Send),
) -> Result<Vec<ObjectiveStatus>, SourceError> {
    let log = DeployLog::open_existing(&settings.store).map_err(|e| SourceError::Store {
        path: settings.store.clone(),
        message: e.to_string(),
    })?;
    // Each SLO's period and the deploys in it (which spans attribution reads).
    let mut plans: Vec<Option<(math::Period, Vec<DeployMark>)>> = Vec::new();
    for slo in slos {
        if service.is_some_and(|s| s != slo.service) {
            plans.push(None);
            continue;
        }
        let period = math::period(&slo.window, now_ms);
        let deploys: Vec<DeployMark> = match &log {
            Some(log) => log
                .list(Some(&slo.service), period.start_ms, now_ms)
                .map_err(|e| SourceError::Store {
                    path: settings.store.clone(),
                    message: e.to_string(),
                })?
                .into_iter()
                .filter(|d| d.kind != DeployKind::Override)
                .map(|d| DeployMark {
                    time_ms: d.time_ms,
                    label: d.label(),
                })
                .collect(),
            None => Vec::new(),
        };
        plans.push(Some((period, deploys)));
    }
    let mut out = Vec::new();
    let mut prefetched = prefetch_store_counts(settings, slos, &plans);
    for (i, slo) in slos.iter().enumerate() {
        let Some((period, deploys)) = &plans[i] else {
            continue;
        };
        if let Indicator::Threshold { metric } = &slo.indicator {
            out.extend(evaluate_threshold(settings, slo, metric, period, deploys)?);
            continue;
        }
        let loaded = match slo.indicator.source_kind() {
            "capstan" => prefetched[i]
                .take()
                .expect("every capstan SLO was prefetched")?,
            _ => {
                let Some(url) = &settings.prometheus else {
                    return Err(SourceError::Unsupported(format!(
                        "SLO `{}` reads Prometheus: give --prometheus URL or [slo] prometheus",
                        slo.name
                    )));
                };
                let prom = Prometheus::new(url, settings.timeout)?;
                let spans = math::required_windows(period, deploys);
                Loaded::Spans(prom.spans(slo, &spans).await?)
            }
        };
        inspect(slo, &loaded);
        for o in &slo.objectives {
            let evaluation = math::evaluate(
                &loaded,
                Method::of(slo.budgeting, o),
                o.target,
                &slo.window,
                now_ms,
                deploys,
                slo.is_availability(),
            );
            out.push(ObjectiveStatus {
                slo: slo.name.clone(),
                service: slo.service.clone(),
                objective: o.display_name.clone(),
                source: slo.indicator.source_kind(),
                window: window_label(&slo.window),
                budgeting: slo.budgeting,
                availability: slo.is_availability(),
                evaluation,
            });
        }
    }
    Ok(out)
}

/// Evaluates each objective of a `thresholdMetric` SLO: the metric's
/// per-minute data points, good or bad against the objective's `op` and
/// `value`, judged in time slices (see [`crate::threshold`]).
fn evaluate_threshold(
    settings: &Settings,
    slo: &Slo,
    metric: &spec::Query,
    period: &math::Period,
    deploys: &[DeployMark],
) -> Result<Vec<ObjectiveStatus>, SourceError> {
    let spec::Query::Capstan { expr, service } = metric else {
        return Err(SourceError::Unsupported(format!(
            "SLO `{}`: a thresholdMetric is evaluated from the capstan event store only",
            slo.name
        )));
    };
    let parsed = crate::threshold::parse(expr)
        .map_err(|e| SourceError::Unsupported(format!("SLO `{}`: {e}", slo.name)))?;
    let now_ms = period.now_ms;
    let from = period
        .start_ms
        .min(now_ms - recent_minutes() * math::MINUTE_MS);
    let mut out = Vec::new();
    for o in &slo.objectives {
        let (Some(op), Some(value)) = (o.op, o.value) else {
            return Err(SourceError::Unsupported(format!(
                "SLO `{}`: a thresholdMetric objective needs `op` and `value`",
                slo.name
            )));
        };
        crate::threshold::check_objective(&parsed, op, value)
            .map_err(|e| SourceError::Unsupported(format!("SLO `{}`: {e}", slo.name)))?;
        let points =
            crate::threshold::series(&settings.store, service, &parsed, op, value, from, now_ms)?;
        let evaluation = math::evaluate(
            &points,
            Method::of(slo.budgeting, o),
            o.target,
            &slo.window,
            now_ms,
            deploys,
            false,
        );
        out.push(ObjectiveStatus {
            slo: slo.name.clone(),
            service: slo.service.clone(),
            objective: o.display_name.clone(),
            source: slo.indicator.source_kind(),
            window: window_label(&slo.window),
            budgeting: slo.budgeting,
            availability: false,
            evaluation,
        });
    }
    Ok(out)
}

/// The longest burn window, in minutes: the event store is read per minute
/// over this span before now; older spans are read as sums.
fn recent_minutes() -> i64 {
    math::BURN_WINDOWS
        .iter()
        .map(|&(_, m)| m)
        .max()
        .unwrap_or(1440)
}

/// Reads the event store for every capstan-sourced SLO that has a plan, on as
/// many threads as there are cores (each opens its own read connection).
fn prefetch_store_counts(
    settings: &Settings,
    slos: &[Slo],
    plans: &[Option<(math::Period, Vec<DeployMark>)>],
) -> Vec<Option<Result<Loaded, SourceError>>> {
    let wanted: Vec<usize> = (0..slos.len())
        .filter(|&i| {
            plans[i].is_some()
                && slos[i].indicator.source_kind() == "capstan"
                && matches!(slos[i].indicator, Indicator::Ratio { .. })
        })
        .collect();
    let mut out: Vec<Option<Result<Loaded, SourceError>>> = (0..slos.len()).map(|_| None).collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    for chunk in wanted.chunks(threads) {
        let results: Vec<(usize, Result<Loaded, SourceError>)> = std::thread::scope(|sc| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let slo = &slos[i];
                    let (period, deploys) = plans[i].as_ref().expect("wanted SLOs have a plan");
                    let recent = if settings.whole_series {
                        (period.now_ms - period.start_ms) / math::MINUTE_MS + 1
                    } else {
                        recent_minutes()
                    };
                    sc.spawn(move || {
                        (
                            i,
                            source::capstan_counts(&settings.store, slo, period, deploys, recent),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a store reader panicked"))
                .collect()
        });
        for (i, r) in results {
            out[i] = Some(r);
        }
    }
    out
}

/// Imports migrations applied and releases seen in the fleet registry of
/// `database` into the deploy log. Returns how many rows were added.
pub async fn import_deploys(database: &str, log: &DeployLog) -> Result<usize, String> {
    let url = capstan_migrate::DatabaseUrl::parse(database).map_err(|e| e.to_string())?;
    let mut db = capstan_migrate::migrator::Database::connect_read_only(&url)
        .await
        .map_err(|e| e.to_string())?;
    let parse = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .ok()
    };
    let mut added = 0;
    for row in db.history().await.map_err(|e| e.to_string())? {
        if row.is_dirty() {
            continue;
        }
        let Some(t) = parse(&row.applied_at) else {
            continue;
        };
        let d = Deploy {
            time_ms: t,
            service: String::new(),
            kind: DeployKind::Migration,
            subject: row.version.to_string(),
            detail: format!("{}, {}", row.name, row.phase),
        };
        if log
            .record(
                &d,
                Some(&format!("migration:{}:{}", row.version, row.applied_at)),
            )
            .map_err(|e| e.to_string())?
        {
            added += 1;
        }
    }
    // The registry may not exist yet (no instance ever registered).
    if let Ok(rows) = db.driver().fleet_list().await {
        let mut first: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for r in rows {
            if let Some(t) = parse(&r.started_at) {
                let e = first
                    .entry((r.instance.app.clone(), r.instance.version.clone()))
                    .or_insert(t);
                *e = (*e).min(t);
            }
        }
        for ((app, version), t) in first {
            let d = Deploy {
                time_ms: t,
                service: String::new(),
                kind: DeployKind::Release,
                subject: format!("{app} {version}"),
                detail: String::new(),
            };
            if log
                .record(&d, Some(&format!("release:{app}:{version}")))
                .map_err(|e| e.to_string())?
            {
                added += 1;
            }
        }
    }
    Ok(added)
}

/// The gate's decision for the SLOs `settings` names, at `now_ms`.
pub async fn gate(
    settings: &Settings,
    policy: &Policy,
    service: Option<&str>,
    now_ms: i64,
) -> Result<(Verdict, Vec<ObjectiveStatus>), Failure2> {
    let catalog = load_slos(&settings.slo_paths).map_err(Failure2::Spec)?;
    let slos: Vec<Slo> = catalog
        .slos
        .into_iter()
        .filter(|s| policy.covers(&s.service))
        .collect();
    let statuses = evaluate_all(settings, &slos, service, now_ms)
        .await
        .map_err(Failure2::Source)?;
    let reasons: Vec<String> = statuses
        .iter()
        .filter_map(|s| policy::freeze_reason(policy, &s.slo, &s.evaluation))
        .collect();
    let over = match DeployLog::open_existing(&settings.store).map_err(|e| {
        Failure2::Source(SourceError::Store {
            path: settings.store.clone(),
            message: e.to_string(),
        })
    })? {
        Some(log) => log
            .override_since(service, now_ms - policy.override_for_ms)
            .map_err(|e| {
                Failure2::Source(SourceError::Store {
                    path: settings.store.clone(),
                    message: e.to_string(),
                })
            })?,
        None => None,
    };
    Ok((policy::decide(reasons, over), statuses))
}

/// Why the gate could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure2 {
    /// The SLO files are invalid.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Spec(Vec<SpecError>),
    /// A source failed.
    #[error(transparent)]
    Source(SourceError),
}

/// The gate of `capstan migrate up` before a contract migration: when
/// `[slo.policy]` is configured in `config`, `Ok(Some(reason))` freezes.
/// Runs on its own thread and runtime, so it can be called from async code.
pub fn contract_gate(config: Option<&Path>) -> Result<Option<String>, String> {
    let Some(config) = config else {
        return Ok(None);
    };
    let settings = Settings::load(config)?;
    let Some(policy) = settings.policy.clone() else {
        return Ok(None);
    };
    let now = chrono::Utc::now().timestamp_millis();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(gate(&settings, &policy, None, now))
                .map_err(|e| format!("error budget gate: {e}"))
        })
        .join()
        .map_err(|_| "error budget gate panicked".to_string())?
    })?;
    match result.0 {
        Verdict::Ship => Ok(None),
        Verdict::Overridden { reasons, by } => {
            eprintln!(
                "warning: error budget gate overridden at {} ({}): {}",
                rfc3339(by.time_ms),
                by.detail,
                reasons.join("; ")
            );
            Ok(None)
        }
        Verdict::Frozen { reasons } => Ok(Some(format!(
            "deploys are frozen by the error budget policy: {}; override with `capstan slo gate --override \"reason\"`",
            reasons.join("; ")
        ))),
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
    settings.timeout = capstan_migrate::source::parse_duration(&args.timeout)
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
        SloCommand::Check { paths } => {
            let paths = if paths.is_empty() {
                settings.slo_paths.clone()
            } else {
                paths
            };
            let files = spec::collect_files(&paths).map_err(|e| spec_failure(vec![e]))?;
            let c = spec::load_files(&files).map_err(spec_failure)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ok": true, "files": files, "slos": c.slos.iter().map(|s| &s.name).collect::<Vec<_>>(), "slis": c.slis})
                );
            } else {
                println!(
                    "ok: {} SLO(s) and {} SLI(s) in {} file(s)",
                    c.slos.len(),
                    c.slis.len(),
                    files.len()
                );
            }
            Ok(EXIT_OK)
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
                    Failure2::Spec(errs) => spec_failure(errs),
                    Failure2::Source(s) => Failure::from(s),
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
                    Failure2::Spec(errs) => spec_failure(errs),
                    Failure2::Source(s) => Failure::from(s),
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
            let d = capstan_migrate::source::parse_duration(&since)
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

/// Imports deploys from the configured database; a failure is a warning.
async fn sync_deploys(settings: &Settings) {
    let Some(url) = &settings.database else {
        return;
    };
    let log = match DeployLog::open(&settings.store) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warning: deploy log not updated: {e}");
            return;
        }
    };
    if let Err(e) = import_deploys(url, &log).await {
        eprintln!("warning: deploy log not updated from the database: {e}");
    }
}

fn pct(x: f64) -> String {
    if x.is_infinite() {
        "∞".into()
    } else {
        format!("{:.2} %", x * 100.0)
    }
}

/// The human rendering of `slo status`.
pub fn render_status(statuses: &[ObjectiveStatus]) -> String {
    let mut s = String::new();
    if statuses.is_empty() {
        s.push_str("no SLOs\n");
    }
    for st in statuses {
        let e = &st.evaluation;
        s.push_str(&format!(
            "{}{} ({}): objective {} over {}, {:?}, {}\n",
            st.slo,
            st.objective
                .as_ref()
                .map(|o| format!(" / {o}"))
                .unwrap_or_default(),
            st.service,
            pct(e.target),
            st.window,
            st.budgeting,
            st.source
        ));
        let sli = e.sli.map(pct).unwrap_or_else(|| "no events".into());
        let (bad, total) = (e.counts.bad, e.counts.total);
        s.push_str(&match st.budgeting {
            Budgeting::Occurrences => {
                format!("  SLI: {sli}  ({bad:.0} bad of {total:.0} events)\n")
            }
            Budgeting::Timeslices => format!("  SLI: {sli}  ({bad:.0} bad of {total:.0} slices)\n"),
            Budgeting::RatioTimeslices => {
                format!("  SLI: {sli}  (mean over {total:.0} slices with events)\n")
            }
        });
        let minutes = match (e.budget.minutes_left, e.budget.minutes_total) {
            (Some(l), Some(t)) => format!(", {l:.1} of {t:.1} minutes of downtime left"),
            _ => String::new(),
        };
        s.push_str(&format!(
            "  budget: {} left ({} consumed){minutes}\n",
            pct(e.budget.remaining),
            pct(e.budget.consumed)
        ));
        s.push_str("  burn:");
        for b in &e.burn_rates {
            s.push_str(&format!(" {} {:.2}x", b.window, b.rate));
        }
        s.push('\n');
        match e.alert.state {
            Severity::Ok => s.push_str("  alert: ok\n"),
            sev => {
                let c = &e.alert.firing[0];
                s.push_str(&format!(
                    "  alert: {} ({:.1}x over {} and {})\n",
                    if sev == Severity::Page {
                        "PAGE"
                    } else {
                        "ticket"
                    },
                    c.factor,
                    policy::minutes_label(c.long_minutes),
                    policy::minutes_label(c.short_minutes)
                ));
            }
        }
        let f = &e.forecast;
        s.push_str(&match (f.exhausted, f.exhausted_at_ms) {
            (true, _) => "  forecast: budget exhausted\n".to_string(),
            (false, None) => "  forecast: not burning (1h burn rate 0)\n".to_string(),
            (false, Some(t)) => format!(
                "  forecast: budget runs out {} at the 1h burn rate ({:.2}x){}\n",
                rfc3339(t),
                f.burn_rate,
                if t > e.period.end_ms && e.period.end_ms > e.period.now_ms {
                    ", after this period ends"
                } else {
                    ""
                }
            ),
        });
        if !e.deploys.is_empty() {
            s.push_str("  budget spent in the hour after each deploy:\n");
            for d in &e.deploys {
                s.push_str(&format!(
                    "    {}  {}: {} of the budget{}\n",
                    rfc3339(d.deploy.time_ms),
                    d.deploy.label,
                    pct(d.budget_share),
                    d.minutes
                        .map(|m| format!(" ({m:.1} min)"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    s
}
