//! `capstan judge serve --config judge.toml --listen ADDR`, as a clap subcommand
//! to mount.
//!
//! Exit codes: 0 stopped by SIGINT or SIGTERM; 1 could not listen or serve; 2
//! usage (clap); 3 bad `judge.toml` (the message names the file, and the line or
//! field).

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::JudgeConfig;
use crate::server::{judge_router, system_clock, JudgeState};

/// The canary judge for Argo Rollouts and Flagger.
#[derive(Debug, Clone, clap::Args)]
pub struct JudgeArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: JudgeCommand,
}

/// `capstan judge` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum JudgeCommand {
    /// Serve the judge over HTTP: Argo Rollouts' Web metric provider at
    /// /api/v1/verdict, Flagger's webhooks under /flagger/.
    Serve(ServeArgs),
}

/// Options of `capstan judge serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The judge's configuration: thresholds, Prometheus, metrics, gates.
    #[arg(long, default_value = "judge.toml")]
    pub config: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// Exit code: stopped by SIGINT or SIGTERM.
pub const EXIT_OK: i32 = 0;
/// Exit code: the judge cannot listen or serve.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: a bad `judge.toml`.
pub const EXIT_BAD_INPUT: i32 = 3;

/// Runs a `capstan judge` command and returns its exit code.
pub async fn run(args: JudgeArgs) -> i32 {
    match args.command {
        JudgeCommand::Serve(serve) => run_serve(serve).await,
    }
}

async fn run_serve(args: ServeArgs) -> i32 {
    let config = match JudgeConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let metrics = config.metrics.len();
    let state = match JudgeState::new(config, system_clock()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: listen on {}: {e}", args.listen);
            return EXIT_FAILED;
        }
    };
    let addr = listener.local_addr().map_or(args.listen, |a| a);
    eprintln!(
        "capstan judge: {metrics} metrics from {}, listening on http://{addr}",
        args.config.display()
    );
    let served = axum::serve(listener, judge_router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    match served {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: serving on {addr}: {e}");
            EXIT_FAILED
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_or_bad_config_is_exit_3() {
        let dir = tempfile::tempdir().unwrap();
        let args = |config: PathBuf| JudgeArgs {
            command: JudgeCommand::Serve(ServeArgs {
                config,
                listen: "127.0.0.1:0".parse().unwrap(),
            }),
        };
        assert_eq!(run(args(dir.path().join("absent.toml"))).await, 3);
        let bad = dir.path().join("judge.toml");
        std::fs::write(&bad, "[prometheus]\nurl = \"ftp://x\"\n").unwrap();
        assert_eq!(run(args(bad)).await, 3);
    }
}
