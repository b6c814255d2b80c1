//! Service level objectives for capstan: OpenSLO v1 files ([`spec`]), the
//! pure SLO math ([`math`]), objectives against the dependencies declared
//! in `capstan.toml` ([`deps`]), the sources counts come from ([`source`]: the
//! capstan event store, Prometheus), Prometheus rules ([`rules`]), the deploy
//! log ([`deploys`]), `thresholdMetric` SLOs over the event store
//! ([`threshold`]), the error budget policy and gate ([`policy`]), and the
//! `capstan slo` command ([`cli`]).

pub mod cli;
pub mod deploys;
pub mod deps;
pub mod math;
pub mod policy;
pub mod rules;
pub mod source;
pub mod spec;
pub mod threshold;
