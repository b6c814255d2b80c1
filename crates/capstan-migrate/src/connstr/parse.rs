//! The syntax of a connection string: a `postgres://` URL or `key=value`
//! pairs, read into raw parameters ([`Raw`]) that `ConnSpec` resolves.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

use super::lex::{userinfo_end, KEYS};
use crate::redact::UrlError;

/// Keys libpq knows that capstan refuses rather than ignore (ignoring them
/// would weaken what the user asked for), with what to do instead.
pub(super) const REFUSED: &[(&str, &str)] = &[
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
pub(super) fn env_var_of(key: &str) -> Option<&'static str> {
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

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// What a connection string says, before the environment and defaults.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) params: BTreeMap<String, String>,
}

pub(super) fn parse_url(s: &str, err: &dyn Fn(String) -> UrlError) -> Result<Raw, UrlError> {
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
pub(super) fn shown_key(k: &str) -> String {
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
pub(super) fn parse_key_value(s: &str, err: &dyn Fn(String) -> UrlError) -> Result<Raw, UrlError> {
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
