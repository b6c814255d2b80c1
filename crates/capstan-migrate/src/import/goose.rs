//! goose: `VERSION_name.sql` with `-- +goose` annotations.

use super::*;

/// goose: `<VERSION>_<name>.sql` with annotations; `.go` files are Go
/// migrations (those without a version prefix, and `_test.go`, are not
/// migrations and are ignored, as goose ignores them).
pub(super) fn goose(src: &Path, entries: &[Entry]) -> Result<Drafts, ImportError> {
    let mut drafts = Drafts::new();
    for e in entries.iter().filter(|e| !e.is_dir) {
        let version = e
            .name
            .split_once('_')
            .map(|(v, _)| v)
            .filter(|v| all_digits(v));
        if e.name.ends_with(".go") {
            if version.is_some() && !e.name.ends_with("_test.go") {
                return Err(ImportError::GoMigration {
                    path: e.path.clone(),
                });
            }
            continue;
        }
        let Some(stem) = e.name.strip_suffix(".sql") else {
            continue;
        };
        let bad = || ImportError::BadFileName {
            path: e.path.clone(),
            tool: Tool::Goose,
        };
        let (version, name) = stem.split_once('_').ok_or_else(bad)?;
        if !all_digits(version) {
            return Err(bad());
        }
        let version: i64 = version.parse().map_err(|_| bad())?;
        if version < 1 {
            return Err(bad());
        }
        let draft = goose_file(src, &e.path, version.to_string(), name)?;
        insert(
            Tool::Goose,
            &mut drafts,
            version_key(&draft.original_version),
            draft,
            &e.path,
        )?;
    }
    Ok(drafts)
}

pub(super) fn goose_file(
    src: &Path,
    path: &Path,
    version: String,
    name: &str,
) -> Result<Draft, ImportError> {
    #[derive(PartialEq)]
    enum State {
        Start,
        Up,
        Down,
    }
    let text = read_text(path)?;
    let rel = relative(src, path);
    let mut up = Part::new(path, rel.clone());
    let mut down: Option<Part> = None;
    let mut state = State::Start;
    let mut block: Option<(usize, String)> = None; // StatementBegin line, block SQL
    let mut blocks: Vec<(usize, usize, String)> = Vec::new();
    let mut no_transaction = false;
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let no = i + 1;
        // goose reads every comment line that mentions `+goose` as an annotation.
        let annotation = (line.trim_start().starts_with("--") && line.contains("+goose"))
            .then(|| goose_annotation(line));
        match annotation {
            Some(Ok(a)) => {
                match a {
                    Goose::Up => {
                        if state != State::Start {
                            return Err(malformed(path, no, "a second `-- +goose Up`"));
                        }
                        state = State::Up;
                    }
                    Goose::Down => {
                        if state != State::Up {
                            return Err(malformed(
                                path,
                                no,
                                "`-- +goose Down` must follow `-- +goose Up`",
                            ));
                        }
                        if let Some((begin, _)) = &block {
                            return Err(malformed(
                                path,
                                *begin,
                                "`-- +goose StatementBegin` without `-- +goose StatementEnd`",
                            ));
                        }
                        state = State::Down;
                        down = Some(Part::new(path, rel.clone()));
                    }
                    Goose::StatementBegin => {
                        if state == State::Start {
                            return Err(malformed(
                                path,
                                no,
                                "`-- +goose StatementBegin` must follow `-- +goose Up` or `-- +goose Down`",
                            ));
                        }
                        if block.is_some() {
                            return Err(malformed(
                                path,
                                no,
                                "`-- +goose StatementBegin` inside another StatementBegin block",
                            ));
                        }
                        block = Some((no, String::new()));
                    }
                    Goose::StatementEnd => {
                        let Some((begin, sql)) = block.take() else {
                            return Err(malformed(
                                path,
                                no,
                                "`-- +goose StatementEnd` without `-- +goose StatementBegin`",
                            ));
                        };
                        blocks.push((begin, no, sql));
                    }
                    Goose::NoTransaction => no_transaction = true,
                    Goose::EnvsubOn => notes.push(format!(
                        "{rel}:{no}: goose substituted ${{VAR}} references from the environment after `-- +goose ENVSUB ON`; capstan does not, so the SQL is kept as written: replace them before running it"
                    )),
                    Goose::EnvsubOff => {}
                }
                continue;
            }
            Some(Err(why)) => warnings.push(format!(
                "{rel}:{no}: {why}; goose refuses this file, so no database ran it with goose: the line is kept as a plain comment, check that the up and down sections hold what you meant"
            )),
            None => {}
        }
        if let Some((_, sql)) = &mut block {
            sql.push_str(line);
            sql.push('\n');
        }
        match state {
            State::Start => {
                let t = line.trim();
                if !t.is_empty() && !t.starts_with("--") {
                    return Err(malformed(
                        path,
                        no,
                        "SQL before `-- +goose Up`; goose refuses this file too",
                    ));
                }
                up.push(no, line);
            }
            State::Up => up.push(no, line),
            State::Down => down
                .get_or_insert_with(|| Part::new(path, rel.clone()))
                .push(no, line),
        }
    }
    if state == State::Start {
        return Err(ImportError::Malformed {
            path: path.to_path_buf(),
            line: None,
            message: "no `-- +goose Up` annotation".into(),
        });
    }
    if let Some((begin, _)) = block {
        return Err(malformed(
            path,
            begin,
            "`-- +goose StatementBegin` without `-- +goose StatementEnd`",
        ));
    }
    for (begin, end, sql) in &blocks {
        let n = split::split(sql, Dialect::Postgres).map_or(0, |s| s.len());
        if n > 1 {
            notes.push(format!("{rel}:{begin}-{end}: goose ran this StatementBegin/StatementEnd block as one statement; capstan's splitter sees {n} statements in it, so check how it splits"));
        }
    }
    Ok(Draft {
        original_version: version,
        name: name.to_string(),
        source: vec![path.to_path_buf()],
        up,
        down,
        no_transaction,
        notes,
        warnings,
    })
}

/// A goose annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goose {
    Up,
    Down,
    StatementBegin,
    StatementEnd,
    NoTransaction,
    EnvsubOn,
    EnvsubOff,
}

/// Reads a `-- +goose …` line as goose does (`extractAnnotation`): no
/// leading whitespace, every `--` removed, one `+goose`, the rest trimmed
/// and compared without regard to case. Err: why goose refuses it.
pub(super) fn goose_annotation(line: &str) -> Result<Goose, String> {
    const KNOWN: [(&str, Goose); 7] = [
        ("Up", Goose::Up),
        ("Down", Goose::Down),
        ("StatementBegin", Goose::StatementBegin),
        ("StatementEnd", Goose::StatementEnd),
        ("NO TRANSACTION", Goose::NoTransaction),
        ("ENVSUB ON", Goose::EnvsubOn),
        ("ENVSUB OFF", Goose::EnvsubOff),
    ];
    let line = line.trim_end_matches('\r');
    if line.starts_with([' ', '\t']) {
        return Err("a goose annotation indented with whitespace".into());
    }
    let cmd = line.replace("--", "").replacen("+goose", "", 1);
    if cmd.contains("+goose") {
        return Err("two `+goose` annotations on one line".into());
    }
    let cmd = cmd.trim();
    if cmd.is_empty() {
        return Err("an empty `-- +goose` annotation".into());
    }
    KNOWN
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(cmd))
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            format!("unknown goose annotation `+goose {cmd}` (goose knows Up, Down, StatementBegin, StatementEnd, NO TRANSACTION, ENVSUB ON, ENVSUB OFF, in any case)")
        })
}
