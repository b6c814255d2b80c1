//! The binaries rehearse starts: each in its own process group, its output
//! kept with timestamps, killed (the whole group) when dropped.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// One line a process printed.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// When it was read.
    pub at: Instant,
    /// The text.
    pub text: String,
}

/// Everything a process printed, in order.
pub type Log = Arc<Mutex<Vec<LogLine>>>;

/// A running binary.
pub struct Proc {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    child: Option<Child>,
    pid: Option<u32>,
    log: Log,
    readers: Vec<tokio::task::JoinHandle<()>>,
}

/// How a start ended.
pub enum Started {
    /// The readiness probe answered 200.
    Ready(Box<Proc>),
    /// The process exited before it was ready.
    Exited {
        /// Its exit code.
        code: Option<i32>,
        /// What it printed.
        log: Vec<String>,
    },
    /// Not ready in time (the process was killed).
    TimedOut {
        /// The last probe answer or error.
        last: String,
        /// What it printed.
        log: Vec<String>,
    },
}

/// Sends `signal` to the process group `pid` (which leads its own group).
fn signal_group(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

fn capture(
    log: Log,
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut l) = log.lock() {
                l.push(LogLine {
                    at: Instant::now(),
                    text: line,
                });
            }
        }
    })
}

impl Proc {
    /// Spawns `argv` with `env` in a new process group; output is captured;
    /// it will listen on `port`.
    pub fn spawn(argv: &[String], env: &[(String, String)], port: u16) -> std::io::Result<Proc> {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let log: Log = Arc::default();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(capture(log.clone(), out));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(capture(log.clone(), err));
        }
        Ok(Proc {
            base_url: format!("http://127.0.0.1:{port}"),
            pid: child.id(),
            child: Some(child),
            log,
            readers,
        })
    }

    /// Polls `ready` until it answers 200, the process exits, or `limit` passes.
    pub async fn wait_ready(
        mut self,
        client: &reqwest::Client,
        ready: &str,
        limit: Duration,
    ) -> Started {
        let started = Instant::now();
        let mut last;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    // Let the output readers reach the end of the output.
                    for r in std::mem::take(&mut self.readers) {
                        let _ = tokio::time::timeout(Duration::from_millis(500), r).await;
                    }
                    return Started::Exited {
                        code: status.code(),
                        log: self.lines_since(None),
                    };
                }
            }
            match client
                .get(ready)
                .timeout(Duration::from_secs(1))
                .send()
                .await
            {
                Ok(r) if r.status().as_u16() == 200 => return Started::Ready(Box::new(self)),
                Ok(r) => {
                    last = format!(
                        "HTTP {}: {}",
                        r.status().as_u16(),
                        r.text().await.unwrap_or_default()
                    )
                }
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() > limit {
                self.kill();
                tokio::time::sleep(Duration::from_millis(20)).await;
                return Started::TimedOut {
                    last,
                    log: self.lines_since(None),
                };
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Every line, or the lines from `since` on.
    pub fn lines_since(&self, since: Option<Instant>) -> Vec<String> {
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        log.into_iter()
            .filter(|l| since.is_none_or(|s| l.at >= s))
            .map(|l| l.text)
            .collect()
    }

    /// The lines printed between `from` and `to`, with up to `before` earlier lines.
    pub fn lines_around(&self, from: Instant, to: Instant, before: usize) -> Vec<String> {
        let log = self.log.lock().map(|l| l.clone()).unwrap_or_default();
        let first = log.iter().position(|l| l.at >= from).unwrap_or(log.len());
        let last = log.iter().rposition(|l| l.at <= to).map_or(0, |i| i + 1);
        let start = first.saturating_sub(before);
        let end = last.max(start);
        let mut lines: Vec<String> = log[start..end].iter().map(|l| l.text.clone()).collect();
        const MAX: usize = 40;
        if lines.len() > MAX {
            let cut = lines.len() - MAX;
            lines.drain(..cut);
            lines.insert(0, format!("… {cut} earlier lines"));
        }
        lines
    }

    /// Asks the process group to stop (SIGTERM); see [`Proc::wait`].
    pub fn terminate(&self) {
        if let (Some(pid), Some(_)) = (self.pid, self.child.as_ref()) {
            signal_group(pid, rustix::process::Signal::TERM);
        }
    }

    /// Waits for the process to exit (after [`Proc::terminate`]); kills the
    /// group after `limit`. Returns the exit code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let code = match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(s)) => s.code(),
            _ => {
                self.kill();
                None
            }
        };
        self.child = None;
        code
    }

    fn kill(&mut self) {
        if let Some(pid) = self.pid {
            if self.child.is_some() {
                signal_group(pid, rustix::process::Signal::KILL);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
