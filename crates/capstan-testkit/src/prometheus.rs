//! A real Prometheus for tests: data backfilled with `promtool tsdb
//! create-blocks-from openmetrics`, served on a free loopback port from a
//! temp directory, stopped on drop. The Debian package `prometheus` brings
//! both binaries; `scripts/test.sh` installs it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus server.
pub struct Prometheus {
    /// Base URL, like `http://127.0.0.1:40123`.
    pub url: String,
    child: Child,
    dir: tempfile::TempDir,
}

fn need(bin: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{bin}` is not installed: install the Debian package `prometheus` (scripts/test.sh does)"
    )
}

impl Prometheus {
    /// Backfills `openmetrics` (text ending in `# EOF`) into a fresh data
    /// directory and starts Prometheus on it. Panics with the tool's output
    /// when a step fails, or when the server is not ready within 30 s.
    pub fn start_with(openmetrics: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir data");
        let input = dir.path().join("input.om");
        std::fs::write(&input, openmetrics).expect("write openmetrics");
        let out = Command::new(need("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool create-blocks-from failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&input).ok();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        )
        .expect("write config");
        let port = crate::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(need("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg("--storage.tsdb.retention.time=3650d")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        p.wait_ready(Duration::from_secs(30));
        p
    }

    fn wait_ready(&mut self, bound: Duration) {
        let start = Instant::now();
        let addr = self.url.trim_start_matches("http://").to_string();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prometheus exited with {status}: {}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect(&addr) {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let _ = write!(s, "GET /-/ready HTTP/1.0\r\nHost: {addr}\r\n\r\n");
                let mut resp = String::new();
                let _ = s.read_to_string(&mut resp);
                if resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(
                start.elapsed() < bound,
                "prometheus not ready after {bound:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
