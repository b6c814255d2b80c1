//! The shadow step end to end: chirpy 1.0.0 serves every user while the proxy
//! mirrors a share of requests to 2.0.0, whose answers nobody sees; the judge
//! compares the two answers to the same requests.

mod e2e;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capstan_rollout::controller::run::now_ms;
use capstan_rollout::controller::Phase;
use capstan_slo::DeployLog;
use e2e::{canary_weight, decisions, plan, setup, watch_weights};

/// Mirrored requests recorded in the event store (their events carry the comparison).
fn mirrored(s: &e2e::Setup) -> (u64, u64) {
    let store = capstan_events::Store::open(&s.db.path("events.db")).unwrap();
    let (mut n, mut shadow_5xx) = (0, 0);
    store
        .scan(0, i64::MAX, Some("chirpy"), |se| {
            if let Some(m) = &se.event.mirror {
                assert_eq!(
                    se.event.release, "1.0.0",
                    "a mirrored request served by 2.0.0"
                );
                n += 1;
                if m.shadow_status >= 500 {
                    shadow_5xx += 1;
                }
            }
            true
        })
        .unwrap();
    (n, shadow_5xx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_faulty_release_is_stopped_at_the_shadow_step_and_no_user_sees_it() {
    let s = setup(Some("error:3")).await;
    let plan = plan(
        s.db.dir.path(),
        &s.proxy.admin,
        "hold_limit = 30\n[defaults]\ninterval = \"1s\"\nmin_duration = \"3s\"\nmin_requests = 200\n\
         [shadow]\npercent = 50\n\
         [internal]\nmin_requests = 20\n\
         [[step]]\nweight = 10\n[[step]]\nweight = 100\n",
    );
    let (stop, load) = e2e::steady_load(&s);
    let weights = watch_weights(s.proxy.admin.clone(), stop.clone());
    // The mirror is on while the shadow step runs.
    let admin = s.proxy.admin.clone();
    let mirror_seen = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client
                .get(format!("{admin}/routing"))
                .bearer_auth(e2e::TOKEN)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                if v["mirror"]["release"] == "2.0.0" {
                    return Some(v);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    });
    let done = e2e::run_to_end(&plan).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    let weights = weights.await.unwrap();
    let log = decisions(&s);

    assert!(
        matches!(&done.state.phase, Phase::RolledBack { reason } if reason.contains("shadow_errors") || reason.contains("status_mismatch")),
        "{:?}\n{log:#?}",
        done.state
    );
    assert_eq!(done.state.step, 0, "stopped at the shadow step");
    let on = mirror_seen
        .await
        .unwrap()
        .expect("the mirror was turned on");
    assert_eq!(on["mirror"]["percent"], 50, "{on}");
    assert!(on["internal"].is_null(), "no cohort sees the canary: {on}");
    // Rolled back: the mirror is off, the canary has nothing.
    let table = s.proxy.routing().await;
    assert!(table["mirror"].is_null(), "{table}");
    assert_eq!(canary_weight(&table), 0, "{table}");
    assert!(
        log.iter()
            .any(|l| l.starts_with("rollback 2.0.0 step 1 (shadow 50 %)")),
        "{log:#?}"
    );
    // No user ever got an answer from 2.0.0, and none failed.
    assert_eq!(weights, vec![0], "{weights:?}");
    assert!(seen.canary_users.is_empty(), "{seen:?}");
    assert_eq!(seen.failed, 0, "{seen:?}");
    let (n, shadow_5xx) = mirrored(&s);
    assert!(n > 0 && shadow_5xx > 0, "{n} mirrored, {shadow_5xx} 5xx");
    eprintln!(
        "rolled back at the shadow step; {} user requests, {} failed, {} of {} users saw 2.0.0; \
         {n} mirrored, {shadow_5xx} answered 5xx by the shadow\n{log:#?}",
        seen.requests,
        seen.failed,
        seen.canary_users.len(),
        seen.users.len()
    );
    s.proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_healthy_release_passes_the_shadow_step_before_any_user_sees_it() {
    let s = setup(None).await;
    let plan = plan(
        s.db.dir.path(),
        &s.proxy.admin,
        "hold_limit = 30\n[defaults]\ninterval = \"1s\"\nmin_duration = \"2s\"\nmin_requests = 100\n\
         [shadow]\npercent = 50\n\
         [[step]]\nweight = 50\n[[step]]\nweight = 100\n",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let load_started_ms = now_ms();
    let load = tokio::spawn(e2e::load(
        s.proxy.url.clone(),
        6,
        5000,
        stop.clone(),
        Duration::from_secs(60),
    ));
    let weights = watch_weights(s.proxy.admin.clone(), stop.clone());
    let done = e2e::run_to_end(&plan).await;
    stop.store(true, Ordering::Relaxed);
    let seen = load.await.unwrap();
    let weights = weights.await.unwrap();
    let log = decisions(&s);
    assert_eq!(done.state.phase, Phase::Promoted, "{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("step 1 (shadow 50 %)")
            && l.contains("verdict: pass")
            && l.contains("mirrored requests")),
        "{log:#?}"
    );
    let table = s.proxy.routing().await;
    assert_eq!(canary_weight(&table), 100);
    assert!(
        table["mirror"].is_null(),
        "the mirror is off past the shadow step: {table}"
    );
    let mut expected = vec![0, 50, 100];
    expected.retain(|w| weights.contains(w));
    assert_eq!(weights, expected, "{weights:?}");
    // The first user on 2.0.0 came after the step that left the shadow was
    // written (the log is written before the proxy is told).
    let rows = DeployLog::open(&s.db.path("events.db"))
        .unwrap()
        .list(Some("chirpy"), 0, i64::MAX)
        .unwrap();
    let left_shadow = rows
        .iter()
        .find(|d| d.subject.contains("step 2 (weight 50)"))
        .unwrap_or_else(|| panic!("{log:#?}"))
        .time_ms;
    let first = seen
        .first_public_canary_ms
        .into_iter()
        .chain(seen.first_internal_canary_ms)
        .min()
        .expect("users saw 2.0.0 after the shadow step");
    assert!(
        load_started_ms + first as i64 >= left_shadow,
        "a user saw 2.0.0 {} ms before the shadow step ended",
        left_shadow - load_started_ms - first as i64
    );
    assert_eq!(seen.failed, 0);
    let (n, _) = mirrored(&s);
    assert!(n >= 100, "{n} mirrored");
    s.proxy.stop().await;
}
