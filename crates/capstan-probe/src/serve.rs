//! Serving with a graceful, load-balancer-friendly shutdown.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::{Error, Health};

/// How long each phase of a shutdown lasts.
///
/// Keep `drain + grace` plus the time `on_shutdown` takes below the orchestrator's
/// kill deadline (Kubernetes' `terminationGracePeriodSeconds`, 30 s by default), and
/// `drain` above the time the load balancer needs to notice a failing `/readyz`
/// (readiness `periodSeconds` × `failureThreshold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// After the signal: readiness fails but everything is still served, new
    /// connections included, so load balancers take the instance out first.
    /// Default 5 s.
    pub drain: Duration,
    /// After the drain: no new connections; in-flight requests have this long to
    /// finish before they are dropped. Default 20 s.
    pub grace: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain: Duration::from_secs(5),
            grace: Duration::from_secs(20),
        }
    }
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C on platforms without signals).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = int.recv() => tracing::info!("SIGINT received"),
                }
            }
            _ => {
                tracing::warn!("cannot listen for SIGTERM; shutting down on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Serves `router` until SIGTERM or SIGINT, then shuts down gracefully; see
/// [`serve_with_shutdown`].
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    health: Health,
    config: ShutdownConfig,
    on_shutdown: F,
) -> Result<(), Error>
where
    F: Future<Output = ()> + Send,
{
    serve_with_shutdown(
        listener,
        router,
        health,
        config,
        shutdown_signal(),
        on_shutdown,
    )
    .await
}

/// Serves `router` until `signal` resolves, then:
///
/// 1. fails readiness at once ([`Health::start_draining`]), and keeps serving
///    everything for `config.drain`, so load balancers notice and move traffic;
/// 2. stops accepting connections and lets in-flight requests finish, for at most
///    `config.grace`;
/// 3. runs `on_shutdown` (deregister the instance, flush telemetry);
/// 4. returns `Ok`, so the application exits 0.
///
/// `signal` is any future: [`shutdown_signal`], or a
/// `CancellationToken::cancelled_owned()` in tests.
pub async fn serve_with_shutdown<S, F>(
    listener: TcpListener,
    router: Router,
    health: Health,
    config: ShutdownConfig,
    signal: S,
    on_shutdown: F,
) -> Result<(), Error>
where
    S: Future<Output = ()> + Send + 'static,
    F: Future<Output = ()> + Send,
{
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let draining = health.clone();
    let graceful = async move {
        signal.await;
        draining.start_draining();
        tracing::info!(
            drain = ?config.drain,
            "shutting down: readiness fails, still serving while load balancers notice"
        );
        tokio::time::sleep(config.drain).await;
        tracing::info!(grace = ?config.grace, "drained: no new connections, finishing in-flight requests");
        let _ = drained_tx.send(());
    };
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(graceful)
        .into_future();
    let grace = async move {
        match drained_rx.await {
            Ok(()) => tokio::time::sleep(config.grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = server => result.map_err(Error::Serve),
        () = grace => {
            tracing::warn!(grace = ?config.grace, "requests still in flight after the grace period; dropping them");
            Ok(())
        }
    };
    on_shutdown.await;
    tracing::info!("shut down");
    result
}
