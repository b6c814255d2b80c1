//! The gates around a rollout: a spent budget refuses the start and
//! `--override` is recorded; a gate closing mid-rollout stops it for a human
//! without moving the weights and never blocks the rollback; the schema gate
//! refuses a canary whose expand migrations are not applied.

mod e2e;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_rollout::controller::gates::{self, GateConfig};
use capstan_rollout::controller::plan::PlanFile;
use capstan_rollout::controller::run::{self, now_ms, RunError, RunOptions};
use capstan_rollout::controller::store::StateStore;
use capstan_rollout::controller::Phase;
use capstan_slo::{DeployKind, DeployLog};
use e2e::{canary_weight, decisions, plan, setup, watch_weights, Chirpy, Db, Proxy, TOKEN};

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

/// Runs `capstan rollout ARGS` and waits (at most `limit`) for its exit code.
async fn capstan(args: &[&str], dir: &Path, limit: Duration) -> i32 {
    let mut child = std::process::Command::new(e2e::bin_dir().join("capstan"))
        .arg("rollout")
        .args(args)
        .env("CAPSTAN_PROXY_ADMIN_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::File::create(dir.join(format!("controller-{}.log", e2e::free_port())))
                .unwrap(),
        )
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("capstan rollout {args:?} did not finish within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gate_closing_mid_rollout_stops_it_for_a_human_and_never_blocks_the_rollback() {
    let s = setup(None).await;
    let dir = s.db.dir.path().to_path_buf();
    let plan_path = dir.join("rollout.toml");
    let state_path = dir.join("rollout.db");
    std::fs::write(
        &plan_path,
        format!(
            "service = \"chirpy\"\ncanary = \"2.0.0\"\nevents = \"{}\"\nstate = \"{}\"\ndatabase = \"{}\"\nhold_limit = 30\n\
             [proxy]\nadmin_url = \"{}\"\n\
             [defaults]\ninterval = \"1s\"\nmin_duration = \"3s\"\nmin_requests = 100\n\
             [[step]]\nweight = 10\n[[step]]\nweight = 30\n[[step]]\nweight = 100\n\
             [analysis]\nshift_tolerance = 5.0\np99_tolerance = 50.0\n",
            dir.join("events.db").display(),
            state_path.display(),
            s.db.url,
            s.proxy.admin
        ),
    )
    .unwrap();
    let plan_arg = plan_path.to_str().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(e2e::load(
        s.proxy.url.clone(),
        6,
        5000,
        stop.clone(),
        Duration::from_secs(120),
    ));
    let weights = watch_weights(s.proxy.admin.clone(), stop.clone());
    let controller = {
        let (plan_arg, dir) = (plan_arg.clone(), dir.clone());
        tokio::spawn(async move {
            capstan(
                &["start", "--plan", &plan_arg],
                &dir,
                Duration::from_secs(60),
            )
            .await
        })
    };
    // Step 2 (weight 30) reached through open gates: a migration then fails
    // part-way, so the schema is in flux when the step's pass comes.
    let state_of = || {
        StateStore::open(&state_path)
            .ok()
            .and_then(|st| st.load("chirpy").ok().flatten())
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while state_of().is_none_or(|st| st.step != 1) {
        assert!(Instant::now() < deadline, "never reached step 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = rusqlite::Connection::open(s.db.path("chirpy.db")).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute(
        "UPDATE capstan_migrations SET state = 'dirty' WHERE version = 2",
        [],
    )
    .unwrap();

    assert_eq!(controller.await.unwrap(), 11, "{:#?}", decisions(&s));
    let held = state_of().unwrap();
    assert_eq!(held.step, 1, "{held:?}");
    assert!(
        matches!(&held.phase, Phase::NeedsHuman { reason }
            if reason.contains("gate closed") && reason.contains("migration 2") && reason.contains("dirty")),
        "{held:?}"
    );
    assert_eq!(canary_weight(&s.proxy.routing().await), 30);

    // The operator aborts; the rollback goes through the closed gate.
    let state_arg = state_path.to_str().unwrap();
    assert_eq!(
        capstan(
            &["abort", "--service", "chirpy", "--state", state_arg],
            &dir,
            Duration::from_secs(10)
        )
        .await,
        0
    );
    assert_eq!(
        capstan(
            &["start", "--plan", &plan_arg],
            &dir,
            Duration::from_secs(30)
        )
        .await,
        10,
        "{:#?}",
        decisions(&s)
    );
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    let weights = weights.await.unwrap();
    let log = decisions(&s);
    assert!(
        matches!(state_of().unwrap().phase, Phase::RolledBack { .. }),
        "{log:#?}"
    );
    assert_eq!(canary_weight(&s.proxy.routing().await), 0);
    // Never beyond the step the gate closed in.
    assert_eq!(weights, vec![0, 10, 30, 0], "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("needs a human: gate closed before the next step")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(
            |l| l.starts_with("rollback 2.0.0 step 2") && l.contains("aborted by the operator")
        ),
        "{log:#?}"
    );
    assert_eq!(seen.failed, 0);
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schema_gate_refuses_a_canary_whose_expand_migrations_are_not_applied() {
    // chirpy's database at 1.0.0's schema: 2.0.0's expand migration 0002 is
    // not applied, so 2.0.0 cannot run on it.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chirpy.db").display());
    let migrate = |release: &str, url: &str| {
        let out = std::process::Command::new(e2e::bin_dir().join(format!("chirpy-{release}")))
            .args(["migrate", "up"])
            .env("DATABASE_URL", url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    migrate("v1", &url);
    let db = Db { dir, url };
    let v1 = Chirpy::start(1, &db, None).await;
    // 2.0.0's own startup gate keeps it from starting: its upstream is empty.
    let nothing = format!("127.0.0.1:{}", e2e::free_port());
    let proxy = Proxy::start(&v1.addr, &nothing, &db.path("events.db")).await;
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chirpy/migrations");
    let p = plan(
        db.dir.path(),
        &proxy.admin,
        &format!(
            "database = \"{}\"\ncanary_migrations = \"{}\"\n[[step]]\nweight = 50\n[[step]]\nweight = 100\n",
            db.url,
            migrations.display()
        ),
    );
    match run::run(&p, &RunOptions::default()).await {
        Err(RunError::GateRefused(why)) => {
            assert!(
                why.contains("chirpy 2.0.0 needs migration 0002_add_users_handle that the database has not applied"),
                "{why}"
            );
            // 0003 is a contract migration: carrying it is no reason.
            assert!(!why.contains("0003"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(canary_weight(&proxy.routing().await), 0);
    let log = DeployLog::open(&db.path("events.db")).unwrap();
    assert!(log.list(Some("chirpy"), 0, i64::MAX).unwrap().is_empty());

    // Once 0002 is applied the schema gate has nothing against 2.0.0.
    migrate("v2", &db.url);
    let cfg = GateConfig {
        database: Some(db.url.clone()),
        app: "chirpy".into(),
        canary_migrations: Some(migrations),
        ..GateConfig::default()
    };
    let closed = gates::ask(&cfg, "chirpy", "1.0.0", "2.0.0").await;
    assert!(
        !closed.iter().any(|r| r.starts_with("schema:")),
        "{closed:?}"
    );
    proxy.stop().await;
}
