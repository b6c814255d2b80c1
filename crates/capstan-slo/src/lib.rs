//! Service level objectives for capstan: OpenSLO v1 files, the pure SLO math,
//! objectives against the dependencies declared in `capstan.toml`, the
//! sources counts come from (the capstan event store, Prometheus), Prometheus
//! rules, the deploy log, `thresholdMetric` SLOs over the event store, the
//! error budget policy and gate, and the `capstan slo` command.
//!
//! # The public surface
//!
//! Every other module is private; the items re-exported here are the crate's
//! API:
//!
//! - the `capstan slo` command: [`SloArgs`], [`run_slo`] and its exit codes
//!   ([`EXIT_OK`] …);
//! - evaluating objectives: [`Settings`] (from `capstan.toml`), [`status`],
//!   [`evaluate_all`] and [`ObjectiveStatus`], the error budget [`gate`]
//!   ([`Verdict`]) and [`contract_gate`] for `migrate up`;
//! - the deploy log ([`DeployLog`], [`Deploy`]) and the sources of counts
//!   ([`Loaded`], [`Prometheus`]);
//! - Prometheus recording and alerting rules ([`render_rules`]).
//!
//! Three public modules are sub-APIs of their own: [`spec`], the OpenSLO
//! files and their model; [`math`], the pure SLO math; [`deps`], the pure
//! check of objectives against dependencies.

mod cli;
mod deploys;
pub mod deps;
pub mod math;
mod policy;
mod rules;
mod source;
pub mod spec;
mod threshold;

pub use cli::{
    contract_gate, evaluate_all, gate, import_deploys, render_status, run as run_slo, status,
    ObjectiveStatus, Settings, SloArgs, StatusError, StatusReport, EXIT_BAD_INPUT, EXIT_FROZEN,
    EXIT_OK, EXIT_SOURCE, EXIT_USAGE, EXIT_WARNINGS,
};
pub use deploys::{Deploy, DeployKind, DeployLog, DeployLogError};
pub use policy::{minutes_label, Policy, Verdict};
pub use rules::render as render_rules;
pub use source::{
    capstan_counts, capstan_series, Loaded, Prometheus, SourceError, SpanCounts, StoreCounts,
};
