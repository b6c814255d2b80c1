//! golang-migrate: `VERSION_name.up.sql` and `.down.sql` pairs.

use super::*;

/// golang-migrate: `<VERSION>_<title>.up.sql` and `.down.sql` (its pattern is
/// `^([0-9]+)_(.*)\.(down|up)\.(.*)$`; only SQL files can be imported).
pub(super) fn golang_migrate(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut files = Vec::new();
    for e in entries.iter().filter(|e| !e.is_dir) {
        let parsed = golang_migrate_name(&e.name);
        let is_sql = e.name.ends_with(".sql");
        let bad = || ImportError::BadFileName {
            path: e.path.clone(),
            tool: Tool::GolangMigrate,
        };
        match parsed {
            Some((version, name, kind, ext)) => {
                if ext != "sql" {
                    return Err(bad());
                }
                let version: u64 = version.parse().map_err(|_| bad())?;
                files.push(PairFile {
                    path: e.path.clone(),
                    original_version: version.to_string(),
                    name: name.to_string(),
                    kind,
                });
            }
            None if is_sql => return Err(bad()),
            None => {}
        }
    }
    let mut drafts = Drafts::new();
    for (key, (up, down)) in pair(Tool::GolangMigrate, files, ".up.sql")? {
        let up_part = Part::whole(&up.path, relative(src, &up.path), &read_text(&up.path)?);
        let mut source = vec![up.path.clone()];
        let down_part = match &down {
            Some(d) => {
                source.push(d.path.clone());
                Some(Part::whole(
                    &d.path,
                    relative(src, &d.path),
                    &read_text(&d.path)?,
                ))
            }
            None => None,
        };
        drafts.insert(
            key,
            Draft {
                original_version: up.original_version,
                name: up.name,
                source,
                up: up_part,
                down: down_part,
                no_transaction: false,
                notes: Vec::new(),
                warnings: Vec::new(),
            },
        );
    }
    Ok(drafts)
}

/// `^([0-9]+)_(.*)\.(down|up)\.(.*)$` → (version, title, kind, extension).
pub(super) fn golang_migrate_name(name: &str) -> Option<(&str, &str, Kind, &str)> {
    let (version, rest) = name.split_once('_')?;
    if !all_digits(version) {
        return None;
    }
    // `(.*)` is greedy: the direction is the last `.up.` / `.down.`.
    let up = rest.rfind(".up.").map(|i| (i, Kind::Up, 4));
    let down = rest.rfind(".down.").map(|i| (i, Kind::Down, 6));
    let (i, kind, len) = match (up, down) {
        (Some(u), Some(d)) => {
            if u.0 > d.0 {
                u
            } else {
                d
            }
        }
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => return None,
    };
    Some((version, &rest[..i], kind, &rest[i + len..]))
}
