//! The rollout controller: the only code that turns a verdict into traffic.
//!
//! [`reconcile`] is pure: given the persisted [`State`], the plan's [`Step`]s, what
//! was observed this tick ([`Observation`]) and the time, it returns the next state,
//! the [`Action`] to carry out on the proxy, and the entry for the deploy log. The
//! async loop in [`run`] gathers observations (the event store, the judge, operator
//! commands), carries out actions (the proxy's admin API, the rollback hook) and
//! persists the state ([`store`]) after every decision.
//!
//! Invariants, each unit-tested: the rollout never goes forward without a verdict
//! judged over data gathered entirely inside the current step and newer than the
//! last one; it moves one step at a time; a failing verdict, an abort or a canary
//! burning error budget at page rate rolls back to weight 0; holding (marginal or
//! inconclusive) more than the limit pauses the rollout for a human.

pub mod admin;
pub mod gates;
pub mod plan;
pub mod run;
pub mod shadow;
pub mod store;
pub mod window;

use serde::{Deserialize, Serialize};

use crate::judge::{Report, Verdict};

/// One step of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What the canary gets in this step.
    pub target: Target,
    /// Least time in the step before it may be left, ms.
    pub min_duration_ms: u64,
    /// Least requests on each side, over the step, before a pass counts.
    pub min_requests: u64,
    /// Time between two analyses, ms.
    pub interval_ms: u64,
}

/// The canary's share of traffic in a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// No user sees the canary: this percentage of requests is mirrored to it,
    /// and its answers are compared with the baseline's to the same requests.
    Shadow {
        /// 1–100.
        percent: u8,
    },
    /// Only the internal cohort goes to the canary.
    Internal,
    /// The canary gets this percentage of everyone (the internal cohort too).
    Weight {
        /// 0–100.
        percent: u8,
    },
}

impl Target {
    /// The canary's weight for the public (0 for the shadow and internal steps).
    pub fn weight(self) -> u8 {
        match self {
            Target::Shadow { .. } | Target::Internal => 0,
            Target::Weight { percent } => percent,
        }
    }

    /// `shadow 10 %`, `internal` or `weight 25`.
    pub fn label(self) -> String {
        match self {
            Target::Shadow { percent } => format!("shadow {percent} %"),
            Target::Internal => "internal".into(),
            Target::Weight { percent } => format!("weight {percent}"),
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Analysing the current step.
    Running,
    /// Stopped by an operator (`pause`); `resume` continues.
    Paused {
        /// Why.
        reason: String,
    },
    /// Held more often than the plan allows: a human must look (`resume`,
    /// `promote` or `abort`).
    NeedsHuman {
        /// The last verdict's reason.
        reason: String,
    },
    /// The canary has 100 %.
    Promoted,
    /// The canary was sent back to weight 0.
    RolledBack {
        /// Why: the verdict's reason, the burn rate, or the operator's abort.
        reason: String,
    },
}

impl Phase {
    /// Promoted or rolled back: nothing more happens.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Promoted | Phase::RolledBack { .. })
    }

    /// `running`, `paused`, `needs_human`, `promoted`, `rolled_back`.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused { .. } => "paused",
            Phase::NeedsHuman { .. } => "needs_human",
            Phase::Promoted => "promoted",
            Phase::RolledBack { .. } => "rolled_back",
        }
    }
}

/// A verdict the controller used, with the judge's whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepVerdict {
    /// The step judged (index in the plan).
    pub step: usize,
    /// The report: verdict, score, reason, interval, and each metric's
    /// outcome with its evidence (sample sizes, statistics, p-values, effect
    /// sizes).
    pub report: Report,
}

/// How many verdicts that decided something a state keeps.
pub const KEPT_VERDICTS: usize = 32;

/// The persisted state of one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The service.
    pub service: String,
    /// The release serving everyone before the rollout.
    pub baseline: String,
    /// The release being rolled out.
    pub canary: String,
    /// Index of the current step in the plan.
    pub step: usize,
    /// When the current step's data started counting, unix ms (reset when a
    /// controller resumes, so a verdict is always over data it watched).
    pub step_started_ms: i64,
    /// Where it stands.
    pub phase: Phase,
    /// Consecutive marginal or inconclusive verdicts in this step.
    pub holds: u32,
    /// Time of judgement of the last verdict used, unix ms.
    pub last_verdict_ms: Option<i64>,
    /// When the rollout started, unix ms.
    pub started_ms: i64,
    /// When the state last changed, unix ms.
    pub updated_ms: i64,
    /// The last verdict used, with every metric's evidence (absent from
    /// states written before it was kept; a record that no longer reads is
    /// dropped rather than making the state unreadable).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub last_judgement: Option<StepVerdict>,
    /// The verdicts that decided something (a step, a rollback, a stop for a
    /// human), oldest first, the last [`KEPT_VERDICTS`]; each at the time of
    /// its deploy log entries.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient"
    )]
    pub decisive_verdicts: Vec<StepVerdict>,
}

/// Reads what it can: a value that does not decode is its default.
fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned + Default,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).unwrap_or_default())
}

impl State {
    /// A new rollout at its first step.
    pub fn new(service: &str, baseline: &str, canary: &str, now_ms: i64) -> State {
        State {
            service: service.into(),
            baseline: baseline.into(),
            canary: canary.into(),
            step: 0,
            step_started_ms: now_ms,
            phase: Phase::Running,
            holds: 0,
            last_verdict_ms: None,
            started_ms: now_ms,
            updated_ms: now_ms,
            last_judgement: None,
            decisive_verdicts: Vec::new(),
        }
    }

    /// The state a restarted controller continues from: the same step, its data
    /// counted again from now, so the next step needs a verdict over data this
    /// controller watched.
    pub fn resumed(&self, now_ms: i64) -> State {
        let mut s = self.clone();
        s.step_started_ms = now_ms;
        s.updated_ms = now_ms;
        s
    }
}

/// An operator's command, written by `pause`, `resume`, `promote` and `abort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Stop analysing and moving.
    Pause,
    /// Continue a paused or stopped rollout in the same step (holds reset).
    Resume,
    /// Move to the next step now, on the operator's word (one step).
    Promote,
    /// Roll back now.
    Abort,
}

impl Command {
    /// Its name in the state database and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Promote => "promote",
            Command::Abort => "abort",
        }
    }

    /// Parses [`Command::as_str`].
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            "promote" => Command::Promote,
            "abort" => Command::Abort,
            _ => return None,
        })
    }
}

/// A verdict from the judge, with what it was computed over.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    /// The verdict.
    pub verdict: Verdict,
    /// Start of the interval judged, unix ms.
    pub from_ms: i64,
    /// Time of judgement, unix ms.
    pub at_ms: i64,
    /// Canary requests in the interval.
    pub canary_requests: u64,
    /// Baseline requests in the interval.
    pub baseline_requests: u64,
    /// Canary errors in the interval.
    pub canary_errors: u64,
    /// One line of evidence for the log: the reason, score and sample sizes.
    pub summary: String,
}

/// A page-rate burn rule: the canary's error ratio over the step divided by the
/// SLO's error budget (1 − objective) at or above `rate` aborts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageBurn {
    /// The availability objective, e.g. 0.999.
    pub objective: f64,
    /// The burn rate that pages, e.g. 14.4.
    pub rate: f64,
    /// Least canary requests before the rule applies.
    #[serde(default = "default_burn_min")]
    pub min_requests: u64,
}

fn default_burn_min() -> u64 {
    100
}

/// The settings [`reconcile`] needs besides the steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Marginal or inconclusive verdicts in a row allowed in a step; one more
    /// stops the rollout for a human.
    pub hold_limit: u32,
    /// Abort when the canary burns budget at page rate.
    pub page_burn: Option<PageBurn>,
}

/// What was observed this tick.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    /// An operator command, oldest first (one per tick).
    pub command: Option<Command>,
    /// A verdict judged this tick, if the interval came round.
    pub judged: Option<Judged>,
    /// The gates (budget, schema, fleet) asked with this verdict: why they
    /// are closed, `None` when open. A pass does not move the rollout
    /// forward through a closed gate; it stops for a human instead.
    pub gate_refused: Option<String>,
}

impl Observation {
    /// A verdict alone: no command, the gates not asked.
    pub fn judged(judged: &Judged) -> Observation {
        Observation {
            command: None,
            judged: Some(judged.clone()),
            gate_refused: None,
        }
    }
}

/// What the loop must do on the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Route as step `step` says.
    Apply {
        /// The step index.
        step: usize,
    },
    /// Canary weight 0, internal cohort back to the baseline, no more copies
    /// to the canary, then the hook.
    Rollback,
    /// Canary weight 100, internal cohort too.
    Promote,
}

/// What kind of log entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// Entered a step.
    Step,
    /// A verdict (pass, hold).
    Verdict,
    /// Rolled back.
    Rollback,
    /// Promoted to 100 %.
    Promoted,
    /// Paused, resumed, stopped for a human.
    Control,
}

/// One line for the deploy log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    /// What kind.
    pub kind: LogKind,
    /// Short: `2.0.0 step 2 (weight 5)`.
    pub subject: String,
    /// The evidence or reason.
    pub detail: String,
}

/// A decision: the next state, the action and the log lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The state to persist.
    pub state: State,
    /// What to do on the proxy.
    pub action: Action,
    /// Lines for the deploy log, in order.
    pub log: Vec<LogEntry>,
}

fn subject(state: &State, steps: &[Step], step: usize) -> String {
    let label = steps
        .get(step)
        .map_or_else(|| "?".into(), |s| s.target.label());
    format!("{} step {} ({label})", state.canary, step + 1)
}

/// Decides what happens next. Pure: no IO, time injected.
///
/// `steps` is the plan; its last step is the canary at 100 %, reached by
/// promotion rather than analysed (there is no baseline left to compare with).
pub fn reconcile(
    state: &State,
    steps: &[Step],
    limits: &Limits,
    obs: &Observation,
    now_ms: i64,
) -> Decision {
    let mut next = state.clone();
    let mut log = Vec::new();
    if state.phase.is_terminal() {
        return Decision {
            state: next,
            action: Action::None,
            log,
        };
    }
    next.updated_ms = now_ms;
    let rollback = |mut next: State, mut log: Vec<LogEntry>, reason: String| {
        log.push(LogEntry {
            kind: LogKind::Rollback,
            subject: subject(&next, steps, next.step),
            detail: reason.clone(),
        });
        next.phase = Phase::RolledBack { reason };
        Decision {
            state: next,
            action: Action::Rollback,
            log,
        }
    };

    // Operator commands first: they can stop or move any non-terminal rollout.
    match obs.command {
        Some(Command::Abort) => return rollback(next, log, "aborted by the operator".into()),
        Some(Command::Pause) => {
            if next.phase == Phase::Running {
                next.phase = Phase::Paused {
                    reason: "paused by the operator".into(),
                };
                log.push(LogEntry {
                    kind: LogKind::Control,
                    subject: subject(&next, steps, next.step),
                    detail: "paused by the operator".into(),
                });
            }
            return Decision {
                state: next,
                action: Action::None,
                log,
            };
        }
        Some(Command::Resume) => {
            if next.phase != Phase::Running {
                next.phase = Phase::Running;
                next.holds = 0;
                log.push(LogEntry {
                    kind: LogKind::Control,
                    subject: subject(&next, steps, next.step),
                    detail: "resumed by the operator".into(),
                });
            }
            return Decision {
                state: next,
                action: Action::None,
                log,
            };
        }
        Some(Command::Promote) => {
            return advance(next, steps, log, now_ms, "promoted by the operator".into());
        }
        None => {}
    }
    if next.phase != Phase::Running {
        return Decision {
            state: next,
            action: Action::None,
            log,
        };
    }
    let Some(judged) = &obs.judged else {
        return Decision {
            state: next,
            action: Action::None,
            log,
        };
    };
    // Only a verdict newer than the last, over data of this step only, counts.
    let fresh = judged.from_ms >= state.step_started_ms
        && state.last_verdict_ms.is_none_or(|t| judged.at_ms > t);
    if !fresh {
        return Decision {
            state: next,
            action: Action::None,
            log,
        };
    }
    next.last_verdict_ms = Some(judged.at_ms);

    if let Some(burn) = limits.page_burn {
        if judged.canary_requests >= burn.min_requests && burn.objective < 1.0 {
            let ratio = judged.canary_errors as f64 / judged.canary_requests as f64;
            let rate = ratio / (1.0 - burn.objective);
            if rate >= burn.rate {
                return rollback(
                    next,
                    log,
                    format!(
                        "canary burns error budget at {rate:.1}× (page at {}×): {} errors in {} requests; {}",
                        burn.rate, judged.canary_errors, judged.canary_requests, judged.summary
                    ),
                );
            }
        }
    }

    let verdict_entry = |detail: String| LogEntry {
        kind: LogKind::Verdict,
        subject: subject(state, steps, state.step),
        detail,
    };
    match judged.verdict {
        Verdict::Fail => rollback(next, log, format!("verdict fail: {}", judged.summary)),
        Verdict::Pass => {
            let step = &steps[state.step.min(steps.len() - 1)];
            let waited = now_ms - state.step_started_ms >= step.min_duration_ms as i64;
            let enough = judged.canary_requests >= step.min_requests
                && judged.baseline_requests >= step.min_requests;
            next.holds = 0;
            if waited && enough {
                log.push(verdict_entry(format!("pass: {}", judged.summary)));
                if let Some(refused) = &obs.gate_refused {
                    let reason = format!("gate closed before the next step: {refused}");
                    log.push(LogEntry {
                        kind: LogKind::Control,
                        subject: subject(&next, steps, next.step),
                        detail: format!("needs a human: {reason}"),
                    });
                    next.phase = Phase::NeedsHuman { reason };
                    return Decision {
                        state: next,
                        action: Action::None,
                        log,
                    };
                }
                advance(next, steps, log, now_ms, "verdict pass".into())
            } else {
                Decision {
                    state: next,
                    action: Action::None,
                    log,
                }
            }
        }
        Verdict::Marginal | Verdict::Inconclusive => {
            next.holds += 1;
            let word = if judged.verdict == Verdict::Marginal {
                "marginal"
            } else {
                "inconclusive"
            };
            if next.holds > limits.hold_limit {
                let reason = format!(
                    "held {} times ({word}), limit {}: {}",
                    next.holds, limits.hold_limit, judged.summary
                );
                log.push(verdict_entry(format!("{word}: {}", judged.summary)));
                log.push(LogEntry {
                    kind: LogKind::Control,
                    subject: subject(&next, steps, next.step),
                    detail: format!("needs a human: {reason}"),
                });
                next.phase = Phase::NeedsHuman { reason };
            }
            Decision {
                state: next,
                action: Action::None,
                log,
            }
        }
    }
}

/// Keeps the judge's `report` in `decision`'s state when the decision used
/// its verdict (`before` is the state it was made from): as the last
/// judgement, and among the decisive verdicts when the decision logged
/// something. Pure.
pub fn keep_report(before: &State, decision: &mut Decision, report: Report) {
    let at = report.interval.at_ms;
    let used = decision.state.last_verdict_ms == Some(at) && before.last_verdict_ms != Some(at);
    if !used {
        return;
    }
    let verdict = StepVerdict {
        step: before.step,
        report,
    };
    if !decision.log.is_empty() {
        let d = &mut decision.state.decisive_verdicts;
        d.push(verdict.clone());
        if d.len() > KEPT_VERDICTS {
            d.drain(..d.len() - KEPT_VERDICTS);
        }
    }
    decision.state.last_judgement = Some(verdict);
}

/// Moves to the next step (one), or promotes when that is the last.
fn advance(
    mut next: State,
    steps: &[Step],
    mut log: Vec<LogEntry>,
    now_ms: i64,
    why: String,
) -> Decision {
    let to = next.step + 1;
    next.holds = 0;
    next.phase = Phase::Running;
    next.step_started_ms = now_ms;
    if to + 1 >= steps.len() {
        next.step = steps.len() - 1;
        next.phase = Phase::Promoted;
        log.push(LogEntry {
            kind: LogKind::Promoted,
            subject: format!("{} promoted to 100 %", next.canary),
            detail: why,
        });
        return Decision {
            state: next,
            action: Action::Promote,
            log,
        };
    }
    next.step = to;
    log.push(LogEntry {
        kind: LogKind::Step,
        subject: subject(&next, steps, to),
        detail: why,
    });
    Decision {
        state: next,
        action: Action::Apply { step: to },
        log,
    }
}

#[cfg(test)]
mod tests;
