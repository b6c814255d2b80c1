//! Editing a migration directory: `new`, `hash`, `rebase`.

use std::path::{Path, PathBuf};

#[cfg(feature = "cli")]
use serde::Serialize;

#[cfg(feature = "cli")]
use crate::driver::AppliedRow;
use crate::source::{self, MigrationSet, SourceError};
#[cfg(feature = "cli")]
use crate::source::{MigrationId, Phase};
use crate::sum;

/// Why a directory edit was refused. Nothing was changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkdirError {
    /// A file or the directory is invalid.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The sum file could not be written.
    #[error(transparent)]
    Sum(#[from] sum::SumError),
    /// A migration name capstan cannot use.
    #[error("migration name `{0}`: use letters, digits, spaces, `-` or `_`, starting with a letter (it becomes snake_case)")]
    BadName(String),
    /// A file named to `rebase` is not in the directory.
    #[error("{}: not a migration file of {}", file.display(), dir.display())]
    NotInDir {
        /// The file.
        file: PathBuf,
        /// The directory.
        dir: PathBuf,
    },
    /// A file named to `rebase` is already applied.
    #[error("{0} is already applied to the database; rebase only moves migrations that never ran (write a new migration instead)")]
    AlreadyApplied(String),
    /// Writing failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

#[cfg(feature = "cli")]
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WorkdirError + '_ {
    move |source| WorkdirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Turns `Add user email` into `add_user_email`.
#[cfg(feature = "cli")]
pub fn snake_name(name: &str) -> Result<String, WorkdirError> {
    let mut out = String::new();
    for c in name.trim().chars() {
        match c {
            'a'..='z' | '0'..='9' => out.push(c),
            'A'..='Z' => out.push(c.to_ascii_lowercase()),
            ' ' | '-' | '_' if !out.is_empty() && !out.ends_with('_') => out.push('_'),
            ' ' | '-' | '_' => {}
            _ => return Err(WorkdirError::BadName(name.to_string())),
        }
    }
    let out = out.trim_end_matches('_').to_string();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(WorkdirError::BadName(name.to_string()));
    }
    Ok(out)
}

/// The text `new` writes.
#[cfg(feature = "cli")]
pub fn template(phase: Phase, no_transaction: bool) -> String {
    let mut t = String::new();
    t.push_str(&format!("-- capstan:phase {phase}\n"));
    if no_transaction {
        t.push_str("-- capstan:no-transaction\n");
    }
    t.push_str("-- capstan:up\n\n-- capstan:down\n\n");
    t
}

/// Writes the next numbered migration from the template and adds its hash
/// to the sum, leaving every other line of the sum as it was (an edited
/// file stays unblessed until `hash` is run for it).
#[cfg(feature = "cli")]
pub fn new_migration(
    dir: &Path,
    name: &str,
    phase: Phase,
    no_transaction: bool,
) -> Result<PathBuf, WorkdirError> {
    let name = snake_name(name)?;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let files = source::read_dir_files(dir)?;
    // Only the numbers matter here: a file still being written must not stop
    // the next one from being created.
    let latest = files
        .iter()
        .filter_map(|(p, _)| source::parse_file_name(&p.file_name()?.to_string_lossy()))
        .map(|(v, _)| v)
        .max();
    let version = latest.map_or(1, |v| v + 1);
    let created = MigrationId::new(version, name).file_name();
    let path = dir.join(&created);
    let text = template(phase, no_transaction);
    std::fs::write(&path, &text).map_err(io(&path))?;
    let mut all = files;
    all.push((path.clone(), text.into_bytes()));
    if let Err(e) = sum::update(dir, &all, &[created]) {
        // Nothing changed: the file goes with the sum it could not join.
        let _ = std::fs::remove_file(&path);
        return Err(e.into());
    }
    Ok(path)
}

/// Validates every file and rewrites `capstan.sum`. Returns the number of files.
pub fn rehash(dir: &Path) -> Result<usize, WorkdirError> {
    let files = source::read_dir_files(dir)?;
    MigrationSet::from_files(&files)?;
    sum::write(dir, &files)?;
    Ok(files.len())
}

/// A file `rebase` renamed.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Renamed {
    /// Old path.
    pub from: PathBuf,
    /// New path.
    pub to: PathBuf,
}

/// What `rebase` did.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rebased {
    /// The files renamed, in order.
    pub renamed: Vec<Renamed>,
    /// Migrations the database ran (`0005_add_email`) whose numbers the
    /// directory skips now: another branch added them; its files belong here.
    pub not_in_directory: Vec<String>,
}

/// Moves `files` (not yet applied) after the newest other migration and
/// after the newest version the database recorded, renumbering them in
/// their current order, then rewrites the sum. `applied` is the database's
/// history: a file whose version the database ran as this very migration is
/// refused; a file whose version it ran as a different migration (another
/// name, another up section: two branches took the same number) is the one
/// that did not run, and moves. Numbers left free for migrations the
/// database ran but the directory lacks are reported, not an error.
#[cfg(feature = "cli")]
pub fn rebase(
    dir: &Path,
    files: &[PathBuf],
    applied: &[AppliedRow],
) -> Result<Rebased, WorkdirError> {
    let all = source::read_dir_files(dir)?;
    let mut moving = Vec::new();
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
        let found = all
            .iter()
            .find(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()) == name);
        let Some((path, bytes)) = found else {
            return Err(WorkdirError::NotInDir {
                file: f.clone(),
                dir: dir.to_path_buf(),
            });
        };
        let m = source::parse_migration(path, bytes)?;
        if applied.iter().any(|r| {
            r.version == m.version
                && !matches!(
                    crate::migrator::classify(&m, r),
                    crate::migrator::State::Collision
                )
        }) {
            return Err(WorkdirError::AlreadyApplied(m.label()));
        }
        if !moving.iter().any(|(p, _): &(PathBuf, _)| p == path) {
            moving.push((path.clone(), m));
        }
    }
    let others: Vec<(PathBuf, Vec<u8>)> = all
        .iter()
        .filter(|(p, _)| !moving.iter().any(|(q, _)| q == p))
        .cloned()
        .collect();
    let base: Vec<source::Migration> = others
        .iter()
        .map(|(p, b)| source::parse_migration(p, b))
        .collect::<Result<_, _>>()?;
    moving.sort_by(|a, b| a.1.version.cmp(&b.1.version).then(a.0.cmp(&b.0)));
    let newest = base
        .iter()
        .map(|m| m.version)
        .chain(applied.iter().map(|r| r.version))
        .max();
    let first = newest.map_or(1, |v| v + 1);
    let mut renamed = Vec::new();
    for (next, (path, m)) in (first..).zip(&moving) {
        let to = dir.join(MigrationId::new(next, m.name.clone()).file_name());
        if &to != path {
            renamed.push(Renamed {
                from: path.clone(),
                to,
            });
        }
    }
    // Check the result before touching anything: no duplicate, and no gap
    // but for versions the database ran (their files are on another branch).
    let mut result = others.clone();
    for (path, _) in &moving {
        let new_path = renamed
            .iter()
            .find(|r| &r.from == path)
            .map_or_else(|| path.clone(), |r| r.to.clone());
        let bytes = all
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        result.push((new_path, bytes));
    }
    let not_in_directory = check_rebased(&result, applied)?;
    // Two-step rename so that swapping numbers never overwrites a file.
    let staged: Vec<(PathBuf, &Renamed)> = renamed
        .iter()
        .map(|r| (r.from.with_extension("sql.rebasing"), r))
        .collect();
    for (tmp, r) in &staged {
        std::fs::rename(&r.from, tmp).map_err(io(&r.from))?;
    }
    for (tmp, r) in &staged {
        std::fs::rename(tmp, &r.to).map_err(io(&r.to))?;
    }
    sum::write(dir, &result)?;
    Ok(Rebased {
        renamed,
        not_in_directory,
    })
}

/// Validates the directory `rebase` would leave, as [`MigrationSet`] does,
/// except that a missing version the database ran is no error: it is
/// returned (`0005_add_email`).
#[cfg(feature = "cli")]
fn check_rebased(
    files: &[(PathBuf, Vec<u8>)],
    applied: &[AppliedRow],
) -> Result<Vec<String>, WorkdirError> {
    let mut migrations: Vec<source::Migration> = files
        .iter()
        .map(|(p, b)| source::parse_migration(p, b))
        .collect::<Result<_, _>>()?;
    migrations.sort_by(|a, b| a.version.cmp(&b.version).then(a.path.cmp(&b.path)));
    let mut missing = Vec::new();
    for w in migrations.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.version == b.version {
            return Err(SourceError::DuplicateVersion {
                version: a.version,
                first: a.path.clone(),
                second: b.path.clone(),
            }
            .into());
        }
        for v in a.version + 1..b.version {
            match applied.iter().find(|r| r.version == v) {
                Some(r) => missing.push(capstan_format::label(r.version, &r.name).to_string()),
                None => {
                    return Err(SourceError::Gap {
                        missing: v,
                        before: a.path.clone(),
                        after: b.path.clone(),
                    }
                    .into())
                }
            }
        }
    }
    Ok(missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, sql: &str) {
        std::fs::write(dir.join(name), format!("-- capstan:up\n{sql}\n")).unwrap();
    }

    #[test]
    fn snake_names() {
        assert_eq!(snake_name("Add user email").unwrap(), "add_user_email");
        assert_eq!(snake_name("drop-name").unwrap(), "drop_name");
        assert!(snake_name("9lives").is_err());
        assert!(snake_name("é").is_err());
    }

    #[test]
    fn new_numbers_after_the_newest_and_writes_the_sum() {
        let dir = tempfile::tempdir().unwrap();
        let p = new_migration(dir.path(), "create users", Phase::Expand, false).unwrap();
        assert!(p.ends_with("0001_create_users.sql"));
        let p = new_migration(dir.path(), "drop name", Phase::Contract, false).unwrap();
        assert!(p.ends_with("0002_drop_name.sql"));
        assert!(std::fs::read_to_string(&p)
            .unwrap()
            .contains("phase contract"));
        let files = source::read_dir_files(dir.path()).unwrap();
        sum::verify(dir.path(), &files).unwrap();
    }

    #[test]
    fn rebase_moves_mine_after_theirs() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0001_base.sql", "CREATE TABLE a (id int);");
        write(dir.path(), "0002_theirs.sql", "CREATE TABLE b (id int);");
        write(dir.path(), "0002_mine.sql", "CREATE TABLE c (id int);");
        let renamed = rebase(dir.path(), &[PathBuf::from("0002_mine.sql")], &[])
            .unwrap()
            .renamed;
        assert_eq!(renamed.len(), 1);
        assert!(renamed[0].to.ends_with("0003_mine.sql"));
        let set = MigrationSet::from_dir(dir.path()).unwrap();
        assert_eq!(set.latest(), Some(3));
    }

    #[test]
    fn rebase_moves_the_file_that_did_not_run_past_what_ran_under_its_number() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0001_base.sql", "CREATE TABLE a (id int);");
        write(dir.path(), "0002_mine.sql", "CREATE TABLE c (id int);");
        let theirs = AppliedRow {
            version: 2,
            name: "theirs".into(),
            checksum: "x".into(),
            up_checksum: Some("y".into()),
            down_checksum: None,
            phase: crate::source::Phase::Expand,
            state: crate::driver::RowState::Applied,
            applied_at: String::new(),
            applied_by: String::new(),
            binary_version: String::new(),
            duration_ms: 0,
            no_transaction: false,
            error: None,
        };
        let done = rebase(dir.path(), &[PathBuf::from("0002_mine.sql")], &[theirs]).unwrap();
        assert!(done.renamed[0].to.ends_with("0003_mine.sql"));
        assert_eq!(done.not_in_directory, vec!["0002_theirs".to_string()]);
        assert!(dir.path().join("0003_mine.sql").exists());
    }

    #[test]
    fn rebase_refuses_an_applied_migration_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "0001_base.sql", "CREATE TABLE a (id int);");
        write(dir.path(), "0002_mine.sql", "CREATE TABLE c (id int);");
        let m = MigrationSet::from_dir_unchecked(dir.path()).unwrap();
        let mine = &m.migrations()[1];
        let row = AppliedRow {
            version: 2,
            name: mine.name.clone(),
            checksum: mine.checksum.clone(),
            up_checksum: Some(mine.up_checksum.clone()),
            down_checksum: None,
            phase: crate::source::Phase::Expand,
            state: crate::driver::RowState::Applied,
            applied_at: String::new(),
            applied_by: String::new(),
            binary_version: String::new(),
            duration_ms: 0,
            no_transaction: false,
            error: None,
        };
        let err = rebase(dir.path(), &[PathBuf::from("0002_mine.sql")], &[row]).unwrap_err();
        assert!(matches!(err, WorkdirError::AlreadyApplied(_)));
        assert!(dir.path().join("0002_mine.sql").exists());
    }
}
