//! The request path: route, pick an upstream, forward, stream the answer
//! back, and record one event when the response body ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use capstan_events::{CompactString, Event, Recorder};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::answer::{error_json, fixed, refused, Pending, Tracked, Unanswered, PROXY_PANIC};
use crate::config::Route;
use crate::headers::{
    append_forwarded_for, hash_user, is_upgrade, parse_traceparent, push_hex, random_id,
    strip_hop_by_hop, take_fields, Peer,
};
use crate::metrics::Metrics;
use crate::mirror::spawn_mirror;
use crate::pool::{SnapshotCache, Upstream};
use crate::routing::{route, RequestFacts};
use crate::upstream::Client;

/// The body sent upstream: buffered bytes or the client's stream.
pub type UpstreamBody = http_body_util::Either<http_body_util::Full<Bytes>, Incoming>;

/// An empty upstream body.
pub fn empty_body() -> UpstreamBody {
    http_body_util::Either::Left(http_body_util::Full::new(Bytes::new()))
}

/// Everything the request path shares.
pub struct Proxy {
    /// The current table and pools.
    pub tables: SnapshotCache,
    /// This worker's pooled upstream client.
    pub client: Client,
    /// The pooled client of mirrored copies, shared by the workers.
    pub mirror_client: Client,
    /// Route templates.
    pub routes: matchit::Router<usize>,
    /// Route settings, by index.
    pub route_list: Vec<Route>,
    /// Timeout of requests matching no route.
    pub default_timeout: Duration,
    /// Largest body buffered (retries, mirroring, response hashing).
    pub body_limit: usize,
    /// Service name in events.
    pub service: String,
    /// Salt of user-key hashes.
    pub user_salt: String,
    /// Where events go (none: events off).
    pub recorder: Option<Recorder>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Set on shutdown: HTTP/1 answers carry `Connection: close`.
    pub draining: std::sync::atomic::AtomicBool,
    /// This worker's upgraded connections (WebSocket tunnels): the drain
    /// gives them its time to end before they are cut.
    pub tunnels: tokio_util::task::TaskTracker,
    /// Cancelled when the drain's time is over: the tunnels still open end.
    pub tunnels_cut: tokio_util::sync::CancellationToken,
    /// The runtime that outlives the workers: mirrors run there, so a
    /// mirrored request's event survives its worker's shutdown.
    pub background: tokio::runtime::Handle,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("service", &self.service)
            .finish()
    }
}

/// Unix ms at `at`: the wall clock read at most once a second per thread,
/// and moved on by the monotonic one in between, so a request reads the
/// clock once for both its start time and its durations.
fn wall_ms(at: Instant) -> i64 {
    thread_local! {
        static ANCHOR: std::cell::Cell<Option<(Instant, i64)>> = const { std::cell::Cell::new(None) };
    }
    ANCHOR.with(|anchor| {
        let (base, base_ms) = match anchor.get() {
            Some((base, ms)) if at.saturating_duration_since(base) < Duration::from_secs(1) => {
                (base, ms)
            }
            _ => {
                let ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                anchor.set(Some((at, ms)));
                (at, ms)
            }
        };
        base_ms + at.saturating_duration_since(base).as_millis() as i64
    })
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A routed request on its way to an upstream: what [`Proxy::handle`]
/// decided before its first wait.
struct Forward {
    pending: Unanswered,
    /// The request's head, fields already rewritten for the upstream
    /// (taken when it is sent for the last time).
    parts: Option<http::request::Parts>,
    /// The client's body, taken when forwarding starts.
    body: Option<Incoming>,
    /// The release the table mirrors to, if any.
    mirror: Option<usize>,
    upstream: Arc<Upstream>,
    path_and_query: http::uri::PathAndQuery,
    timeout: Duration,
    /// The client's side of an upgrade, when the request asks for one.
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// A new sticky user id, set as a cookie on the answer.
    new_uid: Option<String>,
}

impl Proxy {
    /// Handles one client request.
    ///
    /// The request is routed and its head rewritten before the returned
    /// future is first polled, and what forwarding needs is boxed: the
    /// future keeps neither the request nor that state inline, so the
    /// moves a connection makes of it copy less.
    ///
    /// A panic while handling it is answered `500` `proxy_panic`, and once
    /// routed, the request is recorded with that status and error: the client
    /// did not leave, the proxy failed it. (Left to the runtime, the panic
    /// would end the connection's task with no answer, and the request would
    /// be recorded later as the client's cancellation.) A panic before the
    /// request has a release to record it under is answered and logged only;
    /// one while its answer's body streams cuts that body, and records the
    /// answer's status with the error `proxy_panic`.
    pub fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        client: Peer,
    ) -> impl std::future::Future<Output = Result<Response<Tracked>, std::convert::Infallible>>
           + Send
           + 'static {
        let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.route_request(req, &client)
        }));
        async move {
            let answer = match routed {
                Ok(Err(early)) => Some(*early),
                Ok(Ok(forward)) => crate::unwind::unless_panicked(self.forward(forward)).await,
                Err(_) => None,
            };
            Ok(answer.unwrap_or_else(|| {
                tracing::error!("handling a request panicked; answered 500 {PROXY_PANIC}");
                fixed(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    error_json(PROXY_PANIC, "the proxy failed on this request; see its log"),
                    None,
                )
            }))
        }
    }

    /// Routes `req`, picks its upstream and rewrites its head; or the
    /// answer when there is no upstream to send it to.
    fn route_request(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        client: &Peer,
    ) -> Result<Box<Forward>, Box<Response<Tracked>>> {
        let started = Instant::now();
        let time_ms = wall_ms(started);
        let snap = self.tables.get();
        let table = &snap.table;

        // Trace context: forward the caller's trace with its flags (its
        // sampling decision stands), or start a sampled one.
        let (trace_id, flags) = match req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent)
        {
            Some((trace, flags)) => (trace.to_owned(), flags),
            None => (random_id(), "01"),
        };
        let mut traceparent = String::with_capacity(55);
        traceparent.push_str("00-");
        traceparent.push_str(&trace_id);
        traceparent.push('-');
        push_hex(&mut traceparent, u128::from(rand::random::<u64>()), 16);
        traceparent.push('-');
        traceparent.push_str(flags);

        let path = CompactString::from(req.uri().path());
        let (route_name, timeout) = match self.routes.at(&path) {
            Ok(m) => {
                let r = &self.route_list[*m.value];
                (CompactString::from(r.template.as_str()), r.timeout)
            }
            Err(_) => (path.clone(), self.default_timeout),
        };

        let mut new_uid = None;
        let user_key = match table.user_key(req.headers()) {
            Some(k) => Some(k.to_owned()),
            // The cookie matters only while public traffic is split.
            None if table.sets_cookie() && table.splits() => {
                let uid = random_id();
                new_uid = Some(uid.clone());
                Some(uid)
            }
            None => None,
        };
        let decision = route(
            table,
            &RequestFacts {
                client_ip: Some(client.addr.ip()),
                headers: req.headers(),
                user_key: user_key.as_deref(),
                request_key: &trace_id,
            },
        );
        let pool = &snap.pools[decision.release];
        let bytes_in_hint = req.body().size_hint().exact().unwrap_or(0);
        // Unanswered from here on: a panic before the answer records it.
        let mut pending = Unanswered(Some(Box::new(Pending {
            event: Event {
                time_ms,
                service: self.service.as_str().into(),
                method: req.method().as_str().into(),
                route: route_name,
                path,
                release: pool.release.as_str().into(),
                cohort: decision.cohort.as_str().into(),
                user: user_key
                    .as_deref()
                    .map(|k| hash_user(&self.user_salt, k).into()),
                trace_id: Some(trace_id.into()),
                bytes_in: bytes_in_hint,
                ..Event::default()
            },
            cohort: decision.cohort,
            snap: snap.clone(),
            release: decision.release,
            started,
            proxy: self.clone(),
            mirror: None,
            cut: false,
        })));

        let Some(upstream) = pool.pick(None) else {
            let msg = format!("no ready upstream in release {}", pool.release);
            return Err(Box::new(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_upstream",
                &msg,
                pending.take(),
            )));
        };

        let upgrade = is_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        if upgrade {
            // WebSocket is the one protocol offered: a client that lists
            // others too (`websocket, h2c`) must not get one of them.
            parts
                .headers
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        parts.headers.insert(
            HeaderName::from_static("traceparent"),
            // The string's own buffer becomes the value: no copy.
            HeaderValue::from_maybe_shared(Bytes::from(traceparent.into_bytes())).expect("ascii"),
        );
        append_forwarded_for(&mut parts.headers, client);
        // Upstream is HTTP/1.1 whatever the client spoke: the wire client
        // writes it regardless, and hyper's, which carries upgrades and
        // CONNECT, refuses any other version.
        parts.version = http::Version::HTTP_11;
        if parts.headers.get(header::HOST).is_none() {
            if let Some(a) = parts.uri.authority() {
                if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                    parts.headers.insert(header::HOST, v);
                }
            }
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        Ok(Box::new(Forward {
            pending,
            parts: Some(parts),
            body: Some(body),
            mirror: decision.mirror,
            upstream,
            path_and_query,
            timeout,
            client_upgrade,
            new_uid,
        }))
    }

    /// Sends a routed request upstream (retrying a connect failure once
    /// where that is safe), starts its mirror, and answers with the
    /// upstream's response, or with the error that stopped it.
    ///
    /// The request's state is used where it is, in its box: this future
    /// holds a pointer to it, not a copy. Of the request, only the client's
    /// body and, once read, its bytes are kept here (beside the upstream
    /// client's future while it is awaited).
    async fn forward(self: &Arc<Self>, mut f: Box<Forward>) -> Response<Tracked> {
        let snap = f.pending.snap.clone();
        let pool = &snap.pools[f.pending.release];
        let upgrade = f.client_upgrade.is_some();
        // Draining: a tunnel opened now would be cut when the drain's time
        // is over, so the client is told to open it again elsewhere.
        if upgrade && self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            let msg = "the proxy is shutting down: open the connection again";
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                msg,
                f.pending.take(),
            );
        }
        let timeout = f.timeout;
        let (mirror_idx, idempotent) = {
            let method = &f.parts.as_ref().expect("not sent yet").method;
            // Buffer small bodies so a retry or a mirror can resend them.
            let mirror = f
                .mirror
                .filter(|&m| m != f.pending.release && is_safe(method) && !upgrade);
            (mirror, is_idempotent(method))
        };
        let body = f.body.take().expect("the body is taken once");
        let small = body
            .size_hint()
            .upper()
            .is_some_and(|n| n <= self.body_limit as u64);
        // The upstream's time starts once the request can go: now, unless
        // its body is read first.
        let mut upstream_started = f.pending.started;
        let (buffered, mut stream): (Option<Bytes>, Option<Incoming>) =
            if upgrade || body.is_end_stream() {
                (Some(Bytes::new()), None)
            } else if (idempotent || mirror_idx.is_some()) && small {
                // Boxed: only requests with a body wait here, and a
                // future this size would make every request's larger.
                // The client's sending is bounded by the route's timeout too:
                // a body that stalls before its end does not hold the request.
                let collected = tokio::time::timeout(
                    timeout,
                    Box::pin(http_body_util::Limited::new(body, self.body_limit).collect()),
                )
                .await;
                upstream_started = Instant::now();
                match collected {
                    Ok(Ok(c)) => (Some(c.to_bytes()), None),
                    Ok(Err(e)) => {
                        let msg = e.to_string();
                        return refused(
                            StatusCode::BAD_REQUEST,
                            "client_body",
                            &msg,
                            f.pending.take(),
                        );
                    }
                    Err(_) => {
                        let (status, kind, msg) = body_stalled(timeout);
                        return refused(status, kind, &msg, f.pending.take());
                    }
                }
            } else {
                (None, Some(body))
            };
        if let Some(b) = &buffered {
            f.pending.event.bytes_in = b.len() as u64;
        }

        // The mirror: a copy to the shadow pool on its own task.
        if let (Some(m), Some(b)) = (mirror_idx, &buffered) {
            if let Some(shadow) = snap.pools[m].pick(None) {
                let (tx, rx) = oneshot::channel();
                f.pending.mirror = Some(tx);
                self.metrics.mirrored.inc();
                let parts = f.parts.as_ref().expect("not sent yet");
                let mut h = parts.headers.clone();
                h.insert(
                    HeaderName::from_static("x-capstan-mirror"),
                    HeaderValue::from_static("1"),
                );
                spawn_mirror(
                    self.clone(),
                    shadow,
                    parts.method.clone(),
                    f.path_and_query.as_str().to_owned(),
                    h,
                    b.clone(),
                    rx,
                );
            }
        }

        let deadline = tokio::time::Instant::from_std(upstream_started) + timeout;
        let mut attempt = 0;
        // A connect failure of an idempotent, buffered request is retried
        // once on another upstream of the pool: only then are the parts copied.
        let can_retry = idempotent && buffered.is_some() && pool.upstreams.len() > 1;
        let resp = loop {
            attempt += 1;
            // The request is handed to the client before the wait, so only
            // the client's future is kept across it.
            let sent = {
                let streamed = stream.is_some();
                let body = match (&buffered, stream.take()) {
                    (Some(b), _) => {
                        http_body_util::Either::Left(http_body_util::Full::new(b.clone()))
                    }
                    (None, Some(s)) => http_body_util::Either::Right(s),
                    (None, None) => unreachable!("a streamed body is sent once"),
                };
                let p = match (attempt == 1 && can_retry, f.parts.as_ref()) {
                    (true, Some(p)) => p.clone(),
                    _ => f.parts.take().expect("the parts are sent at most twice"),
                };
                let mut out = Request::from_parts(p, body);
                if streamed {
                    // Waiting on the client's body past the deadline is the
                    // client's fault: the wire client reports it apart.
                    out.extensions_mut()
                        .insert(crate::upstream::BodyDeadline(deadline));
                }
                *out.uri_mut() = match upstream_uri(&f.upstream, &f.path_and_query) {
                    Ok(u) => u,
                    // The upstream's address and a parsed path always make a
                    // URI: failing here is the proxy's or its table's, not the
                    // client's.
                    Err(e) => {
                        tracing::warn!(upstream = %f.upstream.addr, error = %e, "no request URI for the upstream");
                        let msg = "the upstream's address is not host:port";
                        return refused(StatusCode::BAD_GATEWAY, "bad_uri", msg, f.pending.take());
                    }
                };
                f.pending.event.instance = f.upstream.addr.as_str().into();
                self.client.request(out)
            };
            let (status, kind, msg) = match tokio::time::timeout_at(deadline, sent).await {
                Ok(Ok(r)) => break r,
                Ok(Err(e)) if e.is_connect() => {
                    f.upstream.connect_failed(format!("{e:#}"));
                    let retry = attempt == 1 && can_retry;
                    if let Some(next) = retry.then(|| pool.pick(Some(&f.upstream))).flatten() {
                        f.upstream = next;
                        continue;
                    }
                    // The client learns what failed, not the upstream's
                    // address or error (the event's `instance` and the log
                    // keep those for the operator).
                    let msg = "the upstream could not be reached".to_string();
                    (StatusCode::BAD_GATEWAY, "connect", msg)
                }
                // The client's fault, not the release's.
                Ok(Err(e @ crate::upstream::Error::ClientBody(_))) => {
                    (StatusCode::BAD_REQUEST, "client_body", format!("{e:#}"))
                }
                Ok(Err(crate::upstream::Error::ClientBodyStalled)) => body_stalled(timeout),
                Ok(Err(e)) => {
                    // Kept as the upstream's last error (the admin API's
                    // `/upstreams` shows it) and logged at debug level: per
                    // request, a warning would flood the log in an outage.
                    let e = format!("{e:#}");
                    tracing::debug!(upstream = %f.upstream.addr, error = %e, "upstream failed");
                    f.upstream.answer_failed(e);
                    let msg = "the upstream's answer failed".to_string();
                    (StatusCode::BAD_GATEWAY, "upstream", msg)
                }
                Err(_) => {
                    let msg = format!("the upstream did not answer within {timeout:?}");
                    (StatusCode::GATEWAY_TIMEOUT, "timeout", msg)
                }
            };
            f.pending.event.upstream_ms = Some(upstream_started.elapsed().as_secs_f64() * 1000.0);
            return refused(status, kind, &msg, f.pending.take());
        };
        f.pending.event.upstream_ms = Some(upstream_started.elapsed().as_secs_f64() * 1000.0);
        let (mut rparts, rbody) = resp.into_parts();
        let status = rparts.status;
        f.pending.event.status = status.as_u16();
        if status.is_server_error() {
            f.pending.event.error = Some("upstream_5xx".into());
        }
        if status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = f.client_upgrade.take() {
                let mut upstream_resp = Response::from_parts(rparts, rbody);
                let upstream_upgrade = hyper::upgrade::on(&mut upstream_resp);
                let (mut rparts, _) = upstream_resp.into_parts();
                let cut = self.tunnels_cut.clone();
                self.tunnels.spawn(async move {
                    match tokio::join!(client_upgrade, upstream_upgrade) {
                        (Ok(c), Ok(u)) => {
                            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut c, &mut u) => {}
                                () = cut.cancelled() => {}
                            }
                        }
                        (c, u) => {
                            tracing::debug!(client = ?c.err(), upstream = ?u.err(), "upgrade failed");
                        }
                    }
                });
                strip_hop_by_hop(&mut rparts.headers, true);
                take_fields(&mut rparts.headers, &mut f.pending.event.fields);
                let mut r = fixed(
                    StatusCode::SWITCHING_PROTOCOLS,
                    String::new(),
                    Some(f.pending.take()),
                );
                *r.headers_mut() = rparts.headers;
                return r;
            }
        }
        strip_hop_by_hop(&mut rparts.headers, false);
        take_fields(&mut rparts.headers, &mut f.pending.event.fields);
        if let Some(uid) = f.new_uid.take() {
            let cookie = format!(
                "{}={uid}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax",
                snap.table.sticky_cookie()
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                rparts.headers.append(header::SET_COOKIE, v);
            }
        }
        let body = Tracked::streaming(rbody, f.pending.take(), self.body_limit);
        Response::from_parts(rparts, body)
    }
}

/// The answer to a client whose request body did not arrive within the
/// route's `timeout`: `408`, recorded as the client's failure (`client_body`).
fn body_stalled(timeout: Duration) -> (StatusCode, &'static str, String) {
    let msg = format!("the request body did not arrive within {timeout:?}");
    (StatusCode::REQUEST_TIMEOUT, "client_body", msg)
}

/// `http://<upstream><path?query>`, from parts parsed once.
fn upstream_uri(u: &Upstream, pq: &http::uri::PathAndQuery) -> Result<http::Uri, String> {
    let authority = u
        .authority
        .clone()
        .ok_or_else(|| format!("`{}` is not host:port", u.addr))?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(pq.clone());
    http::Uri::from_parts(parts).map_err(|e| e.to_string())
}
