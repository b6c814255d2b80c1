//! diesel: `VERSION_name/up.sql` and `down.sql` directories.

use super::*;

/// diesel: one directory per migration, `<version>_<name>`, the version being
/// digits and dashes (`2024-01-31-120000`); diesel records it without dashes.
/// Files beside the directories are ignored, as diesel ignores them.
pub(super) fn diesel(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut drafts = Drafts::new();
    for e in entries.iter().filter(|e| e.is_dir) {
        // diesel skips an empty directory.
        if std::fs::read_dir(&e.path).is_ok_and(|mut d| d.next().is_none()) {
            continue;
        }
        let bad = || ImportError::BadFileName {
            path: e.path.clone(),
            tool: Tool::Diesel,
        };
        let (version, name) = e.name.split_once('_').ok_or_else(bad)?;
        let digits: String = version.chars().filter(|&c| c != '-').collect();
        if !all_digits(&digits) || !version.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
            return Err(bad());
        }
        let up_path = e.path.join("up.sql");
        if !up_path.is_file() {
            return Err(ImportError::Malformed {
                path: e.path.clone(),
                line: None,
                message: "no up.sql in this diesel migration directory".into(),
            });
        }
        let mut source = vec![up_path.clone()];
        let up = Part::whole(&up_path, relative(src, &up_path), &read_text(&up_path)?);
        let down_path = e.path.join("down.sql");
        let down = if down_path.is_file() {
            source.push(down_path.clone());
            Some(Part::whole(
                &down_path,
                relative(src, &down_path),
                &read_text(&down_path)?,
            ))
        } else {
            None
        };
        let mut notes = Vec::new();
        let mut no_transaction = false;
        let meta_path = e.path.join("metadata.toml");
        if meta_path.is_file() {
            source.push(meta_path.clone());
            let rel = relative(src, &meta_path);
            no_transaction =
                !diesel_metadata(&meta_path, &rel, &read_text(&meta_path)?, &mut notes)?;
        }
        if digits.bytes().all(|c| c == b'0') && name == "diesel_initial_setup" {
            notes.push("diesel's own setup migration (helper functions such as diesel_manage_updated_at); kept first because later migrations may call them".into());
        }
        let draft = Draft {
            original_version: digits.clone(),
            name: name.to_string(),
            source,
            up,
            down,
            no_transaction,
            notes,
            warnings: Vec::new(),
        };
        // diesel sorts by the version string (`MigrationVersion` is a string).
        insert(Tool::Diesel, &mut drafts, text_key(&digits), draft, &e.path)?;
    }
    Ok(drafts)
}

/// Reads `run_in_transaction` from a diesel `metadata.toml` (true when absent);
/// other keys are noted as ignored.
pub(super) fn diesel_metadata(
    path: &Path,
    rel: &str,
    text: &str,
    notes: &mut Vec<String>,
) -> Result<bool, ImportError> {
    let mut run_in_transaction = true;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            notes.push(format!(
                "{rel}: table {line} is diesel-specific metadata; ignored"
            ));
            break;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(malformed(path, i + 1, "expected `key = value`"));
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "run_in_transaction" {
            run_in_transaction = match value {
                "true" => true,
                "false" => false,
                other => {
                    return Err(malformed(
                        path,
                        i + 1,
                        format!("run_in_transaction must be true or false, found `{other}`"),
                    ))
                }
            };
        } else {
            notes.push(format!(
                "{rel}: key `{key}` has no capstan equivalent; ignored"
            ));
        }
    }
    Ok(run_in_transaction)
}
