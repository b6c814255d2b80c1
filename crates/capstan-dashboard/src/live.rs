//! Live updates: one task follows the event store (new rows every 200 ms) and
//! fans them out; each open page holds a server-sent event stream that gets
//! the rows matching its filter (`row`, an HTML table row) and the number of
//! every new snapshot (`snapshot`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use capstan_events::{Expr, Store};
use futures_util::stream::Stream;
use serde::Deserialize;

use crate::AppState;

/// Polls the store for rows after the last one seen and broadcasts them.
pub(crate) async fn follow_store(state: AppState) {
    let path = state.sources().settings.store.clone();
    let mut store: Option<Store> = None;
    let mut last = 0i64;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        if store.is_none() {
            if !path.exists() {
                continue;
            }
            match Store::open(&path) {
                Ok(s) => {
                    last = s.last_id().unwrap_or(0);
                    store = Some(s);
                }
                Err(e) => {
                    tracing::warn!("event store {}: {e}", path.display());
                    continue;
                }
            }
        }
        let Some(s) = &store else { continue };
        let s2 = s.clone();
        let got = tokio::task::spawn_blocking(move || s2.events_after(last, 500)).await;
        match got {
            Ok(Ok(rows)) if !rows.is_empty() => {
                last = rows.last().map(|r| r.id).unwrap_or(last);
                let _ = state.inner.events.send(Arc::new(rows));
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("event store: {e}"),
            Err(e) => tracing::warn!("event store reader: {e}"),
        }
    }
}

/// `/live?where=EXPR`.
#[derive(Debug, Deserialize)]
pub(crate) struct LiveQuery {
    #[serde(rename = "where", default)]
    filter: Option<String>,
}

pub(crate) async fn sse(State(state): State<AppState>, Query(q): Query<LiveQuery>) -> Response {
    let filter = match q.filter.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => match Expr::parse(s) {
            Ok(e) => e,
            Err(e) => {
                return (axum::http::StatusCode::BAD_REQUEST, format!("where: {e}")).into_response()
            }
        },
        None => Expr::all(),
    };
    Sse::new(stream(state, filter))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response()
}

fn stream(state: AppState, filter: Expr) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let mut rows = state.inner.events.subscribe();
    let mut gens = state.inner.generation.subscribe();
    async_stream(move |tx| async move {
        loop {
            tokio::select! {
                r = rows.recv() => match r {
                    Ok(batch) => {
                        for e in batch.iter().filter(|e| filter.matches(&e.event)) {
                            let html = crate::pages::event_row(&e.event).replace('\n', " ");
                            if tx.send(SseEvent::default().event("row").data(html)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                },
                g = gens.changed() => {
                    if g.is_err() { return; }
                    let n = *gens.borrow_and_update();
                    if tx.send(SseEvent::default().event("snapshot").data(n.to_string())).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// A stream fed by a task through a small channel; the task ends when the
/// client goes away (the send fails).
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(Ok)))
}
