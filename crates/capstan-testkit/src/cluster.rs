//! A dedicated Postgres cluster for one test binary, for what the shared
//! server cannot show: TLS (`ssl = on` with certificates made here, a
//! `hostssl`-only `pg_hba.conf`, client-certificate and password roles) and
//! a Unix socket in a known directory. Started with `initdb` + `pg_ctl` (as
//! the `postgres` user when run as root), stopped and removed on drop.
//!
//! `pg_hba.conf`:
//!
//! ```text
//! local   all all                    trust
//! hostssl all certuser 127.0.0.1/32  cert
//! hostssl all pwuser   127.0.0.1/32  scram-sha-256
//! hostssl all all      127.0.0.1/32  trust
//! ```
//!
//! so plaintext TCP is refused for everyone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The password of the `pwuser` role: every character URLs treat specially.
pub const PW_PASSWORD: &str = "p/w?d#x@y:z&q=1 s";

/// A running cluster with TLS. Files of interest are in [`TlsCluster::dir`].
#[derive(Debug)]
pub struct TlsCluster {
    /// Holds `data/`, the socket, the certificates and the log.
    pub dir: PathBuf,
    /// The TCP port on 127.0.0.1 (and the socket's number).
    pub port: u16,
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// A CA that signed nothing the server has (PEM).
    pub other_ca: PathBuf,
    /// A client certificate for role `certuser`, signed by [`TlsCluster::ca`].
    pub client_cert: PathBuf,
    /// Its key (mode 0600).
    pub client_key: PathBuf,
    bin: PathBuf,
    _tmp: tempfile::TempDir,
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    false
}

/// The directory with `initdb`, `pg_ctl` and `postgres`: the one `initdb` on
/// PATH is in, else the newest `/usr/lib/postgresql/*/bin`.
fn pg_bin() -> PathBuf {
    let mut candidates = Vec::new();
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            if let Some(d) = std::fs::canonicalize(&p)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
            {
                candidates.push(d);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut vs: Vec<(u32, PathBuf)> = entries
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        vs.sort();
        candidates.extend(vs.into_iter().rev().map(|(_, p)| p));
    }
    candidates
        .into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .unwrap_or_else(|| {
            panic!("no initdb/pg_ctl found (PATH, /usr/lib/postgresql/*/bin): install the postgresql package (scripts/test.sh does)")
        })
}

fn run_as_owner(dir: &Path, program: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

fn chown_postgres(path: &Path) {
    if is_root() {
        let st = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(path)
            .status()
            .expect("run chown");
        assert!(st.success(), "chown postgres {}", path.display());
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    }
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn make_ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-sign CA");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate signed by `ca` for `names` (subject alternative names) with
/// common name `cn`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, cn: &str, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    let cert = params.signed_by(&key, &ca.issuer).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

impl TlsCluster {
    /// initdb, certificates (the server's names `localhost` only, not
    /// `127.0.0.1`), `ssl = on`, the `pg_hba.conf` above, roles `certuser`
    /// and `pwuser` (password [`PW_PASSWORD`]); started on a free port.
    pub fn start() -> TlsCluster {
        let bin = pg_bin();
        let tmp = tempfile::Builder::new()
            .prefix("capstan-tls-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        chown_postgres(&dir);
        let data = dir.join("data");
        let out = run_as_owner(
            &dir,
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let ca = make_ca("capstan test CA");
        let other = make_ca("some other CA");
        let (server_cert, server_key) = leaf(&ca, "localhost", &["localhost"]);
        let (client_cert, client_key) = leaf(&ca, "certuser", &[]);
        std::fs::write(data.join("server.crt"), &server_cert).expect("server.crt");
        write_private(&data.join("server.key"), &server_key);
        std::fs::write(data.join("root.crt"), &ca.pem).expect("root.crt");
        let ca_path = dir.join("ca.pem");
        let other_ca = dir.join("other-ca.pem");
        let client_cert_path = dir.join("client.crt");
        let client_key_path = dir.join("client.key");
        std::fs::write(&ca_path, &ca.pem).expect("ca.pem");
        std::fs::write(&other_ca, &other.pem).expect("other-ca.pem");
        std::fs::write(&client_cert_path, &client_cert).expect("client.crt");
        write_private(&client_key_path, &client_key);

        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\nfsync = off\nfull_page_writes = off\nsynchronous_commit = off\nmax_connections = 30\n",
            dir.display()
        );
        let mut pg_conf =
            std::fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
        pg_conf.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), pg_conf).expect("postgresql.conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all certuser 127.0.0.1/32 cert\nhostssl all pwuser 127.0.0.1/32 scram-sha-256\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba.conf");
        // Ownership: data for the server; the client files stay readable by
        // whoever runs the test (root, or the owner).
        chown_postgres(&data);

        let mut port = 0;
        for _ in 0..20 {
            let p = crate::free_port();
            let out = run_as_owner(
                &dir,
                &bin.join("pg_ctl"),
                &[
                    "-D",
                    data.to_str().expect("utf-8 path"),
                    "-l",
                    dir.join("postgres.log").to_str().expect("utf-8 path"),
                    "-o",
                    &format!("-p {p}"),
                    "-w",
                    "-t",
                    "30",
                    "start",
                ],
            );
            if out.status.success() {
                port = p;
                break;
            }
            let _ = run_as_owner(
                &dir,
                &bin.join("pg_ctl"),
                &[
                    "-D",
                    data.to_str().expect("utf-8 path"),
                    "-m",
                    "immediate",
                    "stop",
                ],
            );
        }
        if port == 0 {
            let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
            panic!("the TLS cluster did not start:\n{log}");
        }
        let cluster = TlsCluster {
            dir,
            port,
            ca: ca_path,
            other_ca,
            client_cert: client_cert_path,
            client_key: client_key_path,
            bin,
            _tmp: tmp,
        };
        cluster.wait_ready();
        cluster.psql(&format!(
            "CREATE ROLE certuser LOGIN; CREATE ROLE pwuser LOGIN PASSWORD '{}'",
            PW_PASSWORD.replace('\'', "''")
        ));
        cluster
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h"])
                .arg(&self.dir)
                .args(["-p", &self.port.to_string(), "-U", "postgres"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the TLS cluster does not accept connections"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `sql` as `postgres` over the Unix socket; panics on failure.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed: {sql}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `postgres://USER@HOST:PORT/postgres?PARAMS` (HOST like `localhost` or
    /// `127.0.0.1`; PARAMS like `sslmode=require`, may be empty).
    pub fn url(&self, user: &str, host: &str, params: &str) -> String {
        let sep = if params.is_empty() { "" } else { "?" };
        format!(
            "postgres://{user}@{host}:{}/postgres{sep}{params}",
            self.port
        )
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = run_as_owner(
            &self.dir,
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}
