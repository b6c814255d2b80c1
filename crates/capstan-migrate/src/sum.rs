//! `capstan.sum`: one hash per migration file and one over the whole directory.
//!
//! ```text
//! h1:9r7x...=
//! 0001_create_users.sql h1:Qm3...=
//! 0002_add_email.sql h1:b1Z...=
//! ```
//!
//! The first line changes whenever any file is added or edited, so two
//! branches that each add a migration conflict in git instead of merging
//! silently into a directory with two migrations numbered the same.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The sum file's name inside a migration directory.
pub const SUM_FILE: &str = "capstan.sum";

/// Why `capstan.sum` does not match the directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SumError {
    /// No sum file.
    #[error("{}: missing; run `capstan migrate hash` to create it", path.display())]
    Missing {
        /// Path of the expected sum file.
        path: PathBuf,
    },
    /// The sum file holds git conflict markers.
    #[error("{}:{line}: merge conflict markers: two branches added or changed migrations; keep both files, then run `capstan migrate rebase` on yours (it renumbers them and rewrites the sum)", path.display())]
    Conflict {
        /// The sum file.
        path: PathBuf,
        /// First marker line.
        line: usize,
    },
    /// The sum file exists but cannot be read (permissions, not UTF-8, a directory).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The sum file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A line that is not `NAME h1:HASH`.
    #[error("{}:{line}: malformed line; expected `0001_name.sql h1:HASH` (run `capstan migrate hash` to rewrite it)", path.display())]
    Malformed {
        /// The sum file.
        path: PathBuf,
        /// The line.
        line: usize,
    },
    /// The files and the sum disagree.
    #[error("{}: out of date: {}; if the change is intended, run `capstan migrate hash`", path.display(), describe(changed, added, removed))]
    Stale {
        /// The sum file.
        path: PathBuf,
        /// Files whose content changed.
        changed: Vec<String>,
        /// Files not in the sum.
        added: Vec<String>,
        /// Files in the sum but not on disk.
        removed: Vec<String>,
    },
    /// The sum file cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The sum file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

fn describe(changed: &[String], added: &[String], removed: &[String]) -> String {
    let mut parts = Vec::new();
    if !changed.is_empty() {
        parts.push(format!("changed {}", changed.join(", ")));
    }
    if !added.is_empty() {
        parts.push(format!("not in the sum {}", added.join(", ")));
    }
    if !removed.is_empty() {
        parts.push(format!("deleted {}", removed.join(", ")));
    }
    if parts.is_empty() {
        parts.push("the directory hash does not match".into());
    }
    parts.join("; ")
}

fn h1(bytes: &[u8]) -> String {
    format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
    )
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The hash of a file in the sum: over its bytes with CRLF line endings made
/// LF, so a checkout with git's autocrlf has the same sum. (A file without
/// CR hashes as its bytes, as sums written before did.)
fn file_h1(bytes: &[u8]) -> String {
    if bytes.contains(&b'\r') {
        let mut lf = Vec::with_capacity(bytes.len());
        for (i, &c) in bytes.iter().enumerate() {
            if !(c == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
                lf.push(c);
            }
        }
        h1(&lf)
    } else {
        h1(bytes)
    }
}

/// True when `recorded` is the hash of `bytes`: as [`file_h1`] computes
/// it, or over the raw bytes (a sum written from a CRLF checkout before).
fn file_matches(recorded: &str, bytes: &[u8]) -> bool {
    recorded == file_h1(bytes) || recorded == h1(bytes)
}

/// The sum text for `lines` (`NAME h1:HASH`, any order).
fn render_lines(mut lines: Vec<String>) -> String {
    lines.sort();
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    format!("{}\n{}", h1(body.as_bytes()), body)
}

/// The text of the sum file for these files (`(path, bytes)`, any order).
pub fn render(files: &[(PathBuf, Vec<u8>)]) -> String {
    render_lines(
        files
            .iter()
            .map(|(p, b)| format!("{} {}", file_name(p), file_h1(b)))
            .collect(),
    )
}

/// A sum file as read: its text (LF line endings) and its `NAME -> h1:HASH` lines.
type Recorded = (String, std::collections::BTreeMap<String, String>);

/// The sum file at `path` (none when it does not exist), refusing conflict
/// markers and malformed lines.
fn read_recorded(path: &Path) -> Result<Option<Recorded>, SumError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SumError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    // A checkout with CRLF line endings (git's autocrlf) holds the same sum.
    let text = text.replace("\r\n", "\n");
    let mut recorded = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("<<<<<<<") || line.starts_with("=======") || line.starts_with(">>>>>>>")
        {
            return Err(SumError::Conflict {
                path: path.to_path_buf(),
                line: i + 1,
            });
        }
        if i == 0 {
            if !line.starts_with("h1:") {
                return Err(SumError::Malformed {
                    path: path.to_path_buf(),
                    line: 1,
                });
            }
            continue;
        }
        match line.split_once(' ') {
            Some((name, hash)) if hash.starts_with("h1:") => {
                recorded.insert(name.to_string(), hash.to_string());
            }
            _ if line.trim().is_empty() => {}
            _ => {
                return Err(SumError::Malformed {
                    path: path.to_path_buf(),
                    line: i + 1,
                })
            }
        }
    }
    Ok(Some((text, recorded)))
}

/// Checks that `capstan.sum` in `dir`, if there is one, can be read and
/// [`update`]d (readable, no conflict markers, no malformed line), so that a
/// command can refuse before it changes anything else.
#[cfg(feature = "cli")]
pub fn check_updatable(dir: &Path) -> Result<(), SumError> {
    read_recorded(&dir.join(SUM_FILE)).map(|_| ())
}

/// Rewrites `capstan.sum` in `dir` so that it records the current hash of
/// the files named in `only` (added when new), and keeps every other line
/// as it was: an edit to another file stays unblessed, and `verify` still
/// names it. `files` is the directory's content; a line for a file no
/// longer there is dropped only when `only` names it.
#[cfg(feature = "cli")]
pub fn update(dir: &Path, files: &[(PathBuf, Vec<u8>)], only: &[String]) -> Result<(), SumError> {
    let path = dir.join(SUM_FILE);
    let mut recorded = read_recorded(&path)?.map(|(_, r)| r).unwrap_or_default();
    for name in only {
        match files.iter().find(|(p, _)| &file_name(p) == name) {
            Some((_, b)) => recorded.insert(name.clone(), file_h1(b)),
            None => recorded.remove(name),
        };
    }
    let text = render_lines(
        recorded
            .into_iter()
            .map(|(n, h)| format!("{n} {h}"))
            .collect(),
    );
    std::fs::write(&path, text).map_err(|source| SumError::Write { path, source })
}

/// Writes `capstan.sum` for `files` into `dir`.
pub fn write(dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<(), SumError> {
    let path = dir.join(SUM_FILE);
    std::fs::write(&path, render(files)).map_err(|source| SumError::Write { path, source })
}

/// Checks `capstan.sum` in `dir` against `files`.
pub fn verify(dir: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<(), SumError> {
    let path = dir.join(SUM_FILE);
    let Some((text, mut recorded)) = read_recorded(&path)? else {
        if files.is_empty() {
            return Ok(());
        }
        return Err(SumError::Missing { path });
    };
    if text == render(files) {
        return Ok(());
    }
    let mut changed = Vec::new();
    let mut added = Vec::new();
    let mut lines = Vec::new();
    for (p, b) in files {
        let name = file_name(p);
        match recorded.remove(&name) {
            Some(h) if file_matches(&h, b) => lines.push(format!("{name} {h}")),
            Some(_) => changed.push(name),
            None => added.push(name),
        }
    }
    let removed: Vec<String> = recorded.into_keys().collect();
    // Every file matches its line (one hashed over CRLF bytes by an older
    // capstan): the sum holds, if its first line is the hash of its lines.
    if changed.is_empty() && added.is_empty() && removed.is_empty() && text == render_lines(lines) {
        return Ok(());
    }
    Err(SumError::Stale {
        path,
        changed,
        added,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<(PathBuf, Vec<u8>)> {
        vec![
            (
                PathBuf::from("m/0001_a.sql"),
                b"-- capstan:up\nSELECT 1;".to_vec(),
            ),
            (
                PathBuf::from("m/0002_b.sql"),
                b"-- capstan:up\nSELECT 2;".to_vec(),
            ),
        ]
    }

    #[test]
    fn a_crlf_sum_is_the_same_sum_and_an_unreadable_one_is_not_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let f = files();
        let path = dir.path().join(SUM_FILE);
        std::fs::write(&path, render(&f).replace('\n', "\r\n")).unwrap();
        verify(dir.path(), &f).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let err = verify(dir.path(), &f).unwrap_err().to_string();
        assert!(err.starts_with("cannot read "), "{err}");
        assert!(!err.contains("malformed"), "{err}");
        std::fs::remove_dir(&path).unwrap();
        std::fs::write(&path, b"\xff\xfe").unwrap();
        let err = verify(dir.path(), &f).unwrap_err().to_string();
        assert!(
            err.contains("cannot read") && err.contains("UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn a_crlf_checkout_of_the_files_matches_and_update_blesses_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = files();
        write(dir.path(), &f).unwrap();
        let crlf: Vec<_> = f
            .iter()
            .map(|(p, b)| {
                (
                    p.clone(),
                    String::from_utf8_lossy(b)
                        .replace('\n', "\r\n")
                        .into_bytes(),
                )
            })
            .collect();
        verify(dir.path(), &crlf).unwrap();
        // A sum written by an older capstan from the CRLF bytes still holds.
        let old: String = {
            let mut lines: Vec<String> = crlf
                .iter()
                .map(|(p, b)| format!("{} {}", file_name(p), h1(b)))
                .collect();
            lines.sort();
            render_lines(lines)
        };
        std::fs::write(dir.path().join(SUM_FILE), old).unwrap();
        verify(dir.path(), &crlf).unwrap();

        write(dir.path(), &f).unwrap();
        f[0].1 = b"-- capstan:up\nSELECT 10;".to_vec();
        f.push((
            PathBuf::from("m/0003_c.sql"),
            b"-- capstan:up\nSELECT 3;".to_vec(),
        ));
        update(dir.path(), &f, &["0003_c.sql".to_string()]).unwrap();
        match verify(dir.path(), &f).unwrap_err() {
            SumError::Stale {
                changed,
                added,
                removed,
                ..
            } => {
                assert_eq!(changed, vec!["0001_a.sql".to_string()]);
                assert!(added.is_empty() && removed.is_empty());
            }
            e => panic!("{e}"),
        }
        update(dir.path(), &f, &["0001_a.sql".to_string()]).unwrap();
        verify(dir.path(), &f).unwrap();
    }

    #[test]
    fn round_trips_and_names_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = files();
        write(dir.path(), &f).unwrap();
        verify(dir.path(), &f).unwrap();
        f[1].1 = b"-- capstan:up\nSELECT 3;".to_vec();
        f.push((PathBuf::from("m/0003_c.sql"), b"x".to_vec()));
        let err = verify(dir.path(), &f).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("changed 0002_b.sql"), "{msg}");
        assert!(msg.contains("not in the sum 0003_c.sql"), "{msg}");
    }

    #[test]
    fn missing_and_conflicted_sums_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            verify(dir.path(), &files()),
            Err(SumError::Missing { .. })
        ));
        std::fs::write(
            dir.path().join(SUM_FILE),
            "<<<<<<< HEAD\nh1:x\n=======\nh1:y\n>>>>>>> b\n",
        )
        .unwrap();
        assert!(matches!(
            verify(dir.path(), &files()),
            Err(SumError::Conflict { line: 1, .. })
        ));
    }

    #[test]
    fn two_branches_adding_the_same_version_touch_the_same_lines() {
        let mut a = files();
        a.push((PathBuf::from("0003_from_a.sql"), b"a".to_vec()));
        let mut b = files();
        b.push((PathBuf::from("0003_from_b.sql"), b"b".to_vec()));
        let (ra, rb) = (render(&a), render(&b));
        assert_ne!(ra.lines().next(), rb.lines().next());
    }
}
