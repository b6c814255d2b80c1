//! `capstan dashboard` in a real browser: headless Chromium driven through
//! chromedriver (WebDriver), against the real binary, over a seeded month of
//! traffic with two deploys. One browser for the whole file: the checks run
//! in order in one test. Screenshots of each page go to
//! `target/dashboard-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use capstan_events::{Event, Store};
use capstan_rollout::controller::store::StateStore;
use capstan_rollout::controller::{
    keep_report, reconcile, run, Command as RolloutCommand, Judged, Limits, LogKind, Observation,
    State, Step, Target,
};
use capstan_rollout::judge::{self, Direction, Interval, MetricSpec, Observed, Rule, Samples};
use capstan_slo::{Deploy, DeployKind, DeployLog};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::Value;

const MIN: i64 = 60_000;
const PER_MINUTE: i64 = 2;
const TOKEN: &str = "a-long-enough-dashboard-token";

const SLOS: &str = r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: api-availability
spec:
  service: api
  indicator:
    metadata:
      name: api-ok
    spec:
      ratioMetric:
        good:
          metricSource: {type: capstan, spec: {query: "status >= 100 and status < 500"}}
        total:
          metricSource: {type: capstan, spec: {query: "status >= 0"}}
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: api-latency
spec:
  service: api
  indicator:
    metadata:
      name: api-fast
    spec:
      ratioMetric:
        good:
          metricSource: {type: capstan, spec: {query: "duration_ms <= 100"}}
        total:
          metricSource: {type: capstan, spec: {query: "status >= 0"}}
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Timeslices
  objectives:
    - target: 0.99
      timeSliceTarget: 0.9
      timeSliceWindow: 5m
"#;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A month of `api` traffic ending at `now`: deploy A (release 1.1.0, 20 days
/// ago) fails half its requests for 30 minutes; deploy B (1.2.0, 50 minutes
/// ago, as a canary taking every minute's first request) fails one request
/// in five minutes, and both are slower since. The rollout of 1.2.0 had a
/// verdict over that data, which moved it to its second step.
fn seed(dir: &Path, now: i64) {
    std::fs::create_dir_all(dir.join("slos")).unwrap();
    std::fs::write(dir.join("slos/api.yaml"), SLOS).unwrap();
    let a = now - 20 * 1440 * MIN;
    let b = now - 50 * MIN;
    let store = Store::open(&dir.join("events.db")).unwrap();
    let mut batch = Vec::new();
    let mut m = now - 30 * 1440 * MIN;
    while m < now {
        let release = |i: i64| {
            if m >= b && i == 0 {
                "1.2.0"
            } else if m >= a {
                "1.1.0"
            } else {
                "1.0.0"
            }
        };
        for i in 0..PER_MINUTE {
            let bad = ((a..a + 30 * MIN).contains(&m) && i < 2)
                || (m >= b && i == 0 && (m / MIN) % 5 == 0);
            batch.push(Event {
                time_ms: m + i * 15_000 + 7,
                service: "api".into(),
                method: if i == 1 { "POST" } else { "GET" }.into(),
                route: if i % 2 == 0 {
                    "/things/{id}"
                } else {
                    "/things"
                }
                .into(),
                path: format!("/things/{i}").into(),
                status: if bad { 503 } else { 200 },
                duration_ms: if m >= b {
                    40.0 + 30.0 * i as f64
                } else {
                    12.0 + i as f64
                },
                release: release(i).into(),
                cohort: if i == 1 { "internal" } else { "" }.into(),
                ..Event::default()
            });
        }
        if batch.len() >= 40_000 {
            store.insert_batch(&batch).unwrap();
            batch.clear();
        }
        m += MIN;
    }
    store.insert_batch(&batch).unwrap();
    let log = DeployLog::open(&dir.join("events.db")).unwrap();
    for (t, subject) in [(a, "api 1.1.0"), (b, "api 1.2.0")] {
        log.record(
            &Deploy {
                time_ms: t,
                service: "api".into(),
                kind: DeployKind::Release,
                subject: subject.into(),
                detail: String::new(),
            },
            None,
        )
        .unwrap();
    }
    log.record(
        &Deploy {
            time_ms: b + MIN,
            service: "api".into(),
            kind: DeployKind::Rollout,
            subject: "1.2.0 step 1 (internal)".into(),
            detail: "step: entered".into(),
        },
        None,
    )
    .unwrap();
    let states = StateStore::open(&dir.join("rollout.db")).unwrap();
    let (state, entries) = judged_rollout(&store, b, now);
    for e in entries {
        log.record(&e, None).unwrap();
    }
    states.save(&state).unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
}

/// The rollout of 1.2.0 against 1.1.0 started at `b`, after the
/// controller's pure decision on a verdict the judge made over the store's
/// events of `[b, now)` (tolerances wide enough to pass): its state, with
/// the report kept, and its deploy log entries.
fn judged_rollout(store: &Store, b: i64, now: i64) -> (State, Vec<Deploy>) {
    let (c, base, cl, bl) = run::observe(store, "api", "1.1.0", "1.2.0", b, now).unwrap();
    let spec = |name: &str, group: &str, rule| MetricSpec {
        name: name.into(),
        group: group.into(),
        critical: true,
        rule,
    };
    let specs = [
        spec(
            "errors",
            "availability",
            Rule::ErrorRatio {
                direction: Direction::Increase,
                min_requests: 30,
                relative_tolerance: 100.0,
                absolute_tolerance: 0.5,
            },
        ),
        spec(
            "latency",
            "latency",
            Rule::Latency {
                min_samples: 30,
                shift_tolerance: 10.0,
                p99_tolerance: 10.0,
            },
        ),
    ];
    let observed = [
        Observed::Counts {
            canary: c,
            baseline: base,
        },
        Observed::Samples {
            canary: Samples::from_values(cl).unwrap(),
            baseline: Samples::from_values(bl).unwrap(),
        },
    ];
    let interval = Interval {
        from_ms: b,
        to_ms: now,
        at_ms: now,
    };
    let report = judge::judge(
        &specs,
        &observed,
        &Default::default(),
        &judge::Thresholds::default(),
        interval,
    );
    assert_eq!(report.verdict, judge::Verdict::Pass, "{report:?}");
    let step = |target| Step {
        target,
        min_duration_ms: 0,
        min_requests: 30,
        interval_ms: 60_000,
    };
    let steps = [
        step(Target::Internal),
        step(Target::Weight { percent: 5 }),
        step(Target::Weight { percent: 100 }),
    ];
    let before = State::new("api", "1.1.0", "1.2.0", b);
    let obs = Observation {
        command: None,
        judged: Some(Judged {
            verdict: report.verdict,
            from_ms: b,
            at_ms: now,
            canary_requests: c.total,
            baseline_requests: base.total,
            canary_errors: c.errors,
            summary: report.reason.clone(),
        }),
        gate_refused: None,
    };
    let limits = Limits {
        hold_limit: 2,
        page_burn: None,
    };
    let mut d = reconcile(&before, &steps, &limits, &obs, now);
    keep_report(&before, &mut d, report);
    assert_eq!(d.state.step, 1, "{:?}", d.log);
    let entries = d
        .log
        .iter()
        .map(|e| Deploy {
            time_ms: now,
            service: "api".into(),
            kind: if e.kind == LogKind::Rollback {
                DeployKind::Rollback
            } else {
                DeployKind::Rollout
            },
            subject: e.subject.clone(),
            detail: format!(
                "{}: {}",
                serde_json::to_value(e.kind).unwrap().as_str().unwrap(),
                e.detail
            ),
        })
        .collect();
    (d.state, entries)
}

fn capstan(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "capstan {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let d = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

fn wait_http(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let host = url.trim_start_matches("http://");
        let (addr, path) = host.split_once('/').unwrap_or((host, ""));
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            use std::io::{Read, Write};
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = write!(
                s,
                "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            );
            // The status line is enough (a server may keep the connection open).
            let mut buf = [0u8; 12];
            let _ = s.read_exact(&mut buf);
            if &buf == b"HTTP/1.1 200" || &buf == b"HTTP/1.0 200" {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_chromedriver() -> (Killed, String) {
    let bin = ["chromedriver", "/usr/bin/chromedriver"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("chromedriver is not installed: apt-get install chromium chromium-driver (scripts/test.sh does)");
    let port = capstan_testkit::free_port();
    let child = Command::new(bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let k = Killed(child);
    wait_http(&format!("{url}/status"), Duration::from_secs(15));
    (k, url)
}

/// A headless Chromium; `dark`: the pages see `prefers-color-scheme: dark`
/// (Blink's setting, 0 is dark; `--force-dark-mode` does the same, and
/// darkens the browser's own UI too).
async fn browser(driver: &str, dark: bool) -> Client {
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1800",
        "--disable-features=PasswordLeakDetection",
        "--password-store=basic",
        "--no-first-run",
    ];
    if dark {
        args.push("--blink-settings=preferredColorScheme=0");
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": args,
            // No password manager: submitting a form with a password field
            // must not wait on a leak check that has no network to reach.
            "prefs": {"credentials_enable_service": false, "profile.password_manager_enabled": false,
                      "profile.password_manager_leak_detection": false}
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("start headless Chromium through chromedriver")
}

fn f(v: &Value) -> Option<f64> {
    match v {
        Value::Null => None,
        Value::String(s) if s == "null" => None,
        Value::String(s) => Some(s.parse().unwrap()),
        Value::Number(n) => n.as_f64(),
        other => panic!("not a number: {other}"),
    }
}

/// Reads every `[data-slo]` block's numbers and the snapshot time in one script.
const READ_NUMBERS: &str = r#"
const out = {at: document.getElementById('asof').getAttribute('datetime'), slos: []};
for (const el of document.querySelectorAll('[data-slo]')) {
  const v = {slo: el.dataset.slo};
  for (const f of el.querySelectorAll('[data-field]')) {
    v[f.dataset.field] = f.dataset.value !== undefined ? f.dataset.value : f.textContent.trim();
    if (f.dataset.field === 'budget_share') { (v.shares = v.shares || []).push(f.dataset.value); }
  }
  v.markers = el.querySelectorAll('svg g.marker').length;
  out.slos.push(v);
}
return out;
"#;

fn check_against_cli(dir: &Path, page: &Value, want_markers: Option<usize>) {
    let at = page["at"].as_str().unwrap();
    let cli = capstan(
        dir,
        &[
            "slo",
            "status",
            "--json",
            "--at",
            at,
            "--slos",
            "slos",
            "--store",
            "events.db",
        ],
    );
    let slos = page["slos"].as_array().unwrap();
    assert_eq!(slos.len(), cli["slos"].as_array().unwrap().len(), "{page}");
    for s in slos {
        let name = s["slo"].as_str().unwrap();
        let c = cli["slos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["slo"] == name)
            .unwrap_or_else(|| panic!("{name} not in slo status"));
        assert_eq!(
            f(&s["remaining"]),
            f(&c["budget"]["remaining"]),
            "{name} budget"
        );
        assert_eq!(f(&s["sli"]), f(&c["sli"]), "{name} SLI");
        if c["availability"] == true {
            assert_eq!(
                f(&s["minutes_left"]),
                f(&c["budget"]["minutes_left"]),
                "{name} minutes"
            );
        }
        assert_eq!(s["alert"], c["alert"]["state"], "{name} alert");
        if let Some(shares) = s.get("shares") {
            let want: Vec<Option<f64>> = c["deploys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| f(&d["budget_share"]))
                .collect();
            let got: Vec<Option<f64>> = shares.as_array().unwrap().iter().map(f).collect();
            assert_eq!(got, want, "{name} attribution");
        }
        if let Some(n) = want_markers {
            assert_eq!(
                s["markers"].as_u64(),
                Some(2 * n as u64),
                "{name}: markers on both charts"
            );
        }
    }
}

/// Reads the rollout's step, weights, last verdict with each metric's
/// figures (`data-field` → `data-value`), and the verdicts in its history.
const READ_ROLLOUT: &str = r#"
const sec = document.querySelector('section.rollout[data-service=api]');
const table = t => ({verdict: t.dataset.verdict, score: t.dataset.score,
  metrics: [...t.querySelectorAll('tbody tr[data-metric]')].map(tr => {
    const m = {name: tr.dataset.metric, outcome: tr.querySelector('.outcome').textContent, fields: {}};
    for (const s of tr.querySelectorAll('.stat')) m.fields[s.dataset.field] = s.dataset.value;
    return m; })});
return {step: sec.querySelector('[data-field=step]').textContent.trim(),
        phase: sec.querySelector('[data-field=phase]').textContent.trim(),
        weights: sec.querySelector('[data-field=weights]').textContent.trim(),
        last: table(sec.querySelector('[data-last-verdict] table')),
        history: [...sec.querySelectorAll('table.history tbody tr')].map(tr => ({
          time: Number(tr.dataset.time), verdict: tr.querySelector('table.metrics') ? table(tr.querySelector('table.metrics')) : null}))};
"#;

/// What the rollouts page shows equals `capstan rollout status --json`:
/// step, phase, the last verdict and every figure of every metric's
/// evidence, and the verdicts behind the decisions.
fn check_rollout(page: &Value, cli: &Value) {
    assert_eq!(page["step"], cli["step"].to_string(), "{page}");
    assert_eq!(page["phase"], cli["phase"]);
    assert_eq!(
        page["weights"],
        "1.1.0 95 %, 1.2.0 5 %; the internal cohort: 1.2.0"
    );
    let same_table = |shown: &Value, kept: &Value| {
        let report = &kept["report"];
        assert_eq!(shown["verdict"], report["verdict"]);
        assert_eq!(f(&shown["score"]), f(&report["score"]));
        let metrics = report["metrics"].as_array().unwrap();
        assert_eq!(shown["metrics"].as_array().unwrap().len(), metrics.len());
        for (m, want) in shown["metrics"].as_array().unwrap().iter().zip(metrics) {
            assert_eq!(m["name"], want["name"]);
            assert_eq!(m["outcome"], want["outcome"]);
            let fields = m["fields"].as_object().unwrap();
            assert!(fields.len() >= 6, "{m}");
            for (path, v) in fields {
                let mut at = &want["evidence"];
                for k in path.split('.') {
                    at = &at[k];
                }
                assert_eq!(f(v), f(at), "{}: {path}", m["name"]);
            }
        }
    };
    let last = cli["last_judgement"].clone();
    assert!(last.is_object(), "{cli}");
    same_table(&page["last"], &last);
    let decisive = cli["decisive_verdicts"].as_array().unwrap();
    let shown: Vec<&Value> = page["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["verdict"].is_null())
        .collect();
    assert_eq!(shown.len(), decisive.len(), "each with its first line");
    for h in shown {
        let kept = decisive
            .iter()
            .find(|d| d["report"]["interval"]["at_ms"] == h["time"])
            .unwrap();
        same_table(&h["verdict"], kept);
    }
}

async fn wait_for(c: &Client, script: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if c.execute(script, vec![]).await.unwrap() == Value::Bool(true) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let now = chrono_now() / MIN * MIN;
    let t0 = Instant::now();
    seed(dir, now);
    eprintln!("seeded in {:?}", t0.elapsed());
    let (_driver, driver_url) = start_chromedriver();
    let port = capstan_testkit::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _dash = Killed(
        Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args([
                "dashboard",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--slos",
                "slos",
                "--store",
                "events.db",
                "--rollout-state",
                "rollout.db",
                "--token-file",
                "token",
                "--refresh",
                "1h",
            ])
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env_remove("CAPSTAN_DASHBOARD_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_http(&format!("{base}/api/status"), Duration::from_secs(60));
    let c = browser(&driver_url, false).await;

    // Overview and service page: the numbers `slo status --json` gives for the
    // snapshot's time, the deploy markers and the attribution.
    c.goto(&format!("{base}/")).await.unwrap();
    let page = c.execute(READ_NUMBERS, vec![]).await.unwrap();
    check_against_cli(dir, &page, None);
    assert!(
        c.source().await.unwrap().contains("1.2.0"),
        "current release shown"
    );
    shot(&c, "overview").await;
    c.goto(&format!("{base}/service/api")).await.unwrap();
    let page = c.execute(READ_NUMBERS, vec![]).await.unwrap();
    check_against_cli(dir, &page, Some(5));
    shot(&c, "service").await;

    // A new event appears on an open page within 2 s.
    c.goto(&format!("{base}/events?since=2h")).await.unwrap();
    assert!(
        wait_for(
            &c,
            "return document.getElementById('live-status').textContent.includes('live')",
            Duration::from_secs(5)
        )
        .await,
        "the event stream did not open"
    );
    let store = Store::open(&dir.join("events.db")).unwrap();
    let sent = Instant::now();
    store
        .insert_batch(&[Event {
            time_ms: chrono_now(),
            service: "api".into(),
            method: "GET".into(),
            route: "/live-check".into(),
            status: 200,
            duration_ms: 3.0,
            release: "1.2.0".into(),
            ..Event::default()
        }])
        .unwrap();
    assert!(
        wait_for(
            &c,
            "return document.getElementById('live-rows').textContent.includes('/live-check')",
            Duration::from_secs(2)
        )
        .await,
        "the new event did not appear within 2 s"
    );
    eprintln!("new event on the page after {:?}", sent.elapsed());
    shot(&c, "events-live").await;

    // Pause and promote: refused without the token, queued with it.
    let states = StateStore::open(&dir.join("rollout.db")).unwrap();
    c.goto(&format!("{base}/rollouts")).await.unwrap();
    shot(&c, "rollouts").await;
    let page = c.execute(READ_ROLLOUT, vec![]).await.unwrap();
    let cli = capstan(
        dir,
        &[
            "rollout",
            "status",
            "--json",
            "--service",
            "api",
            "--state",
            "rollout.db",
            "--events",
            "events.db",
        ],
    );
    check_rollout(&page, &cli["rollouts"][0]);
    let click = |label: &'static str| {
        let c = c.clone();
        async move {
            c.find(Locator::XPath(&format!(
                "//button[normalize-space()='{label}']"
            )))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        }
    };
    click("Pause").await;
    // The POST's answer replaces the page: wait for it rather than read the
    // `main` of the page being left (a stale element on a loaded machine).
    let refused = wait_for(
        &c,
        "const m = document.querySelector('main'); return !!m && m.innerText.includes('refused')",
        Duration::from_secs(15),
    )
    .await;
    let body = c
        .find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refused, "{body}");
    shot(&c, "refused").await;
    assert_eq!(
        states.take_command("api", now).unwrap(),
        None,
        "nothing queued without the token"
    );
    for (label, want) in [
        ("Pause", RolloutCommand::Pause),
        ("Promote one step", RolloutCommand::Promote),
    ] {
        c.goto(&format!("{base}/rollouts")).await.unwrap();
        c.find(Locator::Css("input[name=token]"))
            .await
            .unwrap()
            .send_keys(TOKEN)
            .await
            .unwrap();
        click(label).await;
        // The POST and its redirect may still be under way when the click
        // returns (on a loaded machine): wait for the page it lands on.
        assert!(
            wait_for(
                &c,
                "return location.search.includes('done=')",
                Duration::from_secs(15)
            )
            .await,
            "{label} did not land on the queued notice: {}",
            c.current_url().await.unwrap()
        );
        assert_eq!(states.take_command("api", now).unwrap(), Some(want));
    }
    shot(&c, "rollouts-queued").await;

    // The events page returns the rows `capstan events query` returns.
    let from = (now - 2 * 1440 * MIN).to_string();
    let to = (now - MIN).to_string();
    let (filter, group, calc) = (
        "route != \"/nothing\"",
        "release,route",
        "count,p99(duration_ms),error_rate",
    );
    let url = format!(
        "{base}/events?where={}&group_by={}&calc={}&from={from}&to={to}&a={}",
        enc(filter),
        enc(group),
        enc(calc),
        enc("status >= 500")
    );
    c.goto(&url).await.unwrap();
    let rows = c
        .execute(
            r#"return [...document.querySelectorAll('#result tbody tr')].map(tr => ({
                group: [...tr.querySelectorAll('[data-kind=group]')].map(td => td.textContent),
                values: [...tr.querySelectorAll('[data-kind=value]')].map(td => td.dataset.value)}))"#,
            vec![],
        )
        .await
        .unwrap();
    let cli = capstan(
        dir,
        &[
            "events",
            "--store",
            "events.db",
            "query",
            "--where",
            filter,
            "--group-by",
            group,
            "--calc",
            calc,
            "--from",
            &from,
            "--to",
            &to,
            "--json",
        ],
    );
    let want: Vec<(Vec<String>, Vec<Option<f64>>)> = cli["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                ["release", "route"]
                    .iter()
                    .map(|k| r["group"][k].as_str().unwrap_or("-").to_string())
                    .collect(),
                ["count", "p99(duration_ms)", "error_rate"]
                    .iter()
                    .map(|k| f(&r["values"][k]))
                    .collect(),
            )
        })
        .collect();
    let got: Vec<(Vec<String>, Vec<Option<f64>>)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|g| g.as_str().unwrap().to_string())
                    .collect(),
                r["values"].as_array().unwrap().iter().map(f).collect(),
            )
        })
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want, "events page rows equal `capstan events query`");
    assert!(
        c.source().await.unwrap().contains("id=\"compare\""),
        "compare table shown"
    );
    shot(&c, "events").await;
    c.close().await.unwrap();

    // The dark theme: every page again, in a browser that prefers it.
    let c = browser(&driver_url, true).await;
    for (path, name) in [
        ("/", "overview"),
        ("/service/api", "service"),
        ("/rollouts", "rollouts"),
        (url.trim_start_matches(&base), "events"),
    ] {
        c.goto(&format!("{base}{path}")).await.unwrap();
        let dark = c
            .execute(
                "return matchMedia('(prefers-color-scheme: dark)').matches \
                 && getComputedStyle(document.body).backgroundColor",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(dark, "rgb(18, 18, 22)", "{name}: the dark background");
        shot(&c, &format!("{name}-dark")).await;
    }
    c.close().await.unwrap();
    eprintln!("browser test took {:?}", t0.elapsed());
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
