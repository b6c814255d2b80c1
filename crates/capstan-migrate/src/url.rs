//! Database URLs: `postgres://…`, `sqlite://path`, and their redacted display.

use std::fmt;
use std::path::PathBuf;

/// The embedded default when no URL is given anywhere.
pub const DEFAULT_URL: &str = "sqlite://capstan.db";

/// A parsed database URL. Its `Display` never shows a password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A Postgres server.
    Postgres {
        /// The URL as given (holds the password; never print it).
        raw: String,
    },
    /// A SQLite file.
    Sqlite {
        /// The file.
        path: PathBuf,
    },
}

/// A URL that capstan cannot use. The message never holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad database URL `{shown}`: {reason}")]
pub struct UrlError {
    /// The URL with its password replaced by `***`.
    pub shown: String,
    /// What is wrong.
    pub reason: String,
}

impl DatabaseUrl {
    /// Parses `postgres://`, `postgresql://`, `sqlite://PATH`, `sqlite:PATH`.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let err = |reason: &str| UrlError {
            shown: redact(s),
            reason: reason.to_string(),
        };
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            let u = url::Url::parse(s).map_err(|e| err(&e.to_string()))?;
            if u.host_str().is_none_or(str::is_empty) && !u.query_pairs().any(|(k, _)| k == "host")
            {
                return Err(err(
                    "no host; write postgres://user:password@host:5432/dbname",
                ));
            }
            for (k, v) in u.query_pairs() {
                if k == "sslmode" && !matches!(v.as_ref(), "disable" | "prefer" | "allow") {
                    return Err(err(&format!(
                        "sslmode={v} is not supported yet; capstan connects without TLS (use sslmode=disable or prefer, or a local proxy)"
                    )));
                }
            }
            return Ok(DatabaseUrl::Postgres { raw: s.to_string() });
        }
        if let Some(rest) = s.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or("");
            if path.is_empty() {
                return Err(err(
                    "no file; write sqlite://capstan.db or sqlite:///abs/path.db",
                ));
            }
            if path == ":memory:" {
                return Err(err(
                    "an in-memory database forgets every migration when capstan exits; give a file",
                ));
            }
            return Ok(DatabaseUrl::Sqlite {
                path: PathBuf::from(path),
            });
        }
        Err(err(
            "unknown scheme; use postgres://user@host/db or sqlite://file.db",
        ))
    }

    /// True for a Postgres URL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseUrl::Postgres { .. })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Postgres { raw } => f.write_str(&redact(raw)),
            DatabaseUrl::Sqlite { path } => write!(f, "sqlite://{}", path.display()),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Replaces the password of a URL (and a `password=` parameter) with `***`.
pub fn redact(s: &str) -> String {
    let mut out = s.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let at = rest_start + at;
            if let Some(colon) = out[rest_start..at].find(':') {
                out.replace_range(rest_start + colon + 1..at, "***");
            }
        }
    }
    // password=... in a query string or key/value form
    let lower = out.to_ascii_lowercase();
    if let Some(p) = lower.find("password=") {
        let start = p + "password=".len();
        let end = out[start..]
            .find(['&', ' '])
            .map_or(out.len(), |i| start + i);
        out.replace_range(start..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let u = DatabaseUrl::parse("postgres://app:s3cr%40t@db.internal:5432/app").unwrap();
        assert_eq!(u.to_string(), "postgres://app:***@db.internal:5432/app");
        assert_eq!(
            redact("postgres://u@h/db?password=hunter2&x=1"),
            "postgres://u@h/db?password=***&x=1"
        );
        let e = DatabaseUrl::parse("postgres://app:hunter2@/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = DatabaseUrl::parse("mysql://app:hunter2@h/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("unknown scheme"));
    }

    #[test]
    fn sqlite_forms() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://capstan.db").unwrap(),
            DatabaseUrl::Sqlite {
                path: "capstan.db".into()
            }
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap(),
            DatabaseUrl::Sqlite {
                path: "/tmp/x.db".into()
            }
        );
        assert!(DatabaseUrl::parse("sqlite::memory:").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
    }
}
