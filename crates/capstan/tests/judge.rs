//! `capstan judge serve`: starts on a judge.toml, answers, stops on SIGTERM with
//! exit 0; a bad judge.toml is exit 3 naming the field.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

const CONFIG: &str = r#"
[prometheus]
url = "http://127.0.0.1:9"
timeout = "1s"

[[metric]]
name = "errors"
kind = "error_ratio"
canary_errors = 'sum(errors{release="{{canary}}"})'
canary_total = 'sum(requests{release="{{canary}}"})'
baseline_errors = 'sum(errors{release="{{baseline}}"})'
baseline_total = 'sum(requests{release="{{baseline}}"})'
"#;

#[test]
fn judge_serve_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("judge.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["judge", "serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        if let Some(r) = get(port, "/healthz") {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "judge serve did not answer within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Prometheus is not there: the verdict is inconclusive, still a 200 for Argo.
    let verdict = get(port, "/api/v1/verdict?canary=v2&baseline=v1").unwrap();
    assert!(verdict.starts_with("HTTP/1.1 200"), "{verdict}");
    assert!(verdict.contains(r#""verdict":"inconclusive""#), "{verdict}");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "judge serve did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_bad_judge_toml_is_exit_3_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("judge.toml");
    std::fs::write(
        &config,
        CONFIG.replace(
            "kind = \"error_ratio\"",
            "kind = \"error_ratio\"\nmin_samples = 5",
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["judge", "serve", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("judge.toml") && err.contains("metric[0] (errors).min_samples"),
        "{err}"
    );
}
