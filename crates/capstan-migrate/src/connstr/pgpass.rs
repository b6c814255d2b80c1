//! The password file (`~/.pgpass` or `PGPASSFILE`), read as libpq reads it.

use std::path::Path;

use super::{Endpoint, Host};

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
