//! dbmate: `VERSION_name.sql` with `-- migrate:up` and `-- migrate:down`.

use super::*;

/// dbmate: `<VERSION>_name.sql` (any `.sql` whose name starts with digits),
/// with `-- migrate:up` and `-- migrate:down`, each optionally followed by
/// `transaction:false`.
pub(super) fn dbmate(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut drafts = Drafts::new();
    let mut versions: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in entries.iter().filter(|e| !e.is_dir) {
        let Some(stem) = e.name.strip_suffix(".sql") else {
            continue;
        };
        let digits_end = stem
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(stem.len());
        let (version, name) = stem.split_at(digits_end);
        if version.is_empty() {
            return Err(ImportError::BadFileName {
                path: e.path.clone(),
                tool: Tool::Dbmate,
            });
        }
        let name = name.trim_start_matches(['_', '-', '.']);
        let draft = dbmate_file(src, &e.path, version.to_string(), name)?;
        // dbmate applies files in file-name order and records the version
        // string: `10_x.sql` runs before `9_x.sql`, `01_a` and `1_b` are two versions.
        if let Some(first) = versions.insert(version.to_string(), e.path.clone()) {
            return Err(ImportError::DuplicateVersion {
                tool: Tool::Dbmate,
                version: version.to_string(),
                first,
                second: e.path.clone(),
            });
        }
        insert(Tool::Dbmate, &mut drafts, text_key(&e.name), draft, &e.path)?;
    }
    Ok(drafts)
}

/// `-- migrate:up OPTIONS` → `(true, OPTIONS)`, `-- migrate:down OPTIONS` → `(false, OPTIONS)`.
pub(super) fn dbmate_directive(line: &str) -> Option<(bool, &str)> {
    let rest = line.strip_prefix("--")?.trim_start();
    let (up, after) = if let Some(a) = rest.strip_prefix("migrate:up") {
        (true, a)
    } else {
        (false, rest.strip_prefix("migrate:down")?)
    };
    if !after.is_empty() && !after.starts_with(char::is_whitespace) {
        return None;
    }
    Some((up, after.trim()))
}

pub(super) fn dbmate_file(
    src: &Path,
    path: &Path,
    version: String,
    name: &str,
) -> Result<Draft, ImportError> {
    let text = read_text(path)?;
    let rel = relative(src, path);
    let mut up: Option<Part> = None;
    let mut down: Option<Part> = None;
    let mut pre: Vec<(usize, &str)> = Vec::new();
    let mut notes = Vec::new();
    let mut tx_off = [false, false]; // up, down
    for (i, line) in text.split('\n').enumerate() {
        let no = i + 1;
        let directive = dbmate_directive(line).filter(|(is_up, _)| {
            // Only the first up and the first down are directives, as in dbmate.
            if *is_up {
                up.is_none()
            } else {
                down.is_none()
            }
        });
        if let Some((is_up, options)) = directive {
            if !is_up && up.is_none() {
                return Err(malformed(
                    path,
                    no,
                    "`-- migrate:down` before `-- migrate:up`; dbmate requires the up block first",
                ));
            }
            for opt in options.split_whitespace() {
                match opt.split_once(':') {
                    Some(("transaction", "false")) => tx_off[usize::from(!is_up)] = true,
                    Some(("transaction", "true")) => {}
                    _ => notes.push(format!(
                        "{rel}:{no}: dbmate option `{opt}` has no capstan equivalent; dropped"
                    )),
                }
            }
            if is_up {
                let mut part = Part::new(path, rel.clone());
                for (n, l) in pre.drain(..) {
                    part.push(n, l);
                }
                up = Some(part);
            } else {
                down = Some(Part::new(path, rel.clone()));
            }
            continue;
        }
        if let Some(d) = &mut down {
            d.push(no, line);
        } else if let Some(u) = &mut up {
            u.push(no, line);
        } else {
            let t = line.trim();
            if !t.is_empty() && !t.starts_with("--") {
                return Err(malformed(
                    path,
                    no,
                    "SQL before `-- migrate:up`; dbmate refuses this file too",
                ));
            }
            pre.push((no, line));
        }
    }
    let Some(up) = up else {
        return Err(ImportError::Malformed {
            path: path.to_path_buf(),
            line: None,
            message: "no `-- migrate:up` line".into(),
        });
    };
    if tx_off[0] != tx_off[1] && down.is_some() {
        let which = if tx_off[0] { "up" } else { "down" };
        notes.push(format!("{rel}: only the {which} block is marked transaction:false; capstan has one setting per file: imported as no-transaction"));
    }
    Ok(Draft {
        original_version: version,
        name: name.to_string(),
        source: vec![path.to_path_buf()],
        up,
        down,
        no_transaction: tx_off[0] || tx_off[1],
        notes,
        warnings: Vec::new(),
    })
}
