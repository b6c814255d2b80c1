//! `capstan rehearse`: prove a release is safe to roll forward and back before
//! it ships.
//!
//! Given the releases of a service in deploy order ([`Config`], read
//! from `rehearse.toml` or built from `--release` flags), rehearse walks every step from release N to N+1 on a
//! fresh database (a SQLite file, or a database it creates and drops on a
//! Postgres server) and records one [`Cell`] per (binary, schema state):
//!
//! 1. schema at N, binary N: smoke passes (the baseline);
//! 2. N+1's expand migrations applied while binary N serves; N still passes;
//! 3. binary N+1 starts (passes the gate) and passes the smoke test;
//! 4. binary rolled back: N restarted on this schema passes;
//! 5. N+1's contract migrations applied with N stopped: N+1 passes, and N is
//!    refused by the gate — the expected result, shown as such;
//! 6. if the migrations have down sections: down to N's schema, N passes.
//!
//! A plan with `[move]` ([`Move`]) is instead one step across two services
//! sharing the database: a table's move (`capstan plan-move`) from the first
//! release's service to the second's, each step applied in its service's
//! history while the source's old binary serves and, from step 3, the
//! target's new binary beside it; then each step rolled back, latest first.
//!
//! Each smoke run can read what the previous binary wrote (`{{prev.…}}` in a
//! smoke file), which is how a release that stops writing a column is
//! caught when the older binary reads its rows. With a load generator
//! ([`Options::load`]) requests keep flowing through every step and each cell
//! reports requests, errors, latency and the longest stall.
//!
//! ```no_run
//! # async fn demo() -> Result<(), capstan_rehearse::Error> {
//! use capstan_rehearse::{rehearse, Backend, Config, Options};
//! let config = Config::load("rehearse.toml".as_ref())?;
//! let report = rehearse(&config, &Options::new(Backend::Sqlite)).await?;
//! println!("{}", report.to_text());
//! # Ok(()) }
//! ```
//!
//! Processes are started in their own process groups and killed (the whole
//! group) when dropped, so a failure, a panic or Ctrl-C (see [`cli`]) leaves
//! nothing running; scratch Postgres databases are dropped the same way.

pub mod cli;
mod config;
mod db;
mod load;
mod migrations;
mod moving;
mod process;
mod report;
mod run;
mod smoke;

use std::path::PathBuf;
use std::time::Duration;

pub use config::{Config, Flags, Migrations, Origin, Release, Smoke};
pub use db::Backend;
pub use load::LoadStats;
pub use moving::Move;
pub use report::{Cell, Failure, Outcome, Report, StepReport, Timings, FORMAT_VERSION};
pub use run::rehearse;

/// Why a rehearsal could not run at all. Unexpected cells are not errors:
/// they are in the [`Report`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `rehearse.toml` (or a `--release` flag), a smoke file or a migration
    /// directory is invalid.
    #[error("{}: {message}", file.display())]
    Config {
        /// The file, or the flag (`--env X`) when the plan came from flags.
        file: PathBuf,
        /// What is wrong (names the field).
        message: String,
    },
    /// The database server could not be used (password hidden).
    #[error("{0}")]
    Database(String),
}

/// How to rehearse.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the scratch databases are made.
    pub backend: Backend,
    /// Keep requests flowing through every step.
    pub load: bool,
    /// Concurrent load workers.
    pub load_workers: usize,
    /// With `load`: a longer stall makes the cell an unexpected failure.
    pub max_stall: Duration,
    /// Rehearse only the step from the release at this index (0-based).
    pub only_step: Option<usize>,
    /// Scratch databases are named `PREFIX_<pid>_<n>_s<step>`.
    pub scratch_prefix: String,
}

impl Options {
    /// Defaults: no load; 4 workers and a 1 s stall limit when load is on.
    pub fn new(backend: Backend) -> Options {
        Options {
            backend,
            load: false,
            load_workers: 4,
            max_stall: Duration::from_secs(1),
            only_step: None,
            scratch_prefix: "capstan_rehearse".into(),
        }
    }
}
