//! The proxy's admin API as the controller uses it: read the routing table,
//! and change only the parts a rollout owns.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Map, Value};

use super::run::RunError;
use super::{State, Target};

/// The proxy's admin API.
pub struct ProxyAdmin {
    client: reqwest::Client,
    url: String,
    token: String,
}

/// What routing to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A step's target.
    Step(Target),
    /// Canary at 0, internal cohort back on the baseline.
    RolledBack,
    /// Canary at 100.
    Promoted,
}

impl ProxyAdmin {
    /// A client with `timeout` on every request.
    pub fn new(url: &str, token: &str, timeout: Duration) -> Result<ProxyAdmin, RunError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| RunError::Proxy {
                url: url.into(),
                message: e.to_string(),
            })?;
        Ok(ProxyAdmin {
            client,
            url: url.into(),
            token: token.into(),
        })
    }

    fn err(&self, message: String) -> RunError {
        RunError::Proxy {
            url: format!("{}/routing", self.url),
            message,
        }
    }

    /// `GET /routing`.
    pub async fn routing(&self) -> Result<Value, RunError> {
        let r = self
            .client
            .get(format!("{}/routing", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.err(e.to_string()))?;
        let status = r.status();
        let body = r.bytes().await.map_err(|e| self.err(e.to_string()))?;
        if !status.is_success() {
            return Err(self.err(format!("{status}: {}", String::from_utf8_lossy(&body))));
        }
        serde_json::from_slice(&body).map_err(|e| self.err(e.to_string()))
    }

    /// `PUT /routing`: the whole table.
    pub async fn put_routing(&self, table: &Value) -> Result<(), RunError> {
        self.send(self.client.put(format!("{}/routing", self.url)), table)
            .await?
            .map_err(|(status, body)| self.err(format!("{status}: {body}")))
    }

    /// `PATCH /routing` with a JSON merge patch (RFC 7396). `Ok(false)` when
    /// the proxy answers 405: it predates `PATCH`, and the caller can send
    /// the whole table instead.
    pub async fn patch_routing(&self, patch: &Value) -> Result<bool, RunError> {
        match self
            .send(self.client.patch(format!("{}/routing", self.url)), patch)
            .await?
        {
            Ok(()) => Ok(true),
            Err((StatusCode::METHOD_NOT_ALLOWED, _)) => Ok(false),
            Err((status, body)) => Err(self.err(format!("{status}: {body}"))),
        }
    }

    /// Sends `body` as JSON: `Err((status, body))` when the proxy refuses.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        body: &Value,
    ) -> Result<Result<(), (StatusCode, String)>, RunError> {
        let r = request
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).expect("json"))
            .send()
            .await
            .map_err(|e| self.err(e.to_string()))?;
        let status = r.status();
        if status.is_success() {
            return Ok(Ok(()));
        }
        Ok(Err((status, r.text().await.unwrap_or_default())))
    }

    /// Routes as `route` says. Only what a rollout owns changes: the internal
    /// cohort's release, the weights, and a mirror to the canary. They go as
    /// a merge patch, so an operator's change to the rest of the table (a
    /// cohort rule, a release's upstreams) made while the rollout reads the
    /// table is not written over. A proxy without `PATCH` gets the whole
    /// table, as before.
    pub async fn apply(&self, state: &State, route: Route) -> Result<(), RunError> {
        let current = self.routing().await?;
        let table = routed(&current, state, route)
            .ok_or_else(|| self.err("the routing table is not a JSON object".into()))?;
        let patch = merge_patch(&current, &table);
        if patch.as_object().is_some_and(Map::is_empty) {
            return Ok(());
        }
        if !self.patch_routing(&patch).await? {
            self.put_routing(&table).await?;
        }
        Ok(())
    }
}

/// `table` routed as `route` says, or `None` when it is not an object.
fn routed(table: &Value, state: &State, route: Route) -> Option<Value> {
    let mut table = table.clone();
    let (internal, canary_weight) = match route {
        Route::Step(Target::Shadow { .. }) => (None, 0),
        Route::Step(Target::Internal) => (Some(&state.canary), 0),
        Route::Step(Target::Weight { percent }) => (Some(&state.canary), percent),
        Route::RolledBack => (None, 0),
        Route::Promoted => (None, 100),
    };
    let obj = table.as_object_mut()?;
    obj.insert("internal".into(), json!(internal));
    let mut weights = Map::new();
    weights.insert(state.baseline.clone(), json!(100 - canary_weight));
    weights.insert(state.canary.clone(), json!(canary_weight));
    obj.insert("weights".into(), Value::Object(weights));
    if let Route::Step(Target::Shadow { percent }) = route {
        obj.insert(
            "mirror".into(),
            json!({"release": state.canary, "percent": percent}),
        );
    } else if obj
        .get("mirror")
        .and_then(|m| m.get("release"))
        .and_then(Value::as_str)
        == Some(state.canary.as_str())
    {
        // Past the shadow step (or rolled back), the canary gets no more copies.
        obj.insert("mirror".into(), Value::Null);
    }
    Some(table)
}

/// The JSON merge patch (RFC 7396) that turns `from` into `to`: the keys
/// whose values differ, objects compared key by key, `null` for a key `to`
/// lacks. A `null` in `to` removes the key, which is how the routing table
/// reads an unset optional field; a key absent from `from` and `null` in
/// `to` is no change.
fn merge_patch(from: &Value, to: &Value) -> Value {
    let (Value::Object(from), Value::Object(to)) = (from, to) else {
        return to.clone();
    };
    let mut patch = Map::new();
    for (key, value) in to {
        match from.get(key) {
            Some(old) if old == value => {}
            // Absent and `null` read the same.
            None if value.is_null() => {}
            Some(old @ Value::Object(_)) if value.is_object() => {
                patch.insert(key.clone(), merge_patch(old, value));
            }
            _ => {
                patch.insert(key.clone(), value.clone());
            }
        }
    }
    for key in from.keys() {
        if !to.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_names_only_what_changed_and_removes_what_went() {
        let from = json!({
            "releases": [{"name": "1.0.0"}, {"name": "2.0.0"}, {"name": "0.9.0"}],
            "cohort": {"headers": {"x-internal": "1"}},
            "internal": "2.0.0",
            "weights": {"0.9.0": 10, "1.0.0": 90, "2.0.0": 0},
            "mirror": {"release": "2.0.0", "percent": 5},
        });
        let to = json!({
            "releases": [{"name": "1.0.0"}, {"name": "2.0.0"}, {"name": "0.9.0"}],
            "cohort": {"headers": {"x-internal": "1"}},
            "internal": null,
            "weights": {"1.0.0": 75, "2.0.0": 25},
            "mirror": {"release": "2.0.0", "percent": 5},
        });
        let patch = merge_patch(&from, &to);
        assert_eq!(
            patch,
            json!({"internal": null, "weights": {"0.9.0": null, "1.0.0": 75, "2.0.0": 25}})
        );
        assert_eq!(merge_patch(&to, &to), json!({}));
        assert_eq!(
            merge_patch(&json!({}), &json!({"internal": null})),
            json!({})
        );
        // A value that stops being an object is replaced whole.
        assert_eq!(
            merge_patch(&json!({"m": {"a": 1}}), &json!({"m": [1]})),
            json!({"m": [1]})
        );
    }

    #[test]
    fn a_rollout_routes_the_canary_and_leaves_the_rest_alone() {
        let state = State::new("chirpy", "1.0.0", "2.0.0", 0);
        let table = json!({
            "releases": [{"name": "1.0.0"}, {"name": "2.0.0"}],
            "cohort": {"cidrs": ["10.0.0.0/8"]},
            "weights": {"1.0.0": 100, "2.0.0": 0},
            "sticky": {"cookie": "uid"},
        });
        let step = |route| merge_patch(&table, &routed(&table, &state, route).unwrap());
        assert_eq!(
            step(Route::Step(Target::Weight { percent: 10 })),
            json!({"internal": "2.0.0", "weights": {"1.0.0": 90, "2.0.0": 10}})
        );
        assert_eq!(
            step(Route::Step(Target::Shadow { percent: 20 })),
            json!({"mirror": {"release": "2.0.0", "percent": 20}})
        );
        assert_eq!(
            step(Route::Promoted),
            json!({"weights": {"1.0.0": 0, "2.0.0": 100}})
        );
        // Rolled back from a mirror to the canary: the mirror goes.
        let mirrored = routed(&table, &state, Route::Step(Target::Shadow { percent: 20 })).unwrap();
        let back = routed(&mirrored, &state, Route::RolledBack).unwrap();
        assert_eq!(merge_patch(&mirrored, &back), json!({"mirror": null}));
        assert_eq!(routed(&json!([1]), &state, Route::Promoted), None);
    }

    /// A stand-in for a proxy from before `PATCH /routing`: it reads and
    /// replaces the table, and answers `PATCH` with `patch` (405 when none).
    async fn older_proxy(
        table: Value,
        patch: Option<StatusCode>,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Value>>) {
        use axum::extract::State as S;
        use axum::routing::get;
        type Shared = std::sync::Arc<std::sync::Mutex<Value>>;
        let shared: Shared = std::sync::Arc::new(std::sync::Mutex::new(table));
        let mut routes =
            get(|S(t): S<Shared>| async move { axum::Json(t.lock().unwrap().clone()) }).put(
                |S(t): S<Shared>, axum::Json(v): axum::Json<Value>| async move {
                    *t.lock().unwrap() = v;
                    StatusCode::OK
                },
            );
        if let Some(status) = patch {
            routes = routes.patch(move || async move { (status, "refused") });
        }
        let app = axum::Router::new()
            .route("/routing", routes)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, shared)
    }

    #[tokio::test]
    async fn a_proxy_without_patch_is_sent_the_whole_table_and_a_refusal_is_an_error() {
        let state = State::new("chirpy", "1.0.0", "2.0.0", 0);
        let table = json!({
            "releases": [{"name": "1.0.0"}, {"name": "2.0.0"}],
            "weights": {"1.0.0": 100, "2.0.0": 0},
        });
        let step = Route::Step(Target::Weight { percent: 10 });

        let (url, shared) = older_proxy(table.clone(), None).await;
        let admin = ProxyAdmin::new(&url, "t", Duration::from_secs(5)).unwrap();
        admin.apply(&state, step).await.unwrap();
        assert_eq!(
            *shared.lock().unwrap(),
            json!({
                "releases": [{"name": "1.0.0"}, {"name": "2.0.0"}],
                "internal": "2.0.0",
                "weights": {"1.0.0": 90, "2.0.0": 10},
            })
        );

        // Any other refusal is the proxy saying no: no fallback, the table stays.
        let (url, shared) = older_proxy(table.clone(), Some(StatusCode::BAD_REQUEST)).await;
        let admin = ProxyAdmin::new(&url, "t", Duration::from_secs(5)).unwrap();
        let e = admin.apply(&state, step).await.unwrap_err().to_string();
        assert!(e.contains("400") && e.contains("refused"), "{e}");
        assert_eq!(*shared.lock().unwrap(), table);
    }
}
