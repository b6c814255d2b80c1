//! Start-up, probes and shutdown: the gate, the fleet heartbeat, the health
//! checks and the graceful drain, in the order an operator expects.

use std::sync::Arc;
use std::time::Duration;

use capstan_migrate::{check_gate_database, Database, DatabaseUrl, Heartbeat, Instance};
use capstan_probe::{
    check_fn, CheckConfig, Details, GateStatus, Health, Observation, ShutdownConfig,
};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::store::Store;
use crate::{app, env_duration, AppState, Release, ServeError};

/// How the gate treats an incompatible schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateMode {
    /// Exit with the reasons (the default).
    Refuse,
    /// Keep `/startupz` failing and re-check until compatible or the deadline.
    Wait,
}

/// Serves `release` until SIGTERM, then drains and exits cleanly.
pub async fn serve(release: Release) -> Result<(), ServeError> {
    let raw_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://chirpy.db".into());
    let url = DatabaseUrl::parse(&raw_url).map_err(|e| ServeError::Config(e.to_string()))?;
    let addr = std::env::var("CHIRPY_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let mode = match std::env::var("CHIRPY_GATE").as_deref() {
        Ok("wait") => GateMode::Wait,
        Ok("refuse") | Err(_) => GateMode::Refuse,
        Ok(other) => {
            return Err(ServeError::Config(format!(
                "CHIRPY_GATE={other}: use refuse or wait"
            )))
        }
    };
    let deadline = env_duration("CHIRPY_GATE_DEADLINE", Duration::from_secs(300));
    let drain = env_duration("CHIRPY_DRAIN", Duration::from_secs(5));
    let heartbeat_every = env_duration("CHIRPY_FLEET_HEARTBEAT", Duration::from_secs(10));
    let db_interval = env_duration("CHIRPY_DB_CHECK_INTERVAL", Duration::from_secs(1));
    let fault = Fault::from_env()?;
    let set = release.set();
    let version = format!("chirpy {}", release.version());
    // The service whose history the gate reads and whose fleet the instance
    // joins (`chirpy-vN migrate` reads the same variable).
    let service = std::env::var("CAPSTAN_SERVICE")
        .unwrap_or_else(|_| capstan_migrate::DEFAULT_SERVICE.to_string());

    // Refuse mode: check before listening, and exit with the reasons.
    let mut gate_db = Database::connect_read_only(&url)
        .await?
        .for_service(&service);
    let first = check_gate_database(&mut gate_db, &set).await?;
    if !first.is_compatible() && mode == GateMode::Refuse {
        return Err(ServeError::Gate(
            first.messages(release.binary(), &version).join("; "),
        ));
    }

    let store = Store::open(&raw_url).map_err(|e| ServeError::Config(e.to_string()))?;
    let health = Health::builder()
        .service_id("chirpy")
        .version(release.version())
        .build();
    let db_store = store.clone();
    health
        .add_check(
            CheckConfig::private("database")
                .component_type("datastore")
                .interval(db_interval)
                .timeout(Duration::from_secs(1))
                .thresholds(2, 1),
            check_fn(move || {
                let store = db_store.clone();
                async move {
                    let started = std::time::Instant::now();
                    store.ping().await.map_err(|e| e.to_string())?;
                    Ok(Observation::value(
                        started.elapsed().as_secs_f64() * 1000.0,
                        "ms",
                    ))
                }
            }),
        )
        .map_err(|e| ServeError::Config(e.to_string()))?;
    if let Ok(shared) = std::env::var("CHIRPY_SHARED_DEP") {
        health
            .add_check(
                CheckConfig::shared("shared-service")
                    .component_type("system")
                    .interval(db_interval)
                    .timeout(Duration::from_secs(1))
                    .thresholds(2, 1),
                check_fn(move || {
                    let target = shared.clone();
                    async move {
                        tokio::net::TcpStream::connect(&target)
                            .await
                            .map_err(|e| format!("{target}: {e}"))?;
                        Ok(Observation::ok())
                    }
                }),
            )
            .map_err(|e| ServeError::Config(e.to_string()))?;
    }

    let listener = TcpListener::bind(&addr).await?;
    eprintln!(
        "{} {} listening on {}",
        release.binary(),
        release.version(),
        listener.local_addr()?
    );
    // The address the fleet registry gives a proxy: CHIRPY_ADVERTISE, else
    // the bound address (none when bound to every interface: 0.0.0.0 is
    // nowhere a proxy can connect to).
    let advertise = std::env::var("CHIRPY_ADVERTISE")
        .ok()
        .filter(|a| !a.is_empty())
        .or_else(|| {
            let bound = listener.local_addr().ok()?;
            (!bound.ip().is_unspecified()).then(|| bound.to_string())
        });

    // The gate (re-checked in wait mode), then the fleet heartbeat and warm-up.
    // The registration holds this lock until its heartbeat is stored, and
    // shutdown takes it before leaving: a SIGTERM that arrives while the
    // instance registers waits for the row and marks it departed, instead
    // of leaving a live row behind (it would hold contract migrations back).
    // `closing` stops a registration that has not begun yet.
    let heartbeat: Arc<Mutex<Option<Heartbeat>>> = Arc::new(Mutex::new(None));
    let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate_failed = Arc::new(tokio::sync::Notify::new());
    {
        let health = health.clone();
        let heartbeat = heartbeat.clone();
        let closing = closing.clone();
        let gate_failed = gate_failed.clone();
        let url = url.clone();
        let store = store.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut compat = first;
            loop {
                if compat.is_compatible() {
                    break;
                }
                let why = compat.messages(release.binary(), &version).join("; ");
                if started.elapsed() >= deadline {
                    eprintln!("{}: gate deadline passed: {why}", release.binary());
                    health.set_gate(GateStatus::Refused(why));
                    gate_failed.notify_one();
                    return;
                }
                health.set_gate(GateStatus::Waiting(why));
                tokio::time::sleep(Duration::from_secs(1)).await;
                match check_gate_database(&mut gate_db, &set).await {
                    Ok(c) => compat = c,
                    Err(e) => {
                        tracing::warn!(error = %e, "gate check failed; retrying");
                        if let Ok(db) = Database::connect_read_only(&url).await {
                            gate_db = db.for_service(&service);
                        }
                    }
                }
            }
            health.set_gate(GateStatus::Compatible);
            let mut instance = Instance::new("chirpy", release.version(), &set);
            instance.address = advertise;
            loop {
                let mut slot = heartbeat.lock().await;
                if closing.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                match Heartbeat::start_for_service(
                    &url,
                    &service,
                    instance.clone(),
                    heartbeat_every,
                )
                .await
                {
                    Ok(hb) => {
                        *slot = Some(hb);
                        break;
                    }
                    Err(e) => {
                        drop(slot);
                        tracing::warn!(error = %e, "cannot register in the fleet registry; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            // Warm-up: the first query opens the connection.
            let _ = store.ping().await;
            health.set_warmed_up();
        });
    }

    let mut routes = app(AppState { release, store });
    if let Some(fault) = fault {
        eprintln!("{}: fault injected: {fault:?}", release.binary());
        routes = routes.layer(axum::middleware::from_fn(move |req, next| {
            inject(fault, req, next)
        }));
    }
    let router = routes.merge(health.router(Details::Full));
    let signal = {
        let gate_failed = gate_failed.clone();
        async move {
            tokio::select! {
                () = capstan_probe::shutdown_signal() => {}
                () = gate_failed.notified() => {}
            }
        }
    };
    let on_shutdown = {
        let heartbeat = heartbeat.clone();
        async move {
            let mut slot = heartbeat.lock().await;
            closing.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(hb) = slot.take() {
                if let Err(e) = hb.depart().await {
                    tracing::warn!(error = %e, "could not leave the fleet registry");
                }
            }
        }
    };
    capstan_probe::serve_with_shutdown(
        listener,
        router,
        health.clone(),
        ShutdownConfig {
            drain,
            grace: Duration::from_secs(20),
        },
        signal,
        on_shutdown,
    )
    .await
    .map_err(|e| ServeError::Config(e.to_string()))?;
    if let GateStatus::Refused(why) = health.gate() {
        return Err(ServeError::Gate(why));
    }
    Ok(())
}

/// A fault to inject into every application route (never the probes), for
/// rehearsing a bad release: `CHIRPY_FAULT=error:3` answers 500 on 3 % of
/// requests, `CHIRPY_FAULT=latency:100` adds 100 ms to each (`skip-name-write`
/// is the data fault `crate::Fault` reads).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Percentage of requests answered 500.
    Error(f64),
    /// Milliseconds added before answering.
    Latency(u64),
}

impl Fault {
    fn from_env() -> Result<Option<Fault>, ServeError> {
        let Ok(raw) = std::env::var("CHIRPY_FAULT") else {
            return Ok(None);
        };
        // `skip-name-write` is the data fault of the rehearsal fixtures
        // (`crate::Fault`), not one injected here.
        if raw.is_empty() || raw == "skip-name-write" {
            return Ok(None);
        }
        let bad = || {
            ServeError::Config(format!(
                "CHIRPY_FAULT={raw}: use error:PERCENT (0-100), latency:MILLISECONDS or skip-name-write"
            ))
        };
        let (kind, value) = raw.split_once(':').ok_or_else(bad)?;
        match kind {
            "error" => {
                let pct: f64 = value.parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err(bad());
                }
                Ok(Some(Fault::Error(pct)))
            }
            "latency" => Ok(Some(Fault::Latency(value.parse().map_err(|_| bad())?))),
            _ => Err(bad()),
        }
    }
}

async fn inject(
    fault: Fault,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match fault {
        Fault::Error(pct) => {
            if rand::random::<f64>() * 100.0 < pct {
                return (
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "injected fault\n",
                )
                    .into_response();
            }
            next.run(req).await
        }
        Fault::Latency(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(req).await
        }
    }
}
