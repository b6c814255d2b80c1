//! The lexical shape of a connection string, with no error type and no
//! import: which form a string has, where a URL's `user:password@` part
//! ends, and the keys libpq knows. `connstr`'s parser and the redaction in
//! `redact.rs` both read strings through it.

/// The keys libpq knows that capstan honours.
pub(crate) const KEYS: &[&str] = &[
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
