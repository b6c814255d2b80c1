//! Listeners, connections and shutdown: serve until the signal, then drain
//! in-flight requests (bounded) and flush the recorder.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::pool::{self, Registry};
use crate::proxy::Proxy;
use crate::HttpClient;

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

/// The pooled keep-alive client the proxy uses upstream (HTTP/1.1).
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build(connector)
}

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
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| ServeError::Bind {
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

    let (recorder, recorder_task) = match &settings.events_store {
        Some(path) => {
            let store = capstan_events::Store::open(path)?;
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
    let registry = Arc::new(Registry::default());
    let (tables_tx, tables_rx) = watch::channel(registry.snapshot(settings.table.clone()));
    let tables_tx = Arc::new(tables_tx);
    let metrics = Arc::new(Metrics::default());
    let client = client();
    let proxy = Arc::new(Proxy {
        tables: tables_rx.clone(),
        client: client.clone(),
        routes,
        route_list: settings.routes.clone(),
        default_timeout: settings.default_timeout,
        body_limit: settings.body_limit,
        service: settings.service.clone(),
        user_salt: settings.user_salt.clone(),
        recorder: recorder.clone(),
        metrics: metrics.clone(),
        draining: std::sync::atomic::AtomicBool::new(false),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let health = tokio::spawn(pool::check_loop(
        client,
        tables_rx,
        settings.health.clone(),
        stop_rx.clone(),
    ));
    let admin_task = admin_listener.map(|l| {
        let app = admin::router(AdminState {
            tables: tables_tx.clone(),
            registry: registry.clone(),
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
    drop(recorder);
    on_bound(bound);

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let proxy = proxy.clone();
                    async move {
                        let h1 = req.version() < http::Version::HTTP_2;
                        let mut resp = proxy.clone().handle(req, peer).await?;
                        // Draining: the client learns from the answer that the
                        // connection closes, so it never sends on a closing one.
                        if h1
                            && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
                            && proxy.draining.load(std::sync::atomic::Ordering::Relaxed)
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
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    // Stop accepting; for up to `drain`, answer on open connections with
    // `Connection: close` so clients leave them cleanly; then close the rest
    // once their in-flight requests finish (bounded).
    drop(listener);
    tracing::info!("draining in-flight requests");
    proxy
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let drain_started = tokio::time::Instant::now();
    while graceful.count() > 0 && drain_started.elapsed() < settings.drain {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if tokio::time::timeout(DRAIN_BOUND, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain bound of {DRAIN_BOUND:?} passed; closing the rest");
    }
    let _ = stop_tx.send(true);
    let _ = health.await;
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    drop(proxy);
    drop(tables_tx);
    if let Some(t) = recorder_task {
        // Mirror tasks still running hold the recorder for at most their timeout.
        match tokio::time::timeout(Duration::from_secs(15), t.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "event store flush failed"),
            Err(_) => tracing::warn!("event recorder did not finish flushing in time"),
        }
    }
    Ok(())
}
