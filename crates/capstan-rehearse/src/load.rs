//! `--load`: a small load generator that keeps requests flowing to whichever
//! binaries are serving, and per-window statistics: requests, errors, p50/p99
//! latency and the longest stall.
//!
//! Each worker repeats a mix of writes and reads (`POST /users`,
//! `POST /users/{id}/chirps`, `GET /users/{id}`, `GET /users/{id}/chirps`)
//! against the targets in turn. A target is removed before its process is
//! stopped and in-flight requests to it finish first, the way a load balancer
//! drains an instance, so stopping a binary is not counted as errors.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One completed request.
#[derive(Debug, Clone, Copy)]
struct Sample {
    start: Instant,
    end: Instant,
    ok: bool,
}

#[derive(Debug, Clone)]
struct Target {
    base: String,
    inflight: Arc<AtomicUsize>,
}

#[derive(Default)]
struct Shared {
    targets: Mutex<Vec<Target>>,
    samples: Mutex<Vec<Sample>>,
    /// `(since, serving)`: whether any target was registered, over time.
    serving: Mutex<Vec<(Instant, bool)>>,
    stop: AtomicBool,
    next: AtomicUsize,
}

/// The running load generator.
pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

/// Statistics of one window (a cell of the rehearsal).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadStats {
    /// Requests completed.
    pub requests: usize,
    /// Of which failed (no answer, or a 5xx/4xx status).
    pub errors: usize,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// The longest stall, milliseconds: the longest gap with no completed
    /// request while a binary was serving, or the slowest request.
    pub stall_ms: f64,
    /// When the stall started, milliseconds after the window opened.
    pub stall_at_ms: f64,
    /// The migrations that ran during the stall.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stall_during: Vec<String>,
}

impl Load {
    /// Starts `workers` workers; they idle until a target is added.
    pub fn start(workers: usize) -> Load {
        let shared = Arc::new(Shared::default());
        shared
            .serving
            .lock()
            .expect("fresh")
            .push((Instant::now(), false));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(workers)
            .build()
            .expect("an HTTP client");
        let workers = (0..workers)
            .map(|w| {
                let shared = shared.clone();
                let client = client.clone();
                tokio::spawn(async move { worker(w, shared, client).await })
            })
            .collect();
        Load { shared, workers }
    }

    fn mark_serving(&self, targets: &[Target]) {
        let serving = !targets.is_empty();
        let mut s = self.shared.serving.lock().expect("not poisoned");
        if s.last().map(|l| l.1) != Some(serving) {
            s.push((Instant::now(), serving));
        }
    }

    /// Sends load to `base` (`http://127.0.0.1:PORT`) too.
    pub fn add(&self, base: &str) {
        let mut t = self.shared.targets.lock().expect("not poisoned");
        t.push(Target {
            base: base.to_string(),
            inflight: Arc::default(),
        });
        self.mark_serving(&t);
    }

    /// Stops sending load to `base`, and waits (up to 10 s) for the requests
    /// in flight to it to finish.
    pub async fn remove(&self, base: &str) {
        let removed: Vec<Target> = {
            let mut t = self.shared.targets.lock().expect("not poisoned");
            let (gone, kept): (Vec<_>, Vec<_>) = t.drain(..).partition(|x| x.base == base);
            *t = kept;
            self.mark_serving(&t);
            gone
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        for r in removed {
            while r.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    /// Statistics of the requests that completed in `[from, to)`;
    /// `migrations` are `(label, start, end)` to name the one a stall overlaps.
    pub fn stats(
        &self,
        from: Instant,
        to: Instant,
        migrations: &[(String, Instant, Instant)],
    ) -> LoadStats {
        let samples: Vec<Sample> = self
            .shared
            .samples
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|s| s.end >= from && s.end < to)
            .copied()
            .collect();
        let serving = self.shared.serving.lock().expect("not poisoned").clone();
        stats_of(&samples, &serving, from, to, migrations)
    }

    /// Stops the workers.
    pub async fn stop(mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for w in std::mem::take(&mut self.workers) {
            let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// Whether a target was registered during all of `[a, b]`.
fn served_throughout(serving: &[(Instant, bool)], a: Instant, b: Instant) -> bool {
    let mut state = false;
    for &(at, on) in serving {
        if at <= a {
            state = on;
        } else if at < b && !on {
            return false;
        }
    }
    state
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn stats_of(
    samples: &[Sample],
    serving: &[(Instant, bool)],
    from: Instant,
    to: Instant,
    migrations: &[(String, Instant, Instant)],
) -> LoadStats {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut lat: Vec<f64> = samples.iter().map(|s| ms(s.end - s.start)).collect();
    lat.sort_by(f64::total_cmp);
    // The slowest request, and the longest gap between completions while serving.
    let mut stall = (0.0, from);
    let mut stall_end = from;
    for s in samples {
        let d = ms(s.end - s.start);
        if d > stall.0 {
            stall = (d, s.start);
            stall_end = s.end;
        }
    }
    let mut ends: Vec<Instant> = samples.iter().map(|s| s.end).collect();
    ends.sort();
    for w in ends.windows(2) {
        let d = ms(w[1] - w[0]);
        if d > stall.0 && served_throughout(serving, w[0], w[1]) {
            stall = (d, w[0]);
            stall_end = w[1];
        }
    }
    let stall_at = stall.1.max(from);
    let during = migrations
        .iter()
        .filter(|(_, a, b)| *a < stall_end && *b > stall.1)
        .map(|(l, _, _)| l.clone())
        .collect();
    LoadStats {
        requests: samples.len(),
        errors: samples.iter().filter(|s| !s.ok).count(),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        stall_ms: stall.0,
        stall_at_ms: ms(stall_at - from),
        stall_during: during,
    }
    .round()
    .clamp_window(ms(to - from))
}

impl LoadStats {
    fn round(mut self) -> Self {
        let r = |x: f64| (x * 10.0).round() / 10.0;
        self.p50_ms = r(self.p50_ms);
        self.p99_ms = r(self.p99_ms);
        self.stall_ms = r(self.stall_ms);
        self.stall_at_ms = r(self.stall_at_ms);
        self
    }

    fn clamp_window(mut self, window_ms: f64) -> Self {
        if self.stall_at_ms > window_ms {
            self.stall_at_ms = window_ms;
        }
        self
    }
}

async fn worker(w: usize, shared: Arc<Shared>, client: reqwest::Client) {
    let mut user: Option<(String, i64)> = None;
    let mut i: u64 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let target = {
            let t = shared.targets.lock().expect("not poisoned");
            if t.is_empty() {
                None
            } else {
                let n = shared.next.fetch_add(1, Ordering::Relaxed);
                Some(t[n % t.len()].clone())
            }
        };
        let Some(target) = target else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        i += 1;
        let base = &target.base;
        let step = i % 4;
        let req = match (&user, step) {
            (None, _) | (_, 0) => client
                .post(format!("{base}/users"))
                .json(&serde_json::json!({"name": format!("load-{w}-{i}")})),
            (Some((_, id)), 1) => client
                .post(format!("{base}/users/{id}/chirps"))
                .json(&serde_json::json!({"body": format!("load {i}")})),
            (Some((_, id)), 2) => client.get(format!("{base}/users/{id}")),
            (Some((_, id)), _) => client.get(format!("{base}/users/{id}/chirps")),
        };
        let creates = user.is_none() || step == 0;
        target.inflight.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        let resp = req.timeout(Duration::from_secs(60)).send().await;
        let (ok, body) = match resp {
            Ok(r) if r.status().is_success() => (true, r.text().await.ok()),
            _ => (false, None),
        };
        let end = Instant::now();
        target.inflight.fetch_sub(1, Ordering::SeqCst);
        if creates {
            if let Some(id) = body
                .as_deref()
                .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                .and_then(|v| v["id"].as_i64())
            {
                user = Some((base.clone(), id));
            }
        }
        shared
            .samples
            .lock()
            .expect("not poisoned")
            .push(Sample { start, end, ok });
        if !ok {
            // Don't spin on a failing target.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_request_and_a_gap_are_stalls_but_idle_time_is_not() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let s = |a: u64, b: u64| Sample {
            start: at(a),
            end: at(b),
            ok: true,
        };
        let serving = vec![(t0, true), (at(100), false), (at(900), true)];
        // Gap 100..900 is idle (no target): not a stall. 950..1400 is a slow
        // request, and no request completed from 910 to 1400.
        let samples = vec![s(0, 10), s(10, 100), s(905, 910), s(950, 1400)];
        let st = stats_of(
            &samples,
            &serving,
            t0,
            at(2000),
            &[("0002_index".into(), at(940), at(1390))],
        );
        assert_eq!(st.requests, 4);
        assert_eq!(st.stall_ms, 490.0);
        assert_eq!(st.stall_during, vec!["0002_index".to_string()]);
    }
}
