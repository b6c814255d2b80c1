//! Canary analysis for progressive rollouts.
//!
//! [`judge`] compares a canary with its baseline over the same interval (Kayenta's
//! model: the baseline is the old release serving at the same time), metric by
//! metric, and combines the outcomes into a [`judge::Verdict`] with its evidence. It
//! is pure: no IO, no async, time injected; too little data is inconclusive, never
//! a pass.
//!
//! [`controller`] turns verdicts into traffic: a rollout's steps through the
//! proxy's admin API, its state persisted so it survives a restart.

pub mod judge;

pub mod config;
pub mod controller;
pub mod prometheus;
pub mod server;

pub use config::JudgeConfig;
pub use server::{judge_router, JudgeState};

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod rollout_cli;
