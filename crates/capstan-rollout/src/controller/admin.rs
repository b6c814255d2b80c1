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
            return Err(self.err(format!("GET: {status}: {}", String::from_utf8_lossy(&body))));
        }
        serde_json::from_slice(&body).map_err(|e| self.err(format!("GET: {e}")))
    }

    /// `PUT /routing`: the whole table.
    pub async fn put_routing(&self, table: &Value) -> Result<(), RunError> {
        let put = self.client.put(format!("{}/routing", self.url));
        self.send(put, "PUT", "application/json", table)
            .await?
            .map_err(|(status, body)| self.err(format!("PUT: {status}: {body}")))
    }

    /// `PATCH /routing` with a JSON merge patch (RFC 7396). `Ok(false)` when
    /// the proxy answers 405: it predates `PATCH`, and the caller can send
    /// the whole table instead.
    pub async fn patch_routing(&self, patch: &Value) -> Result<bool, RunError> {
        let request = self.client.patch(format!("{}/routing", self.url));
        match self
            .send(request, "PATCH", "application/merge-patch+json", patch)
            .await?
        {
            Ok(()) => Ok(true),
            Err((StatusCode::METHOD_NOT_ALLOWED, _)) => Ok(false),
            Err((status, body)) => Err(self.err(format!("PATCH: {status}: {body}"))),
        }
    }

    /// Sends `body` as JSON of `content_type`: `Err((status, body))` when
    /// the proxy refuses.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        method: &str,
        content_type: &str,
        body: &Value,
    ) -> Result<Result<(), (StatusCode, String)>, RunError> {
        let r = request
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(serde_json::to_vec(body).expect("json"))
            .send()
            .await
            .map_err(|e| self.err(format!("{method}: {e}")))?;
        let status = r.status();
        if status.is_success() {
            return Ok(Ok(()));
        }
        Ok(Err((status, r.text().await.unwrap_or_default())))
    }

    /// Routes as `route` says. Only what a rollout owns changes: the internal
    /// cohort's release, the weights, and a mirror to the canary, each sent
    /// whole in a merge patch ([`step_patch`]), so an operator's change to
    /// the rest of the table (a cohort rule, a release's upstreams) made
    /// while the rollout reads the table is not written over. Nothing is
    /// sent when the table already routes so. A proxy without `PATCH` gets
    /// the whole table; any other refusal is an error, the table unchanged.
    pub async fn apply(&self, state: &State, route: Route) -> Result<(), RunError> {
        let current = self.routing().await?;
        self.apply_over(&current, state, route).await
    }

    /// [`ProxyAdmin::apply`] given the table as `current` was read: only the
    /// difference between it and the step is sent, whatever the proxy's
    /// table became since.
    pub async fn apply_over(
        &self,
        current: &Value,
        state: &State,
        route: Route,
    ) -> Result<(), RunError> {
        let table = routed(current, state, route)
            .ok_or_else(|| self.err("GET: the routing table is not a JSON object".into()))?;
        let Some(patch) = step_patch(current, &table) else {
            return Ok(());
        };
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

/// The keys of the routing table a rollout owns.
const OWNED: [&str; 3] = ["internal", "weights", "mirror"];

/// The merge patch (RFC 7396) that takes `current` to `routed`, which
/// differ in the keys a rollout owns at most; `None` when they do not
/// differ. `internal` and `weights` are always sent whole (other releases'
/// weights as `null`, removed), so the step lands as a whole even if one of
/// them was changed meanwhile; `mirror` only when the step changes it (to
/// the canary, or removed), so an operator's mirror to another release
/// stays. `null` removes a key, which is how the table reads an unset
/// optional field: absent and `null` are the same here.
fn step_patch(current: &Value, routed: &Value) -> Option<Value> {
    let get = |table: &Value, key: &str| {
        table
            .get(key)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(Value::Null)
    };
    if OWNED.iter().all(|k| get(current, k) == get(routed, k)) {
        return None;
    }
    let mut weights = match get(routed, "weights") {
        Value::Object(w) => w,
        _ => Map::new(),
    };
    if let Value::Object(old) = get(current, "weights") {
        for release in old.keys() {
            weights.entry(release.clone()).or_insert(Value::Null);
        }
    }
    let mut patch = Map::new();
    patch.insert("internal".into(), get(routed, "internal"));
    patch.insert("weights".into(), Value::Object(weights));
    let mirror = get(routed, "mirror");
    if get(current, "mirror") != mirror {
        patch.insert("mirror".into(), mirror);
    }
    Some(Value::Object(patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `table` after `route` is applied through its step patch, as the
    /// proxy merges it.
    fn through_patch(table: &Value, state: &State, route: Route) -> (Option<Value>, Value) {
        let next = routed(table, state, route).unwrap();
        let patch = step_patch(table, &next);
        let mut merged = table.clone();
        if let Some(p) = &patch {
            json_patch::merge(&mut merged, p);
        }
        (patch, merged)
    }

    #[test]
    fn a_step_is_patched_whole_and_the_rest_of_the_table_is_left_alone() {
        let state = State::new("chirpy", "1.0.0", "2.0.0", 0);
        let table = json!({
            "releases": [{"name": "1.0.0"}, {"name": "2.0.0"}, {"name": "0.9.0"}],
            "cohort": {"cidrs": ["10.0.0.0/8"]},
            "weights": {"0.9.0": 10, "1.0.0": 90, "2.0.0": 0},
            "sticky": {"cookie": "uid"},
        });
        let (patch, merged) =
            through_patch(&table, &state, Route::Step(Target::Weight { percent: 10 }));
        assert_eq!(
            patch,
            Some(json!({
                "internal": "2.0.0",
                "weights": {"0.9.0": null, "1.0.0": 90, "2.0.0": 10},
            }))
        );
        assert_eq!(
            merged,
            json!({
                "releases": [{"name": "1.0.0"}, {"name": "2.0.0"}, {"name": "0.9.0"}],
                "cohort": {"cidrs": ["10.0.0.0/8"]},
                "internal": "2.0.0",
                "weights": {"1.0.0": 90, "2.0.0": 10},
                "sticky": {"cookie": "uid"},
            })
        );
        // Applied again: nothing to send.
        assert_eq!(
            through_patch(&merged, &state, Route::Step(Target::Weight { percent: 10 })).0,
            None
        );

        // The shadow step sends its mirror whole, and the weights that stay
        // as they were, so the step lands whole.
        let (patch, shadowed) =
            through_patch(&merged, &state, Route::Step(Target::Shadow { percent: 20 }));
        assert_eq!(
            patch,
            Some(json!({
                "internal": null,
                "weights": {"1.0.0": 100, "2.0.0": 0},
                "mirror": {"release": "2.0.0", "percent": 20},
            }))
        );
        assert_eq!(
            shadowed["mirror"],
            json!({"release": "2.0.0", "percent": 20})
        );
        assert_eq!(shadowed.get("internal"), None);

        // Rolled back: the canary's mirror goes.
        let (patch, back) = through_patch(&shadowed, &state, Route::RolledBack);
        assert_eq!(patch.unwrap()["mirror"], Value::Null);
        assert_eq!(back.get("mirror"), None);

        // An operator's mirror to another release is not the rollout's: it
        // is neither sent nor removed.
        let mut theirs = merged.clone();
        theirs["mirror"] = json!({"release": "0.9.0", "percent": 5});
        let (patch, promoted) = through_patch(&theirs, &state, Route::Promoted);
        assert_eq!(
            patch,
            Some(json!({"internal": null, "weights": {"1.0.0": 0, "2.0.0": 100}}))
        );
        assert_eq!(
            promoted["mirror"],
            json!({"release": "0.9.0", "percent": 5})
        );

        assert_eq!(routed(&json!([1]), &state, Route::Promoted), None);
    }

    /// What a stand-in proxy saw: the table, and each request that changed it.
    type Seen = std::sync::Arc<std::sync::Mutex<(Value, Vec<(String, String, Value)>)>>;

    /// A stand-in for the proxy's admin API over a real socket: `GET`,
    /// `PUT` and, when `patch` is given, `PATCH` answering with that status
    /// (merging the body into the table on success); without it, `PATCH`
    /// gets 405 as from a proxy from before `PATCH` existed.
    async fn stand_in(table: Value, patch: Option<StatusCode>) -> (String, Seen) {
        use axum::extract::State as S;
        use axum::http::HeaderMap;
        use axum::routing::get;
        let seen: Seen = std::sync::Arc::new(std::sync::Mutex::new((table, Vec::new())));
        let content_type = |h: &HeaderMap| {
            h.get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let mut routes =
            get(|S(t): S<Seen>| async move { axum::Json(t.lock().unwrap().0.clone()) }).put(
                move |S(t): S<Seen>, h: HeaderMap, axum::Json(v): axum::Json<Value>| async move {
                    let mut t = t.lock().unwrap();
                    t.1.push(("PUT".into(), content_type(&h), v.clone()));
                    t.0 = v;
                    StatusCode::OK
                },
            );
        if let Some(status) = patch {
            routes = routes.patch(
                move |S(t): S<Seen>, h: HeaderMap, body: axum::body::Bytes| async move {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    let mut t = t.lock().unwrap();
                    t.1.push(("PATCH".into(), content_type(&h), v.clone()));
                    if status.is_success() {
                        json_patch::merge(&mut t.0, &v);
                    }
                    (status, "refused")
                },
            );
        }
        let app = axum::Router::new()
            .route("/routing", routes)
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    #[tokio::test]
    async fn a_step_goes_as_one_patch_or_as_the_whole_table_to_a_proxy_without_patch() {
        let state = State::new("chirpy", "1.0.0", "2.0.0", 0);
        let table = json!({
            "releases": [{"name": "1.0.0"}, {"name": "2.0.0"}],
            "weights": {"1.0.0": 100, "2.0.0": 0},
        });
        let step = Route::Step(Target::Weight { percent: 10 });
        let stepped = json!({
            "releases": [{"name": "1.0.0"}, {"name": "2.0.0"}],
            "internal": "2.0.0",
            "weights": {"1.0.0": 90, "2.0.0": 10},
        });

        // A proxy with PATCH: one merge patch, then nothing once it routes so.
        let (url, seen) = stand_in(table.clone(), Some(StatusCode::OK)).await;
        let admin = ProxyAdmin::new(&url, "t", Duration::from_secs(5)).unwrap();
        admin.apply(&state, step).await.unwrap();
        admin.apply(&state, step).await.unwrap();
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.0, stepped);
            let requests: Vec<_> = seen
                .1
                .iter()
                .map(|(m, c, _)| (m.as_str(), c.as_str()))
                .collect();
            assert_eq!(requests, [("PATCH", "application/merge-patch+json")]);
        }

        // Without PATCH (405): the whole table with PUT.
        let (url, seen) = stand_in(table.clone(), None).await;
        let admin = ProxyAdmin::new(&url, "t", Duration::from_secs(5)).unwrap();
        admin.apply(&state, step).await.unwrap();
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.0, stepped);
            assert_eq!(seen.1.len(), 1);
            assert_eq!(
                (seen.1[0].0.as_str(), seen.1[0].1.as_str()),
                ("PUT", "application/json")
            );
        }

        // Any other refusal is the proxy saying no: an error naming the
        // method, no fallback, the table as it was.
        let (url, seen) = stand_in(table.clone(), Some(StatusCode::BAD_REQUEST)).await;
        let admin = ProxyAdmin::new(&url, "t", Duration::from_secs(5)).unwrap();
        let e = admin.apply(&state, step).await.unwrap_err().to_string();
        assert!(e.contains("PATCH: 400") && e.contains("refused"), "{e}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.0, table);
        assert_eq!(seen.1.len(), 1);
    }
}
