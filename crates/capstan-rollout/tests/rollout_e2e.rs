//! The rollout controller end to end: chirpy 1.0.0 (stable) and 2.0.0 (canary)
//! as real processes, the proxy, steady load from many users, and the
//! controller driving the proxy's admin API.

mod e2e;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capstan_rollout::controller::run::{self, RunOptions};
use capstan_rollout::controller::Phase;
use capstan_slo::DeployLog;
use e2e::{canary_weight, decisions, plan, setup, watch_weights, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_with_3_percent_errors_is_rolled_back_before_most_users_see_it() {
    let s = setup(Some("error:3")).await;
    let plan = plan(
        s.db.dir.path(),
        &s.proxy.admin,
        "hold_limit = 30\n[defaults]\ninterval = \"1s\"\nmin_duration = \"3s\"\nmin_requests = 200\n\
         [internal]\nmin_requests = 40\n\
         [[step]]\nweight = 10\n[[step]]\nweight = 50\n[[step]]\nweight = 100\n",
    );
    let (stop, load) = e2e::steady_load(&s);
    let weights = watch_weights(s.proxy.admin.clone(), stop.clone());
    let done = e2e::run_to_end(&plan).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    let weights = weights.await.unwrap();
    let log = decisions(&s);

    assert!(
        matches!(done.state.phase, Phase::RolledBack { .. }),
        "{:?}\n{log:#?}",
        done.state
    );
    let table = s.proxy.routing().await;
    assert_eq!(canary_weight(&table), 0, "{table}");
    assert!(table["internal"].is_null(), "{table}");
    assert!(
        log.iter().any(|l| l.starts_with("rollback 2.0.0")),
        "{log:#?}"
    );
    let fraction = seen.canary_users.len() as f64 / seen.users.len() as f64;
    eprintln!(
        "rolled back at step {}; {} requests, {} failed ({:.3} %); {} of {} users ({:.1} %) ever saw 2.0.0; \
         first internal user on the canary at {:?} ms, first public at {:?} ms; canary weights {weights:?}\n{log:#?}",
        done.state.step + 1,
        seen.requests,
        seen.failed,
        100.0 * seen.failed as f64 / seen.requests.max(1) as f64,
        seen.canary_users.len(),
        seen.users.len(),
        fraction * 100.0,
        seen.first_internal_canary_ms,
        seen.first_public_canary_ms,
    );
    // Never beyond the first public step, and most users never saw it.
    assert!(weights.iter().all(|w| *w <= 10), "{weights:?}");
    assert!(fraction < 0.5, "{fraction}");
    // Internal users saw it first.
    let internal = seen
        .first_internal_canary_ms
        .expect("internal users saw the canary");
    if let Some(public) = seen.first_public_canary_ms {
        assert!(
            internal < public,
            "internal {internal} ms, public {public} ms"
        );
    }
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_early_look_rolls_back_a_failing_release_before_the_first_analysis() {
    let s = setup(Some("error:30")).await;
    // One analysis every 20 s; three early looks per interval, one every 5 s.
    let plan = plan(
        s.db.dir.path(),
        &s.proxy.admin,
        "hold_limit = 30\n[defaults]\ninterval = \"20s\"\nmin_duration = \"3s\"\nmin_requests = 50\n\
         [internal]\nmin_requests = 20\n\
         [[step]]\nweight = 10\n[[step]]\nweight = 100\n",
    );
    let (stop, load) = e2e::steady_load(&s);
    let started = std::time::Instant::now();
    let done = e2e::run_to_end(&plan).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let log = decisions(&s);
    assert!(
        matches!(done.state.phase, Phase::RolledBack { .. }),
        "{:?}\n{log:#?}",
        done.state
    );
    // Rolled back by an early look, before the first analysis was due.
    assert!(took < Duration::from_secs(19), "{took:?}\n{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("rollback 2.0.0") && l.contains("early look at alpha 0.0025")),
        "{log:#?}"
    );
    assert_eq!(canary_weight(&s.proxy.routing().await), 0);
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_release_is_promoted_with_a_verdict_per_step() {
    let s = setup(None).await;
    // The schema and fleet gates read chirpy's own database (its migration
    // history and the fleet registry both releases heartbeat into) before
    // the start and with every pass.
    let plan = plan(
        s.db.dir.path(),
        &s.proxy.admin,
        &(format!("database = \"{}\"\n", s.db.url) + "hold_limit = 30\n[defaults]\ninterval = \"1s\"\nmin_duration = \"2s\"\nmin_requests = 100\n\
         [internal]\nmin_requests = 20\n\
         [[step]]\nweight = 20\n[[step]]\nweight = 50\n[[step]]\nweight = 100\n"),
    );
    let (stop, load) = e2e::steady_load(&s);
    let weights = watch_weights(s.proxy.admin.clone(), stop.clone());
    let done = e2e::run_to_end(&plan).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    let weights = weights.await.unwrap();
    let log = decisions(&s);
    assert_eq!(done.state.phase, Phase::Promoted, "{log:#?}");
    assert_eq!(canary_weight(&s.proxy.routing().await), 100);
    // One pass verdict per analysed step: internal, 20, 50.
    for step in [
        "step 1 (internal)",
        "step 2 (weight 20)",
        "step 3 (weight 50)",
    ] {
        assert!(
            log.iter()
                .any(|l| l.contains(step) && l.contains("verdict: pass")),
            "no pass for {step}: {log:#?}"
        );
    }
    // One step at a time.
    let mut expected = vec![0, 20, 50, 100];
    expected.retain(|w| weights.contains(w));
    assert_eq!(weights, expected, "weights seen {weights:?}");
    assert_eq!(seen.failed, 0);
    eprintln!(
        "promoted; weights {weights:?}; {} requests\n{log:#?}",
        seen.requests
    );
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_traffic_the_rollout_holds_and_never_promotes() {
    let s = setup(None).await;
    let plan = plan(
        s.db.dir.path(),
        &s.proxy.admin,
        "hold_limit = 3\n[defaults]\ninterval = \"500ms\"\nmin_duration = \"1s\"\nmin_requests = 50\n\
         [[step]]\nweight = 10\n[[step]]\nweight = 100\n",
    );
    let done = tokio::time::timeout(
        Duration::from_secs(20),
        run::run(&plan, &RunOptions::default()),
    )
    .await
    .expect("stopped within 20s")
    .expect("rollout ran");
    let log = decisions(&s);
    assert!(
        matches!(&done.state.phase, Phase::NeedsHuman { reason } if reason.contains("inconclusive")),
        "{:?}",
        done.state
    );
    assert_eq!(done.state.step, 0);
    assert_eq!(canary_weight(&s.proxy.routing().await), 10);
    assert!(log.iter().any(|l| l.contains("needs a human")), "{log:#?}");
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_killed_mid_step_resumes_at_that_step_and_weights_never_jump() {
    use capstan_rollout::controller::store::StateStore;
    let s = setup(None).await;
    let dir = s.db.dir.path();
    let plan_path = dir.join("rollout.toml");
    std::fs::write(
        &plan_path,
        format!(
            "service = \"chirpy\"\ncanary = \"2.0.0\"\nevents = \"{}\"\nstate = \"{}\"\nhold_limit = 30\n\
             [proxy]\nadmin_url = \"{}\"\n\
             [defaults]\ninterval = \"1s\"\nmin_duration = \"3s\"\nmin_requests = 100\n\
             [[step]]\nweight = 10\n[[step]]\nweight = 30\n[[step]]\nweight = 60\n[[step]]\nweight = 100\n\
             [analysis]\nshift_tolerance = 5.0\np99_tolerance = 50.0\n",
            dir.join("events.db").display(),
            dir.join("rollout.db").display(),
            s.proxy.admin
        ),
    )
    .unwrap();
    let start = || {
        std::process::Command::new(e2e::bin_dir().join("capstan"))
            .args(["rollout", "start", "--plan"])
            .arg(&plan_path)
            .env("CAPSTAN_PROXY_ADMIN_TOKEN", TOKEN)
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(dir.join(format!("controller-{}.log", e2e::free_port())))
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(e2e::load(
        s.proxy.url.clone(),
        6,
        5000,
        stop.clone(),
        Duration::from_secs(90),
    ));
    let weights = watch_weights(s.proxy.admin.clone(), stop.clone());
    let mut first = start();
    // Wait for step 2 (weight 30), then SIGKILL mid-step.
    let state_of = || {
        StateStore::open(&dir.join("rollout.db"))
            .ok()
            .and_then(|st| st.load("chirpy").ok().flatten())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        if state_of().is_some_and(|st| st.step == 1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never reached step 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let killed_at = state_of().unwrap();
    assert_eq!(killed_at.step, 1, "killed mid-step 2: {killed_at:?}");
    assert_eq!(canary_weight(&s.proxy.routing().await), 30);

    let restarted_ms = run::now_ms();
    let mut second = start();
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("the restarted controller did not finish in 45s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let _ = load.await.unwrap();
    let weights = weights.await.unwrap();
    let log = DeployLog::open(&dir.join("events.db")).unwrap();
    let rows = log.list(Some("chirpy"), 0, i64::MAX).unwrap();
    let labels: Vec<String> = rows.iter().map(|d| d.label()).collect();
    assert_eq!(status.code(), Some(0), "{labels:#?}");
    assert!(
        labels.iter().any(|l| l.contains("controller restarted")),
        "{labels:#?}"
    );
    // After the restart, step 3 came only after a full fresh step (3 s).
    let next = rows
        .iter()
        .find(|d| d.time_ms >= restarted_ms && d.subject.contains("step 3"))
        .expect("moved to step 3 after the restart");
    assert!(
        next.time_ms - restarted_ms >= 3000,
        "moved {} ms after the restart",
        next.time_ms - restarted_ms
    );
    assert_eq!(weights, vec![0, 10, 30, 60, 100], "{labels:#?}");
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_100_ms_slower_is_rolled_back() {
    let s = setup(Some("latency:100")).await;
    let plan = plan(
        s.db.dir.path(),
        &s.proxy.admin,
        "hold_limit = 30\n[defaults]\ninterval = \"1s\"\nmin_duration = \"3s\"\nmin_requests = 200\n\
         [internal]\nmin_requests = 20\n\
         [[step]]\nweight = 10\n[[step]]\nweight = 100\n",
    );
    let (stop, load) = e2e::steady_load(&s);
    let started = std::time::Instant::now();
    let done = e2e::run_to_end(&plan).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    let log = decisions(&s);
    assert!(
        matches!(&done.state.phase, Phase::RolledBack { reason } if reason.contains("latency")),
        "{:?}\n{log:#?}",
        done.state
    );
    assert_eq!(canary_weight(&s.proxy.routing().await), 0);
    assert_eq!(seen.failed, 0);
    eprintln!(
        "rolled back after {took:?} at step {}; {} of {} users saw 2.0.0\n{log:#?}",
        done.state.step + 1,
        seen.canary_users.len(),
        seen.users.len()
    );
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_burning_budget_at_page_rate_is_rolled_back_and_the_hook_runs() {
    // 30 % errors: 300× the budget of 99.9 %, far past the page rate. The judge
    // is given a huge tolerance so that the page-burn rule, not its verdict,
    // decides.
    let s = setup(Some("error:30")).await;
    let hook_out = s.db.path("hook.txt");
    let plan = plan(
        s.db.dir.path(),
        &s.proxy.admin,
        &format!(
            "hold_limit = 30\nrollback_hook = \"echo $CAPSTAN_ROLLOUT_SERVICE $CAPSTAN_ROLLOUT_RELEASE $CAPSTAN_ROLLOUT_BASELINE > {}\"\n\
             [page_burn]\nobjective = 0.999\nrate = 14.4\nmin_requests = 20\n\
             [defaults]\ninterval = \"1s\"\nmin_duration = \"30s\"\nmin_requests = 200\n\
             [internal]\nmin_requests = 20\n\
             [[step]]\nweight = 10\n[[step]]\nweight = 100\n",
            hook_out.display()
        ),
    );
    let mut plan = plan;
    plan.analysis.relative_tolerance = 1000.0;
    plan.analysis.absolute_tolerance = 0.9;
    let (stop, load) = e2e::steady_load(&s);
    let done = e2e::run_to_end(&plan).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let log = decisions(&s);
    assert!(
        matches!(&done.state.phase, Phase::RolledBack { reason }
            if reason.contains("canary burns error budget") && reason.contains("page at 14.4")),
        "{:?}\n{log:#?}",
        done.state
    );
    assert_eq!(canary_weight(&s.proxy.routing().await), 0);
    // The hook ran once, after the rollback, with the rollout's names.
    let hook = std::fs::read_to_string(&hook_out).expect("the rollback hook ran");
    assert_eq!(hook.trim(), "chirpy 2.0.0 1.0.0");
    let rollback = log
        .iter()
        .position(|l| l.starts_with("rollback 2.0.0 step"))
        .unwrap_or_else(|| panic!("{log:#?}"));
    let ran = log
        .iter()
        .position(|l| l.starts_with("rollback 2.0.0 hook"))
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert!(rollback < ran, "{log:#?}");
    let rows = DeployLog::open(&s.db.path("events.db"))
        .unwrap()
        .list(Some("chirpy"), 0, i64::MAX)
        .unwrap();
    assert!(
        rows.iter().any(|d| d.detail == "rollback hook ran"),
        "{rows:#?}"
    );
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_rollback_hook_is_recorded_and_the_rollback_stands() {
    let s = setup(Some("error:30")).await;
    let plan = plan(
        s.db.dir.path(),
        &s.proxy.admin,
        "hold_limit = 30\nrollback_hook = \"echo no such unit >&2; exit 3\"\n\
         [defaults]\ninterval = \"1s\"\nmin_duration = \"30s\"\nmin_requests = 200\n\
         [internal]\nmin_requests = 20\n\
         [[step]]\nweight = 10\n[[step]]\nweight = 100\n",
    );
    let (stop, load) = e2e::steady_load(&s);
    let done = e2e::run_to_end(&plan).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    assert!(matches!(done.state.phase, Phase::RolledBack { .. }));
    assert_eq!(canary_weight(&s.proxy.routing().await), 0);
    let rows = DeployLog::open(&s.db.path("events.db"))
        .unwrap()
        .list(Some("chirpy"), 0, i64::MAX)
        .unwrap();
    assert!(
        rows.iter()
            .any(|d| d.detail.starts_with("rollback hook failed")
                && d.detail.contains("no such unit")),
        "{rows:#?}"
    );
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schema_and_fleet_gates_refuse_a_start_on_a_half_applied_schema_or_an_absent_release() {
    let s = setup(None).await;
    let body = |app: &str| {
        format!(
            "database = \"{}\"\napp = \"{app}\"\n[defaults]\ninterval = \"1s\"\n[[step]]\nweight = 50\n[[step]]\nweight = 100\n",
            s.db.url
        )
    };
    // No instance of the application under that name: nothing would serve it.
    let p = plan(s.db.dir.path(), &s.proxy.admin, &body("chirpy-nope"));
    match run::run(&p, &RunOptions::default()).await {
        Err(run::RunError::GateRefused(why)) => assert!(
            why.contains("no live instance of chirpy-nope 2.0.0")
                && why.contains("no live instance of chirpy-nope 1.0.0"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    // Migration 2 marked failed part-way in chirpy's history.
    let c = rusqlite::Connection::open(s.db.path("chirpy.db")).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        c.execute(
            "UPDATE capstan_migrations SET state = 'dirty' WHERE version = 2",
            []
        )
        .unwrap(),
        1
    );
    let p = plan(s.db.dir.path(), &s.proxy.admin, &body("chirpy"));
    match run::run(&p, &RunOptions::default()).await {
        Err(run::RunError::GateRefused(why)) => {
            assert!(
                why.contains("migration 2") && why.contains("dirty"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Nothing was routed and no rollout was recorded.
    assert_eq!(canary_weight(&s.proxy.routing().await), 0);
    assert!(decisions(&s).is_empty(), "{:?}", decisions(&s));
    s.proxy.stop().await;
}
