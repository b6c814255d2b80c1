//! chirpy: capstan's reference service. Users and chirps over HTTP (axum),
//! on Postgres or SQLite (`DATABASE_URL`), shipped as three releases of one
//! crate — `chirpy-v1`, `chirpy-v2`, `chirpy-v3` — that rename `users.name` to
//! `users.handle` the safe way:
//!
//! | release | embeds | reads | writes |
//! |---|---|---|---|
//! | 1.0.0 | 0001 | `name` | `name` |
//! | 2.0.0 | 0001–0002 (expand: add `handle`, backfill) | `handle`, falling back to `name` | both |
//! | 3.0.0 | 0001–0003 (contract: drop `name`) | `handle` | `handle` |
//!
//! Each binary embeds its migrations and mounts `chirpy-vN migrate …`, runs the
//! startup gate, heartbeats the fleet registry, serves `/livez`, `/readyz`,
//! `/startupz` and `/metrics`, and drains gracefully on SIGTERM.
//!
//! Environment: `DATABASE_URL` (default `sqlite://chirpy.db`), `CHIRPY_ADDR`
//! (default `127.0.0.1:8080`), `CHIRPY_GATE` (`refuse`, the default, or
//! `wait`), `CHIRPY_GATE_DEADLINE` (wait mode, default `5m`), `CHIRPY_DRAIN`
//! (default `5s`), `CHIRPY_FLEET_HEARTBEAT` (default `10s`), `CHIRPY_ADVERTISE` (the
//! `host:port` registered in the fleet registry for proxies to find; default
//! the bound address unless bound to every interface),
//! `CHIRPY_DB_CHECK_INTERVAL` (default `1s`), `CHIRPY_SHARED_DEP` (optional
//! `host:port` of a shared dependency, checked by TCP connect),
//! `CHIRPY_USERS_TABLE` (the users table, `table` or `schema.table`, default
//! `users`: the same binary runs before and after the table moves to a
//! `users` service as `users.users`), `CAPSTAN_SERVICE` (the service whose
//! history the gate reads and whose fleet the instance joins, default
//! `default`).
//!
//! Development and rehearsal overrides (never set them in production):
//!
//! - `CHIRPY_MIGRATIONS_DIR=DIR`: use the migration set read from `DIR`
//!   (validated with its `capstan.sum`) instead of the embedded one, for the
//!   gate, the fleet registry and `chirpy-vN migrate`. `capstan rehearse` sets
//!   it for a release whose migrations come from a directory, so the binary
//!   and the schema it is rehearsed on agree. A bad directory exits 3.
//! - `CHIRPY_FAULT=skip-name-write`: a deliberate bug for rehearsal fixtures:
//!   2.0.0 writes an empty `users.name` (only `handle` gets the name), so a
//!   1.0.0 instance rolled back onto the same data reads empty names.

pub mod store;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use capstan_migrate::cli::{MigrateArgs, MigrationSource};
use capstan_migrate::MigrationSet;
use clap::Parser;
use serde::Deserialize;

use crate::store::{Store, StoreError};

/// Every migration chirpy has ever shipped; a release embeds a prefix.
static MIGRATIONS: &[(&str, &str)] = capstan_migrate::include_migrations!();

/// One of chirpy's three releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// 1.0.0: `users.name`.
    V1,
    /// 2.0.0: expand to `users.handle`.
    V2,
    /// 3.0.0: contract, `users.name` gone.
    V3,
}

impl Release {
    /// `1.0.0`, `2.0.0`, `3.0.0`.
    pub fn version(self) -> &'static str {
        match self {
            Release::V1 => "1.0.0",
            Release::V2 => "2.0.0",
            Release::V3 => "3.0.0",
        }
    }

    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Release::V1 => "chirpy-v1",
            Release::V2 => "chirpy-v2",
            Release::V3 => "chirpy-v3",
        }
    }

    /// The migrations this release embeds.
    pub fn migrations(self) -> &'static [(&'static str, &'static str)] {
        let n = match self {
            Release::V1 => 1,
            Release::V2 => 2,
            Release::V3 => 3,
        };
        &MIGRATIONS[..n]
    }

    /// The migration set this binary runs with: the `CHIRPY_MIGRATIONS_DIR`
    /// override when [`main`] loaded one, otherwise the embedded set.
    pub fn set(self) -> MigrationSet {
        if let Some(set) = MIGRATIONS_OVERRIDE.get() {
            return set.clone();
        }
        MigrationSet::from_embedded(self.migrations())
            .expect("embedded migrations were validated at build time")
    }
}

/// The set read from `CHIRPY_MIGRATIONS_DIR`, loaded once by [`main`].
static MIGRATIONS_OVERRIDE: std::sync::OnceLock<MigrationSet> = std::sync::OnceLock::new();

/// A deliberate bug switched on by `CHIRPY_FAULT`, for rehearsal fixtures only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `skip-name-write`: 2.0.0 writes an empty `users.name`.
    SkipNameWrite,
}

impl Fault {
    /// The fault named by `CHIRPY_FAULT`, if any.
    pub fn from_env() -> Option<Fault> {
        match std::env::var("CHIRPY_FAULT").as_deref() {
            Ok("skip-name-write") => Some(Fault::SkipNameWrite),
            _ => None,
        }
    }
}

/// The command line of each release binary.
#[derive(Debug, Parser)]
enum Cli {
    /// Serve the API (the default when no subcommand is given).
    Serve,
    /// Manage the database schema with the migrations this release embeds.
    Migrate(MigrateArgs),
    /// What migrations copied before destroying it: list, show, restore, purge.
    Archive(capstan_migrate::cli::ArchiveArgs),
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// This release.
    pub release: Release,
    /// The database.
    pub store: Store,
}

/// The API router (without probes). Every API answer carries an
/// `x-capstan-release` header, which `capstan proxy` records as an event field.
pub fn app(state: AppState) -> Router {
    let release = state.release;
    Router::new()
        .route("/users", post(create_user))
        .route("/users/{id}", get(get_user))
        .route("/users/{id}/chirps", get(list_chirps).post(create_chirp))
        .route("/version", get(version))
        .with_state(Arc::new(state))
        .layer(axum::middleware::map_response(
            move |mut r: Response| async move {
                r.headers_mut().insert(
                    "x-capstan-release",
                    axum::http::HeaderValue::from_static(release.version()),
                );
                r
            },
        ))
}

struct ApiError(StoreError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0 {
            StoreError::NoUser(_) => StatusCode::NOT_FOUND,
            StoreError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            StoreError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "request failed");
        }
        (
            status,
            Json(serde_json::json!({"error": self.0.to_string()})),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
}

#[derive(Deserialize)]
struct NewChirp {
    body: String,
}

async fn create_user(
    State(s): State<Arc<AppState>>,
    Json(u): Json<NewUser>,
) -> Result<(StatusCode, Json<store::User>), ApiError> {
    let user = s
        .store
        .create_user(s.release, &u.name)
        .await
        .map_err(ApiError)?;
    Ok((StatusCode::CREATED, Json(user)))
}

async fn get_user(
    State(s): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<store::User>, ApiError> {
    Ok(Json(s.store.user(s.release, id).await.map_err(ApiError)?))
}

async fn create_chirp(
    State(s): State<Arc<AppState>>,
    Path(id): Path<i64>,
    Json(c): Json<NewChirp>,
) -> Result<(StatusCode, Json<store::Chirp>), ApiError> {
    let chirp = s
        .store
        .create_chirp(s.release, id, &c.body)
        .await
        .map_err(ApiError)?;
    Ok((StatusCode::CREATED, Json(chirp)))
}

async fn list_chirps(
    State(s): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> Result<Json<Vec<store::Chirp>>, ApiError> {
    Ok(Json(
        s.store.chirps_by(s.release, id).await.map_err(ApiError)?,
    ))
}

async fn version(State(s): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({"app": "chirpy", "version": s.release.version()}))
}

fn env_duration(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| capstan_migrate::parse_duration(&v).ok())
        .unwrap_or(default)
}

/// The entry point of every release binary.
pub fn main(release: Release) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHIRPY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        // `chirpy-vN` with no arguments serves.
        if std::env::args().len() <= 1 {
            Cli::Serve
        } else {
            e.exit()
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = std::env::var_os("CHIRPY_MIGRATIONS_DIR").map(std::path::PathBuf::from);
    if let Some(dir) = &dir {
        match MigrationSet::from_dir(dir) {
            Ok(set) => {
                let _ = MIGRATIONS_OVERRIDE.set(set);
            }
            Err(e) => {
                eprintln!("{}: CHIRPY_MIGRATIONS_DIR: {e}", release.binary());
                std::process::exit(capstan_migrate::cli::EXIT_BAD_INPUT);
            }
        }
    }
    // Migrations archive what they destroy, found by the linter's parser.
    let hooks = capstan_migrate::cli::Hooks {
        preflight: None,
        detector: Some(std::sync::Arc::new(capstan_lint::Archivist)),
    };
    let code = runtime.block_on(async move {
        match cli {
            Cli::Migrate(mut args) if dir.is_some() => {
                args.conn.dir = dir;
                capstan_migrate::cli::run_with_hooks(args, MigrationSource::Dir, hooks).await
            }
            Cli::Migrate(args) => {
                capstan_migrate::cli::run_with_hooks(
                    args,
                    MigrationSource::Embedded {
                        files: release.migrations(),
                        binary_version: format!("chirpy {}", release.version()),
                    },
                    hooks,
                )
                .await
            }
            Cli::Archive(args) => capstan_migrate::cli::run_archive(args).await,
            Cli::Serve => match serve(release).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("{}: {e}", release.binary());
                    1
                }
            },
        }
    });
    std::process::exit(code);
}

/// A start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// The gate refused this binary.
    #[error("refusing to start: {0}")]
    Gate(String),
    /// The database failed.
    #[error(transparent)]
    Migrate(#[from] capstan_migrate::Error),
    /// IO (binding the listener).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

mod serve;
pub use serve::serve;
