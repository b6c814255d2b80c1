//! chirpy, the example service, as real processes for end-to-end tests: its
//! binaries built once per test run, a SQLite database migrated to its
//! newest schema, and instances started on free ports and killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::free_port;

/// The target profile directory holding chirpy-v1, -v2, -v3 and capstan, built
/// once per test run (when missing or older than the sources they come from).
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable");
        // <target>/debug/deps/<test> → <target>/debug
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target layout")
            .to_path_buf();
        let target = profile_dir.parent().expect("target dir");
        // Built already and newer than every source they are built from: use
        // them rather than wait for cargo's lock.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let newest_source = newest_mtime(&root.join("crates"))
            .max(newest_mtime(&root.join("examples/chirpy/src")))
            .max(newest_mtime(&root.join("examples/chirpy/migrations")));
        let fresh = ["chirpy-v1", "chirpy-v2", "chirpy-v3", "capstan"]
            .iter()
            .all(|b| {
                let built = std::fs::metadata(profile_dir.join(b)).and_then(|m| m.modified());
                matches!((built, newest_source), (Ok(b), Some(s)) if b > s)
            });
        if fresh {
            return profile_dir;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build", "--quiet", "-p", "chirpy", "--bins", "-p", "capstan", "--bin", "capstan",
            ])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p chirpy -p capstan");
        assert!(status.success(), "cargo build -p chirpy -p capstan failed");
        profile_dir
    })
}

/// The newest modification time of a source file (`.rs`, `.toml`, `.sql`) under `dir`.
fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("target") && !p.ends_with("tests") && !p.ends_with("benches") {
                    stack.push(p);
                }
            } else if p
                .extension()
                .is_some_and(|x| x == "rs" || x == "toml" || x == "sql")
            {
                let m = e.metadata().ok().and_then(|m| m.modified().ok());
                newest = newest.max(m);
            }
        }
    }
    newest
}

/// A SQLite database with chirpy's schema at 2.0.0 (1.0.0 runs on it too).
pub struct Db {
    /// The directory holding the database file and the instances' logs.
    pub dir: tempfile::TempDir,
    /// The database URL chirpy is given.
    pub url: String,
}

impl Db {
    /// A fresh database, migrated by chirpy 2.0.0 itself.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("chirpy.db").display());
        let out = Command::new(bin_dir().join("chirpy-v2"))
            .args(["migrate", "up"])
            .env("DATABASE_URL", &url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Db { dir, url }
    }

    /// A file beside the database.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A running chirpy instance, killed on drop.
pub struct Chirpy {
    /// The process, until killed.
    pub child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `127.0.0.1:port`.
    pub addr: String,
    log: PathBuf,
}

impl Chirpy {
    /// Starts chirpy `version` (1 or 2) on `db`, with `CHIRPY_FAULT` set to
    /// `fault`, and returns once its `/readyz` answers 200 (panics after 20 s
    /// with the instance's log).
    pub async fn start(version: u8, db: &Db, fault: Option<&str>) -> Chirpy {
        Chirpy::start_on(
            version,
            &db.url,
            db.dir.path(),
            &[("CHIRPY_FAULT", fault.unwrap_or(""))],
        )
        .await
    }

    /// Starts chirpy `version` on the database at `url` (any backend), with
    /// its log in `log_dir` and `env` set on top of the test settings (a
    /// one-second fleet heartbeat, no drain), and returns once its
    /// `/readyz` answers 200 (panics after 20 s with the instance's log).
    pub async fn start_on(version: u8, url: &str, log_dir: &Path, env: &[(&str, &str)]) -> Chirpy {
        let port = free_port();
        let log = log_dir.join(format!("chirpy-{port}.log"));
        let child = Command::new(bin_dir().join(format!("chirpy-v{version}")))
            .env("DATABASE_URL", url)
            .env("CHIRPY_ADDR", format!("127.0.0.1:{port}"))
            .env("CHIRPY_DRAIN", "0s")
            .env("CHIRPY_FLEET_HEARTBEAT", "1s")
            .env("CHIRPY_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start chirpy");
        let c = Chirpy {
            child: Some(child),
            port,
            addr: format!("127.0.0.1:{port}"),
            log,
        };
        let started = Instant::now();
        loop {
            if ready(&c.addr).await {
                return c;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chirpy-v{version} not ready in 20s: {}",
                c.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the instance wrote on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the process the way an orchestrator does (SIGTERM: it drains
    /// and leaves the fleet registry) and waits for it to exit, at most
    /// 20 s; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while sent && Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Chirpy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `GET /readyz` at `addr` answers 200 within a second.
async fn ready(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /readyz HTTP/1.1\r\nhost: chirpy\r\nconnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Some(true))
    )
}
