//! The admin API, on its own listener: read, replace and patch the routing table,
//! upstream health, Prometheus metrics and the proxy's own health (with the
//! fleet registry's, when upstreams are discovered there). Every path but
//! `/healthz` needs `Authorization: Bearer <token>`.

use std::sync::Arc;

use crate::fleet::FleetStatus;
use crate::metrics::Metrics;
use crate::pool::Tables;
use crate::routing::RoutingTable;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

/// What the admin handlers share with the proxy.
#[derive(Clone)]
pub struct AdminState {
    /// Publishes new tables to the request path.
    pub tables: Arc<Tables>,
    /// The fleet registry poller's state (none: no discovery).
    pub fleet: Option<Arc<FleetStatus>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The recorder, for its drop counts.
    pub recorder: Option<capstan_events::Recorder>,
    /// Bearer token.
    pub token: Arc<str>,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    let protected = Router::new()
        .route(
            "/routing",
            get(get_routing).put(put_routing).patch(patch_routing),
        )
        .route("/upstreams", get(upstreams))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .with_state(state)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

async fn auth(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| {
        // Length and every byte, without an early exit.
        g.len() == s.token.len()
            && g.bytes()
                .zip(s.token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if !ok {
        let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    next.run(req).await
}

/// `pass`; `warn` (still 200: the proxy serves) while the fleet registry
/// does not answer and the last known upstreams are served.
async fn healthz(State(s): State<AdminState>) -> Json<serde_json::Value> {
    let Some(fleet) = &s.fleet else {
        return Json(serde_json::json!({"status": "pass"}));
    };
    let r = fleet.report();
    Json(serde_json::json!({
        "status": r.status,
        "checks": {
            "fleet": {
                "status": r.status,
                "last_success_age_secs": r.last_success_age_secs,
                "consecutive_failures": r.consecutive_failures,
                "instances": r.instances,
            }
        }
    }))
}

async fn get_routing(State(s): State<AdminState>) -> Json<RoutingTable> {
    Json(s.tables.current().table.clone())
}

async fn put_routing(State(s): State<AdminState>, body: Bytes) -> Response {
    let table: RoutingTable = match serde_json::from_slice(&body) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("routing table: {e}")),
    };
    if let Err(e) = check(&s, &table) {
        return error(StatusCode::BAD_REQUEST, format!("routing table: {e}"));
    }
    s.tables.replace_table(table.clone());
    tracing::info!("routing table replaced");
    Json(table).into_response()
}

/// A table's own rules, and what this proxy can serve: a release found in
/// the fleet registry needs the `[fleet]` section that polls it, else its
/// pool would stay empty and its share of users answered 503 for good.
fn check(s: &AdminState, table: &RoutingTable) -> Result<(), String> {
    table.validate().map_err(|e| e.to_string())?;
    for r in &table.releases {
        match &r.fleet {
            Some(f) if f.version.trim().is_empty() => {
                return Err(format!("releases.{}.fleet.version: empty", r.name));
            }
            Some(_) if s.fleet.is_none() => {
                return Err(format!(
                    "releases.{}.fleet: this proxy has no [fleet] section, so no instance would ever be found",
                    r.name
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Changes part of the routing table: the body is a JSON merge patch
/// (RFC 7396) of it (objects merge key by key, `null` removes a key, any
/// other value replaces), so `{"weights": {"1.0.0": 80, "2.0.0": 20}}` moves
/// the split without restating the releases. The result is checked like a
/// `PUT` body; a bad one is refused and the table kept. Concurrent patches
/// apply one after the other, none lost.
async fn patch_routing(State(s): State<AdminState>, body: Bytes) -> Response {
    let patch: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        Ok(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "routing patch: must be a JSON object (a merge patch of the routing table)",
            )
        }
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("routing patch: {e}")),
    };
    if let Some(key) = patch.as_object().and_then(unknown_patch_key) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("routing patch: unknown field `{key}`"),
        );
    }
    let patched = s.tables.update_table(|current| {
        let mut doc = serde_json::to_value(current).map_err(|e| e.to_string())?;
        json_patch::merge(&mut doc, &patch);
        let table: RoutingTable = serde_json::from_value(doc).map_err(|e| e.to_string())?;
        check(&s, &table)?;
        Ok::<_, String>(table)
    });
    match patched {
        Ok(table) => {
            tracing::info!("routing table patched");
            Json(table).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, format!("routing table: {e}")),
    }
}

/// The keys a merge patch may name in each object of the table (arrays are
/// replaced whole; `weights` is keyed by release). A key outside these is
/// refused even with a `null`, which would remove nothing and look like
/// success (`{"mirorr": null}` leaves the mirror on).
const PATCH_KEYS: [(&str, &[&str]); 4] = [
    (
        "",
        &[
            "releases", "cohort", "internal", "weights", "sticky", "mirror",
        ],
    ),
    ("cohort", &["headers", "cookies", "cidrs"]),
    ("sticky", &["header", "cookie"]),
    ("mirror", &["release", "percent"]),
];

/// The first key of `patch` the routing table does not have (`mirror.pct`
/// for a nested one).
fn unknown_patch_key(patch: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let keys_of = |object: &str| {
        PATCH_KEYS
            .iter()
            .find(|(o, _)| *o == object)
            .map(|(_, k)| *k)
    };
    let top = keys_of("").unwrap_or_default();
    for (key, value) in patch {
        if !top.contains(&key.as_str()) {
            return Some(key.clone());
        }
        if let (Some(known), serde_json::Value::Object(inner)) = (keys_of(key), value) {
            if let Some(bad) = inner.keys().find(|k| !known.contains(&k.as_str())) {
                return Some(format!("{key}.{bad}"));
            }
        }
    }
    None
}

async fn upstreams(State(s): State<AdminState>) -> Response {
    let status = s.tables.current().status();
    match &s.fleet {
        Some(f) => Json(serde_json::json!({ "upstreams": status, "fleet": f.report() })),
        None => Json(serde_json::json!({ "upstreams": status })),
    }
    .into_response()
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(s.recorder.as_ref()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patchable keys are exactly the table's: a table with every field
    /// set serializes to those keys and no others.
    #[test]
    fn patch_keys_are_the_routing_tables_own() {
        let full: RoutingTable = serde_json::from_value(serde_json::json!({
            "releases": [{"name": "1.0.0", "upstreams": ["127.0.0.1:1"]}],
            "cohort": {"headers": [{"name": "x-internal"}], "cookies": [{"name": "staff"}],
                       "cidrs": ["10.0.0.0/8"]},
            "internal": "1.0.0",
            "weights": {"1.0.0": 100},
            "sticky": {"header": "x-user", "cookie": "uid"},
            "mirror": {"release": "1.0.0", "percent": 5}
        }))
        .unwrap();
        let v = serde_json::to_value(&full).unwrap();
        for (object, keys) in PATCH_KEYS {
            let o = if object.is_empty() { &v } else { &v[object] };
            let mut have: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
            let mut want = keys.to_vec();
            have.sort_unstable();
            want.sort_unstable();
            assert_eq!(have, want, "{object}");
        }
        let patch = |v: serde_json::Value| unknown_patch_key(v.as_object().unwrap());
        assert_eq!(
            patch(serde_json::json!({"mirorr": null})).as_deref(),
            Some("mirorr")
        );
        assert_eq!(
            patch(serde_json::json!({"sticky": {"cokie": null}})).as_deref(),
            Some("sticky.cokie")
        );
        assert_eq!(
            patch(serde_json::json!({"weights": {"any": 1}, "mirror": null})),
            None
        );
    }
}
