//! Times one verdict on a large comparison: an error ratio and a latency metric
//! with N lognormal samples a side (default 1,000,000; canary 2 % slower), from the
//! raw values to the report. Prints one JSON line per round:
//! `{"samples":N,"sort_ms":..,"verdict_ms":..,"hl_method":".."}`, where `sort_ms`
//! is the limit (sorting both sides with the same radix sort on two threads, as
//! the judge's `Samples::pair_from_values` does; any rank test must sort) and `verdict_ms`
//! the whole judgement including that sort.
//!
//! `cargo run --release -p capstan-rollout --example judge_bench -- [N] [ROUNDS]`

use std::collections::BTreeMap;
use std::time::Instant;

use capstan_rollout::judge::{
    judge, Counts, Evidence, Interval, MetricSpec, Observed, Rule, Samples, Thresholds,
};

/// A small deterministic generator (SplitMix64) so the example needs no RNG crate.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Lognormal with median `median` and log-space σ 0.5 (Box–Muller).
    fn lognormal(&mut self, median: f64) -> f64 {
        let (u1, u2) = (self.next_f64().max(1e-300), self.next_f64());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        median * (0.5 * z).exp()
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("N: a number"));
    let rounds: usize = args
        .next()
        .map_or(5, |a| a.parse().expect("ROUNDS: a number"));
    let mut rng = SplitMix(42);
    let canary: Vec<f64> = (0..n).map(|_| rng.lognormal(51.0)).collect();
    let baseline: Vec<f64> = (0..n).map(|_| rng.lognormal(50.0)).collect();
    let specs = [
        MetricSpec {
            name: "errors".into(),
            group: "availability".into(),
            critical: true,
            rule: Rule::error_ratio(),
        },
        MetricSpec {
            name: "latency".into(),
            group: "latency".into(),
            critical: true,
            rule: Rule::latency(),
        },
    ];
    let interval = Interval {
        from_ms: 0,
        to_ms: 60_000,
        at_ms: 60_000,
    };
    for _ in 0..rounds {
        let (c, b) = (canary.clone(), baseline.clone());
        let start = Instant::now();
        let (mut c2, mut b2) = (c.clone(), b.clone());
        std::thread::scope(|s| {
            s.spawn(|| radsort::sort(&mut b2));
            radsort::sort(&mut c2);
        });
        let sort_ms = start.elapsed().as_secs_f64() * 1e3;
        std::hint::black_box((c2, b2));

        let start = Instant::now();
        let (canary_samples, baseline_samples) = Samples::pair_from_values(c, b).expect("finite");
        let observed = [
            Observed::Counts {
                canary: Counts {
                    errors: n as u64 / 100,
                    total: n as u64,
                },
                baseline: Counts {
                    errors: n as u64 / 100,
                    total: n as u64,
                },
            },
            Observed::Samples {
                canary: canary_samples,
                baseline: baseline_samples,
            },
        ];
        let report = judge(
            &specs,
            &observed,
            &BTreeMap::new(),
            &Thresholds::default(),
            interval,
        );
        let verdict_ms = start.elapsed().as_secs_f64() * 1e3;
        let hl_method = match &report.metrics[1].evidence {
            Evidence::MannWhitney { hodges_lehmann, .. } => format!("{:?}", hodges_lehmann.method),
            _ => "none".into(),
        };
        println!(
            "{{\"samples\":{n},\"sort_ms\":{sort_ms:.1},\"verdict_ms\":{verdict_ms:.1},\"verdict\":\"{:?}\",\"hl_method\":\"{hl_method}\"}}",
            report.verdict
        );
    }
}
