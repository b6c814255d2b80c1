//! Unit tests of the connection-string parser and the password file.

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
