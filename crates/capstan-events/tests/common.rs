//! Generated events shared by the tests.
#![allow(dead_code, missing_docs)]

use capstan_events::Event;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const T0: i64 = 1_790_000_000_000 - 1_790_000_000_000 % 60_000;

/// `n` events over `minutes` minutes from `T0`, with a few values of each dimension.
pub fn generate(n: usize, minutes: i64, seed: u64) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let services = ["chirpy", "billing"];
    let routes = ["/api/chirps", "/api/chirps/{id}", "/api/users", "/healthz"];
    let releases = ["1.0.0", "2.0.0"];
    let cohorts = ["", "internal"];
    let statuses = [200u16, 200, 200, 201, 204, 301, 404, 429, 500, 502, 503, 0];
    let plans = ["free", "pro", "team"];
    (0..n)
        .map(|_| {
            let status = statuses[rng.random_range(0..statuses.len())];
            let release = releases[rng.random_range(0..2)];
            // 2.0.0 is slower, so compare has something to find.
            let base: f64 = if release == "2.0.0" { 80.0 } else { 20.0 };
            let duration_ms = (base * rng.random_range(0.1..8.0f64) * 100.0).round() / 100.0;
            let mut e = Event {
                time_ms: T0 + rng.random_range(0..minutes * 60_000),
                service: services[rng.random_range(0..2)].into(),
                method: if rng.random_bool(0.8) { "GET" } else { "POST" }.into(),
                route: routes[rng.random_range(0..routes.len())].into(),
                path: format!("/p/{}", rng.random_range(0..50)).into(),
                status,
                duration_ms,
                upstream_ms: if status == 0 {
                    None
                } else {
                    Some(duration_ms * 0.9)
                },
                bytes_in: rng.random_range(0..2000),
                bytes_out: rng.random_range(0..20000),
                release: release.into(),
                instance: format!("127.0.0.1:{}", 8080 + rng.random_range(0..3)).into(),
                cohort: cohorts[rng.random_range(0..2)].into(),
                user: rng
                    .random_bool(0.7)
                    .then(|| format!("u{}", rng.random_range(0..40)).into()),
                trace_id: Some(format!("{:032x}", rng.random::<u128>()).into()),
                error: match status {
                    0 => Some("connect".into()),
                    s if s >= 500 => Some("upstream_5xx".into()),
                    _ => None,
                },
                mirror: None,
                fields: Default::default(),
            };
            if rng.random_bool(0.6) {
                e.fields
                    .insert("plan".into(), plans[rng.random_range(0..3)].into());
            }
            e
        })
        .collect()
}

pub fn temp_store() -> (tempfile::TempDir, capstan_events::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = capstan_events::Store::open(&dir.path().join("events.db")).unwrap();
    (dir, store)
}

/// The protobuf `google.rpc.Status` the OTLP receiver answers a protobuf
/// request's error with (the OTLP messages crate does not carry it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}
