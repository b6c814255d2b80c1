//! `capstan dashboard`: flags, settings from `capstan.toml`, the listener.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::snapshot::Sources;
use crate::{app, AppState, Auth};

/// Exit code: stopped cleanly.
pub const EXIT_OK: i32 = 0;
/// Exit code: bad input (flags, `capstan.toml`, the token file).
pub const EXIT_BAD_INPUT: i32 = 3;
/// Exit code: the address could not be bound.
pub const EXIT_LISTEN: i32 = 4;

/// `capstan dashboard`: a live web view of SLOs, budgets, deploys, rollouts and events.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8900")]
    pub listen: String,
    /// Project settings (`[slo]`, `database_url`, `migrations_dir`).
    #[arg(long, short = 'c', default_value = "capstan.toml")]
    pub config: PathBuf,
    /// SLO files or directories (default: `[slo] dir`, else `slos/`).
    #[arg(long = "slos", value_name = "PATH")]
    pub slos: Vec<PathBuf>,
    /// The event store file, which also holds the deploy log (default: `[slo] store`, else `capstan-events.db`).
    #[arg(long, value_name = "FILE")]
    pub store: Option<PathBuf>,
    /// Prometheus base URL for Prometheus-sourced SLOs (default: `[slo] prometheus`).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Database for migrations, fleet and archive (default: `DATABASE_URL`, else `database_url`); its password is never shown.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Migration directory compared with the database (default: `migrations_dir`, else `migrations`).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The rollout controller's state file.
    #[arg(long, value_name = "FILE", default_value = "capstan-rollout.db")]
    pub rollout_state: PathBuf,
    /// How often the snapshot (SLO status, deploys, rollouts, database) is rebuilt.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub refresh: Duration,
    /// A file holding the token that allows rollout actions (else `CAPSTAN_DASHBOARD_TOKEN`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Allow actions for requests carrying this header (set by an authenticating proxy in front, e.g. `X-Forwarded-User`).
    #[arg(long, value_name = "HEADER")]
    pub trusted_header: Option<String>,
}

/// Resolves the flags into sources and the action policy.
pub fn resolve(args: &DashboardArgs) -> Result<(Sources, Auth), String> {
    let mut settings = capstan_slo::Settings::load(&args.config)?;
    // The charts read every minute of the window.
    settings.whole_series = true;
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
    let config = capstan_migrate::Config::load(&args.config, false).map_err(|e| e.to_string())?;
    let migrations_dir = args
        .dir
        .clone()
        .or(config.migrations_dir)
        .unwrap_or_else(|| PathBuf::from("migrations"));
    let token = match &args.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .map_err(|e| format!("--token-file {}: {e}", p.display()))?;
            let t = t.trim().to_string();
            if t.len() < 16 {
                return Err(format!(
                    "--token-file {}: the token must be at least 16 characters",
                    p.display()
                ));
            }
            Some(t)
        }
        None => match std::env::var("CAPSTAN_DASHBOARD_TOKEN") {
            Ok(t) if t.trim().len() >= 16 => Some(t.trim().to_string()),
            Ok(t) if !t.trim().is_empty() => {
                return Err("CAPSTAN_DASHBOARD_TOKEN must be at least 16 characters".into())
            }
            _ => None,
        },
    };
    let header = match &args.trusted_header {
        Some(h) => Some(
            h.parse::<axum::http::HeaderName>()
                .map_err(|e| format!("--trusted-header `{h}`: {e}"))?,
        ),
        None => None,
    };
    Ok((
        Sources {
            settings,
            rollout_state: args.rollout_state.clone(),
            migrations_dir,
        },
        Auth::new(token.as_deref(), header),
    ))
}

/// Runs the dashboard until SIGINT or SIGTERM; returns the exit code.
pub async fn run(args: DashboardArgs) -> i32 {
    let (sources, auth) = match resolve(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let listener = match tokio::net::TcpListener::bind(&args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return EXIT_LISTEN;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| args.listen.clone());
    eprintln!(
        "dashboard on http://{addr}/ ({})",
        if auth.enabled() {
            "rollout actions need the token or the trusted header"
        } else {
            "read-only"
        }
    );
    let state = AppState::new(sources, auth);
    state.spawn_background(args.refresh);
    // Open event streams never end by themselves: after the signal, give
    // requests in flight two seconds, then stop.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        let _ = stop_tx.send(());
    };
    let serve = axum::serve(listener, app(state)).with_graceful_shutdown(shutdown);
    tokio::select! {
        r = serve => match r {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("error: {e}");
                EXIT_LISTEN
            }
        },
        _ = async {
            let _ = stop_rx.await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        } => EXIT_OK,
    }
}
