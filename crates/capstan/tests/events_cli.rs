//! `capstan events` end to end: the real binary over a real store file, its answers
//! checked against numbers computed here; bad expressions and missing stores.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capstan_events::{Event, Store};

const T0: i64 = 1_800_000_000_000;

fn capstan() -> Command {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
}

fn events(n: usize, t0: i64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut e = Event {
                time_ms: t0 + (i as i64 * 997) % 600_000,
                service: "chirpy".into(),
                method: "GET".into(),
                route: ["/a", "/b", "/c"][i % 3].into(),
                path: format!("/x/{i}").into(),
                status: if i % 7 == 0 { 503 } else { 200 },
                duration_ms: (i % 50) as f64 * 3.0,
                release: if i % 2 == 0 { "1.0.0" } else { "2.0.0" }.into(),
                ..Event::default()
            };
            if i % 7 == 0 && i % 2 == 1 {
                e.fields.insert("plan".into(), "pro".into());
            }
            e
        })
        .collect()
}

fn range() -> [String; 4] {
    [
        "--from".into(),
        T0.to_string(),
        "--to".into(),
        (T0 + 600_000).to_string(),
    ]
}

fn store_with(dir: &Path, evs: &[Event]) -> String {
    let path = dir.join("events.db");
    Store::open(&path).unwrap().insert_batch(evs).unwrap();
    path.display().to_string()
}

#[test]
fn query_json_matches_counts_computed_here() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(700, T0);
    let store = store_with(dir.path(), &evs);
    let out = capstan()
        .args([
            "events",
            "--store",
            &store,
            "query",
            "--where",
            "status >= 500",
            "--group-by",
            "release",
        ])
        .args(["--calc", "count, max(duration_ms), error_rate", "--json"])
        .args(range())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let release = row["group"]["release"].as_str().unwrap();
        let mine: Vec<&Event> = evs
            .iter()
            .filter(|e| e.status >= 500 && e.release == release)
            .collect();
        assert_eq!(row["values"]["count"].as_f64().unwrap(), mine.len() as f64);
        let max = mine.iter().map(|e| e.duration_ms).fold(0.0, f64::max);
        assert_eq!(row["values"]["max(duration_ms)"].as_f64().unwrap(), max);
        assert_eq!(row["values"]["error_rate"].as_f64().unwrap(), 1.0);
    }
    // The text table has a header and one line per group.
    let out = capstan()
        .args(["events", "--store", &store, "query", "--group-by", "route"])
        .args(range())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.starts_with("route"), "{text}");
}

#[test]
fn compare_json_counts_and_top_field() {
    let dir = tempfile::tempdir().unwrap();
    let evs = events(700, T0);
    let store = store_with(dir.path(), &evs);
    let out = capstan()
        .args([
            "events",
            "--store",
            &store,
            "compare",
            "--a",
            "status >= 500",
            "--json",
        ])
        .args(range())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = evs.iter().filter(|e| e.status >= 500).count() as u64;
    assert_eq!(v["a_count"], a);
    assert_eq!(v["b_count"], 700 - a);
    assert_eq!(v["fields"][0]["field"], "status");
    assert_eq!(v["fields"][0]["score"], 1.0);
    // path is unique per event: listed, flagged, ranked last.
    let last = v["fields"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["field"], "path");
    assert_eq!(last["high_cardinality"], true);
    // plan is set only on failing 2.0.0 requests: present in A, absent in B.
    let plan = v["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "plan")
        .unwrap();
    assert_eq!(plan["b_top"][0]["value"], "(none)");
    assert_eq!(plan["b_top"][0]["share"], 1.0);
}

#[test]
fn a_bad_where_names_the_column_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), &events(10, T0));
    let out = capstan()
        .args([
            "events",
            "--store",
            &store,
            "query",
            "--where",
            "status >= 500 and release = 2.0.0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--where: bad expression at column 29"),
        "{err}"
    );
    assert!(err.contains(&format!("\n  {}^", " ".repeat(28))), "{err}");
    let out = capstan()
        .args([
            "events",
            "--store",
            &store,
            "query",
            "--calc",
            "count, p42(duration_ms)",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("column 8"));
}

/// A mistyped column would name a `fields` key no event has, and the
/// answer would be an empty table that looks like good news: it is refused
/// wherever a field is named, with the column meant.
#[test]
fn a_mistyped_column_is_refused_not_read_as_an_absent_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(dir.path(), &events(10, T0));
    let query = |args: &[&str]| {
        capstan()
            .args(["events", "--store", &store, "query"])
            .args(args)
            .output()
            .unwrap()
    };
    for (args, wanted) in [
        (
            ["--where", r#"status >= 500 and releas = "2.0.0""#],
            "--where: bad expression at column 19: `releas` is not a field; did you mean `release`?",
        ),
        (
            ["--group-by", "Release"],
            "--group-by: `Release` is not a field; did you mean `release`?",
        ),
        (
            ["--calc", "count, p99(duration)"],
            "--calc: bad expression at column 12: `duration` is not a field; did you mean `duration_ms`?",
        ),
    ] {
        let out = query(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(err.contains(wanted), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Written out, the key is a key: no error, and no event has it, while
    // the same range holds events.
    let r = range();
    let count = |filter: &str| {
        let mut args = vec!["--where", filter, "--json"];
        args.extend(r.iter().map(String::as_str));
        let out = query(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["rows"].as_array().unwrap().len()
    };
    assert_eq!(count(r#"fields.releas = "2.0.0""#), 0);
    assert_eq!(count("status > 0"), 1);
}

/// Rollups kept for less time than raw events are bad input naming both
/// flags (exit 3), and no store is made.
#[test]
fn serve_refuses_rollups_kept_shorter_than_raw_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let out = capstan()
        .args(["events", "--store", path.to_str().unwrap(), "serve"])
        .args(["--listen", "127.0.0.1:0", "--keep-raw", "500d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--keep-rollups (400d) is shorter than --keep-raw (500d)"),
        "{err}"
    );
    assert!(!path.exists());
}

#[test]
fn a_missing_store_exits_4_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let out = capstan()
        .args(["events", "--store", path.to_str().unwrap(), "query"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no event store at"));
    assert!(!path.exists());
}

#[test]
fn tail_follows_new_events_and_stops_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = store_with(dir.path(), &events(5, T0));
    let mut child = capstan()
        .args([
            "events",
            "--store",
            &store_path,
            "tail",
            "--where",
            "status >= 500",
            "--limit",
            "3",
        ])
        .args(["--interval", "50ms", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let store = Store::open(Path::new(&store_path)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut i = 0;
    // Keep writing (one failing, one good event at a time) until tail has seen 3.
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tail did not stop within 20 s");
        let mut pair = events(2, T0 + 700_000 + i);
        pair[0].status = 500;
        pair[0].path = format!("/fail/{i}").into();
        store.insert_batch(&pair).unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["status"] == 500 && l["path"].as_str().unwrap().starts_with("/fail/")));
}

fn http_post(addr: &str, ctype: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_stores_otlp_root_spans_refuses_garbage_and_flushes_on_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("otlp.db");
    let mut child = capstan()
        .args([
            "events",
            "--store",
            path.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "chirpy"}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "GET /", "startTimeUnixNano": now_ns.to_string(),
            "endTimeUnixNano": (now_ns + 5_000_000).to_string(),
            "attributes": [{"key": "http.response.status_code", "value": {"intValue": "204"}}]}]}]}]})
    .to_string();
    let ok = http_post(&addr, "application/json", &body);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let bad = http_post(&addr, "application/x-protobuf", "garbage!");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    // Once the first span is written, the store refuses every event: the
    // second span is accepted, then lost, and the exit line says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Store::open(&path).unwrap().count().unwrap() < 1 {
        assert!(Instant::now() < deadline, "the first span was not written");
        std::thread::sleep(Duration::from_millis(20));
    }
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON events \
             BEGIN SELECT RAISE(FAIL, 'refused'); END;",
        )
        .unwrap();
    let again = http_post(&addr, "application/json", &body);
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(
        rest.contains("stopped: 2 events received, 1 written, 1 not written"),
        "{rest}"
    );
    let store = Store::open(&path).unwrap();
    let events = store.events_after(0, 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.status, 204);
    assert_eq!(events[0].event.service, "chirpy");
}
