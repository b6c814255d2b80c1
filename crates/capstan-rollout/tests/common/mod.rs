//! A real Prometheus on a free port, with fixed data backfilled by
//! `promtool tsdb create-blocks-from openmetrics`, so every answer is the same.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Start of the backfilled data (unix seconds).
pub const T0: i64 = 1_700_000_000;
/// The end of the data, when the judge is asked (unix milliseconds).
pub const AT_MS: i64 = (T0 + 600) * 1000;

/// A Prometheus server; killed on drop.
pub struct PromServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One release's traffic over the 10 minutes.
struct Release {
    name: &'static str,
    requests: u64,
    errors: u64,
    /// Cumulative counts at le = 0.025, 0.05, 0.1, 0.25, 0.5, 1, +Inf seconds.
    buckets: [u64; 7],
    /// Resident memory in MB around which the gauge moves.
    memory_mb: f64,
}

const LE: [&str; 7] = ["0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf"];

/// v1 is the baseline; v2 a healthy canary; v3 triples the error ratio and uses
/// more memory; v4 has almost no traffic.
const RELEASES: [Release; 4] = [
    Release {
        name: "v1",
        requests: 10_000,
        errors: 100,
        buckets: [1_000, 4_000, 8_000, 9_500, 9_900, 9_990, 10_000],
        memory_mb: 100.0,
    },
    Release {
        name: "v2",
        requests: 10_000,
        errors: 95,
        buckets: [1_010, 3_990, 8_010, 9_490, 9_905, 9_990, 10_000],
        memory_mb: 100.0,
    },
    Release {
        name: "v3",
        requests: 10_000,
        errors: 300,
        buckets: [1_000, 4_000, 8_000, 9_500, 9_900, 9_990, 10_000],
        memory_mb: 160.0,
    },
    Release {
        name: "v4",
        requests: 50,
        errors: 0,
        buckets: [5, 20, 40, 48, 50, 50, 50],
        memory_mb: 100.0,
    },
];

/// The OpenMetrics text: counters growing linearly from 0 at T0, a histogram,
/// a memory gauge per release, and an error-budget gauge per service.
fn openmetrics() -> String {
    let steps = 40; // every 15 s over 600 s
    let mut out = String::new();
    out.push_str("# TYPE http_requests counter\n");
    for r in &RELEASES {
        for (code, total) in [("200", r.requests - r.errors), ("500", r.errors)] {
            for i in 0..=steps {
                let v = total * i / steps;
                let _ = writeln!(
                    out,
                    "http_requests_total{{release=\"{}\",code=\"{code}\"}} {v} {}",
                    r.name,
                    T0 + i as i64 * 15
                );
            }
        }
    }
    out.push_str("# TYPE http_request_duration_seconds histogram\n");
    for r in &RELEASES {
        for i in 0..=steps {
            let t = T0 + i as i64 * 15;
            for (le, c) in LE.iter().zip(r.buckets) {
                let _ = writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{release=\"{}\",le=\"{le}\"}} {} {t}",
                    r.name,
                    c * i / steps
                );
            }
            let count = r.buckets[6] * i / steps;
            let _ = writeln!(
                out,
                "http_request_duration_seconds_count{{release=\"{}\"}} {count} {t}",
                r.name
            );
            let _ = writeln!(
                out,
                "http_request_duration_seconds_sum{{release=\"{}\"}} {} {t}",
                r.name,
                count as f64 * 0.06
            );
        }
    }
    out.push_str("# TYPE process_resident_memory_bytes gauge\n");
    for r in &RELEASES {
        for i in 0..=steps {
            // A fixed wobble of ±3 MB so the samples are not all tied.
            let wobble = ((i * 7) % 13) as f64 - 6.0;
            let _ = writeln!(
                out,
                "process_resident_memory_bytes{{release=\"{}\"}} {} {}",
                r.name,
                (r.memory_mb + wobble * 0.5) * 1e6,
                T0 + i as i64 * 15
            );
        }
    }
    out.push_str("# TYPE slo_error_budget_remaining_ratio gauge\n");
    for (service, v) in [("podinfo", 0.4), ("spent", -0.1)] {
        for i in 0..=steps {
            let _ = writeln!(
                out,
                "slo_error_budget_remaining_ratio{{service=\"{service}\"}} {v} {}",
                T0 + i as i64 * 15
            );
        }
    }
    out.push_str("# EOF\n");
    out
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (install the Debian package `prometheus`)"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Backfills the data and starts Prometheus on it; waits (bounded) until ready.
pub fn start_prometheus() -> PromServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let om = dir.path().join("data.om");
    std::fs::write(&om, openmetrics()).expect("write openmetrics");
    let tsdb = dir.path().join("tsdb");
    run(
        Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&tsdb),
        "promtool tsdb create-blocks-from openmetrics",
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 1h\n").expect("write config");
    for _attempt in 0..3 {
        let port = free_port();
        if let Some((child, url)) = try_start(dir.path(), &config, &tsdb, port) {
            return PromServer {
                child,
                url,
                _dir: dir,
            };
        }
    }
    panic!("prometheus did not become ready on any of three ports");
}

fn try_start(dir: &Path, config: &Path, tsdb: &Path, port: u16) -> Option<(Child, String)> {
    let log = std::fs::File::create(dir.join(format!("prometheus-{port}.log"))).expect("log file");
    let mut child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("start prometheus: {e} (install the Debian package `prometheus`)")
        });
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join(format!("prometheus-{port}.log")))
                .unwrap_or_default();
            eprintln!("prometheus exited on port {port}:\n{log}");
            return None;
        }
        if ready(port) {
            return Some((child, url));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log =
        std::fs::read_to_string(dir.join(format!("prometheus-{port}.log"))).unwrap_or_default();
    panic!("prometheus not ready within 30 s on port {port}:\n{log}");
}

/// `GET /-/ready` answers 200 (plain HTTP over a socket with a 1 s bound).
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// The judge.toml the tests serve, pointing at `url`.
pub fn judge_toml(url: &str, event_log: &Path) -> String {
    format!(
        r#"
[judge]
lookback = "10m"
event_log = "{log}"

[prometheus]
url = "{url}"
timeout = "3s"

[groups]
availability = 2
latency = 1
resources = 1

[[metric]]
name = "errors"
kind = "error_ratio"
group = "availability"
critical = true
canary_errors = 'sum(http_requests_total{{release="{{{{canary}}}}",code=~"5.."}}) - sum(http_requests_total{{release="{{{{canary}}}}",code=~"5.."}} offset {{{{interval}}}})'
canary_total = 'sum(http_requests_total{{release="{{{{canary}}}}"}}) - sum(http_requests_total{{release="{{{{canary}}}}"}} offset {{{{interval}}}})'
baseline_errors = 'sum(http_requests_total{{release="{{{{baseline}}}}",code=~"5.."}}) - sum(http_requests_total{{release="{{{{baseline}}}}",code=~"5.."}} offset {{{{interval}}}})'
baseline_total = 'sum(http_requests_total{{release="{{{{baseline}}}}"}}) - sum(http_requests_total{{release="{{{{baseline}}}}"}} offset {{{{interval}}}})'

[[metric]]
name = "latency"
kind = "latency"
group = "latency"
critical = true
scale = 1000
canary_buckets = 'sum by (le) (http_request_duration_seconds_bucket{{release="{{{{canary}}}}"}})'
baseline_buckets = 'sum by (le) (http_request_duration_seconds_bucket{{release="{{{{baseline}}}}"}})'

[[metric]]
name = "memory"
kind = "custom"
group = "resources"
direction = "increase"
tolerance = 0.1
step = "15s"
canary = 'process_resident_memory_bytes{{release="{{{{canary}}}}"}}'
baseline = 'process_resident_memory_bytes{{release="{{{{baseline}}}}"}}'

[[gate]]
name = "error-budget"
query = 'slo_error_budget_remaining_ratio{{service="{{{{name}}}}"}}'
min = 0.0
"#,
        log = event_log.display()
    )
}
