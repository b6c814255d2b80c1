//! `capstan rollout start|status|pause|resume|promote|abort`.
//!
//! Exit codes of `start`: 0 promoted; 1 the state file, event store or proxy
//! failed; 2 usage; 3 bad plan or flags; 10 rolled back (failing verdict, page
//! rate burn or `abort`); 11 stopped for a human (held past the limit); 12 the
//! gates refused (budget, schema or fleet). `pause`, `resume`, `promote`, `abort`: 0 queued; 1 the
//! state file failed; 4 no unfinished rollout of the service. `status`: 0; 1; 4
//! no rollout of the service.

use std::path::PathBuf;

use serde_json::json;

use crate::controller::plan::{PlanFile, ProxyFile};
use crate::controller::run::{self, now_ms, RunError, RunOptions};
use crate::controller::store::StateStore;
use crate::controller::{Command, Phase};

/// Exit code: success (`start` promoted to 100 %, a command queued, status shown).
pub const EXIT_OK: i32 = 0;
/// Exit code: the state file, the event store or the proxy's admin API failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: a bad plan or flags.
pub const EXIT_BAD_INPUT: i32 = 3;
/// Exit code: there is no (unfinished) rollout of the service.
pub const EXIT_NO_ROLLOUT: i32 = 4;
/// Exit code of `start`: rolled back.
pub const EXIT_ROLLED_BACK: i32 = 10;
/// Exit code of `start`: stopped for a human.
pub const EXIT_HELD: i32 = 11;
/// Exit code of `start`: a gate refused the start (or could not decide).
pub const EXIT_GATE_REFUSED: i32 = 12;

/// Progressive rollouts driven through the proxy's admin API.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RolloutCommand,
}

/// `capstan rollout` subcommands.
// Parsed once per process: the size of `start`'s options costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RolloutCommand {
    /// Run a rollout in the foreground until promoted, rolled back or stopped
    /// for a human; resumes an unfinished rollout of the same release.
    Start(StartArgs),
    /// Show rollouts and their decisions.
    Status(StatusArgs),
    /// Stop moving (the running controller keeps the current weights).
    Pause(CommandArgs),
    /// Continue a paused or stopped rollout at its step.
    Resume(CommandArgs),
    /// Move one step now, on the operator's word.
    Promote(CommandArgs),
    /// Roll back now.
    Abort(CommandArgs),
}

/// Options of `capstan rollout start`.
#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// The plan (flags replace what it says).
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// The service.
    #[arg(long)]
    pub service: Option<String>,
    /// The release to roll out (the canary).
    #[arg(long)]
    pub release: Option<String>,
    /// The release it replaces (default: the other release in the proxy's table).
    #[arg(long)]
    pub baseline: Option<String>,
    /// The proxy's admin API, e.g. http://127.0.0.1:9090.
    #[arg(long)]
    pub proxy_admin: Option<String>,
    /// The proxy's admin token.
    #[arg(long, env = "CAPSTAN_PROXY_ADMIN_TOKEN", hide_env_values = true)]
    pub proxy_token: Option<String>,
    /// The event store (and deploy log).
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// The state file.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// `capstan.toml` with `[slo.policy]`: the budget gate.
    #[arg(long)]
    pub slo_config: Option<PathBuf>,
    /// The application's database (`DATABASE_URL` form): the schema and fleet
    /// gates read its migration history and fleet registry.
    #[arg(long)]
    pub database: Option<String>,
    /// The canary's migration directory: the schema gate refuses while an
    /// expand migration in it is not applied to the database.
    #[arg(long)]
    pub canary_migrations: Option<PathBuf>,
    /// Begin with a shadow step mirroring this percentage of requests to the
    /// canary (no user sees its answers); replaces `[shadow] percent`.
    #[arg(long, value_name = "PERCENT")]
    pub shadow: Option<u8>,
    /// Start even though the budget gate refuses; the reason is recorded.
    #[arg(long = "override", value_name = "REASON")]
    pub override_reason: Option<String>,
    /// Print the final state as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Options of `capstan rollout status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// The state file.
    #[arg(long, default_value = "capstan-rollout.db")]
    pub state: PathBuf,
    /// The event store holding the deploy log.
    #[arg(long, default_value = "capstan-events.db")]
    pub events: PathBuf,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Options of `pause`, `resume`, `promote` and `abort`.
#[derive(Debug, Clone, clap::Args)]
pub struct CommandArgs {
    /// The service.
    #[arg(long)]
    pub service: String,
    /// The state file.
    #[arg(long, default_value = "capstan-rollout.db")]
    pub state: PathBuf,
    /// JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `capstan rollout` command and returns its exit code.
pub async fn run(args: RolloutArgs) -> i32 {
    match args.command {
        RolloutCommand::Start(a) => start(a).await,
        RolloutCommand::Status(a) => status(a),
        RolloutCommand::Pause(a) => command(a, Command::Pause),
        RolloutCommand::Resume(a) => command(a, Command::Resume),
        RolloutCommand::Promote(a) => command(a, Command::Promote),
        RolloutCommand::Abort(a) => command(a, Command::Abort),
    }
}

async fn start(a: StartArgs) -> i32 {
    let (mut file, source) = match &a.plan {
        Some(p) => match PlanFile::load(p) {
            Ok(f) => (f, p.clone()),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_BAD_INPUT;
            }
        },
        None => (PlanFile::default(), PathBuf::from("flags")),
    };
    file.service = a.service.or(file.service);
    file.canary = a.release.or(file.canary);
    file.baseline = a.baseline.or(file.baseline);
    file.events = a.events.or(file.events);
    file.state = a.state.or(file.state);
    file.slo_config = a.slo_config.or(file.slo_config);
    file.database = a.database.or(file.database);
    file.canary_migrations = a.canary_migrations.or(file.canary_migrations);
    if let Some(percent) = a.shadow {
        file.shadow.get_or_insert_with(Default::default).percent = Some(percent);
    }
    file.proxy = ProxyFile {
        admin_url: a.proxy_admin.or(file.proxy.admin_url),
        token: a.proxy_token.or(file.proxy.token),
        timeout: file.proxy.timeout,
    };
    let plan = match file.validate(&source) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let opts = RunOptions {
        override_reason: a.override_reason,
        verbose: true,
    };
    match run::run(&plan, &opts).await {
        Ok(done) => {
            let code = match done.state.phase {
                Phase::Promoted => EXIT_OK,
                Phase::RolledBack { .. } => EXIT_ROLLED_BACK,
                _ => EXIT_HELD,
            };
            if a.json {
                println!(
                    "{}",
                    json!({"exit_code": code, "rollout": state_json(&done.state)})
                );
            } else {
                eprintln!(
                    "capstan rollout: {} {}: {}",
                    done.state.service,
                    done.state.canary,
                    phase_text(&done.state.phase)
                );
            }
            code
        }
        Err(RunError::GateRefused(why)) => {
            if a.json {
                println!(
                    "{}",
                    json!({"exit_code": EXIT_GATE_REFUSED, "error": "gate_refused", "message": why})
                );
            }
            eprintln!("error: gate refused: {why} (--override \"reason\" starts anyway when the budget is the reason)");
            EXIT_GATE_REFUSED
        }
        Err(e) => {
            if a.json {
                println!(
                    "{}",
                    json!({"exit_code": EXIT_FAILED, "error": "failed", "message": e.to_string()})
                );
            }
            eprintln!("error: {e}");
            EXIT_FAILED
        }
    }
}

/// A verdict or outcome as its JSON word (`pass`, `no_data`).
fn word<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn phase_text(p: &Phase) -> String {
    match p {
        Phase::Running => "running".into(),
        Phase::Paused { reason } => format!("paused: {reason}"),
        Phase::NeedsHuman { reason } => format!("needs a human: {reason}"),
        Phase::Promoted => "promoted to 100 %".into(),
        Phase::RolledBack { reason } => format!("rolled back: {reason}"),
    }
}

fn state_json(s: &crate::controller::State) -> serde_json::Value {
    let reason = match &s.phase {
        Phase::Paused { reason } | Phase::NeedsHuman { reason } | Phase::RolledBack { reason } => {
            Some(reason.clone())
        }
        _ => None,
    };
    json!({
        "service": s.service,
        "baseline": s.baseline,
        "canary": s.canary,
        "phase": s.phase.name(),
        "reason": reason,
        "step": s.step + 1,
        "step_started_ms": s.step_started_ms,
        "holds": s.holds,
        "last_verdict_ms": s.last_verdict_ms,
        "started_ms": s.started_ms,
        "updated_ms": s.updated_ms,
        "last_judgement": s.last_judgement.as_ref().map(verdict_json),
        "decisive_verdicts": s.decisive_verdicts.iter().map(verdict_json).collect::<Vec<_>>(),
    })
}

/// A kept verdict: its step counted from 1, and the judge's report.
fn verdict_json(v: &crate::controller::StepVerdict) -> serde_json::Value {
    json!({"step": v.step + 1, "report": v.report})
}

fn status(a: StatusArgs) -> i32 {
    if !a.state.exists() {
        eprintln!("error: {}: no rollout state here", a.state.display());
        return EXIT_NO_ROLLOUT;
    }
    let store = match StateStore::open(&a.state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let all = match store.all() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let states: Vec<_> = all
        .into_iter()
        .filter(|s| a.service.as_deref().is_none_or(|x| x == s.service))
        .collect();
    if states.is_empty() {
        eprintln!(
            "error: no rollout{}",
            a.service.map(|s| format!(" of {s}")).unwrap_or_default()
        );
        return EXIT_NO_ROLLOUT;
    }
    let log = match capstan_slo::DeployLog::open_existing(&a.events) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    let mut out = Vec::new();
    for s in &states {
        let decisions = match &log {
            Some(l) => match l.list(Some(&s.service), s.started_ms, i64::MAX) {
                Ok(v) => v
                    .into_iter()
                    .filter(|d| {
                        d.service == s.service
                            && matches!(
                                d.kind,
                                capstan_slo::DeployKind::Rollout
                                    | capstan_slo::DeployKind::Rollback
                                    | capstan_slo::DeployKind::Override
                            )
                    })
                    .collect(),
                Err(e) => {
                    eprintln!("error: {e}");
                    return EXIT_FAILED;
                }
            },
            None => Vec::new(),
        };
        out.push((s, decisions));
    }
    if a.json {
        let v: Vec<_> = out
            .iter()
            .map(|(s, d)| {
                let mut j = state_json(s);
                j["decisions"] = serde_json::to_value(d).unwrap_or_default();
                j
            })
            .collect();
        println!("{}", json!({ "rollouts": v }));
    } else {
        for (s, d) in out {
            println!(
                "{} {} → {}: step {}, {}",
                s.service,
                s.baseline,
                s.canary,
                s.step + 1,
                phase_text(&s.phase)
            );
            if let Some(v) = &s.last_judgement {
                let r = &v.report;
                println!(
                    "  last verdict, step {} at {}: {} (score {:.0}): {}",
                    v.step + 1,
                    r.interval.at_ms,
                    word(r.verdict),
                    r.score,
                    r.reason
                );
                for m in &r.metrics {
                    println!("    {} {}: {}", m.name, word(m.outcome), m.reason);
                }
            }
            for e in d {
                println!(
                    "  {} {} {}: {}",
                    e.time_ms,
                    e.kind.as_str(),
                    e.subject,
                    e.detail
                );
            }
        }
    }
    EXIT_OK
}

fn command(a: CommandArgs, c: Command) -> i32 {
    let store = match StateStore::open(&a.state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    };
    match store.load(&a.service) {
        Ok(Some(s)) if !s.phase.is_terminal() => {}
        Ok(_) => {
            eprintln!("error: no unfinished rollout of {}", a.service);
            return EXIT_NO_ROLLOUT;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_FAILED;
        }
    }
    if let Err(e) = store.push_command(&a.service, c, now_ms()) {
        eprintln!("error: {e}");
        return EXIT_FAILED;
    }
    if a.json {
        println!(
            "{}",
            json!({"service": a.service, "command": c.as_str(), "queued": true})
        );
    } else {
        eprintln!(
            "{} queued for {}: the running controller takes it within 100 ms",
            c.as_str(),
            a.service
        );
    }
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_args(plan: Option<PathBuf>) -> StartArgs {
        StartArgs {
            plan,
            service: None,
            release: None,
            baseline: None,
            proxy_admin: None,
            proxy_token: None,
            events: None,
            state: None,
            slo_config: None,
            database: None,
            canary_migrations: None,
            shadow: None,
            override_reason: None,
            json: false,
        }
    }

    #[tokio::test]
    async fn a_bad_plan_is_exit_3_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let plan = dir.path().join("rollout.toml");
        std::fs::write(&plan, "service = \"s\"\n[[step]]\nweigth = 5\n").unwrap();
        assert_eq!(start(start_args(Some(plan))).await, 3);
        assert_eq!(
            start(start_args(Some(dir.path().join("absent.toml")))).await,
            EXIT_BAD_INPUT
        );
        // Flags only, missing the release.
        let mut a = start_args(None);
        a.service = Some("s".into());
        a.state = Some(dir.path().join("state.db"));
        assert_eq!(start(a).await, 3);
        // A shadow step mirroring nothing.
        let mut a = start_args(None);
        a.service = Some("s".into());
        a.release = Some("2.0.0".into());
        a.proxy_admin = Some("http://127.0.0.1:9".into());
        a.proxy_token = Some("t".into());
        a.shadow = Some(0);
        a.state = Some(dir.path().join("state.db"));
        assert_eq!(start(a).await, 3);
        assert!(!dir.path().join("state.db").exists());
    }

    #[test]
    fn commands_without_a_rollout_are_exit_4_and_queue_with_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("rollout.db");
        let args = |json| CommandArgs {
            service: "chirpy".into(),
            state: state.clone(),
            json,
        };
        assert_eq!(command(args(false), Command::Pause), 4);
        let store = StateStore::open(&state).unwrap();
        store
            .save(&crate::controller::State::new(
                "chirpy", "1.0.0", "2.0.0", 1,
            ))
            .unwrap();
        assert_eq!(command(args(true), Command::Abort), 0);
        assert_eq!(
            store.take_command("chirpy", 2).unwrap(),
            Some(Command::Abort)
        );
        assert_eq!(store.take_command("chirpy", 3).unwrap(), None);
        let status_args = |service: Option<&str>| StatusArgs {
            service: service.map(String::from),
            state: state.clone(),
            events: dir.path().join("events.db"),
            json: true,
        };
        assert_eq!(status(status_args(Some("chirpy"))), 0);
        assert_eq!(status(status_args(Some("other"))), 4);
    }
}
