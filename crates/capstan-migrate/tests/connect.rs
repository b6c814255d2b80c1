//! Connecting like libpq, against real servers: every sslmode against a
//! cluster with `ssl = on` and a `hostssl`-only pg_hba.conf (certificates made
//! by the test), client certificates, Unix sockets, key=value strings, the
//! PG* variables, the password file, several hosts, and a server that
//! accepts TCP and never answers.

use std::path::Path;
use std::time::{Duration, Instant};

use capstan_migrate::{connect_postgres as connect, ConnSpec, ConnectError, Connected};
use capstan_testkit::cluster::{TlsCluster, PW_PASSWORD};

/// An environment with only `pairs` (and HOME in an empty directory, so the
/// machine's ~/.pgpass and ~/.postgresql never take part).
fn env_with(home: &Path, pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let mut all: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    all.push(("HOME".into(), home.display().to_string()));
    move |k| all.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

async fn try_connect(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Connected, ConnectError> {
    let spec = ConnSpec::parse_with_env(s, env).unwrap_or_else(|e| panic!("{s}: {e}"));
    connect(&spec).await
}

async fn ok(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Connected {
    try_connect(s, env)
        .await
        .unwrap_or_else(|e| panic!("{s}: expected to connect: {e}"))
}

async fn refused(s: &str, env: &dyn Fn(&str) -> Option<String>, says: &str) -> String {
    match try_connect(s, env).await {
        Ok(_) => panic!("{s}: expected a refusal saying `{says}`, but it connected"),
        Err(e) => {
            assert!(
                e.message.contains(says),
                "{s}: the error should say `{says}`:\n{}",
                e.message
            );
            e.message
        }
    }
}

/// Whether the session is encrypted, as the server sees it.
async fn server_says_ssl(c: &Connected) -> bool {
    c.client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

#[tokio::test]
async fn every_sslmode_against_a_hostssl_only_server() {
    let pg = TlsCluster::start();
    let home = tempfile::tempdir().unwrap();
    let env = env_with(home.path(), &[]);
    let ca = pg.ca.display().to_string();
    let other = pg.other_ca.display().to_string();
    let url = |host: &str, params: &str| pg.url("postgres", host, params);

    // Plaintext is refused by the server, and the error says what to do.
    refused(&url("127.0.0.1", "sslmode=disable"), &env, "only over TLS").await;
    refused(
        &url("127.0.0.1", "sslmode=disable"),
        &env,
        "sslmode=require",
    )
    .await;

    // allow: plaintext first, TLS when the server refuses it.
    let c = ok(&url("127.0.0.1", "sslmode=allow"), &env).await;
    assert!(c.tls && server_says_ssl(&c).await);
    // prefer (the default) and require encrypt without checking the certificate.
    for params in ["", "sslmode=prefer", "sslmode=require"] {
        let c = ok(&url("127.0.0.1", params), &env).await;
        assert!(c.tls && server_says_ssl(&c).await, "{params}");
    }

    // verify-full: the chain and the name (the certificate names localhost only).
    let c = ok(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &env,
    )
    .await;
    assert!(server_says_ssl(&c).await);
    refused(
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &env,
        "does not name the host `127.0.0.1`",
    )
    .await;
    refused(
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={other}"),
        ),
        &env,
        "not signed by a CA in",
    )
    .await;

    // verify-ca: the chain only, so a wrong host name passes and a wrong CA does not.
    let c = ok(
        &url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
        &env,
    )
    .await;
    assert!(server_says_ssl(&c).await);
    refused(
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={other}"),
        ),
        &env,
        "not signed by a CA in",
    )
    .await;
    // require with a root certificate checks the chain, as libpq does.
    refused(
        &url("localhost", &format!("sslmode=require&sslrootcert={other}")),
        &env,
        "not signed by a CA in",
    )
    .await;
    // The system's CAs (sslrootcert=system, verify-full by default) do not
    // know the test CA (or there is no system bundle): refused either way.
    refused(&url("localhost", "sslrootcert=system"), &env, "system").await;
    // No root certificate anywhere: verify-* says where it looked.
    refused(
        &url("localhost", "sslmode=verify-full"),
        &env,
        "root certificate file",
    )
    .await;

    // The default root certificate is ~/.postgresql/root.crt.
    std::fs::create_dir_all(home.path().join(".postgresql")).unwrap();
    std::fs::copy(&pg.ca, home.path().join(".postgresql/root.crt")).unwrap();
    ok(&url("localhost", "sslmode=verify-full"), &env).await;

    // Client certificate authentication (pg_hba `cert` for certuser).
    let cert = format!(
        "sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        pg.client_cert.display(),
        pg.client_key.display()
    );
    let c = ok(&pg.url("certuser", "localhost", &cert), &env).await;
    let who: String = c
        .client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "certuser");
    refused(
        &pg.url(
            "certuser",
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        &env,
        "certificate",
    )
    .await;
    // A private key others can read is refused, as libpq does.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let loose = home.path().join("loose.key");
        std::fs::copy(&pg.client_key, &loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        refused(
            &pg.url(
                "certuser",
                "localhost",
                &format!(
                    "sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
                    pg.client_cert.display(),
                    loose.display()
                ),
            ),
            &env,
            "chmod 0600",
        )
        .await;
    }
}

#[tokio::test]
async fn require_against_a_server_without_tls_says_so() {
    let admin = capstan_testkit::pg_admin_url();
    let home = tempfile::tempdir().unwrap();
    let env = env_with(home.path(), &[]);
    let sep = if admin.contains('?') { '&' } else { '?' };
    // prefer falls back to plaintext; require refuses, clearly.
    let c = ok(&format!("{admin}{sep}sslmode=prefer"), &env).await;
    assert!(!c.tls);
    refused(
        &format!("{admin}{sep}sslmode=require"),
        &env,
        "does not offer TLS",
    )
    .await;
}

#[tokio::test]
async fn libpq_conventions() {
    let pg = TlsCluster::start();
    let home = tempfile::tempdir().unwrap();
    let env = env_with(home.path(), &[]);
    let dir = pg.socket_dir().display().to_string();
    let port = pg.port;

    // Unix sockets: host= in the query, a percent-encoded host, key=value.
    let c = ok(
        &format!("postgres:///postgres?host={dir}&port={port}&user=postgres"),
        &env,
    )
    .await;
    assert!(!c.tls, "no TLS over a Unix socket");
    let encoded: String =
        percent_encoding::utf8_percent_encode(&dir, percent_encoding::NON_ALPHANUMERIC).to_string();
    ok(
        &format!("postgresql://postgres@{encoded}:{port}/postgres"),
        &env,
    )
    .await;
    ok(
        &format!("host={dir} port={port} user=postgres dbname='postgres'"),
        &env,
    )
    .await;

    // PG* variables fill what the string leaves out, and lose to it.
    let pgenv = env_with(
        home.path(),
        &[
            ("PGHOST", dir.clone()),
            ("PGPORT", port.to_string()),
            ("PGUSER", "postgres".into()),
            ("PGDATABASE", "postgres".into()),
        ],
    );
    ok("postgres://", &pgenv).await;
    ok("", &pgenv).await;
    refused("postgres:///nosuchdb", &pgenv, "nosuchdb").await;

    // A password with every URL-special character, raw in the URL.
    let raw = format!("postgres://pwuser:{PW_PASSWORD}@localhost:{port}/postgres?sslmode=require");
    ok(&raw, &env).await;
    // SCRAM bound to the TLS channel, TLS 1.3 only, hosts in random order.
    ok(
        &format!("{raw}&channel_binding=require&ssl_min_protocol_version=TLSv1.3&load_balance_hosts=random&host=localhost,localhost"),
        &env,
    )
    .await;
    // The same in a key=value string, quoted.
    ok(
        &format!(
            "host=localhost port={port} user=pwuser dbname=postgres sslmode=require password='{}'",
            PW_PASSWORD.replace('\\', "\\\\").replace('\'', "\\'")
        ),
        &env,
    )
    .await;
    let no_pw = pg.url("pwuser", "localhost", "sslmode=require");
    refused(&no_pw, &env, "password from: none given").await;
    let wrong = env_with(home.path(), &[("PGPASSWORD", "wrong".into())]);
    refused(&no_pw, &wrong, "password authentication failed").await;

    // The password file: PGPASSFILE, libpq's escapes, and its permission rule.
    let passfile = home.path().join("pgpass");
    let escaped = PW_PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    std::fs::write(
        &passfile,
        format!("# test\nlocalhost:{port}:*:pwuser:{escaped}\n"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let with_file = env_with(
        home.path(),
        &[("PGPASSFILE", passfile.display().to_string())],
    );
    ok(&no_pw, &with_file).await;
    // ~/.pgpass is the default.
    std::fs::copy(&passfile, home.path().join(".pgpass")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            home.path().join(".pgpass"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        ok(&no_pw, &env).await;
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
        refused(&no_pw, &with_file, "chmod 0600").await;
    }

    // Several hosts: tried in order, the first that answers wins.
    let dead = capstan_testkit::free_port();
    let c = ok(
        &format!("postgres://postgres@127.0.0.1:{dead},localhost:{port}/postgres?sslmode=require"),
        &env,
    )
    .await;
    assert_eq!(c.endpoint.port, port);
    let msg = refused(
        &format!("postgres://postgres@127.0.0.1:{dead},127.0.0.1:{port}/postgres?sslmode=disable"),
        &env,
        "every host failed",
    )
    .await;
    assert!(
        msg.contains(&format!("127.0.0.1:{dead}")) && msg.contains("only over TLS"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_fails_within_connect_timeout() {
    // Accepts TCP, reads nothing, writes nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let home = tempfile::tempdir().unwrap();
    let env = env_with(home.path(), &[]);
    for params in [
        "sslmode=disable",
        "sslmode=prefer",
        "sslmode=verify-full&sslrootcert=/nonexistent",
    ] {
        let s = format!("postgres://u:pw@127.0.0.1:{port}/db?connect_timeout=1&{params}");
        let started = Instant::now();
        let r = try_connect(&s, &env).await;
        let took = started.elapsed();
        let e = match r {
            Ok(_) => panic!("{params}: connected to a silent server"),
            Err(e) => e,
        };
        if params.contains("nonexistent") {
            // A missing root certificate is found before waiting on anything.
            assert!(e.message.contains("root certificate file"), "{}", e.message);
            continue;
        }
        assert!(e.timed_out, "{params}: {}", e.message);
        assert!(e.message.contains("connect_timeout"), "{}", e.message);
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{params}: took {took:?}"
        );
    }
    // The default bound is 10 s, not forever.
    let spec =
        ConnSpec::parse_with_env(&format!("postgres://u@127.0.0.1:{port}/db"), &env).unwrap();
    assert_eq!(spec.connect_timeout, Duration::from_secs(10));
    hold.abort();
}
