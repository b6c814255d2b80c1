//! Real chirpy processes on a SQLite file, and the proxy in this process.

#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capstan_proxy::Settings;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub use capstan_testkit::chirpy::{bin_dir, Chirpy, Db};
pub use capstan_testkit::free_port;

pub const TOKEN: &str = "test-token";

/// `proxy.toml` text with two releases and the given `[routing]` lines.
pub fn config(v1: &[&str], v2: &[&str], routing: &str, events: &Path) -> String {
    let list = |a: &[&str]| {
        a.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
admin_token = "{TOKEN}"
service = "chirpy"

[[release]]
name = "1.0.0"
upstreams = [{}]

[[release]]
name = "2.0.0"
upstreams = [{}]

[[route]]
template = "/users/{{id}}"

[[route]]
template = "/users/{{id}}/chirps"

[cohort]
headers = [{{ name = "x-internal", value = "1" }}]

[routing]
{routing}

[events]
store = "{}"

[health]
interval = "200ms"
"#,
        list(v1),
        list(v2),
        events.display()
    )
}

/// `proxy.toml` text with one release on `upstream`, events into `events`
/// and the admin API on (token `t`).
pub fn one_release(upstream: &str, events: &Path) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"t\"\n\
         [[release]]\nname = \"1.0.0\"\nupstreams = [\"{upstream}\"]\n\
         [events]\nstore = \"{}\"\n",
        events.display()
    )
}

pub fn settings(text: &str) -> Settings {
    capstan_proxy::parse_config(Path::new("proxy.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

/// The proxy running in this process.
pub struct Proxy {
    pub url: String,
    pub admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(settings: Settings) -> Proxy {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            capstan_proxy::run(
                settings,
                async {
                    let _ = stopped.await;
                },
                |b| {
                    let _ = bound_tx.send(b);
                },
            )
            .await
            .unwrap();
        });
        let b = tokio::time::timeout(Duration::from_secs(10), bound_rx)
            .await
            .expect("proxy bound within 10s")
            .expect("proxy started");
        Proxy {
            url: format!("http://{}", b.listen),
            admin: format!("http://{}", b.admin.unwrap()),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A proxy with one release on `upstream` and events into `events`
    /// (see [`one_release`]), and the `host:port` it listens on.
    pub async fn one_release(upstream: &str, events: &Path) -> (Proxy, String) {
        Proxy::one_release_with("", upstream, events).await
    }

    /// [`Proxy::one_release`] with `settings` (top-level `key = value`
    /// lines) before the release.
    pub async fn one_release_with(
        settings_text: &str,
        upstream: &str,
        events: &Path,
    ) -> (Proxy, String) {
        let mut text = one_release(upstream, events);
        if !settings_text.is_empty() {
            text = format!("{settings_text}\n{text}");
        }
        let proxy = Proxy::start(settings(&text)).await;
        let addr = proxy.url.trim_start_matches("http://").to_string();
        (proxy, addr)
    }

    /// Stops (as SIGTERM does) and waits for the drain and the event flush.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap())
            .await
            .expect("proxy stopped within 30s")
            .unwrap();
    }

    /// The text the admin API answers a GET of `path` with, asked with
    /// `token` (within 5 s).
    pub async fn admin_get(&self, path: &str, token: &str) -> String {
        reqwest::Client::new()
            .get(format!("{}{path}", self.admin))
            .bearer_auth(token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn put_routing(&self, table: &serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .put(format!("{}/routing", self.admin))
            .bearer_auth(TOKEN)
            .json(table)
            .send()
            .await
            .unwrap()
    }

    pub async fn routing(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}/routing", self.admin))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A trace id for request `n` of a test, so its event can be found.
pub fn traceparent(n: u64) -> (String, String) {
    let trace = format!("{:032x}", 0xabc0_0000_0000_0000_0000u128 + u128::from(n));
    (format!("00-{trace}-00f067aa0ba902b7-01"), trace)
}

/// The release a `/version` answer names.
pub async fn version_of(r: reqwest::Response) -> String {
    let v: serde_json::Value = r.json().await.unwrap();
    v["version"].as_str().unwrap().to_string()
}

/// Result of a load run.
#[derive(Debug, Default)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: u64,
    pub refused: u64,
    pub first_error: Option<String>,
}

/// `workers` loops of GET `path` until `stop` is set; a connection refused
/// (nothing listening) ends a worker and is counted apart from failures.
pub async fn load(url: String, workers: usize, stop: Arc<AtomicBool>) -> LoadResult {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let first = Arc::new(std::sync::Mutex::new(None));
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (url, stop, client) = (url.clone(), stop.clone(), client.clone());
        let (ok, failed, refused, first) =
            (ok.clone(), failed.clone(), refused.clone(), first.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .get(&url)
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            first.lock().unwrap().get_or_insert(format!("body: {e:?}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    },
                    Ok(r) => {
                        let s = r.status();
                        let b = r.text().await.unwrap_or_default();
                        first.lock().unwrap().get_or_insert(format!("{s}: {b}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) if e.is_connect() => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => {
                        first.lock().unwrap().get_or_insert(format!("{e:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let first_error = first.lock().unwrap().take();
    LoadResult {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        first_error,
    }
}

/// Every event in the store.
pub fn events(path: &Path) -> Vec<capstan_events::Event> {
    let store = capstan_events::Store::open(path).unwrap();
    store
        .events_after(0, 1_000_000)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

/// The events in the store that `keep` keeps, once `enough` holds of them
/// (the writer queues in batches) or after 10 s, whatever they are then.
pub async fn events_once(
    path: &Path,
    keep: impl Fn(&capstan_events::Event) -> bool,
    enough: impl Fn(&[capstan_events::Event]) -> bool,
) -> Vec<capstan_events::Event> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: Vec<_> = events(path).into_iter().filter(|e| keep(e)).collect();
        if enough(&got) || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes `text` (a request) on `r` and reads the answer's head, within 5 s.
pub async fn ask(r: &mut BufReader<TcpStream>, text: &str) -> String {
    use tokio::io::AsyncWriteExt;
    r.get_mut().write_all(text.as_bytes()).await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), read_head(r))
        .await
        .expect("an answer within 5 s")
        .expect("an answer")
}

/// Reads one request or response head (up to the blank line); `None` when
/// the connection ends first.
pub async fn read_head(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

/// Answers `200 ok` on a hand-written upstream's connection.
pub async fn answer_ok(r: &mut BufReader<TcpStream>) {
    use tokio::io::AsyncWriteExt;
    r.get_mut()
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        .await
        .unwrap();
}

/// A hand-written upstream on loopback: `serve` is given each connection it
/// accepts. Returns its address.
pub async fn raw_upstream<F, Fut>(serve: F) -> String
where
    F: Fn(BufReader<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(BufReader::new(s)));
        }
    });
    addr
}
