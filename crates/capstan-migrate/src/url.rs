//! Database URLs: `postgres://…`, `sqlite://path`, and their redacted display.

use std::fmt;
use std::path::PathBuf;

pub use crate::redact::{redact, redact_text, UrlError};

/// The embedded default when no URL is given anywhere.
#[cfg(feature = "cli")]
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

impl DatabaseUrl {
    /// Parses `postgres://`/`postgresql://` URLs (several hosts, Unix-socket
    /// directories), libpq `key=value` strings (`host=… dbname=…`),
    /// `sqlite://PATH` and `sqlite:PATH`. A Postgres string is checked as
    /// [`crate::connstr::ConnSpec`] resolves it (with the `PG*` variables), so
    /// a bad `sslmode` or `connect_timeout` is an error here.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let err = |reason: &str| UrlError {
            shown: redact(s),
            reason: reason.to_string(),
        };
        if s.trim().is_empty() {
            return Err(err(
                "empty; write postgres://user:password@host:5432/dbname or sqlite://capstan.db",
            ));
        }
        if crate::connstr::is_pg_url(s) || crate::connstr::is_key_value(s) {
            let spec = crate::connstr::ConnSpec::parse(s)?;
            // Files named in the string are input: a missing one is bad
            // input now, not a connection failure later.
            for (key, file) in [
                ("sslrootcert", &spec.sslrootcert),
                ("sslcert", &spec.sslcert),
                ("sslkey", &spec.sslkey),
            ] {
                if let Some(f) = file.as_ref().filter(|f| f.as_os_str() != "system") {
                    if !f.is_file() {
                        return Err(err(&format!(
                            "{key} {} is not a readable file",
                            f.display()
                        )));
                    }
                }
            }
            // As libpq: the system's CAs vouch for any public name, so
            // only a host-name check makes them mean something.
            if spec.sslrootcert.as_deref() == Some(std::path::Path::new("system"))
                && spec.sslmode != crate::connstr::SslMode::VerifyFull
            {
                return Err(err(&format!(
                    "sslmode={} may not be used with sslrootcert=system; use sslmode=verify-full",
                    spec.sslmode.as_str()
                )));
            }
            if matches!(
                spec.sslmode,
                crate::connstr::SslMode::VerifyCa | crate::connstr::SslMode::VerifyFull
            ) && spec.sslrootcert.is_none()
                && !spec
                    .home
                    .as_ref()
                    .is_some_and(|h| h.join(".postgresql/root.crt").is_file())
            {
                return Err(err(&format!(
                    "sslmode={} checks the server's certificate against a CA: give sslrootcert=PATH (there is no ~/.postgresql/root.crt)",
                    spec.sslmode.as_str()
                )));
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
            "unknown scheme; use postgres://user@host/db, host=… dbname=…, or sqlite://file.db",
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

/// Postgres-only syntax in `sql`, at a glance (no parser): the 0-based line
/// and what it is, for the first of `CONCURRENTLY`, a `$$` body, Postgres
/// types (`jsonb`, `serial`, `timestamptz`…), `::` casts, `plpgsql`,
/// extensions, schemas, `ALTER COLUMN`, GIN/GiST indexes. `--` comments are
/// skipped.
#[cfg(feature = "cli")]
pub fn postgres_only(sql: &str) -> Option<(usize, &'static str)> {
    const MARKERS: &[(&str, &str, bool)] = &[
        (
            "CONCURRENTLY",
            "CONCURRENTLY (a Postgres index build)",
            true,
        ),
        ("$$", "a dollar-quoted ($$) body", false),
        ("JSONB", "the jsonb type", true),
        ("BIGSERIAL", "the bigserial type", true),
        ("SMALLSERIAL", "the smallserial type", true),
        ("SERIAL", "the serial type", true),
        ("TIMESTAMPTZ", "the timestamptz type", true),
        ("PLPGSQL", "plpgsql", true),
        ("CREATE EXTENSION", "CREATE EXTENSION", true),
        ("CREATE SCHEMA", "CREATE SCHEMA", true),
        ("ALTER COLUMN", "ALTER COLUMN", true),
        ("USING GIN", "a GIN index", true),
        ("USING GIST", "a GiST index", true),
        ("::", "a :: cast", false),
    ];
    for (n, line) in sql.lines().enumerate() {
        let code = line.split("--").next().unwrap_or("").to_ascii_uppercase();
        for (needle, what, word) in MARKERS {
            let mut from = 0;
            while let Some(i) = code[from..].find(needle) {
                let at = from + i;
                let end = at + needle.len();
                let boundary =
                    |c: Option<char>| !c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                if !word
                    || (boundary(code[..at].chars().next_back())
                        && boundary(code[end..].chars().next()))
                {
                    return Some((n, what));
                }
                from = end;
            }
        }
    }
    None
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
        let e = DatabaseUrl::parse("postgres://app:hunter2@h/db?sslmode=maybe").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(
            redact("postgres://app:p/a?s#s@w@db/app?x=1"),
            "postgres://app:***@db/app?x=1"
        );
        assert_eq!(
            redact("host=db password='a b\\' c' dbname=x"),
            "host=db password=*** dbname=x"
        );
        assert_eq!(
            redact("host=db PASSWORD = s3 user=u"),
            "host=db PASSWORD = *** user=u"
        );
        assert_eq!(
            redact_text("line 1: database_url = postgres://u:pw@h/d\nother"),
            "line 1: database_url = postgres://u:***@h/d\nother"
        );
        let e = DatabaseUrl::parse("mysql://app:hunter2@h/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("unknown scheme"));
    }

    #[test]
    fn system_roots_need_verify_full() {
        let e =
            DatabaseUrl::parse("postgres://u@h/d?sslmode=require&sslrootcert=system").unwrap_err();
        assert!(e.to_string().contains("use sslmode=verify-full"), "{e}");
        assert!(DatabaseUrl::parse("postgres://u@h/d?sslrootcert=system").is_ok());
    }

    #[test]
    fn postgres_only_syntax_is_seen() {
        assert_eq!(
            postgres_only("-- CONCURRENTLY in a comment\nCREATE INDEX CONCURRENTLY i ON t (a);"),
            Some((1, "CONCURRENTLY (a Postgres index build)"))
        );
        assert_eq!(
            postgres_only("CREATE TABLE t (id bigserial, doc JSONB)").map(|x| x.1),
            Some("the jsonb type")
        );
        assert_eq!(
            postgres_only("CREATE TABLE serials (x_serial int, y text)"),
            None
        );
        assert_eq!(
            postgres_only("CREATE TABLE t (id INTEGER PRIMARY KEY)"),
            None
        );
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
