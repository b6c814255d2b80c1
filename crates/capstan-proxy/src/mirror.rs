//! Mirroring: a copy of a request sent to the shadow release on the
//! background runtime, its answer never returned to the user, and the
//! comparison with the user's answer (status class, body hash, latency)
//! put into the user's event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capstan_events::{Event, MirrorComparison};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::pool::Upstream;
use crate::proxy::Proxy;
use crate::upstream::PooledBody;

/// How long a mirrored request may take before its comparison is recorded without it.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);

/// The user's side of a mirrored request, sent when its answer has ended.
pub(crate) struct UserAnswer {
    /// The user's event, recorded with the comparison.
    pub(crate) event: Event,
    /// SHA-256 of the answer's body, when it was whole and within the limit.
    pub(crate) hash: Option<[u8; 32]>,
    /// The client left before the body ended: nothing to compare.
    pub(crate) cut: bool,
}

/// Sends the copy to `shadow` on the background runtime, waits for the
/// user's event (`primary`, sent when the user's response body has ended,
/// with its body hash), and records it with the comparison.
pub(crate) fn spawn_mirror(
    proxy: Arc<Proxy>,
    shadow: Arc<Upstream>,
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Bytes,
    primary: oneshot::Receiver<UserAnswer>,
) {
    let background = proxy.background.clone();
    background.spawn(async move {
        let started = Instant::now();
        let limit = proxy.body_limit;
        let shadow_result = async {
            let mut req = Request::builder()
                .method(method)
                .uri(format!("http://{}{}", shadow.addr, path_and_query))
                .body(http_body_util::Either::Left(http_body_util::Full::new(
                    body,
                )))
                .ok()?;
            *req.headers_mut() = headers;
            let resp = proxy.mirror_client.request(req).await.ok()?;
            let status = resp.status().as_u16();
            Some((status, hash_body(resp, limit).await))
        };
        let (shadow_status, shadow_hash) = tokio::time::timeout(MIRROR_TIMEOUT, shadow_result)
            .await
            .ok()
            .flatten()
            .unwrap_or((0, None));
        let shadow_ms = started.elapsed().as_secs_f64() * 1000.0;
        // The user's event arrives when their response body has ended.
        let Ok(UserAnswer {
            mut event,
            hash: user_hash,
            cut,
        }) = primary.await
        else {
            return;
        };
        // A request the client gave up on (or whose body it broke off), or
        // an answer it left halfway (a 5xx too), has no whole answer to
        // compare: recorded without a comparison, not as a mismatch of the
        // shadow's.
        let client_failed = event
            .error
            .as_deref()
            .is_some_and(|k| capstan_events::CLIENT_ERROR_KINDS.contains(&k));
        // Nor has a request that was never sent (`bad_uri`), or one the
        // proxy failed itself (`proxy_panic`).
        let unsent = matches!(
            event.error.as_deref(),
            Some("bad_uri" | crate::answer::PROXY_PANIC)
        );
        if !(client_failed || cut || unsent) {
            event.mirror = Some(MirrorComparison {
                status_class_equal: shadow_status / 100 == event.status / 100,
                body_hash_equal: matches!((user_hash, shadow_hash), (Some(a), Some(b)) if a == b),
                shadow_status,
                shadow_ms,
            });
        }
        if let Some(r) = &proxy.recorder {
            r.record(event);
        }
    });
}

/// SHA-256 of a response body, or none when it is larger than `limit` or fails.
async fn hash_body(resp: Response<PooledBody>, limit: usize) -> Option<[u8; 32]> {
    let body = http_body_util::Limited::new(resp.into_body(), limit);
    let c = body.collect().await.ok()?;
    Some(Sha256::digest(c.to_bytes()).into())
}
