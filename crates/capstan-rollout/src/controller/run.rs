//! The controller loop: gates, judge inputs from the event store, the judge,
//! [`reconcile`], the proxy's admin API, the deploy log and the state file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capstan_slo::{Deploy, DeployKind, DeployLog};
use serde_json::Value;

use super::admin::{ProxyAdmin, Route};
use super::plan::Plan;
use super::store::{StateStore, StoreError};
use super::window::Window;
use super::{
    keep_report, reconcile, Action, Judged, LogEntry, LogKind, Observation, Phase, State, Target,
};
use crate::judge::{self, Counts, Interval, MetricSpec, Observed, Rule, Samples, Thresholds};

/// The loop could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The state file failed.
    #[error(transparent)]
    State(#[from] StoreError),
    /// The deploy log failed.
    #[error(transparent)]
    DeployLog(#[from] capstan_slo::DeployLogError),
    /// The event store failed.
    #[error("event store {}: {message}", path.display())]
    Events {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The proxy's admin API failed or refused.
    #[error("proxy admin {url}: {message}")]
    Proxy {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// A gate (the SLO budget, the schema, the fleet) refused, or could not decide.
    #[error("gate refused: {0}")]
    GateRefused(String),
    /// The plan does not fit the proxy's table.
    #[error("{0}")]
    Plan(String),
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How `run` ends.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The final state.
    pub state: State,
}

/// Options of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Start despite a refusing budget gate, with this reason (recorded).
    pub override_reason: Option<String>,
    /// Print decisions to stderr.
    pub verbose: bool,
}

/// The judge's inputs over `[from_ms, to_ms)` for `canary` against `baseline`.
pub fn observe(
    store: &capstan_events::Store,
    service: &str,
    baseline: &str,
    canary: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<(Counts, Counts, Vec<f64>, Vec<f64>), capstan_events::Error> {
    let mut c = Counts {
        errors: 0,
        total: 0,
    };
    let mut b = c;
    let (mut cl, mut bl) = (Vec::new(), Vec::new());
    store.scan(from_ms, to_ms, Some(service), |se| {
        let e = se.event;
        let (counts, lat) = if e.release == canary {
            (&mut c, &mut cl)
        } else if e.release == baseline {
            (&mut b, &mut bl)
        } else {
            return true;
        };
        // Judged like the controller's window: a body the client broke off
        // says nothing about the release.
        if capstan_events::is_client_body(e.error.as_deref()) {
            return true;
        }
        counts.total += 1;
        if capstan_events::is_release_error(e.status, e.error.as_deref()) {
            counts.errors += 1;
        }
        if e.duration_ms.is_finite() && e.duration_ms >= 0.0 {
            lat.push(e.duration_ms);
        }
        true
    })?;
    Ok((c, b, cl, bl))
}

/// Judges the canary against the baseline over what `window` has read (the step
/// so far, up to `at_ms`) with the plan's tolerances, `min_requests` a side and
/// significance level `alpha` (the plan's for an analysis, a stricter one for
/// an early look).
pub fn judge_interval(
    plan: &Plan,
    state: &State,
    window: &Window,
    min_requests: u64,
    alpha: f64,
    at_ms: i64,
) -> (Judged, judge::Report) {
    let a = &plan.analysis;
    let from_ms = window.from_ms();
    let target = plan.steps[state.step.min(plan.steps.len() - 1)].target;
    if let Target::Shadow { .. } = target {
        let m = window.mirrored.clone();
        let (c, b, mismatches) = (m.canary(), m.baseline(), m.mismatches);
        let (specs, observed) = m.judge_inputs(a, min_requests);
        let detail = format!(
            "shadow: {} mirrored requests, {} errors ({:.2} %), {mismatches} status mismatches; baseline {} errors ({:.2} %)",
            c.total,
            c.errors,
            c.ratio() * 100.0,
            b.errors,
            b.ratio() * 100.0
        );
        return verdict(&specs, &observed, alpha, c, b, from_ms, at_ms, &detail);
    }
    let (c, b) = (window.canary_counts, window.baseline_counts);
    let (cl, bl) = (&window.canary_ms, &window.baseline_ms);
    let specs = [
        MetricSpec {
            name: "errors".into(),
            group: "availability".into(),
            critical: true,
            rule: Rule::ErrorRatio {
                direction: judge::Direction::Increase,
                min_requests: min_requests.max(1),
                relative_tolerance: a.relative_tolerance,
                absolute_tolerance: a.absolute_tolerance,
            },
        },
        MetricSpec {
            name: "latency".into(),
            group: "latency".into(),
            critical: true,
            rule: Rule::Latency {
                min_samples: min_requests.max(10),
                shift_tolerance: a.shift_tolerance,
                p99_tolerance: a.p99_tolerance,
            },
        },
    ];
    let latency = match (
        Samples::from_values(cl.clone()),
        Samples::from_values(bl.clone()),
    ) {
        (Ok(canary), Ok(baseline)) => Observed::Samples { canary, baseline },
        (Err(e), _) | (_, Err(e)) => Observed::Missing {
            reason: e.to_string(),
        },
    };
    let observed = [
        Observed::Counts {
            canary: c,
            baseline: b,
        },
        latency,
    ];
    let detail = format!(
        "canary {} requests, {} errors ({:.2} %); baseline {} requests, {} errors ({:.2} %)",
        c.total,
        c.errors,
        c.ratio() * 100.0,
        b.total,
        b.errors,
        b.ratio() * 100.0,
    );
    verdict(&specs, &observed, alpha, c, b, from_ms, at_ms, &detail)
}

/// Runs the judge over `[from_ms, at_ms)` and summarises its verdict for the
/// log, `detail` saying what was compared.
#[allow(clippy::too_many_arguments)]
fn verdict(
    specs: &[MetricSpec],
    observed: &[Observed],
    alpha: f64,
    c: Counts,
    b: Counts,
    from_ms: i64,
    at_ms: i64,
    detail: &str,
) -> (Judged, judge::Report) {
    let thresholds = Thresholds {
        alpha,
        ..Thresholds::default()
    };
    let report = judge::judge(
        specs,
        observed,
        &BTreeMap::new(),
        &thresholds,
        Interval {
            from_ms,
            to_ms: at_ms,
            at_ms,
        },
    );
    let summary = format!(
        "{} (score {:.0}): {}; {detail}",
        serde_json::to_value(report.verdict)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        report.score,
        report.reason,
    );
    (
        Judged {
            verdict: report.verdict,
            from_ms,
            at_ms,
            canary_requests: c.total,
            baseline_requests: b.total,
            canary_errors: c.errors,
            summary,
        },
        report,
    )
}

fn write_log(
    log: &DeployLog,
    state: &State,
    entries: &[LogEntry],
    now: i64,
) -> Result<(), RunError> {
    for e in entries {
        let kind = match e.kind {
            LogKind::Rollback => DeployKind::Rollback,
            _ => DeployKind::Rollout,
        };
        let kind_word = serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        log.record(
            &Deploy {
                time_ms: now,
                service: state.service.clone(),
                kind,
                subject: e.subject.clone(),
                detail: format!("{kind_word}: {}", e.detail),
            },
            None,
        )?;
    }
    Ok(())
}

/// The gates of `plan` for `baseline` → canary: `None` when open, else why not.
async fn ask_gates(plan: &Plan, baseline: &str) -> Option<String> {
    let cfg = super::gates::GateConfig {
        slo_config: plan.slo_config.clone(),
        database: plan.database.clone(),
        app: plan.app.clone(),
        canary_migrations: plan.canary_migrations.clone(),
    };
    let closed = super::gates::ask(&cfg, &plan.service, baseline, &plan.canary).await;
    (!closed.is_empty()).then(|| closed.join("; "))
}

/// Runs the rollout of `plan` until it is promoted, rolled back or needs a
/// human. Resumes a rollout of the same canary left unfinished in the state file
/// (at its step, data counted afresh).
pub async fn run(plan: &Plan, opts: &RunOptions) -> Result<Finished, RunError> {
    let states = StateStore::open(&plan.state)?;
    let log = DeployLog::open(&plan.events)?;
    let events = capstan_events::Store::open(&plan.events).map_err(|e| RunError::Events {
        path: plan.events.clone(),
        message: e.to_string(),
    })?;
    let proxy = ProxyAdmin::new(&plan.admin_url, &plan.token, plan.timeout)?;
    let say = |s: &str| {
        if opts.verbose {
            eprintln!("capstan rollout: {s}");
        }
    };

    let now = now_ms();
    let existing = states
        .load(&plan.service)?
        .filter(|s| !s.phase.is_terminal());
    if let Some(other) = existing.as_ref().filter(|s| s.canary != plan.canary) {
        return Err(RunError::Plan(format!(
            "{} has an unfinished rollout of {} ({}); abort it first",
            other.service,
            other.canary,
            other.phase.name()
        )));
    }
    let mut state = match existing {
        Some(s) => {
            let s = s.resumed(now);
            let entry = LogEntry {
                kind: LogKind::Control,
                subject: format!("{} step {}", s.canary, s.step + 1),
                detail: "controller restarted: resuming the step, data counted afresh".into(),
            };
            write_log(&log, &s, &[entry], now)?;
            say(&format!("resuming {} at step {}", s.canary, s.step + 1));
            s
        }
        None => {
            let baseline = match &plan.baseline {
                Some(b) => b.clone(),
                None => baseline_from(&proxy.routing().await?, &plan.canary)?,
            };
            if plan.slo_config.is_some() {
                if let Some(reason) = &opts.override_reason {
                    log.record(
                        &Deploy {
                            time_ms: now,
                            service: plan.service.clone(),
                            kind: DeployKind::Override,
                            subject: plan.canary.clone(),
                            detail: reason.clone(),
                        },
                        None,
                    )?;
                }
            }
            if let Some(refused) = ask_gates(plan, &baseline).await {
                return Err(RunError::GateRefused(refused));
            }
            states.clear_commands(&plan.service, now)?;
            let s = State::new(&plan.service, &baseline, &plan.canary, now);
            let entry = LogEntry {
                kind: LogKind::Step,
                subject: format!("{} step 1 ({})", s.canary, plan.steps[0].target.label()),
                detail: format!("rollout started against {baseline}"),
            };
            write_log(&log, &s, &[entry], now)?;
            s
        }
    };
    states.save(&state)?;
    if state.phase == Phase::Running {
        proxy
            .apply(&state, Route::Step(plan.steps[state.step].target))
            .await?;
    }

    let mut next_analysis = now + plan.steps[state.step].interval_ms as i64;
    let mut next_look = now + look_every(plan, state.step);
    let mut window: Option<Window> = None;
    loop {
        if state.phase.is_terminal() {
            return Ok(Finished { state });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = now_ms();
        let command = states.take_command(&state.service, now)?;
        // Stopped for a human: a queued command (resume, promote, abort) goes on,
        // otherwise the controller hands over.
        if command.is_none() && matches!(state.phase, Phase::NeedsHuman { .. }) {
            return Ok(Finished { state });
        }
        let running = command.is_none() && state.phase == Phase::Running;
        let look = if running && now >= next_analysis {
            Some(Look::Analysis)
        } else if running && plan.analysis.early_looks > 0 && now >= next_look {
            Some(Look::Early)
        } else {
            None
        };
        let mut report = None;
        let judged = if let Some(look) = look {
            let step = plan.steps[state.step];
            if look == Look::Analysis {
                next_analysis = now + step.interval_ms as i64;
            }
            next_look = now + look_every(plan, state.step);
            let alpha = match look {
                Look::Analysis => plan.analysis.alpha,
                Look::Early => plan.analysis.alpha / f64::from(plan.analysis.early_looks + 1),
            };
            let store = events.clone();
            let p = plan.clone();
            let s = state.clone();
            let mut w = match window.take() {
                Some(w) if w.is_for(&state) => w,
                _ => Window::new(&state),
            };
            let (w, (mut j, r)) = tokio::task::spawn_blocking(move || {
                w.catch_up(&store)?;
                let judged = judge_interval(&p, &s, &w, step.min_requests, alpha, now);
                Ok::<_, capstan_events::Error>((w, judged))
            })
            .await
            .map_err(|e| RunError::Plan(format!("judge task: {e}")))?
            .map_err(|e| RunError::Events {
                path: plan.events.clone(),
                message: e.to_string(),
            })?;
            window = Some(w);
            let acts = match look {
                Look::Analysis => true,
                Look::Early => {
                    j.summary = format!("early look at alpha {alpha}: {}", j.summary);
                    // An early look only ever rolls back; anything else waits
                    // for the analysis at the end of the interval.
                    let obs = Observation::judged(&j);
                    reconcile(&state, &plan.steps, &plan.limits, &obs, now).action
                        == Action::Rollback
                }
            };
            if !acts {
                None
            } else {
                say(&format!("step {}: {}", state.step + 1, j.summary));
                report = Some(r);
                Some(j)
            }
        } else {
            None
        };
        // Gates first: asked with every pass, which may move the rollout on.
        let gate_refused = match &judged {
            Some(j) if j.verdict == crate::judge::Verdict::Pass => {
                ask_gates(plan, &state.baseline).await
            }
            _ => None,
        };
        if command.is_none() && judged.is_none() {
            continue;
        }
        let obs = Observation {
            command,
            judged,
            gate_refused,
        };
        let mut d = reconcile(&state, &plan.steps, &plan.limits, &obs, now);
        if let Some(r) = report {
            keep_report(&state, &mut d, r);
        }
        states.save(&d.state)?;
        write_log(&log, &d.state, &d.log, now)?;
        for e in &d.log {
            say(&format!("{}: {}", e.subject, e.detail));
        }
        let moved = d.state.step != state.step;
        state = d.state;
        match d.action {
            Action::None => {}
            Action::Apply { step } => {
                proxy
                    .apply(&state, Route::Step(plan.steps[step].target))
                    .await?;
            }
            Action::Promote => proxy.apply(&state, Route::Promoted).await?,
            Action::Rollback => {
                proxy.apply(&state, Route::RolledBack).await?;
                if let Some(hook) = &plan.rollback_hook {
                    run_hook(hook, &state, &log).await?;
                }
            }
        }
        if moved {
            next_analysis = now + plan.steps[state.step].interval_ms as i64;
            next_look = now + look_every(plan, state.step);
        }
    }
}

/// A full analysis (it may move the rollout either way) or an early look (it
/// may only roll back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Look {
    Analysis,
    Early,
}

/// Time between two looks of step `step`: its interval split by the early looks.
fn look_every(plan: &Plan, step: usize) -> i64 {
    let interval = plan.steps[step.min(plan.steps.len() - 1)].interval_ms as i64;
    interval / (i64::from(plan.analysis.early_looks) + 1)
}

/// The first release in the proxy's table other than the canary.
fn baseline_from(table: &Value, canary: &str) -> Result<String, RunError> {
    let names: Vec<&str> = table
        .get("releases")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if !names.contains(&canary) {
        return Err(RunError::Plan(format!(
            "release {canary} is not in the proxy's routing table (releases: {})",
            names.join(", ")
        )));
    }
    names
        .into_iter()
        .find(|n| *n != canary)
        .map(String::from)
        .ok_or_else(|| {
            RunError::Plan("the proxy's routing table has no other release to compare with".into())
        })
}

async fn run_hook(hook: &str, state: &State, log: &DeployLog) -> Result<(), RunError> {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(hook)
            .env("CAPSTAN_ROLLOUT_SERVICE", &state.service)
            .env("CAPSTAN_ROLLOUT_RELEASE", &state.canary)
            .env("CAPSTAN_ROLLOUT_BASELINE", &state.baseline)
            .output(),
    )
    .await;
    let detail = match out {
        Ok(Ok(o)) if o.status.success() => "rollback hook ran".to_string(),
        Ok(Ok(o)) => format!(
            "rollback hook failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Ok(Err(e)) => format!("rollback hook could not run: {e}"),
        Err(_) => "rollback hook timed out after 60s".to_string(),
    };
    log.record(
        &Deploy {
            time_ms: now_ms(),
            service: state.service.clone(),
            kind: DeployKind::Rollback,
            subject: format!("{} hook", state.canary),
            detail,
        },
        None,
    )?;
    Ok(())
}
