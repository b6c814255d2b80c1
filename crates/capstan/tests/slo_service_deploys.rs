//! The deploy log holds every service's deploys: `slo deploys --service NAME`
//! lists that service's migrations and releases (read from its own history
//! and fleet), and `slo status` charges each SLO only with its own
//! service's deploys.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use capstan_events::{Event, Store};
use capstan_testkit::backends;
use common::{assert_code, stderr, Backend, Project};

fn slo_file(service: &str) -> String {
    format!(
        r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: {service}-availability
spec:
  service: {service}
  indicator:
    metadata:
      name: {service}-ok
    spec:
      ratioMetric:
        good:
          metricSource: {{type: capstan, spec: {{query: "status < 500"}}}}
        total:
          metricSource: {{type: capstan, spec: {{query: "status >= 0"}}}}
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.99
"#
    )
}

/// An hour of healthy traffic for each service, up to now.
fn traffic(path: &Path) {
    let store = Store::open(path).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let events: Vec<Event> = (0..120i64)
        .flat_map(|i| {
            ["users", "chirps"].map(|service| Event {
                time_ms: now - 3_600_000 + i * 30_000,
                service: service.into(),
                method: "GET".into(),
                route: "/".into(),
                path: "/".into(),
                status: 200,
                duration_ms: 3.0,
                ..Event::default()
            })
        })
        .collect();
    store.insert_batch(&events).unwrap();
}

fn slo(p: &Project, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
        .arg("slo")
        .args(args)
        .args(["--database", &p.url])
        .current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("CAPSTAN_SERVICE")
        .output()
        .expect("run capstan slo")
}

fn json(out: &Output) -> serde_json::Value {
    assert_code(out, 0);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stderr(out)))
}

/// `(kind, service, subject)` of each deploy `slo deploys --service NAME` lists.
fn deploys(p: &Project, service: &str) -> Vec<(String, String, String)> {
    let rows = json(&slo(p, &["deploys", "--json", "--service", service]));
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["service"].as_str().unwrap().to_string(),
                r["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn t(kind: &str, service: &str, subject: &str) -> (String, String, String) {
    (kind.into(), service.into(), subject.into())
}

fn each_service_has_its_own_deploys(b: Backend) {
    let p = Project::new(b);
    let d = p.dir.path();
    std::fs::write(
        d.join("capstan.toml"),
        "[slo]\ndir = \"slos\"\nstore = \"events.db\"\n",
    )
    .unwrap();
    std::fs::create_dir(d.join("slos")).unwrap();
    for s in ["users", "chirps"] {
        std::fs::write(d.join(format!("slos/{s}.yaml")), slo_file(s)).unwrap();
    }
    traffic(&d.join("events.db"));
    // users applies 0001; chirps, later, 0001 and 0002 (each its own history).
    p.add(
        "0001_a.sql",
        "-- capstan:up\nCREATE TABLE IF NOT EXISTS a (id bigint);\n-- capstan:down\nDROP TABLE a;\n",
    );
    assert_code(&p.capstan(&["migrate", "up", "--service", "users"]), 0);
    p.add(
        "0002_b.sql",
        "-- capstan:up\nCREATE TABLE IF NOT EXISTS b (id bigint);\n-- capstan:down\nDROP TABLE b;\n",
    );
    assert_code(&p.capstan(&["migrate", "up", "--service", "chirps"]), 0);
    let out = p.capstan(&[
        "fleet",
        "join",
        "--app",
        "users-api",
        "--version",
        "1.4.0",
        "--service",
        "users",
    ]);
    assert_code(&out, 0);

    assert_eq!(
        deploys(&p, "users"),
        vec![
            t("migration", "users", "1"),
            t("release", "users", "users-api 1.4.0")
        ]
    );
    assert_eq!(
        deploys(&p, "chirps"),
        vec![t("migration", "chirps", "1"), t("migration", "chirps", "2")]
    );
    // Read again: nothing is imported twice.
    assert_eq!(deploys(&p, "chirps").len(), 2);

    // Each SLO is charged with its own service's deploys only.
    let status = json(&slo(&p, &["status", "--json"]));
    for (name, want) in [
        (
            "users-availability",
            vec!["migration 1 (a, expand)", "release users-api 1.4.0"],
        ),
        (
            "chirps-availability",
            vec!["migration 1 (a, expand)", "migration 2 (b, expand)"],
        ),
    ] {
        let s = status["slos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["slo"] == name)
            .unwrap_or_else(|| panic!("{name}: {status}"));
        let mut got: Vec<&str> = s["deploys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["deploy"]["label"].as_str().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, want, "{name}: {s}");
    }
}

backends!(each_service_has_its_own_deploys);
