//! Postgres connection strings as libpq reads them: `postgres://` URLs
//! (several hosts, Unix-socket directories, percent-encoding, query
//! parameters) and `key=value` strings, completed from the `PG*` environment
//! variables and the password file (`~/.pgpass` or `PGPASSFILE`).
//!
//! Precedence, within one connection string: what the string says, then the
//! `PG*` variable, then libpq's default. Which string is used at all (flag,
//! `DATABASE_URL`, `capstan.toml`) is decided by the caller.
//!
//! Nothing here prints or returns the password: errors carry the string as
//! [`crate::url::redact`] shows it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::redact::{redact, UrlError};

pub(crate) mod lex;
mod parse;
#[cfg(feature = "postgres")]
mod pgpass;

pub(crate) use lex::userinfo_end;
pub use lex::{is_key_value, is_pg_url};
use parse::{env_var_of, parse_key_value, parse_url, shown_key, REFUSED};
#[cfg(feature = "postgres")]
pub use pgpass::passfile_lookup;

/// The default `connect_timeout` (whole seconds, as libpq writes it).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `connect_timeout` accepted, in seconds.
pub const MAX_CONNECT_TIMEOUT_SECS: u64 = 3600;

/// `sslmode`, as libpq defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first; TLS (unverified) if the server refuses plaintext.
    Allow,
    /// TLS (unverified) when the server offers it, else plaintext. The default.
    Prefer,
    /// TLS, without verifying the certificate (verified against the CA when
    /// `sslrootcert` is given, as libpq does).
    Require,
    /// TLS, certificate chain verified against `sslrootcert`, host name not checked.
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    /// Parses a libpq `sslmode` value.
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where one server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address.
    Tcp(String),
    /// A directory holding the server's Unix socket.
    Unix(PathBuf),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Tcp(h) if h.contains(':') => write!(f, "[{h}]"),
            Host::Tcp(h) => f.write_str(h),
            Host::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One server to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host or socket directory.
    pub host: Host,
    /// Port (also names the socket file, `.s.PGSQL.PORT`).
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Unix(p) => write!(f, "{}/.s.PGSQL.{}", p.display(), self.port),
            h => write!(f, "{h}:{}", self.port),
        }
    }
}

/// A fully resolved connection: the string, the environment and the defaults
/// merged. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnSpec {
    /// Servers, tried in order.
    pub endpoints: Vec<Endpoint>,
    /// Role name.
    pub user: String,
    /// Password from the string or `PGPASSWORD` (the password file is read
    /// when connecting, per server).
    pub password: Option<String>,
    /// Database name.
    pub dbname: String,
    /// TLS policy.
    pub sslmode: SslMode,
    /// CA certificates (PEM) to verify the server with.
    pub sslrootcert: Option<PathBuf>,
    /// Client certificate (PEM).
    pub sslcert: Option<PathBuf>,
    /// Client private key (PEM).
    pub sslkey: Option<PathBuf>,
    /// Bound on connecting to one server: TCP, TLS, startup and authentication.
    pub connect_timeout: Duration,
    /// `application_name` (capstan's own when none is given).
    pub application_name: Option<String>,
    /// `options` sent at startup (like `-c search_path=app`).
    pub options: Option<String>,
    /// The password file to read, if the string or `PGPASSFILE` names one.
    pub passfile: Option<PathBuf>,
    /// `target_session_attrs=read-write`: skip servers in read-only mode.
    pub read_write: bool,
    /// `channel_binding`: `disable`, `prefer` (the default) or `require`.
    pub channel_binding: Option<String>,
    /// `load_balance_hosts=random`: try the hosts in a random order.
    pub random_order: bool,
    /// `sslnegotiation=direct`: TLS at once, without asking first (Postgres 17+).
    pub direct_tls: bool,
    /// `tcp_user_timeout`: how long sent data may stay unacknowledged.
    pub tcp_user_timeout: Option<Duration>,
    /// `ssl_min_protocol_version=TLSv1.3`.
    pub tls13_only: bool,
    /// `ssl_max_protocol_version` below TLSv1.3 (TLS 1.2, the oldest rustls speaks).
    pub tls12_only: bool,
    /// The home directory (for `~/.pgpass` and `~/.postgresql/`), if known.
    pub home: Option<PathBuf>,
}

impl fmt::Debug for ConnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnSpec")
            .field("endpoints", &self.endpoints)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// Reads the environment; tests pass their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with empty variables read as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ConnSpec {
    /// Resolves `s` (a `postgres://` URL or a `key=value` string) with the
    /// process environment.
    pub fn parse(s: &str) -> Result<ConnSpec, UrlError> {
        Self::parse_with_env(s, &process_env)
    }

    /// Resolves `s` with `env` standing for the environment.
    pub fn parse_with_env(s: &str, env: Env<'_>) -> Result<ConnSpec, UrlError> {
        let err = |reason: String| UrlError {
            shown: redact(s),
            reason,
        };
        let raw = if is_pg_url(s) {
            parse_url(s, &err)?
        } else if is_key_value(s) || s.trim().is_empty() {
            parse_key_value(s, &err)?
        } else {
            return Err(err(
                "not a postgres:// URL or a key=value connection string".into(),
            ));
        };
        let get = |k: &str| -> Option<String> {
            raw.params
                .get(k)
                .cloned()
                .or_else(|| env_var_of(k).and_then(env))
        };
        let home = env("HOME").map(PathBuf::from);

        // Ports: one for all hosts, or one per host.
        let port_text = get("port");
        let mut ports = Vec::new();
        if let Some(p) = &port_text {
            for part in p.split(',') {
                if part.is_empty() {
                    ports.push(5432);
                    continue;
                }
                let n: u16 =
                    part.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        err(format!("port `{part}` is not a port number (1-65535)"))
                    })?;
                ports.push(n);
            }
        }
        let host_text = get("host").filter(|h| !h.is_empty());
        let hosts: Vec<Host> = match &host_text {
            Some(h) => h
                .split(',')
                .map(|h| {
                    if h.is_empty() {
                        default_socket_dir()
                    } else if h.starts_with('/') {
                        Host::Unix(PathBuf::from(h))
                    } else {
                        Host::Tcp(h.to_string())
                    }
                })
                .collect(),
            None => match get("hostaddr") {
                Some(a) => a.split(',').map(|a| Host::Tcp(a.to_string())).collect(),
                None => vec![default_socket_dir()],
            },
        };
        if ports.len() > 1 && ports.len() != hosts.len() {
            return Err(err(format!(
                "{} hosts but {} ports; give one port, or one per host",
                hosts.len(),
                ports.len()
            )));
        }
        let endpoints = hosts
            .into_iter()
            .enumerate()
            .map(|(i, host)| Endpoint {
                host,
                port: ports.get(i).or(ports.first()).copied().unwrap_or(5432),
            })
            .collect();

        let sslmode = match get("sslmode") {
            // As libpq: the system's CAs are only meaningful with the name checked.
            None if get("sslrootcert").as_deref() == Some("system") => SslMode::VerifyFull,
            None => SslMode::Prefer,
            Some(v) => SslMode::parse(&v).ok_or_else(|| {
                err(format!(
                    "sslmode `{}` is not one of disable, allow, prefer, require, verify-ca, verify-full",
                    shown_key(&v.replace('-', "_")).replace('_', "-")
                ))
            })?,
        };
        let connect_timeout = match get("connect_timeout") {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(v) => parse_connect_timeout(&v).map_err(err)?,
        };
        let read_write = match get("target_session_attrs").as_deref() {
            None | Some("any") => false,
            Some("read-write") => true,
            Some(other) => {
                return Err(err(format!(
                    "target_session_attrs `{}` is not supported; use any or read-write",
                    shown_key(&other.replace('-', "_")).replace('_', "-")
                )))
            }
        };
        for (key, why) in REFUSED {
            if raw.params.contains_key(*key) {
                return Err(err(format!("{key}: {why}")));
            }
        }
        let choice = |key: &str, allowed: &[&str]| -> Result<Option<String>, UrlError> {
            match get(key) {
                None => Ok(None),
                Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
                Some(v) => Err(err(format!(
                    "{key} `{}` is not one of {}",
                    shown_key(&v.replace(['-', '.'], "_")),
                    allowed.join(", ")
                ))),
            }
        };
        let channel_binding = choice("channel_binding", &["disable", "prefer", "require"])?;
        let random_order =
            choice("load_balance_hosts", &["disable", "random"])?.as_deref() == Some("random");
        let direct_tls =
            choice("sslnegotiation", &["postgres", "direct"])?.as_deref() == Some("direct");
        if direct_tls && matches!(sslmode, SslMode::Disable | SslMode::Allow | SslMode::Prefer) {
            return Err(err(format!(
                "sslnegotiation=direct needs sslmode=require, verify-ca or verify-full (not {})",
                sslmode.as_str()
            )));
        }
        // rustls speaks TLS 1.2 and 1.3 only; older versions are never used.
        let versions = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
        let tls13_only =
            choice("ssl_min_protocol_version", &versions)?.as_deref() == Some("TLSv1.3");
        let max = choice("ssl_max_protocol_version", &versions)?;
        if max.as_deref().is_some_and(|m| m != "TLSv1.3") && tls13_only {
            return Err(err(
                "ssl_max_protocol_version is below ssl_min_protocol_version".into(),
            ));
        }
        let tls12_only = max.as_deref().is_some_and(|m| m != "TLSv1.3");
        let tcp_user_timeout = match get("tcp_user_timeout") {
            None => None,
            Some(v) => {
                let ms: u64 = v.trim().parse().map_err(|_| {
                    err(format!(
                        "tcp_user_timeout `{}` is not a whole number of milliseconds",
                        shown_key(v.trim())
                    ))
                })?;
                (ms > 0).then(|| Duration::from_millis(ms))
            }
        };
        if let Some(g) = get("gssencmode") {
            if g == "require" {
                return Err(err(
                    "gssencmode=require: capstan does not support GSSAPI encryption; use TLS (sslmode)".into(),
                ));
            }
        }
        let user = get("user")
            .filter(|u| !u.is_empty())
            .or_else(|| os_user(env))
            .ok_or_else(|| {
                err(
                    "no user name: give one in the URL (postgres://USER@host/db), user=, or PGUSER"
                        .into(),
                )
            })?;
        let dbname = get("dbname")
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| user.clone());
        let path = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        Ok(ConnSpec {
            endpoints,
            user,
            password: get("password"),
            dbname,
            sslmode,
            sslrootcert: path("sslrootcert"),
            sslcert: path("sslcert"),
            sslkey: path("sslkey"),
            connect_timeout,
            application_name: get("application_name").or_else(|| get("fallback_application_name")),
            options: get("options").filter(|o| !o.is_empty()),
            passfile: path("passfile"),
            read_write,
            channel_binding,
            random_order,
            direct_tls,
            tcp_user_timeout,
            tls13_only,
            tls12_only,
            home,
        })
    }

    /// The same connection to another database on the same servers.
    pub fn with_dbname(&self, dbname: &str) -> ConnSpec {
        ConnSpec {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// `user@host:port/dbname` (every host), for messages; never the password.
    pub fn describe(&self) -> String {
        let hosts: Vec<String> = self.endpoints.iter().map(ToString::to_string).collect();
        format!("{}@{}/{}", self.user, hosts.join(","), self.dbname)
    }

    /// The password file to read: `passfile`/`PGPASSFILE`, else `~/.pgpass`.
    pub fn passfile_path(&self) -> Option<PathBuf> {
        self.passfile
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".pgpass")))
    }
}

/// The connection string `s` with its database replaced by `dbname`, every
/// other part (servers, password, parameters) kept as written: for a URL the
/// path is replaced, a `key=value` string gets a `dbname=` at the end.
pub fn with_dbname(s: &str, dbname: &str) -> Result<String, UrlError> {
    if is_key_value(s) || s.trim().is_empty() {
        let quoted = dbname.replace('\\', "\\\\").replace('\'', "\\'");
        return Ok(format!("{s} dbname='{quoted}'"));
    }
    if !is_pg_url(s) {
        return Err(UrlError {
            shown: redact(s),
            reason: "not a postgres:// URL or a key=value connection string".into(),
        });
    }
    let scheme_end = s.find("://").map_or(0, |i| i + 3);
    let rest = &s[scheme_end..];
    let hosts_start = userinfo_end(rest).map_or(0, |i| i + 1);
    let after = &rest[hosts_start..];
    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    let tail = &after[host_end..];
    let query = tail.find('?').map_or("", |q| &tail[q..]);
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'_')
        .remove(b'-')
        .remove(b'.');
    let encoded = percent_encoding::utf8_percent_encode(dbname, KEEP);
    Ok(format!(
        "{}/{encoded}{query}",
        &s[..scheme_end + hosts_start + host_end]
    ))
}

/// Parses `connect_timeout`: whole seconds, 1 to [`MAX_CONNECT_TIMEOUT_SECS`].
/// (libpq reads 0 as "wait forever"; capstan never waits forever.)
pub fn parse_connect_timeout(v: &str) -> Result<Duration, String> {
    let n: i64 = v.trim().parse().map_err(|_| {
        format!(
            "connect_timeout `{}` is not a whole number of seconds (like connect_timeout=10)",
            shown_key(v.trim())
        )
    })?;
    if n <= 0 {
        return Err(format!(
            "connect_timeout={n}: capstan never waits forever; give whole seconds from 1 to {MAX_CONNECT_TIMEOUT_SECS}"
        ));
    }
    if n as u64 > MAX_CONNECT_TIMEOUT_SECS {
        return Err(format!(
            "connect_timeout={n} is more than {MAX_CONNECT_TIMEOUT_SECS} seconds"
        ));
    }
    Ok(Duration::from_secs(n as u64))
}

/// libpq's default socket directory: Debian's `/var/run/postgresql` when it
/// exists, else `/tmp`.
fn default_socket_dir() -> Host {
    let debian = Path::new("/var/run/postgresql");
    if debian.is_dir() {
        Host::Unix(debian.to_path_buf())
    } else {
        Host::Unix(PathBuf::from("/tmp"))
    }
}

/// The operating-system user name, libpq's default role name.
fn os_user(env: Env<'_>) -> Option<String> {
    if let Some(u) = env("USER").or_else(|| env("LOGNAME")) {
        return Some(u);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").ok()?.uid();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        for line in passwd.lines() {
            let mut f = line.split(':');
            let (Some(name), _, Some(id)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if id.parse() == Ok(uid) {
                return Some(name.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
