//! capstan proxy: a reverse proxy in front of a service's releases. It routes
//! each request by cohort, then by a sticky weighted split, optionally mirrors
//! it to a shadow release, and records one wide event per request.
//!
//! The proxy knows nothing of SLOs or rollouts: it takes a [`RoutingTable`]
//! through a `tokio::sync::watch` channel and emits events.

mod admin;
mod answer;
pub mod cli;
mod client_io;
mod config;
mod fleet;
mod headers;
mod local_events;
mod metrics;
mod mirror;
mod pool;
mod proxy;
mod routing;
mod server;
mod unwind;
mod upstream;

pub use config::{parse as parse_config, ConfigError, FleetSettings, Settings};
pub use fleet::{live_addresses, FleetReport};
pub use routing::{route, Decision, RequestFacts, RoutingTable};
pub use server::{run, Bound, ServeError};
