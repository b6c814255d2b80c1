//! The SLO budget gate before a rollout: a spent budget refuses the start;
//! `--override` is recorded in the deploy log and lets it through.

use capstan_rollout::controller::plan::PlanFile;
use capstan_rollout::controller::run::{self, now_ms, RunError, RunOptions};
use capstan_slo::deploys::{DeployKind, DeployLog};
use std::path::Path;

const SLO: &str = r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: chirpy-availability
spec:
  service: chirpy
  indicator:
    metadata:
      name: chirpy-ok
    spec:
      ratioMetric:
        good:
          metricSource:
            type: capstan
            spec:
              query: status >= 100 and status < 500
        total:
          metricSource:
            type: capstan
            spec:
              query: status >= 0
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
"#;

#[tokio::test]
async fn a_spent_budget_refuses_the_rollout_and_an_override_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.db");
    // Half of the last ten minutes' requests failed: the budget is spent.
    let store = capstan_events::Store::open(&events).unwrap();
    let now = now_ms();
    let batch: Vec<capstan_events::Event> = (0..1000)
        .map(|i| capstan_events::Event {
            time_ms: now - 600_000 + i * 500,
            service: "chirpy".into(),
            method: "GET".into(),
            route: "/version".into(),
            path: "/version".into(),
            status: if i % 2 == 0 { 500 } else { 200 },
            duration_ms: 1.0,
            release: "1.0.0".into(),
            ..Default::default()
        })
        .collect();
    store.insert_batch(&batch).unwrap();
    drop(store);
    std::fs::create_dir(dir.path().join("slos")).unwrap();
    std::fs::write(dir.path().join("slos/chirpy.yaml"), SLO).unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(
        &config,
        format!(
            "[slo]\ndir = \"{}\"\nstore = \"{}\"\n[slo.policy]\noverride_for = \"1h\"\n",
            dir.path().join("slos").display(),
            events.display()
        ),
    )
    .unwrap();
    // The proxy is never reached when the gate refuses; nothing listens here.
    let text = format!(
        "service = \"chirpy\"\ncanary = \"2.0.0\"\nbaseline = \"1.0.0\"\nevents = \"{}\"\nstate = \"{}\"\nslo_config = \"{}\"\n\
         [proxy]\nadmin_url = \"http://127.0.0.1:9\"\ntoken = \"t\"\ntimeout = \"1s\"\n",
        events.display(),
        dir.path().join("rollout.db").display(),
        config.display()
    );
    let p = Path::new("rollout.toml");
    let plan = PlanFile::parse(p, &text).unwrap().validate(p).unwrap();

    let refused = run::run(&plan, &RunOptions::default()).await;
    match refused {
        Err(RunError::GateRefused(why)) => assert!(why.contains("chirpy-availability"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let state =
        capstan_rollout::controller::store::StateStore::open(&dir.path().join("rollout.db"))
            .unwrap();
    assert_eq!(
        state.load("chirpy").unwrap(),
        None,
        "a refused rollout leaves no state"
    );

    let overridden = run::run(
        &plan,
        &RunOptions {
            override_reason: Some("hotfix for the outage".into()),
            verbose: false,
        },
    )
    .await;
    // Past the gate: it went on to the proxy (absent here).
    assert!(
        matches!(overridden, Err(RunError::Proxy { .. })),
        "{overridden:?}"
    );
    let log = DeployLog::open(&events).unwrap();
    let rows = log.list(Some("chirpy"), 0, i64::MAX).unwrap();
    assert!(
        rows.iter().any(|d| d.kind == DeployKind::Override
            && d.subject == "2.0.0"
            && d.detail == "hotfix for the outage"),
        "{rows:#?}"
    );
}
