//! Turning a draft into a capstan file.

use super::*;

/// How a section uses transaction control statements.
pub(super) enum Control {
    /// None.
    None,
    /// Exactly one plain `BEGIN` first and one `COMMIT` last: byte ranges to remove.
    Wrapped {
        begin: Range<usize>,
        commit: Range<usize>,
        lines: (usize, usize),
    },
    /// Anything else: the first such statement's line offset and keyword.
    Own { offset: usize, what: String },
}

pub(super) fn finish(
    tool: Tool,
    src: &Path,
    number: u64,
    d: Draft,
) -> Result<Converted, ImportError> {
    let Draft {
        original_version,
        name,
        source,
        mut up,
        down,
        mut no_transaction,
        mut notes,
        warnings,
    } = d;

    convert_suppressions(&mut up, &mut notes);
    let up_stmts = up.statements()?;
    let mut down = match down {
        Some(mut part) => {
            convert_suppressions(&mut part, &mut notes);
            let stmts = part.statements()?;
            if stmts.is_empty() && tool == Tool::Diesel && part.text.is_empty() {
                notes.push(format!(
                    "{}: an empty file, which diesel refuses to run (\"empty migration\"); imported without a down section",
                    part.rel
                ));
                None
            } else {
                if stmts.is_empty() {
                    notes.push(format!(
                        "{}: the down section holds no statement; imported as a down section that does nothing, as {tool} runs it",
                        part.rel
                    ));
                }
                Some((part, stmts))
            }
        }
        None => None,
    };
    let mut up = (up, up_stmts);

    // Transaction control and statements that cannot run in a transaction.
    let mut sections: Vec<&mut (Part, Vec<Statement>)> = vec![&mut up];
    if let Some(d) = down.as_mut() {
        sections.push(d);
    }
    let controls: Vec<Control> = sections.iter().map(|(p, s)| control(p, s)).collect();
    let non_tx: Option<(String, &'static str)> = sections.iter().find_map(|(p, stmts)| {
        stmts.iter().find_map(|s| {
            cannot_run_in_transaction(&words(&p.text[s.range.clone()]))
                .map(|what| (p.at(s.line_offset), what))
        })
    });
    if no_transaction {
        // The source already runs the file outside a transaction: keep it as written.
    } else if let Some((i, Control::Own { offset, what })) = controls
        .iter()
        .enumerate()
        .find(|(_, c)| matches!(c, Control::Own { .. }))
    {
        no_transaction = true;
        notes.push(format!(
            "{}: the file controls its own transactions (`{what}`); imported as no-transaction so they run as written",
            sections[i].0.at(*offset)
        ));
    } else if let (Tool::GolangMigrate, Some((at, what))) = (tool, &non_tx) {
        no_transaction = true;
        notes.push(format!("golang-migrate ran this migration without a transaction; imported as no-transaction because {at}: {what} cannot run inside one"));
    } else {
        for (section, c) in sections.iter_mut().zip(&controls) {
            if let Control::Wrapped {
                begin,
                commit,
                lines,
            } = c
            {
                let part = &mut section.0;
                let at = (part.line(lines.0), part.line(lines.1));
                part.remove(commit.clone());
                part.remove(begin.clone());
                notes.push(format!(
                    "{}: removed the BEGIN (line {}) and COMMIT (line {}) around the statements: capstan runs the migration in its own transaction",
                    part.rel, at.0, at.1
                ));
            }
        }
        if tool == Tool::GolangMigrate {
            notes.push("golang-migrate ran this migration without a transaction; imported as transactional: no statement in it needs to run outside one".into());
        } else if let Some((at, what)) = &non_tx {
            notes.push(format!("{at}: {what} cannot run inside a transaction, and {tool} ran this migration in one too; mark the file `-- capstan:no-transaction` if it must run outside one"));
        }
    }

    // Render, keeping where each line came from.
    let rels: Vec<String> = source.iter().map(|p| relative(src, p)).collect();
    let mut out = Rendered::default();
    out.line(
        &format!(
            "-- imported from {tool} version {original_version}: {}",
            rels.join(", ")
        ),
        None,
    );
    if no_transaction {
        out.line("-- capstan:no-transaction", None);
    }
    out.line("-- capstan:up", None);
    let up_empty =
        up.1.is_empty() || split::split(&up.0.text, Dialect::Postgres).is_ok_and(|s| s.is_empty());
    let up_len = out.section(&up.0);
    if up_empty {
        notes.push(format!(
            "{}: the up section holds no statement; capstan needs one, so it is `SELECT 1;` (does nothing)",
            up.0.rel
        ));
        out.line("SELECT 1;", None);
    } else if up_len == 0 {
        out.line("SELECT 1;", None);
    }
    if let Some((part, _)) = &down {
        out.line("", None);
        out.line("-- capstan:down", None);
        out.section(part);
    }

    Ok(Converted {
        source,
        original_version,
        file_name: capstan_format::MigrationId::new(number, snake_name(&name)).file_name(),
        text: out.text,
        no_transaction,
        notes,
        warnings,
        phase: crate::source::Phase::Expand,
        origin: out.origin,
    })
}

/// A converted file being written, line by line, with each line's origin.
#[derive(Default)]
pub(super) struct Rendered {
    pub(super) text: String,
    pub(super) origin: Vec<Option<(PathBuf, usize)>>,
}

impl Rendered {
    pub(super) fn line(&mut self, text: &str, origin: Option<(PathBuf, usize)>) {
        self.text.push_str(text);
        self.text.push('\n');
        self.origin.push(origin);
    }

    /// Appends a section trimmed to its text ([`trim_section`]); the number of lines written.
    pub(super) fn section(&mut self, part: &Part) -> usize {
        let trimmed = trim_section(&part.text);
        if trimmed.is_empty() {
            return 0;
        }
        let start = trimmed.as_ptr() as usize - part.text.as_ptr() as usize;
        let first = part.text[..start].matches('\n').count();
        let mut n = 0;
        for (i, l) in trimmed.split('\n').enumerate() {
            self.line(l, Some((part.path.clone(), part.line(first + i))));
            n += 1;
        }
        n
    }
}
