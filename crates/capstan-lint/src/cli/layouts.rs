//! Which files `capstan lint` reads, and how: capstan migration directories,
//! single files, another tool's layout converted through the import
//! converters (findings mapped back to the original lines), and the files
//! `--changed-since` leaves.

use super::{config_path, read_error, utf8_error, CliError, LintArgs};
use crate::finding::Finding;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One file to read: linted, or replayed to build the schema model.
pub(super) struct SourceFile {
    pub display: String,
    pub text: String,
    pub lint: bool,
    pub version: Option<u64>,
    /// For a migration of another tool's layout, converted to capstan's
    /// format: where each line of `text` came from, so findings name the
    /// original file and line; empty for a capstan file.
    pub origin: Vec<Option<(PathBuf, usize)>>,
    /// The original files of such a migration: (display, text), for snippets.
    pub originals: Vec<(String, String)>,
}

/// Files sharing one schema history (one migration directory), in order.
pub(super) struct Group {
    pub files: Vec<SourceFile>,
    /// The migration directory the files are in (none for standard input
    /// and loose files), which names the service they belong to.
    pub dir: Option<PathBuf>,
}

pub(super) fn read_text(path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path).map_err(|e| read_error(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let byte = e.utf8_error().valid_up_to();
        utf8_error(&path.display().to_string(), e.as_bytes(), byte)
    })
}

/// The versioned migration files of a directory, sorted by version.
pub(super) fn migration_files(dir: &Path) -> Result<Vec<(u64, PathBuf)>, CliError> {
    let entries = std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(v) = crate::source::version_of(&name) {
            if path.is_file() {
                files.push((v, path));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `dir` is a capstan directory: it has a `capstan.sum`, or one of
/// its migration files carries a `-- capstan:` directive.
fn is_capstan_dir(dir: &Path, files: &[(u64, PathBuf)]) -> Result<bool, CliError> {
    if dir.join("capstan.sum").is_file() {
        return Ok(true);
    }
    for (_, p) in files {
        let text = std::fs::read(p).map_err(|e| read_error(p, e))?;
        let text = String::from_utf8_lossy(&text);
        if text
            .lines()
            .any(|l| crate::source::directive_of(l.trim()).is_some())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The layout of a directory with no capstan migration: diesel (directories
/// holding `up.sql`), goose (`-- +goose` annotations), dbmate (`--
/// migrate:up`), sqlx (versioned `.sql` files), golang-migrate. `None` for a
/// directory with no SQL at all; an error when there is SQL in no layout
/// capstan knows, or when sqlx and golang-migrate cannot be told apart.
fn detect_layout(dir: &Path) -> Result<Option<capstan_migrate::import::Tool>, CliError> {
    use capstan_migrate::import::Tool;
    let entries = std::fs::read_dir(dir).map_err(|e| read_error(dir, e))?;
    let (mut diesel, mut goose, mut dbmate, mut paired, mut single, mut sql) =
        (false, false, false, false, false, false);
    let mut sqlx_marker = false;
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            diesel |= path.join("up.sql").is_file();
            continue;
        }
        let Some(stem) = name.strip_suffix(".sql") else {
            continue;
        };
        sql = true;
        let versioned = name
            .split_once('_')
            .is_some_and(|(v, _)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
        let head = std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).to_ascii_lowercase())
            .unwrap_or_default();
        sqlx_marker |= head.starts_with("-- no-transaction");
        if head.contains("+goose") {
            goose = true;
        } else if head.contains("migrate:up") {
            dbmate = true;
        } else if versioned && (stem.ends_with(".up") || stem.ends_with(".down")) {
            paired = true;
        } else if versioned {
            single = true;
        }
    }
    Ok(match (diesel, goose, dbmate, paired, single) {
        (true, ..) => Some(Tool::Diesel),
        (_, true, ..) => Some(Tool::Goose),
        (_, _, true, ..) => Some(Tool::Dbmate),
        // Plain versioned files read the same as capstan files, unless
        // sqlx's own marker is there to honour.
        (_, _, _, _, true) => sqlx_marker.then_some(Tool::Sqlx),
        (_, _, _, true, false) => {
            return Err(CliError::Usage(format!(
                "{}: no capstan migrations (NNNN_name.sql); its VERSION_name.up.sql/.down.sql files are sqlx's or golang-migrate's layout: pass --from sqlx or --from golang-migrate to lint them in place",
                dir.display()
            )))
        }
        _ if sql => {
            return Err(CliError::Layout(format!(
                "{}: no capstan migrations (NNNN_name.sql) and no diesel, sqlx, goose, dbmate or golang-migrate layout: nothing to lint (pass the files themselves to lint them as plain SQL)",
                dir.display()
            )))
        }
        _ => None,
    })
}

/// The migrations of `dir`, in `tool`'s layout and order, converted as
/// `capstan migrate import` converts them (up and down sections, the tool's
/// no-transaction markers, phases, suppressions), without writing anything.
fn foreign_group(tool: capstan_migrate::import::Tool, dir: &Path) -> Result<Group, CliError> {
    let converted =
        capstan_migrate::import::convert_with(tool, dir, Some(&crate::hooks::PhaseSorter))
            .map_err(|e| {
                CliError::Layout(format!(
                    "{e} (linting {} as a {tool} directory)",
                    dir.display()
                ))
            })?;
    let mut files = Vec::new();
    for (i, c) in converted.into_iter().enumerate() {
        let mut originals = Vec::new();
        for p in &c.source {
            if p.extension().is_some_and(|x| x == "sql") {
                originals.push((display(p), read_text(p)?));
            }
        }
        files.push(SourceFile {
            display: c.source.first().map(|p| display(p)).unwrap_or_default(),
            text: c.text,
            lint: true,
            version: Some(i as u64 + 1),
            origin: c.origin,
            originals,
        });
    }
    Ok(Group {
        files,
        dir: Some(dir.to_path_buf()),
    })
}

/// Puts a finding on a converted migration back on the original file and line.
pub(super) fn remap(f: &mut Finding, origin: &[Option<(PathBuf, usize)>], fallback: &str) {
    let at = |line: usize| origin.get(line.wrapping_sub(1)).cloned().flatten();
    match at(f.line) {
        Some((path, line)) => {
            let file = display(&path);
            match at(f.end_line) {
                Some((end_path, end_line)) if end_path == path => f.end_line = end_line,
                _ => {
                    f.end_line = line;
                    f.end_column = f.column;
                }
            }
            f.file = file;
            f.line = line;
        }
        None => {
            // A line the conversion wrote (its header): the migration's first file.
            f.file = fallback.to_string();
            f.line = 1;
            f.column = 1;
            f.end_line = 1;
            f.end_column = 1;
        }
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// The directory capstan.toml names, as the other commands read it: the
/// `dir` of the `--service` named (relative to capstan.toml's directory),
/// else `migrations_dir`.
fn configured_dir(args: &LintArgs) -> Result<Option<PathBuf>, CliError> {
    let Some(path) = config_path(args) else {
        return Ok(None);
    };
    let text = read_text(&path)?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        CliError::Usage(format!("{}: {}", path.display(), e.message()))
    })?;
    if let Some(name) = &args.service {
        let services = capstan_service::Services::parse(&text, &path)
            .map_err(crate::config::ConfigError::from)?;
        let service = services
            .get(name)
            .map_err(crate::config::ConfigError::from)?;
        if let Some(dir) = &service.dir {
            let base = path.parent().unwrap_or(Path::new(""));
            return Ok(Some(base.join(dir)));
        }
    }
    match table.get("migrations_dir") {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(PathBuf::from(s))),
        Some(_) => Err(CliError::Usage(format!(
            "{}: migrations_dir must be a string (a directory)",
            path.display()
        ))),
    }
}

pub(super) fn collect(args: &LintArgs) -> Result<Vec<Group>, CliError> {
    let mut paths = args.paths.clone();
    paths.extend(args.dir.clone());
    if paths.is_empty() {
        let (default, whence) = match configured_dir(args)? {
            Some(d) => (d, "named by capstan.toml"),
            None => (PathBuf::from("migrations"), "the default"),
        };
        if !default.is_dir() {
            return Err(CliError::Usage(format!(
                "no migration directory `{}` ({whence}): pass --dir DIR or the files to lint",
                default.display()
            )));
        }
        paths.push(default);
    }
    let mut groups: Vec<Group> = Vec::new();
    // Explicit files, by directory, so that earlier migrations are replayed once.
    let mut by_dir: BTreeMap<PathBuf, Vec<PathBuf>> = BTreeMap::new();
    for path in &paths {
        if path.as_os_str() == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| read_error(Path::new("<stdin>"), e))?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let byte = e.utf8_error().valid_up_to();
                utf8_error("<stdin>", e.as_bytes(), byte)
            })?;
            groups.push(Group {
                files: vec![SourceFile {
                    display: "<stdin>".into(),
                    text,
                    lint: true,
                    version: None,
                    origin: Vec::new(),
                    originals: Vec::new(),
                }],
                dir: None,
            });
        } else if path.is_dir() {
            let capstan_files = migration_files(path)?;
            let tool = match &args.from {
                Some(t) => Some(
                    t.parse::<capstan_migrate::import::Tool>()
                        .map_err(|e| CliError::Usage(e.to_string()))?,
                ),
                None if !is_capstan_dir(path, &capstan_files)? => detect_layout(path)?,
                None => None,
            };
            if let Some(tool) = tool {
                groups.push(foreign_group(tool, path)?);
                continue;
            }
            let mut files = Vec::new();
            for (v, p) in capstan_files {
                files.push(SourceFile {
                    display: display(&p),
                    text: read_text(&p)?,
                    lint: true,
                    version: Some(v),
                    origin: Vec::new(),
                    originals: Vec::new(),
                });
            }
            groups.push(Group {
                files,
                dir: Some(path.clone()),
            });
        } else if path.exists() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if crate::source::version_of(&name).is_some() {
                let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                by_dir.entry(dir).or_default().push(path.clone());
            } else {
                groups.push(Group {
                    files: vec![SourceFile {
                        display: display(path),
                        text: read_text(path)?,
                        lint: true,
                        version: None,
                        origin: Vec::new(),
                        originals: Vec::new(),
                    }],
                    dir: None,
                });
            }
        } else {
            return Err(CliError::Missing {
                path: path.display().to_string(),
            });
        }
    }
    for (dir, targets) in by_dir {
        let list_dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.clone()
        };
        let all = migration_files(&list_dir)?;
        let names: Vec<_> = targets
            .iter()
            .map(|t| t.file_name().map(|n| n.to_os_string()))
            .collect();
        let last = all
            .iter()
            .filter(|(_, p)| names.contains(&p.file_name().map(|n| n.to_os_string())))
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(0);
        let mut files = Vec::new();
        for (v, p) in all {
            let target = targets.iter().find(|t| t.file_name() == p.file_name());
            if let Some(t) = target {
                files.push(SourceFile {
                    display: display(t),
                    text: read_text(t)?,
                    lint: true,
                    version: Some(v),
                    origin: Vec::new(),
                    originals: Vec::new(),
                });
            } else if v < last {
                files.push(SourceFile {
                    display: display(&p),
                    text: read_text(&p)?,
                    lint: false,
                    version: Some(v),
                    origin: Vec::new(),
                    originals: Vec::new(),
                });
            }
        }
        groups.push(Group {
            files,
            dir: Some(list_dir),
        });
    }
    Ok(groups)
}

/// Runs git; its stdout, or a usage error with git's own message.
fn git(dir: &Path, args: &[&str]) -> Result<String, CliError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| CliError::Usage(format!("--changed-since needs git: {e}")))?;
    if !out.status.success() {
        return Err(CliError::Usage(format!(
            "--changed-since: git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Files (canonical paths) added or changed in `dir`'s repository since the
/// merge base of `git_ref` and HEAD, including uncommitted and untracked ones.
fn changed_files(
    dir: &Path,
    git_ref: &str,
) -> Result<std::collections::BTreeSet<PathBuf>, CliError> {
    let top = PathBuf::from(git(dir, &["rev-parse", "--show-toplevel"])?.trim());
    // Resolve the ref first, so a typo is named as such.
    git(
        dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{git_ref}^{{commit}}"),
        ],
    )
    .map_err(|_| CliError::Usage(format!("--changed-since {git_ref}: no such git ref")))?;
    let base = git(dir, &["merge-base", git_ref, "HEAD"])
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| git_ref.to_string());
    let mut names = git(
        dir,
        &[
            "diff",
            "--name-only",
            "--diff-filter=ACMR",
            &base,
            "--",
            ".",
        ],
    )?;
    names.push_str(&git(
        dir,
        &[
            "ls-files",
            "--others",
            "--exclude-standard",
            "--full-name",
            "--",
            ".",
        ],
    )?);
    Ok(names
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| top.join(l).canonicalize().ok())
        .collect())
}

/// `--changed-since`: lint only the changed files; keep the earlier ones of
/// each directory for replay, drop the later ones.
pub(super) fn keep_changed(groups: &mut [Group], git_ref: &str) -> Result<(), CliError> {
    let mut cache: BTreeMap<PathBuf, std::collections::BTreeSet<PathBuf>> = BTreeMap::new();
    for group in groups.iter_mut() {
        for f in group.files.iter_mut() {
            if f.display == "<stdin>" {
                continue;
            }
            let path = Path::new(&f.display);
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let dir = dir.canonicalize().map_err(|e| read_error(&dir, e))?;
            if !cache.contains_key(&dir) {
                cache.insert(dir.clone(), changed_files(&dir, git_ref)?);
            }
            let changed = path
                .canonicalize()
                .map(|p| cache[&dir].contains(&p))
                .unwrap_or(false);
            f.lint = f.lint && changed;
        }
        if let Some(last) = group.files.iter().rposition(|f| f.lint) {
            group.files.truncate(last + 1);
        } else {
            group.files.clear();
        }
    }
    Ok(())
}
