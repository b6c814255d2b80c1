//! The judge over HTTP: Argo Rollouts' Web metric provider and Flagger's webhooks.
//!
//! | route | caller | answer |
//! |---|---|---|
//! | `GET`/`POST /api/v1/verdict` | Argo Rollouts Web provider | always 200 with the report; the AnalysisTemplate's `successCondition` / `failureCondition` decide |
//! | `POST /flagger/confirm-rollout` | Flagger gate | 200 when every gate guarding it is open, else 403 |
//! | `POST /flagger/confirm-promotion` | Flagger gate | same |
//! | `POST /flagger/rollout` | Flagger analysis | 200 on a pass verdict, else 412 (Flagger counts a failed check) |
//! | `POST /flagger/rollback` | Flagger | 200 on a fail verdict (Flagger rolls back), else 409 |
//! | `POST /flagger/event` | Flagger event | 202, the event appended to the event log |
//! | `GET /healthz` | probes | 200 |
//!
//! A request whose queries need a placeholder it did not supply is 400 (an error
//! for Argo, a failed check for Flagger): a configuration mistake, never a verdict.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::config::JudgeConfig;
use crate::judge::{self, Interval, Report, Verdict};
use crate::prometheus::{check_gates, observe, GateResult, PromError, Prometheus, RequestError};

/// The clock the server judges by (unix milliseconds): injected, so tests pin it.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
}

/// What the router serves from.
#[derive(Clone)]
pub struct JudgeState {
    config: Arc<JudgeConfig>,
    prometheus: Prometheus,
    clock: Clock,
    event_lock: Arc<tokio::sync::Mutex<()>>,
}

impl JudgeState {
    /// State for `config`, judging at the times `clock` gives.
    pub fn new(config: JudgeConfig, clock: Clock) -> Result<JudgeState, PromError> {
        let prometheus = Prometheus::new(&config.prometheus)?;
        Ok(JudgeState {
            config: Arc::new(config),
            prometheus,
            clock,
            event_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Fetches the metrics for the interval ending now and judges them.
    pub async fn verdict(&self, vars: &BTreeMap<String, String>) -> Result<Report, RequestError> {
        let at_ms = (self.clock)();
        let observed = observe(&self.prometheus, &self.config, vars, at_ms).await?;
        let specs: Vec<_> = self.config.metrics.iter().map(|(s, _)| s.clone()).collect();
        Ok(judge::judge(
            &specs,
            &observed,
            &self.config.groups,
            &self.config.thresholds,
            Interval {
                from_ms: at_ms - self.config.lookback.as_millis() as i64,
                to_ms: at_ms,
                at_ms,
            },
        ))
    }
}

/// The judge's routes (see the module documentation), as a value to serve or test.
pub fn judge_router(state: JudgeState) -> Router {
    Router::new()
        .route("/api/v1/verdict", get(argo_get).post(argo_post))
        .route("/flagger/confirm-rollout", post(confirm_rollout))
        .route("/flagger/confirm-promotion", post(confirm_promotion))
        .route("/flagger/rollout", post(flagger_rollout))
        .route("/flagger/rollback", post(flagger_rollback))
        .route("/flagger/event", post(flagger_event))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Flagger's webhook payload (`CanaryWebhookPayload`): the same for every hook
/// type; `event` hooks carry `eventMessage`, `eventType` and `timestamp` in
/// `metadata`. `checksum` is absent in older Flagger releases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlaggerPayload {
    /// The canary's name.
    pub name: String,
    /// The canary's namespace.
    pub namespace: String,
    /// The canary's phase (`Initializing`, `Initialized`, `Waiting`, `Progressing`,
    /// `WaitingPromotion`, `Promoting`, `Finalising`, `Succeeded`, `Failed`, ...).
    pub phase: String,
    /// Hash of the canary's tracked configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The webhook's `metadata` from the Canary spec.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

impl FlaggerPayload {
    /// Placeholder values: the metadata, then `name`, `namespace`, `phase`.
    fn vars(&self) -> BTreeMap<String, String> {
        let mut vars = self.metadata.clone();
        vars.insert("name".into(), self.name.clone());
        vars.insert("namespace".into(), self.namespace.clone());
        vars.insert("phase".into(), self.phase.clone());
        if let Some(c) = &self.checksum {
            vars.insert("checksum".into(), c.clone());
        }
        vars
    }
}

/// A JSON error body: `{"error": "..."}`.
#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(ErrorBody { error: message })).into_response()
}

fn parse_payload(body: &[u8]) -> Result<FlaggerPayload, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(format!("payload: {e}")))
}

async fn argo_get(
    State(s): State<JudgeState>,
    Query(vars): Query<BTreeMap<String, String>>,
) -> Response {
    argo(s, vars).await
}

async fn argo_post(
    State(s): State<JudgeState>,
    Query(mut vars): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    // The Web provider's optional body: a JSON object of string values adds to the
    // query string's placeholders.
    if !body.is_empty() {
        match serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(&body) {
            Ok(map) => {
                for (k, v) in map {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    vars.insert(k, v);
                }
            }
            Err(e) => return bad_request(format!("body: {e}")),
        }
    }
    argo(s, vars).await
}

async fn argo(s: JudgeState, vars: BTreeMap<String, String>) -> Response {
    match s.verdict(&vars).await {
        Ok(report) => {
            tracing::info!(verdict = ?report.verdict, score = report.score, "verdict for the web provider");
            (StatusCode::OK, Json(report)).into_response()
        }
        Err(e) => bad_request(e.to_string()),
    }
}

/// The answer of a gate hook.
#[derive(Debug, Serialize)]
struct GateAnswer {
    hook: &'static str,
    open: bool,
    gates: Vec<GateResult>,
}

async fn gate(s: JudgeState, hook: &'static str, body: Bytes) -> Response {
    let payload = match parse_payload(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let at_ms = (s.clock)();
    match check_gates(&s.prometheus, &s.config.gates, hook, &payload.vars(), at_ms).await {
        Ok(gates) => {
            let open = gates.iter().all(|g| g.open);
            tracing::info!(hook, canary = %payload.name, namespace = %payload.namespace, open, "gate");
            let status = if open {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            (status, Json(GateAnswer { hook, open, gates })).into_response()
        }
        Err(e) => bad_request(e.to_string()),
    }
}

async fn confirm_rollout(State(s): State<JudgeState>, body: Bytes) -> Response {
    gate(s, "confirm-rollout", body).await
}

async fn confirm_promotion(State(s): State<JudgeState>, body: Bytes) -> Response {
    gate(s, "confirm-promotion", body).await
}

async fn flagger_judge(s: JudgeState, body: Bytes, rollback: bool) -> Response {
    let payload = match parse_payload(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match s.verdict(&payload.vars()).await {
        Ok(report) => {
            let status = match (rollback, report.verdict) {
                // `rollout`: only a pass lets Flagger advance.
                (false, Verdict::Pass) => StatusCode::OK,
                (false, _) => StatusCode::PRECONDITION_FAILED,
                // `rollback`: Flagger's meaning is inverted, 2xx rolls back.
                (true, Verdict::Fail) => StatusCode::OK,
                (true, _) => StatusCode::CONFLICT,
            };
            tracing::info!(
                hook = if rollback { "rollback" } else { "rollout" },
                canary = %payload.name,
                namespace = %payload.namespace,
                verdict = ?report.verdict,
                status = status.as_u16(),
                "verdict for flagger"
            );
            (status, Json(report)).into_response()
        }
        Err(e) => bad_request(e.to_string()),
    }
}

async fn flagger_rollout(State(s): State<JudgeState>, body: Bytes) -> Response {
    flagger_judge(s, body, false).await
}

async fn flagger_rollback(State(s): State<JudgeState>, body: Bytes) -> Response {
    flagger_judge(s, body, true).await
}

/// One line of the event log.
#[derive(Serialize)]
struct EventLine<'a> {
    received_ms: i64,
    #[serde(flatten)]
    event: &'a FlaggerPayload,
}

async fn flagger_event(State(s): State<JudgeState>, body: Bytes) -> Response {
    let payload = match parse_payload(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    tracing::info!(
        canary = %payload.name,
        namespace = %payload.namespace,
        phase = %payload.phase,
        event_type = payload.metadata.get("eventType").map(String::as_str).unwrap_or(""),
        message = payload.metadata.get("eventMessage").map(String::as_str).unwrap_or(""),
        "flagger event"
    );
    if let Some(path) = &s.config.event_log {
        let mut line = serde_json::to_string(&EventLine {
            received_ms: (s.clock)(),
            event: &payload,
        })
        .expect("plain data serializes");
        line.push('\n');
        let _guard = s.event_lock.lock().await;
        let path = path.clone();
        let written = tokio::task::spawn_blocking(move || {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        if let Err(e) = written {
            tracing::error!(error = %e, "event log not written");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(ErrorBody {
                    error: format!("event log: {e}"),
                }),
            )
                .into_response();
        }
    }
    StatusCode::ACCEPTED.into_response()
}
