//! `capstan fleet run | join | leave`: the fleet registry for services that do
//! not embed capstan (Go, Python, anything). `run` is a small init: it
//! registers the instance, heartbeats while the child runs, forwards SIGTERM,
//! SIGINT and SIGHUP to it, marks the instance departed when it exits, and
//! exits with the child's code (128 + the signal if a signal killed it, as
//! `tini` does).

use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::context::{ConnArgs, Context};
use super::exit::{Exit, Failure, Kind};
use super::output::{program, quiet};
use crate::fleet::{Heartbeat, Instance, DEFAULT_HEARTBEAT};
use crate::migrator::Error;

/// `fleet`: the instances registered in the fleet registry.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Database, directory and run options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<FleetCommand>,
}

/// The `fleet` subcommands; none lists the registry.
#[derive(Debug, Clone, Subcommand)]
pub enum FleetCommand {
    /// List the instances in the registry: live, departed, expired (the default).
    #[command(after_help = "Examples:
  capstan fleet list
  capstan fleet list --json")]
    List,
    /// Run COMMAND as a registered instance: heartbeat while it runs, forward
    /// signals to it, leave when it exits, exit with its code.
    #[command(
        disable_version_flag = true,
        after_help = "Examples:
  capstan fleet run --app api --version 2.3.0 --dir migrations -- ./api --port 8080
  capstan fleet run --app worker --version \"$GIT_SHA\" -- python3 -m worker

The instance embeds the migrations in --dir (the ones this release ships): a
contract migration that the directory lacks waits while it runs. Exit code:
the child's, or 128 + the signal that killed it; 4 if the registry cannot be
reached (the child is not started)."
    )]
    Run {
        /// Who registers.
        #[command(flatten)]
        who: Who,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Register an instance once and print its id (for scripts); without
    /// heartbeats it expires after the fleet TTL (`[fleet] ttl` in capstan.toml, default 30s).
    #[command(
        disable_version_flag = true,
        after_help = "Examples:
  id=$(capstan fleet join --app api --version 2.3.0)
  while serving; do capstan fleet join --app api --version 2.3.0 --id \"$id\" >/dev/null; sleep 10; done
  capstan fleet leave \"$id\"

Joining again with --id refreshes the instance: that is the heartbeat. An
instance not refreshed within `[fleet] ttl` (capstan.toml, default 30s)
is no longer live, exactly like a crashed process."
    )]
    Join {
        /// Who registers.
        #[command(flatten)]
        who: Who,
        /// Refresh this instance (from an earlier `join`) instead of registering a new one.
        #[arg(long, value_name = "ID")]
        id: Option<String>,
    },
    /// Mark an instance departed: it no longer holds contract migrations back.
    #[command(after_help = "Examples:
  capstan fleet leave \"$id\"")]
    Leave {
        /// The instance id `join` printed.
        id: String,
    },
}

/// Who registers: the application, its version, and how to reach it.
#[derive(Debug, Clone, clap::Args)]
pub struct Who {
    /// Application name, as `capstan fleet` shows it; without --service, a
    /// service capstan.toml declares by this name is the fleet it joins.
    #[arg(long)]
    pub app: String,
    /// Application version (a release number or a commit).
    #[arg(long)]
    pub version: String,
    /// Where the instance serves (host:port); it leads the instance id.
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
}

impl Who {
    fn instance(&self, cx: &Context<'_>, id: Option<&str>) -> Result<Instance, Failure> {
        let set = cx.set()?;
        let mut instance = Instance::new(&self.app, &self.version, &set);
        if let Some(addr) = &self.address {
            instance.instance_id = format!(
                "{addr}-{}-{:06x}",
                std::process::id(),
                rand::random::<u32>() & 0xff_ffff
            );
            instance.address = Some(addr.clone());
        }
        if let Some(id) = id {
            instance.instance_id = id.to_string();
        }
        Ok(instance)
    }
}

/// The heartbeat interval: a third of the TTL, at most the default 10 s.
fn heartbeat_interval(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_millis(100), DEFAULT_HEARTBEAT)
}

pub(super) async fn run(cx: &Context<'_>, command: Option<FleetCommand>) -> Result<Exit, Failure> {
    match command {
        None | Some(FleetCommand::List) => list(cx).await,
        Some(FleetCommand::Join { who, id }) => {
            let instance = who.instance(cx, id.as_deref())?;
            let mut db = cx.connect().await?;
            db.driver()
                .fleet_register(&instance)
                .await
                .map_err(Error::from)?;
            let ttl = cx.settings()?.fleet_ttl;
            cx.service_result(
                &serde_json::json!({"instance": instance, "ttl_secs": ttl.as_secs_f64()}),
                || instance.instance_id.clone(),
            );
            Ok(Exit::Ok)
        }
        Some(FleetCommand::Leave { id }) => {
            let mut db = cx.connect().await?;
            let known = db
                .driver()
                .fleet_list()
                .await
                .map_err(Error::from)?
                .iter()
                .any(|r| r.instance.instance_id == id);
            if !known {
                return Err(Failure::new(
                    Exit::BadInput,
                    Kind::NotFound,
                    format!(
                        "no instance `{id}` in the fleet registry (see `{} fleet list`)",
                        program()
                    ),
                ));
            }
            db.driver().fleet_depart(&id).await.map_err(Error::from)?;
            cx.out.result(&serde_json::json!({"departed": id}), || {
                format!("{id} departed")
            });
            Ok(Exit::Ok)
        }
        Some(FleetCommand::Run { who, command }) => run_child(cx, &who, &command).await,
    }
}

/// `fleet list`: live, departed and expired instances.
async fn list(cx: &Context<'_>) -> Result<Exit, Failure> {
    let settings = cx.settings()?;
    let mut db = cx.connect_read_only().await?;
    let rows = db.driver().fleet_list().await.map_err(Error::from)?;
    #[derive(Serialize)]
    struct Row<'a> {
        #[serde(flatten)]
        row: &'a crate::fleet::InstanceRow,
        live: bool,
    }
    let out: Vec<Row<'_>> = rows
        .iter()
        .map(|row| Row {
            row,
            live: row.is_live(settings.fleet_ttl),
        })
        .collect();
    cx.service_result(&serde_json::json!({ "instances": out }), || {
        if rows.is_empty() {
            return "no instance has registered".to_string();
        }
        let mut s = String::new();
        for r in &out {
            let state = if r.live {
                "live"
            } else if r.row.departed_at.is_some() {
                "departed"
            } else {
                "expired"
            };
            let versions = r
                .row
                .instance
                .versions
                .iter()
                .max()
                .map_or_else(|| "none".to_string(), |v| format!("{v:04}"));
            s.push_str(&format!(
                "{state:<9} {:<12} {:<10} {}  embeds up to {versions}  started {}  seen {:.0}s ago\n",
                r.row.instance.app,
                r.row.instance.version,
                r.row.instance.instance_id,
                r.row.started_at,
                r.row.age_secs
            ));
        }
        s.trim_end().to_string()
    });
    Ok(Exit::Ok)
}

#[cfg(unix)]
async fn run_child(cx: &Context<'_>, who: &Who, command: &[String]) -> Result<Exit, Failure> {
    use std::os::unix::process::ExitStatusExt;
    use tokio::signal::unix::{signal, SignalKind};

    let instance = who.instance(cx, None)?;
    let ttl = cx.settings()?.fleet_ttl;
    cx.chosen()?;
    let url = cx.url()?;
    let heartbeat =
        Heartbeat::start_for_service(&url, cx.service(), instance, heartbeat_interval(ttl)).await?;
    let id = heartbeat.instance().instance_id.clone();
    if !quiet() {
        eprintln!(
            "capstan fleet: {id} joined ({} {}); running {}",
            who.app,
            who.version,
            command.join(" ")
        );
    }
    let mut child = match tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = heartbeat.depart().await;
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Err(Failure::new(
                Exit::Child(code),
                Kind::Spawn,
                format!("cannot run `{}`: {e}", command[0]),
            ));
        }
    };
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let mut term = signal(SignalKind::terminate()).map_err(signal_failure)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_failure)?;
    let mut hup = signal(SignalKind::hangup()).map_err(signal_failure)?;
    let status = loop {
        let forward = tokio::select! {
            status = child.wait() => break status,
            _ = term.recv() => nix::sys::signal::Signal::SIGTERM,
            _ = int.recv() => nix::sys::signal::Signal::SIGINT,
            _ = hup.recv() => nix::sys::signal::Signal::SIGHUP,
        };
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(pid, forward);
        }
    };
    // The child is gone: leave the fleet before saying how it ended.
    if let Err(e) = heartbeat.depart().await {
        eprintln!("capstan fleet: {id} could not be marked departed ({e}); it expires after {ttl:?} without heartbeats");
    }
    let status = status.map_err(|e| {
        Failure::new(
            Exit::Failed,
            Kind::Spawn,
            format!("waiting for `{}`: {e}", command[0]),
        )
    })?;
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => Exit::Failed.code(),
    };
    if !quiet() {
        eprintln!(
            "capstan fleet: {id} departed; `{}` exited with {code}",
            command[0]
        );
    }
    Ok(Exit::Child(code))
}

#[cfg(unix)]
fn signal_failure(e: std::io::Error) -> Failure {
    Failure::new(
        Exit::Failed,
        Kind::Spawn,
        format!("cannot listen for signals: {e}"),
    )
}

#[cfg(not(unix))]
async fn run_child(_: &Context<'_>, _: &Who, _: &[String]) -> Result<Exit, Failure> {
    Err(Failure::usage(
        "`capstan fleet run` needs a Unix system (it forwards Unix signals)",
    ))
}
