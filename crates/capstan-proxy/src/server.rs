//! Listeners, connections and shutdown: serve until the signal, then drain
//! in-flight requests (bounded) and flush the recorder.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::admin::{self, AdminState};
use crate::config::Settings;
use crate::fleet::{FleetStatus, Poller};
use crate::metrics::Metrics;
use crate::pool::{self, SnapshotCache, Tables};
use crate::proxy::Proxy;
use crate::upstream::Client;

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The event store could not be opened.
    #[error(transparent)]
    Events(#[from] capstan_events::Error),
    /// A route template was refused.
    #[error("route template `{template}`: {message}")]
    Route {
        /// The template.
        template: String,
        /// Why.
        message: String,
    },
}

/// How long in-flight requests may take to finish after the signal.
pub const DRAIN_BOUND: Duration = Duration::from_secs(30);

/// A running proxy's addresses, known once its listeners are bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Client listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin: Option<SocketAddr>,
}

/// Serves until `shutdown` resolves, then drains and flushes. `on_bound` is
/// told the bound addresses (useful with port 0).
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()>,
    on_bound: impl FnOnce(Bound),
) -> Result<(), ServeError> {
    let listener = bind(settings.listen).map_err(|source| ServeError::Bind {
        addr: settings.listen,
        source,
    })?;
    let admin_listener = match settings.admin_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|source| ServeError::Bind { addr: a, source })?,
        ),
        None => None,
    };
    let bound = Bound {
        listen: listener.local_addr().unwrap_or(settings.listen),
        admin: admin_listener.as_ref().and_then(|l| l.local_addr().ok()),
    };

    // Without a salt of its own, user keys are hashed with the store's.
    let mut user_salt = settings.user_salt.clone();
    let (recorder, recorder_task) = match &settings.events_store {
        Some(path) => {
            let store = capstan_events::Store::open(path)?;
            if user_salt.is_empty() {
                user_salt = store.user_salt()?;
            }
            let (r, t) = store.spawn_recorder(settings.events_capacity);
            (Some(r), Some(t))
        }
        None => (None, None),
    };

    let mut routes = matchit::Router::new();
    for (i, r) in settings.routes.iter().enumerate() {
        routes
            .insert(r.template.as_str(), i)
            .map_err(|e| ServeError::Route {
                template: r.template.clone(),
                message: e.to_string(),
            })?;
    }
    let metrics = Arc::new(Metrics::new(settings.fleet.is_some()));
    let tables = Arc::new(Tables::new(settings.table.clone(), metrics.clone()));
    let tables_rx = tables.subscribe();

    let (stop_tx, stop_rx) = watch::channel(false);
    // Discovery: the first poll (bounded) before serving, so the pools hold
    // the live instances from the first request; then one every `refresh`.
    let (fleet_status, fleet_task) = match &settings.fleet {
        Some(f) => {
            let status = Arc::new(FleetStatus::new(f));
            let mut poller =
                Poller::new(f.clone(), tables.clone(), status.clone(), metrics.clone());
            poller.poll().await;
            (
                Some(status),
                Some(tokio::spawn(poller.run(stop_rx.clone()))),
            )
        }
        None => (None, None),
    };
    let health = tokio::spawn(pool::check_loop(
        Client::new(),
        tables_rx.clone(),
        settings.health.clone(),
        stop_rx.clone(),
    ));
    let admin_task = admin_listener.map(|l| {
        let app = admin::router(AdminState {
            tables: tables.clone(),
            fleet: fleet_status.clone(),
            metrics: metrics.clone(),
            recorder: recorder.clone(),
            token: settings.admin_token.clone().unwrap_or_default().into(),
        });
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        })
    });

    // One worker thread per core, each with its own single-threaded
    // runtime and upstream pool, like nginx's workers: a request is read,
    // forwarded and answered on one thread, with no hand-offs between cores.
    // One acceptor hands each new connection to the worker serving the
    // fewest, so a burst of connections cannot pile onto one core.
    let background = tokio::runtime::Handle::current();
    let (drain_tx, drain_rx) = watch::channel(false);
    let n = worker_count();
    // Mirrors run on the background runtime: their connections are its
    // own, never a worker's (a socket is served by the runtime that opened it).
    let mirror_client = Client::new();
    let mut workers = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    for i in 0..n {
        let (conn_tx, conn_rx) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        inboxes.push((conn_tx, open.clone()));
        let proxy = Proxy {
            tables: SnapshotCache::new(tables_rx.clone()),
            client: Client::new(),
            mirror_client: mirror_client.clone(),
            routes: routes.clone(),
            route_list: settings.routes.clone(),
            default_timeout: settings.default_timeout,
            body_limit: settings.body_limit,
            service: settings.service.clone(),
            user_salt: user_salt.clone(),
            recorder: recorder.clone(),
            metrics: metrics.clone(),
            draining: std::sync::atomic::AtomicBool::new(false),
            tunnels: tokio_util::task::TaskTracker::new(),
            tunnels_cut: tokio_util::sync::CancellationToken::new(),
            background: background.clone(),
        };
        let drain_rx = drain_rx.clone();
        let drain = settings.drain;
        let header_timeout = settings.header_timeout;
        let send_timeout = settings.send_timeout;
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let worker_recorder = recorder.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("capstan-proxy-{i}"))
            .spawn(move || {
                // Events are gathered per worker and queued in batches, the
                // batch so far each time the worker is about to wait; the
                // guard, dropped after the runtime and its tasks, queues the
                // rest.
                let gathering = worker_recorder.map(crate::local_events::LocalEventsGuard::start);
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_park(crate::local_events::flush_local_events)
                    .build()
                {
                    Ok(rt) => rt.block_on(serve_worker(
                        conn_rx,
                        open,
                        proxy,
                        drain_rx,
                        drain,
                        header_timeout,
                        send_timeout,
                    )),
                    Err(e) => tracing::error!(error = %e, "cannot start a proxy worker"),
                }
                drop(gathering);
                let _ = done_tx.send(());
            });
        if let Err(source) = spawned {
            let _ = drain_tx.send(true);
            return Err(ServeError::Bind {
                addr: bound.listen,
                source,
            });
        }
        workers.push(done_rx);
    }
    let acceptor = tokio::spawn(accept_loop(listener, inboxes, drain_rx.clone()));
    drop(recorder);
    on_bound(bound);

    shutdown.await;
    tracing::info!("draining in-flight requests");
    let _ = drain_tx.send(true);
    let _ = acceptor.await;
    for w in workers {
        // Each worker bounds its own drain (`settings.drain`, then DRAIN_BOUND).
        let _ = w.await;
    }
    let _ = stop_tx.send(true);
    let _ = health.await;
    if let Some(t) = fleet_task {
        let _ = t.await;
    }
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    drop(tables);
    if let Some(t) = recorder_task {
        // Mirror tasks still running hold the recorder for at most their timeout.
        match tokio::time::timeout(Duration::from_secs(15), t.shutdown()).await {
            Ok(Ok(w)) if w.failed > 0 => {
                tracing::warn!(failed = w.failed, "events the store refused were lost")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "event store flush failed"),
            Err(_) => tracing::warn!("event recorder did not finish flushing in time"),
        }
    }
    Ok(())
}

/// How many worker threads serve clients: one per core.
fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Binds the client listener. One socket, not `SO_REUSEPORT` per worker: a
/// second process on the same port still fails with "address in use"
/// instead of silently taking a share of the traffic.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// A worker's inbox of accepted connections and its count of open ones.
type Inbox = (
    mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    Arc<AtomicUsize>,
);

/// Accepts until told to drain, handing each connection (TCP_NODELAY set)
/// to the worker with the fewest open connections.
async fn accept_loop(
    listener: std::net::TcpListener,
    workers: Vec<Inbox>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the proxy cannot take its listener");
            return;
        }
    };
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        // Fewest open connections; ties go round robin.
        next = next.wrapping_add(1);
        let n = workers.len();
        let pick = (0..n)
            .map(|i| (next + i) % n)
            .min_by_key(|&i| workers[i].1.load(Ordering::Relaxed))
            .unwrap_or(0);
        workers[pick].1.fetch_add(1, Ordering::Relaxed);
        if workers[pick].0.send((stream, peer)).is_err() {
            workers[pick].1.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Decrements a worker's open-connection count when a connection ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How often an HTTP/2 connection is pinged when idle, and how long an
/// answer to the ping may take before the connection is closed.
const H2_PING_EVERY: Duration = Duration::from_secs(20);

/// One worker: serves the connections the acceptor hands it until told to
/// drain, then answers with `Connection: close` for up to `drain` and
/// closes the rest once their in-flight requests finish (bounded by
/// [`DRAIN_BOUND`]). Upgraded connections get up to `drain` to end, then
/// are cut. A request head must arrive within `header_timeout`.
async fn serve_worker(
    mut inbox: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    open: Arc<AtomicUsize>,
    proxy: Proxy,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
    header_timeout: Duration,
    send_timeout: Duration,
) {
    let proxy = Arc::new(proxy);
    // A worker kept busy by a long transfer never waits for I/O, so its
    // gathered events are also queued on a clock. Ends with the runtime.
    if proxy.recorder.is_some() {
        tokio::spawn(async {
            let mut every = tokio::time::interval(crate::local_events::LOCAL_EVENTS_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                crate::local_events::flush_local_events();
            }
        });
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A client that shuts down its sending side still gets its answer, and
    // every request runs to its answer (or its timeout) and is recorded:
    // the connection is not read while a request is in flight, so a client
    // gone mid-request is noticed when its answer cannot be written.
    //
    // An HTTP/1 client that does not send a whole request head within
    // `header_timeout` (a stalled or trickling head, or a keep-alive
    // connection left idle that long) has its connection closed, and so has
    // a client that sends nothing (or part of the HTTP/2 preface) within it
    // ([`crate::client_io`]), and one that stops reading its answer for
    // `send_timeout`: waiting on clients is bounded, so they cannot
    // hold connections open for good. An HTTP/2 connection is pinged when
    // idle and closed when its client no longer answers.
    builder
        .http1()
        .half_close(true)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(H2_PING_EVERY))
        .keep_alive_timeout(H2_PING_EVERY);
    let serve = |stream: std::net::TcpStream, peer: SocketAddr| {
        let guard = OpenGuard(open.clone());
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "a worker cannot take a connection");
                return;
            }
        };
        let proxy = proxy.clone();
        let peer = crate::headers::Peer::new(peer);
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let proxy = proxy.clone();
                let peer = peer.clone();
                async move {
                    let h1 = req.version() < http::Version::HTTP_2;
                    let mut resp = proxy.clone().handle(req, peer).await?;
                    // Draining: the client learns from the answer that the
                    // connection closes, so it never sends on a closing one.
                    if h1
                        && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
                        && proxy.draining.load(Ordering::Relaxed)
                    {
                        resp.headers_mut().insert(
                            http::header::CONNECTION,
                            http::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(crate::client_io::ClientIo::new(
                    stream,
                    header_timeout,
                    send_timeout,
                )),
                service,
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    };
    loop {
        tokio::select! {
            received = inbox.recv() => {
                let Some((stream, peer)) = received else { break };
                serve(stream, peer);
            }
            changed = stop.wait_for(|s| *s) => {
                let _ = changed;
                break;
            }
        }
    }
    proxy
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Connections the acceptor handed over before it stopped are served
    // too (their answers say `Connection: close`): it drops its senders as
    // it stops, which ends this.
    while let Some((stream, peer)) = inbox.recv().await {
        serve(stream, peer);
    }
    // Upgraded connections (WebSocket tunnels) are no longer hyper's: they
    // get the drain's time to end too, and are cut when it is over.
    let drain_started = tokio::time::Instant::now();
    while (graceful.count() > 0 || !proxy.tunnels.is_empty()) && drain_started.elapsed() < drain {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.tunnels_cut.cancel();
    if tokio::time::timeout(DRAIN_BOUND, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain bound of {DRAIN_BOUND:?} passed; closing the rest");
    }
}
