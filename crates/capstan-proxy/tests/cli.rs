//! `capstan proxy` as a real process: SIGTERM under load, and bad input.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn capstan() -> Command {
    Command::new(bin_dir().join("capstan"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_every_accepted_request_and_flushes_events() {
    let db = Db::new();
    let (v1, v2) = (
        Chirpy::start(1, &db, None).await,
        Chirpy::start(2, &db, None).await,
    );
    let events_db = db.path("events.db");
    let text = config(
        &[&v1.addr],
        &[&v2.addr],
        r#"weights = { "1.0.0" = 50, "2.0.0" = 50 }"#,
        &events_db,
    );
    let file = db.path("proxy.toml");
    std::fs::write(&file, text).unwrap();
    let log = db.path("proxy.log");
    let mut child = capstan()
        .args(["proxy", "--config"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The proxy binds port 0 and says where it listens.
    let started = Instant::now();
    let listen = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("listening on ").nth(1) {
            if let Some(addr) = rest
                .split([',', '\n'])
                .next()
                .filter(|_| rest.contains('\n'))
            {
                break addr.trim().to_string();
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("proxy exited ({status}): {text}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "proxy not listening: {text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let url = format!("http://{listen}/version");
    while !reqwest::get(&url)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "proxy not serving: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load(url, 16, stop.clone()));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let started = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("proxy did not exit within 30s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        code,
        Some(0),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Workers stop when nothing listens any more.
    let r = tokio::time::timeout(Duration::from_secs(15), load)
        .await
        .expect("load ends once the proxy is gone")
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    assert_eq!(r.failed, 0, "{r:?}");
    assert!(r.ok > 50, "{r:?}");
    // Every answered request was flushed to the store before exit (plus the
    // readiness polls before the load).
    let events = events(&events_db);
    let answered = events.iter().filter(|e| e.status == 200).count() as u64;
    assert!(answered >= r.ok, "{answered} events for {} answers", r.ok);
    assert!(
        events.iter().all(|e| e.error.is_none()),
        "an event has an error"
    );
}

/// Runs `capstan proxy --config FILE` on `text`; returns (exit code, stderr).
fn refused(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, text).unwrap();
    let out = capstan()
        .args(["proxy", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const GOOD: &str = r#"listen = "127.0.0.1:0"
service = "chirpy"

[[release]]
name = "1.0.0"
upstreams = ["127.0.0.1:18081"]

[[release]]
name = "2.0.0"
upstreams = ["127.0.0.1:18082"]

[routing]
weights = { "1.0.0" = 90, "2.0.0" = 10 }
"#;

#[test]
fn bad_configs_are_refused_naming_the_file_key_and_line() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "malformed",
            &GOOD.replace("[routing]", "[routing"),
            &["line 12"],
        ),
        (
            "unknown key",
            &GOOD.replace("service =", "servce ="),
            &["line 2", "unknown field `servce`"],
        ),
        (
            "overlapping pools",
            &GOOD.replace("18082", "18081"),
            &["line 8", "127.0.0.1:18081", "must not overlap"],
        ),
        (
            "empty pool",
            &GOOD.replace(r#"["127.0.0.1:18082"]"#, "[]"),
            &["line 8", "2.0.0", "pool is empty"],
        ),
        (
            "weights",
            &GOOD.replace("= 10 }", "= 5 }"),
            &["line 13", "routing.weights", "sum to 95, must be 100"],
        ),
        (
            "unknown release",
            &GOOD.replace("\"2.0.0\" = 10", "\"3.0.0\" = 10"),
            &["line 13", "no release `3.0.0`"],
        ),
        (
            "admin without token",
            &GOOD.replace("service =", "admin_listen = \"127.0.0.1:0\"\nservice ="),
            &["admin_token"],
        ),
    ];
    for (what, text, needles) in cases {
        let (code, err) = refused(text);
        assert_eq!(code, Some(3), "{what}: {err}");
        assert!(err.contains("proxy.toml"), "{what}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{what}: `{n}` not in: {err}");
        }
    }
    let out = capstan()
        .args([
            "proxy",
            "--release",
            "1.0.0=127.0.0.1:1",
            "--weight",
            "1.0.0=all",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--weight 1.0.0=all"), "{err}");
}
