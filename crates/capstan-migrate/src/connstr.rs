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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::url::{redact, UrlError};

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

/// True when `s` is a `postgres://` or `postgresql://` URL.
pub fn is_pg_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// True when `s` looks like a libpq `key=value` string (`host=… dbname=…`).
pub fn is_key_value(s: &str) -> bool {
    let t = s.trim_start();
    let key_len = t
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    key_len > 0 && t[key_len..].trim_start().starts_with('=') && !t.contains("://")
}

/// The keys libpq knows that capstan honours.
const KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "connect_timeout",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "fallback_application_name",
    "options",
    "target_session_attrs",
    "client_encoding",
    "gssencmode",
    "sslcompression",
    "sslsni",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "channel_binding",
    "load_balance_hosts",
    "sslnegotiation",
    "tcp_user_timeout",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "service",
    "require_auth",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "krbsrvname",
    "gsslib",
    "requirepeer",
];

/// Keys libpq knows that capstan refuses rather than ignore (ignoring them
/// would weaken what the user asked for), with what to do instead.
const REFUSED: &[(&str, &str)] = &[
    ("service", "pg_service.conf is not read; write the parameters in the string"),
    ("require_auth", "is not supported; the server's pg_hba.conf decides the method"),
    ("sslcrl", "certificate revocation lists are not checked; remove it, or connect through psql"),
    ("sslcrldir", "certificate revocation lists are not checked; remove it, or connect through psql"),
    ("sslpassword", "encrypted private keys are not supported; decrypt the key (openssl pkey -in KEY -out KEY.plain) and keep it at 0600"),
    ("krbsrvname", "Kerberos (GSSAPI) authentication is not supported"),
    ("gsslib", "GSSAPI authentication is not supported"),
    ("requirepeer", "is not supported"),
];

/// The environment variable libpq reads for a key.
fn env_var_of(key: &str) -> Option<&'static str> {
    Some(match key {
        "host" => "PGHOST",
        "hostaddr" => "PGHOSTADDR",
        "port" => "PGPORT",
        "dbname" => "PGDATABASE",
        "user" => "PGUSER",
        "password" => "PGPASSWORD",
        "passfile" => "PGPASSFILE",
        "connect_timeout" => "PGCONNECT_TIMEOUT",
        "sslmode" => "PGSSLMODE",
        "sslrootcert" => "PGSSLROOTCERT",
        "sslcert" => "PGSSLCERT",
        "sslkey" => "PGSSLKEY",
        "application_name" => "PGAPPNAME",
        "options" => "PGOPTIONS",
        "target_session_attrs" => "PGTARGETSESSIONATTRS",
        "gssencmode" => "PGGSSENCMODE",
        _ => return None,
    })
}

/// Is the `@` at byte `at` of `rest` inside a `?key=value` query (rather
/// than ending the user:password part)?
fn at_in_query(rest: &str, at: usize) -> bool {
    let Some(q) = rest[..at].rfind('?') else {
        return false;
    };
    let seg = &rest[q + 1..at];
    let key = seg.split(['=', '&']).next().unwrap_or("");
    seg.contains('=') && KEYS.contains(&key)
}

/// Where the `user[:password]` part of a URL's text after `://` ends: the
/// last `@` that is not inside a query, so a password may hold `@ / ? #`
/// unencoded.
pub(crate) fn userinfo_end(rest: &str) -> Option<usize> {
    rest.char_indices()
        .filter(|(_, c)| *c == '@')
        .map(|(i, _)| i)
        .rev()
        .find(|&i| !at_in_query(rest, i))
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// What a connection string says, before the environment and defaults.
#[derive(Default)]
struct Raw {
    params: BTreeMap<String, String>,
}

fn parse_url(s: &str, err: &dyn Fn(String) -> UrlError) -> Result<Raw, UrlError> {
    let rest = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
        .unwrap_or(s);
    let mut raw = Raw::default();
    let (userinfo, after) = match userinfo_end(rest) {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    if let Some(ui) = userinfo {
        let (user, password) = match ui.find(':') {
            Some(c) => (&ui[..c], Some(&ui[c + 1..])),
            None => (ui, None),
        };
        if !user.is_empty() {
            raw.params.insert("user".into(), decode(user));
        }
        if let Some(p) = password {
            raw.params.insert("password".into(), decode(p));
        }
    }
    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    let hostlist = &after[..host_end];
    let mut tail = &after[host_end..];
    if let Some(path) = tail.strip_prefix('/') {
        let end = path.find('?').unwrap_or(path.len());
        let db = &path[..end];
        if !db.is_empty() {
            raw.params.insert("dbname".into(), decode(db));
        }
        tail = &path[end..];
    }
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for h in hostlist.split(',') {
            let (host, port) = if let Some(v6) = h.strip_prefix('[') {
                let close = v6
                    .find(']')
                    .ok_or_else(|| err(format!("unterminated IPv6 address `[{v6}`")))?;
                let port = v6[close + 1..].strip_prefix(':').unwrap_or("");
                (v6[..close].to_string(), port)
            } else {
                match h.rfind(':') {
                    Some(c) => (decode(&h[..c]), &h[c + 1..]),
                    None => (decode(h), ""),
                }
            };
            hosts.push(host);
            ports.push(port.to_string());
        }
        raw.params.insert("host".into(), hosts.join(","));
        if ports.iter().any(|p| !p.is_empty()) {
            raw.params.insert("port".into(), ports.join(","));
        }
    }
    if let Some(query) = tail.strip_prefix('?') {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                err(format!(
                    "query parameter `{}` has no value",
                    shown_key(&decode(pair))
                ))
            })?;
            let k = decode(k);
            check_key(&k, err)?;
            raw.params.insert(k, decode(v));
        }
    }
    Ok(raw)
}

/// A key fit to echo in a message (never a value).
fn shown_key(k: &str) -> String {
    if k.len() <= 40 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        k.to_string()
    } else {
        "(unreadable)".to_string()
    }
}

fn check_key(k: &str, err: &dyn Fn(String) -> UrlError) -> Result<(), UrlError> {
    if KEYS.contains(&k) {
        return Ok(());
    }
    Err(err(format!(
        "unknown connection parameter `{}`; capstan understands {}",
        shown_key(k),
        KEYS.join(", ")
    )))
}

/// Splits a libpq `key=value` string: values may be single-quoted, with `\'`
/// and `\\` escapes.
fn parse_key_value(s: &str, err: &dyn Fn(String) -> UrlError) -> Result<Raw, UrlError> {
    let mut raw = Raw::default();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(err(format!(
                "`{}` has no `=value` (write key=value pairs separated by spaces)",
                shown_key(&key)
            )));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(err(format!(
                    "the quoted value of `{}` has no closing quote",
                    shown_key(&key)
                )));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                chars.next();
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        check_key(&key, err)?;
        raw.params.insert(key, value);
    }
    Ok(raw)
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

/// The password file's answer for one server, and why the file was skipped
/// if it was.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassfileLookup {
    /// The password of the first matching line.
    pub password: Option<String>,
    /// Why the file was not read (permissions, not a file), for the error.
    pub skipped: Option<String>,
}

/// Looks `endpoint`, `dbname` and `user` up in the password file at `path`
/// (libpq's rules: `host:port:db:user:password`, `*` matches anything, `\`
/// escapes `:` and `\`, `localhost` matches a Unix socket; a file that group
/// or others can read is skipped).
pub fn passfile_lookup(
    path: &Path,
    endpoint: &Endpoint,
    dbname: &str,
    user: &str,
) -> PassfileLookup {
    let mut out = PassfileLookup::default();
    let Ok(meta) = std::fs::metadata(path) else {
        return out;
    };
    if !meta.is_file() {
        out.skipped = Some(format!(
            "password file {} is not a plain file; it was not read",
            path.display()
        ));
        return out;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            out.skipped = Some(format!(
                "password file {} has group or world access, so it was not read (libpq's rule); make it private: chmod 0600 {}",
                path.display(),
                path.display()
            ));
            tracing::warn!("{}", out.skipped.as_deref().unwrap_or_default());
            return out;
        }
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    let (host, socket) = match &endpoint.host {
        Host::Tcp(h) => (h.clone(), None),
        Host::Unix(p) => ("localhost".to_string(), Some(p.display().to_string())),
    };
    let port = endpoint.port.to_string();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_passfile_line(line);
        if fields.len() < 5 {
            continue;
        }
        let m = |pat: &str, v: &str| pat == "*" || pat == v;
        let host_ok = m(&fields[0], &host) || socket.as_deref().is_some_and(|s| fields[0] == s);
        if host_ok && m(&fields[1], &port) && m(&fields[2], dbname) && m(&fields[3], user) {
            out.password = Some(fields[4..].join(":"));
            return out;
        }
    }
    out
}

fn split_passfile_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut().expect("one field").push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn parse(s: &str, env: &'static [(&'static str, &'static str)]) -> ConnSpec {
        ConnSpec::parse_with_env(s, &env_of(env)).unwrap()
    }

    fn tcp(h: &str, port: u16) -> Endpoint {
        Endpoint {
            host: Host::Tcp(h.into()),
            port,
        }
    }

    #[test]
    fn url_parts() {
        let s = parse("postgres://app:s3cr%40t@db.internal:6432/appdb?sslmode=require&connect_timeout=3&application_name=x", &[]);
        assert_eq!(s.endpoints, vec![tcp("db.internal", 6432)]);
        assert_eq!(s.user, "app");
        assert_eq!(s.password.as_deref(), Some("s3cr@t"));
        assert_eq!(s.dbname, "appdb");
        assert_eq!(s.sslmode, SslMode::Require);
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.application_name.as_deref(), Some("x"));
        assert!(!format!("{s:?}").contains("s3cr"));
    }

    #[test]
    fn raw_specials_in_password() {
        let s = parse(
            "postgres://app:p/a?s#s@w:rd@db:5432/app?sslmode=disable",
            &[],
        );
        assert_eq!(s.password.as_deref(), Some("p/a?s#s@w:rd"));
        assert_eq!(s.endpoints, vec![tcp("db", 5432)]);
        assert_eq!(s.dbname, "app");
        assert_eq!(s.sslmode, SslMode::Disable);
        // An @ inside a query value is not the end of a password.
        let s = parse("postgres://h/db?application_name=a@b", &[]);
        assert_eq!(s.endpoints, vec![tcp("h", 5432)]);
        assert_eq!(s.application_name.as_deref(), Some("a@b"));
    }

    #[test]
    fn multi_host_and_ipv6() {
        let s = parse(
            "postgresql://u@a:5433,b,[::1]:5435/db?target_session_attrs=read-write",
            &[],
        );
        assert_eq!(
            s.endpoints,
            vec![tcp("a", 5433), tcp("b", 5432), tcp("::1", 5435)]
        );
        assert!(s.read_write);
        let s = parse("postgres://u@a,b/db", &[("PGPORT", "6000")]);
        assert_eq!(s.endpoints, vec![tcp("a", 6000), tcp("b", 6000)]);
    }

    #[test]
    fn unix_sockets() {
        let s = parse(
            "postgres:///app?host=/var/run/postgresql",
            &[("USER", "me")],
        );
        assert_eq!(
            s.endpoints[0].host,
            Host::Unix("/var/run/postgresql".into())
        );
        assert_eq!(s.user, "me");
        assert_eq!(s.dbname, "app");
        let s = parse("postgres://u@%2Ftmp%2Fpg%20dir:5999/app", &[]);
        assert_eq!(
            s.endpoints,
            vec![Endpoint {
                host: Host::Unix("/tmp/pg dir".into()),
                port: 5999
            }]
        );
    }

    #[test]
    fn key_value_strings() {
        let s = parse(
            "host=db port=5433 dbname=app user=u password=x/y?z sslmode=verify-full sslrootcert=/ca.pem",
            &[],
        );
        assert_eq!(s.endpoints, vec![tcp("db", 5433)]);
        assert_eq!(s.password.as_deref(), Some("x/y?z"));
        assert_eq!(s.sslmode, SslMode::VerifyFull);
        assert_eq!(s.sslrootcert, Some(PathBuf::from("/ca.pem")));
        let s = parse("host = db  password='a b\\'c' dbname=x", &[]);
        assert_eq!(s.password.as_deref(), Some("a b'c"));
        assert_eq!(s.dbname, "x");
        assert!(ConnSpec::parse_with_env("host=db password='open", &env_of(&[])).is_err());
    }

    #[test]
    fn environment_fills_what_the_string_leaves_out() {
        let env: &[(&str, &str)] = &[
            ("PGHOST", "envhost"),
            ("PGPORT", "7000"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "require"),
            ("PGCONNECT_TIMEOUT", "4"),
        ];
        let s = parse("postgres://", env);
        assert_eq!(s.endpoints, vec![tcp("envhost", 7000)]);
        assert_eq!(
            (s.user.as_str(), s.password.as_deref(), s.dbname.as_str()),
            ("envuser", Some("envpw"), "envdb")
        );
        assert_eq!(s.sslmode, SslMode::Require);
        assert_eq!(s.connect_timeout, Duration::from_secs(4));
        // The URL wins over the environment.
        let s = parse("postgres://u:pw@h:1/d?sslmode=disable", env);
        assert_eq!(s.endpoints, vec![tcp("h", 1)]);
        assert_eq!(
            (s.user.as_str(), s.password.as_deref(), s.dbname.as_str()),
            ("u", Some("pw"), "d")
        );
        assert_eq!(s.sslmode, SslMode::Disable);
    }

    #[test]
    fn more_libpq_parameters() {
        let s = parse(
            "postgres://u@a,b/d?channel_binding=require&load_balance_hosts=random&sslmode=require&sslnegotiation=direct&tcp_user_timeout=5000&ssl_min_protocol_version=TLSv1.3",
            &[],
        );
        assert_eq!(s.channel_binding.as_deref(), Some("require"));
        assert!(s.random_order && s.direct_tls && s.tls13_only && !s.tls12_only);
        assert_eq!(s.tcp_user_timeout, Some(Duration::from_millis(5000)));
        for refused in [
            "postgres://u@h/d?service=prod",
            "postgres://u@h/d?sslcrl=/crl.pem",
            "postgres://u@h/d?sslpassword=x",
            "postgres://u@h/d?channel_binding=maybe",
            "postgres://u@h/d?sslnegotiation=direct",
            "postgres://u@h/d?ssl_min_protocol_version=TLSv1.3&ssl_max_protocol_version=TLSv1.2",
        ] {
            assert!(
                ConnSpec::parse_with_env(refused, &env_of(&[])).is_err(),
                "{refused}"
            );
        }
    }

    #[test]
    fn bad_values_are_refused_without_the_password() {
        for bad in [
            "postgres://u:hunter2@h/d?sslmode=sometimes",
            "postgres://u:hunter2@h/d?connect_timeout=abc",
            "postgres://u:hunter2@h/d?connect_timeout=0",
            "postgres://u:hunter2@h/d?connect_timeout=-1",
            "postgres://u:hunter2@h:99999/d",
            "postgres://u:hunter2@h/d?nonsense=1",
            "host=h password=hunter2 bogus",
            "host=h password=hunter2 port=x",
        ] {
            let e = ConnSpec::parse_with_env(bad, &env_of(&[])).unwrap_err();
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn another_database_on_the_same_servers() {
        let env: &[(&str, &str)] = &[];
        for (s, want) in [
            (
                "postgres://u:p/a?s@h:1,g/app?sslmode=require",
                "postgres://u:p/a?s@h:1,g/scratch_1?sslmode=require",
            ),
            ("postgres://h", "postgres://h/scratch_1"),
            ("postgresql://u@h/app", "postgresql://u@h/scratch_1"),
        ] {
            let got = with_dbname(s, "scratch_1").unwrap();
            assert_eq!(got, want);
            let spec = parse(&got, env);
            assert_eq!(spec.dbname, "scratch_1");
        }
        let kv = with_dbname("host=h dbname=app password='x y'", "o'k").unwrap();
        let spec = parse(&kv, env);
        assert_eq!(spec.dbname, "o'k");
        assert_eq!(spec.password.as_deref(), Some("x y"));
    }

    #[test]
    fn passfile_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(
            &path,
            "# comment\nother:*:*:*:no\ndb:5432:app:u:pa\\:ss\\\\\n*:*:*:u:fallback\nlocalhost:*:*:sock:viasocket\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let hit = passfile_lookup(&path, &tcp("db", 5432), "app", "u");
        assert_eq!(hit.password.as_deref(), Some("pa:ss\\"));
        let hit = passfile_lookup(&path, &tcp("db", 5433), "app", "u");
        assert_eq!(hit.password.as_deref(), Some("fallback"));
        let sock = Endpoint {
            host: Host::Unix("/run/pg".into()),
            port: 5432,
        };
        assert_eq!(
            passfile_lookup(&path, &sock, "x", "sock")
                .password
                .as_deref(),
            Some("viasocket")
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let open = passfile_lookup(&path, &tcp("db", 5432), "app", "u");
            assert_eq!(open.password, None);
            assert!(open.skipped.unwrap().contains("chmod 0600"));
        }
    }
}
