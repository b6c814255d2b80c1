//! Connecting to Postgres as libpq does: every `sslmode` (TLS through
//! rustls), client certificates, the password file, several hosts tried in
//! order, and `connect_timeout` bounding the whole exchange with each server
//! (TCP, TLS, startup and authentication), so a server that accepts the
//! connection and never answers fails within the bound.
//!
//! tokio-postgres knows `disable`, `prefer` and `require` and no certificate
//! checks; the rest is here: `allow` retries with TLS when the server refuses
//! plaintext, and the certificate verifiers decide what `require`,
//! `verify-ca` and `verify-full` accept.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::sync::mpsc;
use tokio_postgres::config::{
    ChannelBinding, SslMode as PgSslMode, SslNegotiation, TargetSessionAttrs,
};
use tokio_postgres::error::{DbError, SqlState};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::connstr::{passfile_lookup, ConnSpec, Endpoint, Host, SslMode};

/// An open connection; its background task already runs.
pub struct Connected {
    /// The client.
    pub client: Client,
    /// Notices the server sends (`RAISE NOTICE`, warnings), in order.
    pub notices: mpsc::UnboundedReceiver<DbError>,
    /// The server's `server_version` startup parameter.
    pub server_version: Option<String>,
    /// The server that answered.
    pub endpoint: Endpoint,
    /// Whether the connection is encrypted.
    pub tls: bool,
}

/// Why connecting failed. The message names the server (never the password)
/// and, where it can, what to change.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
#[non_exhaustive]
pub struct ConnectError {
    /// What went wrong, for people.
    pub message: String,
    /// The server's SQLSTATE, when the server refused.
    pub code: Option<SqlState>,
    /// True when a server did not finish within `connect_timeout`.
    pub timed_out: bool,
}

/// Connects to the first server of `spec` that accepts, within
/// `spec.connect_timeout` for each.
pub async fn connect(spec: &ConnSpec) -> Result<Connected, ConnectError> {
    let mut failures: Vec<(String, ConnectError)> = Vec::new();
    let mut order: Vec<&Endpoint> = spec.endpoints.iter().collect();
    if spec.random_order {
        use rand::seq::SliceRandom;
        order.shuffle(&mut rand::rng());
    }
    for ep in order {
        match connect_one(spec, ep).await {
            Ok(c) => return Ok(c),
            Err(e) => failures.push((ep.to_string(), e)),
        }
    }
    let last = failures.last().map(|(_, e)| e.clone());
    let message = match failures.as_slice() {
        [(ep, e)] => format!(
            "cannot connect to {} ({ep}): {}",
            spec.describe(),
            e.message
        ),
        many => {
            let each: Vec<String> = many
                .iter()
                .map(|(ep, e)| format!("{ep}: {}", e.message))
                .collect();
            format!(
                "cannot connect to {}: every host failed; {}",
                spec.describe(),
                each.join("; ")
            )
        }
    };
    Err(ConnectError {
        message,
        code: last.as_ref().and_then(|e| e.code.clone()),
        timed_out: last.is_some_and(|e| e.timed_out),
    })
}

/// Connects to the string `s` (resolved with the process environment).
pub async fn connect_str(s: &str) -> Result<Connected, ConnectError> {
    let spec = ConnSpec::parse(s).map_err(|e| ConnectError {
        message: e.to_string(),
        code: None,
        timed_out: false,
    })?;
    connect(&spec).await
}

/// How one attempt treats TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    Plain,
    /// TLS if offered, certificate unchecked.
    Prefer,
    /// TLS, certificate unchecked.
    Require,
    /// TLS, chain checked against the root certificates.
    Ca,
    /// TLS, chain and host name checked.
    Full,
}

fn attempts(spec: &ConnSpec, ep: &Endpoint) -> Vec<Attempt> {
    // As libpq: no TLS over a Unix socket.
    if matches!(ep.host, Host::Unix(_)) {
        return vec![Attempt::Plain];
    }
    match spec.sslmode {
        SslMode::Disable => vec![Attempt::Plain],
        SslMode::Allow => vec![Attempt::Plain, Attempt::Require],
        SslMode::Prefer => vec![Attempt::Prefer],
        // As libpq: with a root certificate given, `require` checks the chain.
        SslMode::Require if spec.sslrootcert.is_some() => vec![Attempt::Ca],
        SslMode::Require => vec![Attempt::Require],
        SslMode::VerifyCa => vec![Attempt::Ca],
        SslMode::VerifyFull => vec![Attempt::Full],
    }
}

async fn connect_one(spec: &ConnSpec, ep: &Endpoint) -> Result<Connected, ConnectError> {
    let mut passfile_note = None;
    let mut password_from = "none given";
    let password = match &spec.password {
        Some(p) => {
            password_from = "the connection string or PGPASSWORD";
            Some(p.clone())
        }
        None => spec.passfile_path().and_then(|path| {
            let found = passfile_lookup(&path, ep, &spec.dbname, &spec.user);
            passfile_note = found.skipped;
            if found.password.is_some() {
                password_from = "the password file";
            }
            found.password
        }),
    };
    let mut config = Config::new();
    match &ep.host {
        Host::Tcp(h) => config.host(h),
        Host::Unix(p) => config.host_path(p),
    };
    config
        .port(ep.port)
        .user(&spec.user)
        .dbname(&spec.dbname)
        .application_name(spec.application_name.as_deref().unwrap_or("capstan"))
        .connect_timeout(spec.connect_timeout);
    if let Some(p) = &password {
        config.password(p.as_bytes());
    }
    if let Some(o) = &spec.options {
        config.options(o);
    }
    if spec.read_write {
        config.target_session_attrs(TargetSessionAttrs::ReadWrite);
    }
    match spec.channel_binding.as_deref() {
        Some("disable") => config.channel_binding(ChannelBinding::Disable),
        Some("require") => config.channel_binding(ChannelBinding::Require),
        _ => config.channel_binding(ChannelBinding::Prefer),
    };
    if spec.direct_tls {
        config.ssl_negotiation(SslNegotiation::Direct);
    }
    if let Some(t) = spec.tcp_user_timeout {
        config.tcp_user_timeout(t);
    }
    let plan = attempts(spec, ep);
    let mut last = None;
    for (i, attempt) in plan.iter().enumerate() {
        match try_attempt(spec, ep, &mut config, *attempt).await {
            Ok(c) => return Ok(c),
            Err(mut e) => {
                let server_refused = e.code.is_some();
                add_hints(
                    &mut e,
                    spec,
                    ep,
                    *attempt,
                    password_from,
                    passfile_note.as_deref(),
                );
                last = Some(e);
                // `allow`: TLS only when the server refused plaintext.
                if !(server_refused && i + 1 < plan.len()) {
                    break;
                }
            }
        }
    }
    Err(last.expect("at least one attempt"))
}

async fn try_attempt(
    spec: &ConnSpec,
    ep: &Endpoint,
    config: &mut Config,
    attempt: Attempt,
) -> Result<Connected, ConnectError> {
    let fail = |message: String| ConnectError {
        message,
        code: None,
        timed_out: false,
    };
    config.ssl_mode(match attempt {
        Attempt::Plain => PgSslMode::Disable,
        Attempt::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    let tls = tls_config(spec, attempt).map_err(fail)?;
    let timeout = spec.connect_timeout;
    let used = Arc::new(AtomicBool::new(false));
    let connecting = config.connect(Tracking(MakeRustlsConnect::new(tls), used.clone()));
    let (client, mut connection) = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => {
            return Err(ConnectError {
                message: format!(
                    "no answer within {}s (connect_timeout): TCP connect, TLS, startup and authentication with {ep} must finish in that time; is it a Postgres server, and reachable?",
                    timeout.as_secs()
                ),
                code: None,
                timed_out: true,
            })
        }
        Ok(Err(e)) => {
            return Err(ConnectError {
                message: error_text(&e),
                code: e.code().cloned(),
                timed_out: false,
            })
        }
        Ok(Ok(pair)) => pair,
    };
    let server_version = connection.parameter("server_version").map(str::to_string);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notice(n)) => {
                    let _ = tx.send(n);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    Ok(Connected {
        client,
        notices: rx,
        server_version,
        endpoint: ep.clone(),
        tls: used.load(Ordering::Relaxed),
    })
}

/// The rustls connector, noting whether the server took up TLS (with
/// `prefer` it may decline).
struct Tracking(MakeRustlsConnect, Arc<AtomicBool>);

/// [`Tracking`]'s connector for one server.
struct TrackingConnect<T>(T, Arc<AtomicBool>);

impl<S> MakeTlsConnect<S> for Tracking
where
    MakeRustlsConnect: MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = TrackingConnect<<MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect>;
    type Error = <MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(TrackingConnect(
            self.0.make_tls_connect(domain)?,
            self.1.clone(),
        ))
    }
}

impl<S, T: TlsConnect<S>> TlsConnect<S> for TrackingConnect<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = T::Future;

    fn connect(self, stream: S) -> Self::Future {
        self.1.store(true, Ordering::Relaxed);
        self.0.connect(stream)
    }
}

/// The message of a client error with its causes, or the server's
/// `SEVERITY: message`.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

fn add_hints(
    e: &mut ConnectError,
    spec: &ConnSpec,
    ep: &Endpoint,
    attempt: Attempt,
    password_from: &str,
    passfile_note: Option<&str>,
) {
    let text = e.message.to_ascii_lowercase();
    let mode = spec.sslmode.as_str();
    let mut hint = String::new();
    if attempt == Attempt::Plain && text.contains("no encryption") {
        hint = format!(
            "the server accepts this connection only over TLS (a hostssl line in pg_hba.conf) and sslmode={mode} sent it in plaintext; use sslmode=require, verify-ca or verify-full"
        );
    } else if text.contains("server does not support tls")
        || text.contains("server does not support ssl")
    {
        hint = format!(
            "the server does not offer TLS (ssl = off in postgresql.conf) and sslmode={mode} requires it; turn ssl on, or use sslmode=prefer"
        );
    } else if text.contains("unknownissuer")
        || text.contains("unknown issuer")
        || text.contains("badsignature")
    {
        hint = format!(
            "sslmode={mode}: the server's certificate is not signed by a CA in {} ; give the CA that signed it as sslrootcert",
            root_cert_path(spec).map_or_else(|| "sslrootcert".into(), |p| p.display().to_string())
        );
    } else if text.contains("notvalidforname") || text.contains("not valid for name") {
        hint = format!(
            "sslmode=verify-full: the server's certificate does not name the host `{}`; connect with a host name the certificate names, or use sslmode=verify-ca to check the CA only",
            ep.host
        );
    } else if text.contains("invalid peer certificate") {
        hint = format!("sslmode={mode}: the server's certificate was refused");
    } else if text.contains("password authentication failed")
        || text.contains("password missing")
        || e.code == Some(SqlState::INVALID_PASSWORD)
    {
        hint = format!("password from: {password_from}");
        if password_from == "none given" {
            hint.push_str(
                "; the server asks for one: put it in the URL, PGPASSWORD or the password file (~/.pgpass or PGPASSFILE)",
            );
        }
        if let Some(n) = passfile_note {
            hint.push_str("; ");
            hint.push_str(n);
        }
    }
    if !hint.is_empty() {
        e.message = format!("{} ({hint})", e.message);
    }
}

fn home_file(spec: &ConnSpec, name: &str) -> Option<PathBuf> {
    spec.home.as_ref().map(|h| h.join(".postgresql").join(name))
}

fn root_cert_path(spec: &ConnSpec) -> Option<PathBuf> {
    spec.sslrootcert
        .clone()
        .or_else(|| home_file(spec, "root.crt"))
}

/// The crypto provider (ring), shared by every connection.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The rustls configuration for one attempt (unused for plaintext, but
/// tokio-postgres wants one).
fn tls_config(spec: &ConnSpec, attempt: Attempt) -> Result<ClientConfig, String> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = if spec.tls13_only {
        &[&rustls::version::TLS13]
    } else if spec.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        rustls::DEFAULT_VERSIONS
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match attempt {
        Attempt::Plain | Attempt::Prefer | Attempt::Require => {
            Arc::new(AnyCertificate(provider.clone()))
        }
        Attempt::Ca | Attempt::Full => {
            let roots = load_roots(spec)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?;
            if attempt == Attempt::Full {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    if attempt == Attempt::Plain {
        return Ok(builder.with_no_client_auth());
    }
    match client_identity(spec)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("sslcert/sslkey: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

fn load_roots(spec: &ConnSpec) -> Result<RootCertStore, String> {
    let mode = spec.sslmode.as_str();
    let Some(path) = root_cert_path(spec) else {
        return Err(format!(
            "sslmode={mode} needs the CA certificate that signed the server's: give sslrootcert=PATH"
        ));
    };
    let path = if path.as_os_str() == "system" {
        system_roots().ok_or_else(|| {
            format!(
                "sslrootcert=system: no CA bundle found (SSL_CERT_FILE, {}); give the bundle's file as sslrootcert",
                SYSTEM_BUNDLES.join(", ")
            )
        })?
    } else {
        path
    };
    if !path.is_file() {
        return Err(format!(
            "root certificate file {} does not exist; sslmode={mode} needs the CA that signed the server's certificate: give sslrootcert=PATH, or use sslmode=require to encrypt without verifying",
            path.display()
        ));
    }
    let mut roots = RootCertStore::empty();
    let iter = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
    for cert in iter {
        let cert = cert.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "sslrootcert {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// Where operating systems keep the trusted CA bundle (Debian/Ubuntu/Alpine,
/// Fedora/RHEL, openSUSE, macOS/BSD).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// `sslrootcert=system`: `SSL_CERT_FILE`, else the first bundle that exists.
fn system_roots() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// `sslcert` and `sslkey` (default `~/.postgresql/postgresql.crt` and
/// `.key`, used when the certificate exists).
fn client_identity(spec: &ConnSpec) -> Result<Option<Identity>, String> {
    let cert = match &spec.sslcert {
        Some(p) => p.clone(),
        None => match home_file(spec, "postgresql.crt").filter(|p| p.is_file()) {
            Some(p) => p,
            None => return Ok(None),
        },
    };
    let key = spec
        .sslkey
        .clone()
        .or_else(|| home_file(spec, "postgresql.key"))
        .ok_or("sslcert is given but sslkey is not")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("sslcert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "sslcert {} holds no PEM certificate",
            cert.display()
        ));
    }
    check_key_permissions(&key)?;
    let k =
        PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("sslkey {}: {e}", key.display()))?;
    Ok(Some((certs, k)))
}

/// libpq's rule: a private key the current user owns must not be readable by
/// group or others (one owned by root may be group-readable).
fn check_key_permissions(key: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(key).map_err(|e| format!("sslkey {}: {e}", key.display()))?;
        let mode = meta.mode();
        let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
        if mode & 0o777 & !allowed != 0 {
            return Err(format!(
                "private key file {} has group or world access; permissions should be u=rw (0600) or less: chmod 0600 {}",
                key.display(),
                key.display()
            ));
        }
    }
    Ok(())
}

/// `prefer`/`require`: encrypt, accept any certificate (the handshake's
/// signatures are still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root certificate; the host name is
/// not checked. (webpki checks the chain before the name, so a name error
/// means the chain passed.)
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
