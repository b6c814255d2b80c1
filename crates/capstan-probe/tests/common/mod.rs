//! A check the test steers, and helpers to ask a router without a socket.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::Router;
use capstan_probe::{async_trait, Check, Observation};
use http::{Request, StatusCode};
use tokio::sync::Notify;
use tower::ServiceExt;

/// What the next runs of a [`Scripted`] check do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Pass,
    Fail,
    /// Never return, until [`Script::release`].
    Hang,
}

/// The test's side of a [`Scripted`] check.
#[derive(Clone)]
pub struct Script {
    behaviour: Arc<Mutex<Behaviour>>,
    started: Arc<AtomicUsize>,
    release: Arc<Notify>,
}

impl Script {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour: Arc::new(Mutex::new(behaviour)),
            started: Arc::new(AtomicUsize::new(0)),
            release: Arc::new(Notify::new()),
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    /// How many runs have started.
    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// Lets every hanging run return (as a pass).
    pub fn release(&self) {
        self.release.notify_waiters();
    }

    pub fn check(&self) -> Scripted {
        Scripted(self.clone())
    }
}

/// A check that does what its [`Script`] says.
pub struct Scripted(Script);

#[async_trait]
impl Check for Scripted {
    async fn check(&self) -> Result<Observation, String> {
        self.0.started.fetch_add(1, Ordering::SeqCst);
        let behaviour = *self.0.behaviour.lock().unwrap();
        match behaviour {
            Behaviour::Pass => Ok(Observation::ok()),
            Behaviour::Fail => Err("connection refused".to_owned()),
            Behaviour::Hang => {
                self.0.release.notified().await;
                Ok(Observation::ok())
            }
        }
    }
}

/// A GET through the router, without a socket.
pub async fn get(router: &Router, path: &str) -> (StatusCode, String, String) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// A GET whose body is JSON.
pub async fn get_json(router: &Router, path: &str) -> (StatusCode, serde_json::Value) {
    let (status, _, body) = get(router, path).await;
    (status, serde_json::from_str(&body).unwrap())
}
