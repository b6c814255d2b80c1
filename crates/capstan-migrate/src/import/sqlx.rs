//! sqlx: `VERSION_name.sql`, or `.up.sql`/`.down.sql` pairs.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Up only (sqlx's simple migration) or the up file of a pair.
    Up,
    /// The down file of a pair.
    Down,
}

/// A file of a tool that keeps up and down in separate files.
pub(super) struct PairFile {
    pub(super) path: PathBuf,
    pub(super) original_version: String,
    pub(super) name: String,
    pub(super) kind: Kind,
}

/// Pairs up and down files by version; a down file alone is refused.
pub(super) fn pair(
    tool: Tool,
    files: Vec<PairFile>,
    up_suffix: &'static str,
) -> Result<BTreeMap<VersionKey, (PairFile, Option<PairFile>)>, ImportError> {
    let mut ups: BTreeMap<VersionKey, PairFile> = BTreeMap::new();
    let mut downs: BTreeMap<VersionKey, PairFile> = BTreeMap::new();
    for f in files {
        let key = version_key(&f.original_version);
        let slot = if f.kind == Kind::Up {
            &mut ups
        } else {
            &mut downs
        };
        if let Some(existing) = slot.get(&key) {
            return Err(ImportError::DuplicateVersion {
                tool,
                version: f.original_version,
                first: existing.path.clone(),
                second: f.path,
            });
        }
        slot.insert(key, f);
    }
    let mut out = BTreeMap::new();
    for (key, down) in downs.iter() {
        if !ups.contains_key(key) {
            return Err(ImportError::DownWithoutUp {
                path: down.path.clone(),
                version: down.original_version.clone(),
                up_suffix,
            });
        }
    }
    for (key, up) in ups {
        let down = downs.remove(&key);
        out.insert(key, (up, down));
    }
    Ok(out)
}

/// sqlx: `<VERSION>_<DESCRIPTION>.sql`, `.up.sql`, `.down.sql`; a file whose
/// first bytes are `-- no-transaction` runs outside a transaction.
pub(super) fn sqlx(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut files = Vec::new();
    for e in entries
        .iter()
        .filter(|e| !e.is_dir && e.name.ends_with(".sql"))
    {
        let bad = || ImportError::BadFileName {
            path: e.path.clone(),
            tool: Tool::Sqlx,
        };
        let (version, rest) = e.name.split_once('_').ok_or_else(bad)?;
        if !all_digits(version) {
            return Err(bad());
        }
        let version: i64 = version.parse().map_err(|_| bad())?;
        let (name, kind) = if let Some(n) = rest.strip_suffix(".up.sql") {
            (n, Kind::Up)
        } else if let Some(n) = rest.strip_suffix(".down.sql") {
            (n, Kind::Down)
        } else {
            (rest.strip_suffix(".sql").unwrap_or(rest), Kind::Up)
        };
        files.push(PairFile {
            path: e.path.clone(),
            original_version: version.to_string(),
            name: name.to_string(),
            kind,
        });
    }
    let mut drafts = Drafts::new();
    for (key, (up, down)) in pair(Tool::Sqlx, files, ".up.sql")? {
        let mut notes = Vec::new();
        let (up_part, up_no_tx) = sqlx_part(src, &up.path, &mut notes)?;
        let mut source = vec![up.path.clone()];
        let mut no_transaction = up_no_tx;
        let down_part = match &down {
            Some(d) => {
                source.push(d.path.clone());
                let (part, down_no_tx) = sqlx_part(src, &d.path, &mut notes)?;
                if down_no_tx != up_no_tx {
                    let (marked, other) = if down_no_tx {
                        (&part.rel, &up_part.rel)
                    } else {
                        (&up_part.rel, &part.rel)
                    };
                    notes.push(format!("{marked} is marked `-- no-transaction` and {other} is not; capstan has one setting per file: imported as no-transaction"));
                }
                no_transaction |= down_no_tx;
                Some(part)
            }
            None => None,
        };
        let draft = Draft {
            original_version: up.original_version.clone(),
            name: up.name.clone(),
            source,
            up: up_part,
            down: down_part,
            no_transaction,
            notes,
            warnings: Vec::new(),
        };
        drafts.insert(key, draft);
    }
    Ok(drafts)
}

/// Reads a sqlx file; returns its SQL (without the `-- no-transaction` line)
/// and whether it had that marker.
pub(super) fn sqlx_part(
    src: &Path,
    path: &Path,
    notes: &mut Vec<String>,
) -> Result<(Part, bool), ImportError> {
    let text = read_text(path)?;
    let rel = relative(src, path);
    let no_tx = text.starts_with("-- no-transaction");
    let mut part = Part::new(path, rel.clone());
    for (i, line) in text.split('\n').enumerate() {
        if i == 0 && no_tx {
            continue;
        }
        if line.trim() == "-- no-transaction" {
            notes.push(format!("{rel}:{}: sqlx honours `-- no-transaction` only at the very start of a file, so this one was a plain comment; kept as one", i + 1));
        }
        part.push(i + 1, line);
    }
    Ok((part, no_tx))
}
