//! The controller's admin client against the real proxy, in the race its
//! merge patch is for.

mod e2e;

use std::time::Duration;

use capstan_rollout::controller::admin::{ProxyAdmin, Route};
use capstan_rollout::controller::{State, Target};
use serde_json::json;

/// The controller reads the table, an operator replaces the cohort rule,
/// then the step is written from what was read. The operator's rule stays
/// and the step lands; writing back the table read first (what `PUT` did)
/// would have restored the old rule.
#[tokio::test]
async fn an_operators_change_between_the_read_and_the_step_stays() {
    let dir = tempfile::tempdir().unwrap();
    // No instance answers: the admin API is what is under test.
    let proxy =
        e2e::Proxy::start("127.0.0.1:1", "127.0.0.1:2", &dir.path().join("events.db")).await;
    let admin = ProxyAdmin::new(&proxy.admin, e2e::TOKEN, Duration::from_secs(5)).unwrap();
    let state = State::new("chirpy", "1.0.0", "2.0.0", 0);

    let read = admin.routing().await.unwrap();
    assert_eq!(
        read["cohort"]["headers"],
        json!([{"name": "x-internal", "value": "1"}])
    );
    let rule = json!([{"name": "x-staff", "value": "yes"}]);
    assert!(admin
        .patch_routing(&json!({"cohort": {"headers": rule}}))
        .await
        .unwrap());
    admin
        .apply_over(&read, &state, Route::Step(Target::Weight { percent: 10 }))
        .await
        .unwrap();

    let table = proxy.routing().await;
    assert_eq!(table["cohort"]["headers"], rule, "{table}");
    assert_eq!(table["internal"], "2.0.0");
    assert_eq!(table["weights"], json!({"1.0.0": 90, "2.0.0": 10}));
    proxy.stop().await;
}
