//! The error budget gate in front of `capstan migrate up`: a contract
//! migration on Postgres is frozen while an SLO's budget is spent, runs once
//! the budget is fine, and runs under a recorded override.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use capstan_events::{Event, Store};
use common::{assert_code, stderr, stdout, Backend, Project};

const CREATE: &str = "-- capstan:up\nCREATE TABLE users (id bigint PRIMARY KEY, name text, nick text);\n-- capstan:down\nDROP TABLE users;\n";
const DROP_NAME: &str = "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\n-- capstan:down\nALTER TABLE users ADD COLUMN name text;\n";
const DROP_NICK: &str = "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN nick;\n-- capstan:down\nALTER TABLE users ADD COLUMN nick text;\n";

const SLO: &str = r#"apiVersion: openslo/v1
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
"#;

/// An hour of traffic up to now; every `bad_every`-th request fails (0: none).
fn traffic(path: &Path, bad_every: u64) {
    let store = Store::open(path).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let events: Vec<Event> = (0..600u64)
        .map(|i| Event {
            time_ms: now - 3_600_000 + i as i64 * 6_000,
            service: "api".into(),
            method: "GET".into(),
            route: "/".into(),
            path: "/".into(),
            status: if bad_every > 0 && i % bad_every == 0 {
                503
            } else {
                200
            },
            duration_ms: 3.0,
            ..Event::default()
        })
        .collect();
    store.insert_batch(&events).unwrap();
}

fn config(p: &Project, store: &str) {
    std::fs::write(
        p.dir.path().join("capstan.toml"),
        format!("[slo]\ndir = \"slos\"\nstore = \"{store}\"\n\n[slo.policy]\nfreeze_on_page = true\noverride_for = \"1h\"\n"),
    )
    .unwrap();
}

fn slo(p: &Project, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
        .arg("slo")
        .args(args)
        .current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run capstan slo")
}

#[test]
fn the_budget_gate_freezes_and_unfreezes_a_contract_migration() {
    let p = Project::new(Backend::Postgres);
    std::fs::create_dir(p.dir.path().join("slos")).unwrap();
    std::fs::write(p.dir.path().join("slos/api.yaml"), SLO).unwrap();
    traffic(&p.dir.path().join("bad.db"), 2);
    traffic(&p.dir.path().join("good.db"), 0);
    config(&p, "bad.db");
    p.add("0001_users.sql", CREATE);
    assert_code(&p.capstan(&["migrate", "up"]), 0);

    // Half the last hour failed: budget spent and a page firing. Frozen.
    p.add("0002_drop_name.sql", DROP_NAME);
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 10);
    let err = stderr(&out);
    assert!(err.contains("frozen by the error budget policy"), "{err}");
    assert!(
        err.contains("SLO api-availability: error budget spent"),
        "{err}"
    );
    assert!(err.contains("page alert firing"), "{err}");
    assert_eq!(
        p.states(),
        vec![(1, "applied".into()), (2, "pending".into())]
    );
    assert_eq!(p.query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'name'"), "1");
    // The gate command says the same, with its documented code.
    assert_code(&slo(&p, &["gate"]), 10);

    // With a healthy budget the same migration runs.
    config(&p, "good.db");
    assert_code(&slo(&p, &["gate"]), 0);
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert_eq!(
        p.states(),
        vec![(1, "applied".into()), (2, "applied".into())]
    );

    // Frozen again; an override lets it through and is recorded.
    config(&p, "bad.db");
    p.add("0003_drop_nick.sql", DROP_NICK);
    assert_code(&p.capstan(&["migrate", "up"]), 10);
    let out = slo(&p, &["gate", "--override", "hotfix for the login outage"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("overridden"), "{}", stdout(&out));
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("error budget gate overridden"),
        "{}",
        stderr(&out)
    );
    assert_eq!(p.states().last().unwrap(), &(3, "applied".to_string()));

    // The deploy log lists the override and, read from the database's
    // history, the migrations.
    let out = slo(&p, &["deploys", "--json", "--database", &p.url]);
    assert_code(&out, 0);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let over: Vec<&serde_json::Value> = rows.iter().filter(|r| r["kind"] == "override").collect();
    assert_eq!(over.len(), 1, "{rows:?}");
    assert!(over[0]["detail"]
        .as_str()
        .unwrap()
        .starts_with("hotfix for the login outage"));
    let migrations: Vec<&str> = rows
        .iter()
        .filter(|r| r["kind"] == "migration")
        .map(|r| r["subject"].as_str().unwrap())
        .collect();
    assert_eq!(migrations, vec!["1", "2", "3"], "{rows:?}");
    let text = stdout(&slo(&p, &["deploys"]));
    assert!(
        text.contains("override") && text.contains("hotfix for the login outage"),
        "{text}"
    );
}

#[test]
fn without_a_policy_migrate_does_not_consult_the_budget() {
    let p = Project::new(Backend::Postgres);
    std::fs::create_dir(p.dir.path().join("slos")).unwrap();
    std::fs::write(p.dir.path().join("slos/api.yaml"), SLO).unwrap();
    traffic(&p.dir.path().join("bad.db"), 2);
    std::fs::write(
        p.dir.path().join("capstan.toml"),
        "[slo]\ndir = \"slos\"\nstore = \"bad.db\"\n",
    )
    .unwrap();
    p.add("0001_users.sql", CREATE);
    p.add("0002_drop_name.sql", DROP_NAME);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    // An unknown key in [slo.policy] is refused by migrate too.
    std::fs::write(
        p.dir.path().join("capstan.toml"),
        "[slo.policy]\nfreeze_bellow = 0.1\n",
    )
    .unwrap();
    let out = p.capstan(&["migrate", "status"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("freeze_bellow"), "{}", stderr(&out));
}

#[test]
fn slo_check_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("slos")).unwrap();
    std::fs::write(dir.path().join("slos/api.yaml"), SLO).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_capstan"))
            .arg("slo")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["check"]);
    assert_code(&out, 0);
    assert_eq!(stdout(&out), "ok: 1 SLO(s) and 0 SLI(s) in 1 file(s)\n");
    std::fs::write(
        dir.path().join("slos/api.yaml"),
        SLO.replace("target: 0.999", "target: 99.9").replace(
            "      isRolling: true",
            "      isRolling: true\n      rolling: yes",
        ),
    )
    .unwrap();
    let out = run(&["check", "--json"]);
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("slos/api.yaml:19: spec.timeWindow[0].rolling: unknown field `rolling`"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], 19);
    // A YAML syntax error names its line too.
    std::fs::write(
        dir.path().join("slos/api.yaml"),
        "apiVersion: openslo/v1\nkind: SLO\nmetadata: [\n",
    )
    .unwrap();
    let out = run(&["check"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).starts_with("slos/api.yaml:"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn slo_check_warns_when_an_objective_exceeds_its_hard_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("slos")).unwrap();
    std::fs::write(
        dir.path().join("capstan.toml"),
        "[[service]]\nname = \"api\"\n\n[[service]]\nname = \"chirps\"\ndepends_on = [\"api\", { service = \"search\", hard = false }]\n\n[[service]]\nname = \"search\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("slos/api.yaml"), SLO).unwrap();
    let chirps = SLO
        .replace("name: api-availability", "name: chirps-availability")
        .replace("service: api", "service: chirps")
        .replace("name: api-ok", "name: chirps-ok")
        .replace("target: 0.999", "targetPercent: 99.95");
    std::fs::write(dir.path().join("slos/chirps.yaml"), chirps).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_capstan"))
            .arg("slo")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&["check"]);
    assert_code(&out, 0);
    assert_eq!(
        stdout(&out),
        "ok: 2 SLO(s) and 0 SLI(s) in 2 file(s), 1 warning(s)\n"
    );
    assert_eq!(
        stderr(&out),
        "warning: slos/chirps.yaml:21: chirps/chirps-availability promises 99.95 % but its hard dependencies publish at most 99.9 %: api 99.9 %\n"
    );
    let out = run(&["check", "--deny-warnings", "--json"]);
    assert_code(&out, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["ok"], true);
    let w = &v["warnings"][0];
    assert_eq!(w["kind"], "exceeds-dependencies");
    assert_eq!(
        (w["file"].as_str(), w["line"].as_u64()),
        (Some("slos/chirps.yaml"), Some(21))
    );
    assert_eq!(
        (w["target"].as_f64(), w["at_most"].as_f64()),
        (Some(0.9995), Some(0.999))
    );
    assert_eq!(w["dependencies"][0]["slo"], "api-availability");
    // Within the bound: no warning, exit 0 even when denied.
    std::fs::write(
        dir.path().join("slos/chirps.yaml"),
        SLO.replace("service: api", "service: chirps")
            .replace("name: api-availability", "name: chirps-availability")
            .replace("name: api-ok", "name: chirps-ok"),
    )
    .unwrap();
    let out = run(&["check", "--deny-warnings"]);
    assert_code(&out, 0);
    assert_eq!(stderr(&out), "");
}
