//! Where a field stands in the YAML text: documents split at `---`, and the
//! line of a key path, so every error can name its file, line and field
//! (the YAML parser reports positions only for syntax errors), and
//! deserialising a document so that a type error names its field path.

use std::path::Path;

use serde::Deserialize;

use super::SpecError;

/// One YAML document of a file: its text and the line it starts on.
pub(super) struct Doc<'a> {
    pub(super) text: String,
    pub(super) first_line: usize,
    pub(super) file: &'a Path,
}

impl Doc<'_> {
    pub(super) fn err(&self, path: &[Seg<'_>], message: impl Into<String>) -> SpecError {
        SpecError {
            file: self.file.to_path_buf(),
            line: self.first_line + locate(&self.text, path),
            field: render_path(path),
            message: message.into(),
        }
    }
}

/// Splits a YAML stream at `---` lines. Returns (text, 1-based first line).
pub(super) fn split_documents(text: &str) -> Vec<(String, usize)> {
    let mut docs = Vec::new();
    let mut cur = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") || t == "..." {
            docs.push((std::mem::take(&mut cur), start));
            start = i + 2;
            continue;
        }
        // Keep line numbers: one text line per file line.
        cur.push_str(line);
        cur.push('\n');
    }
    docs.push((cur, start));
    docs.into_iter()
        .filter(|(t, _)| {
            t.lines().any(|l| {
                let l = l.trim();
                !l.is_empty() && !l.starts_with('#')
            })
        })
        .collect()
}

/// A path segment: a mapping key or a sequence index.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn render_path(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() {
        s.push_str("(document)");
    }
    s
}

/// The 0-based line (within the document) of the field at `path`: the keys
/// are found in order, each below the previous one and indented deeper; a
/// sequence index counts the items of the sequence. When a segment cannot be
/// found (flow style, missing field) the last line found is returned.
pub(super) fn locate(text: &str, path: &[Seg<'_>]) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    // The first line with content, for an empty path or a missing top key.
    let first = lines
        .iter()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .unwrap_or(0);
    let mut pos = first;
    let mut parent_indent: isize = -1;
    let mut searched_from = 0;
    for seg in path {
        match *seg {
            Seg::Key(k) => {
                let mut found = None;
                for (i, line) in lines.iter().enumerate().skip(searched_from) {
                    let (indent, rest) = key_part(line);
                    if indent as isize <= parent_indent && !rest.is_empty() && i > searched_from {
                        break;
                    }
                    let bare = rest
                        .strip_prefix(k)
                        .or_else(|| rest.strip_prefix(&format!("\"{k}\"")))
                        .or_else(|| rest.strip_prefix(&format!("'{k}'")));
                    if let Some(after) = bare {
                        if after.trim_start().starts_with(':') && indent as isize > parent_indent {
                            found = Some((i, indent));
                            break;
                        }
                    }
                }
                match found {
                    Some((i, indent)) => {
                        pos = i;
                        parent_indent = indent as isize;
                        searched_from = i + 1;
                    }
                    None => return pos,
                }
            }
            Seg::Index(n) => {
                let mut seen = 0;
                let mut dash_col = None;
                let mut found = None;
                for (i, line) in lines.iter().enumerate().skip(searched_from) {
                    let trimmed = line.trim_start();
                    if trimmed.is_empty() || trimmed.starts_with('#') {
                        continue;
                    }
                    let col = line.len() - trimmed.len();
                    if (col as isize) < parent_indent
                        || (col as isize == parent_indent && !trimmed.starts_with('-'))
                    {
                        break;
                    }
                    if trimmed.starts_with("- ") || trimmed == "-" {
                        let c = *dash_col.get_or_insert(col);
                        if col == c {
                            if seen == n {
                                found = Some((i, col));
                                break;
                            }
                            seen += 1;
                        }
                    }
                }
                match found {
                    Some((i, col)) => {
                        pos = i;
                        // Keys of the item sit right of the dash; the first
                        // one is on the dash's line.
                        parent_indent = col as isize;
                        searched_from = i;
                    }
                    None => return pos,
                }
            }
        }
    }
    pos
}

/// (indent of the key, text from the key on) for a line like `  - name: x`.
fn key_part(line: &str) -> (usize, &str) {
    let mut rest = line;
    let mut indent = 0;
    loop {
        let t = rest.trim_start_matches(' ');
        indent += rest.len() - t.len();
        if let Some(after) = t.strip_prefix("- ") {
            indent += 2;
            rest = after;
            continue;
        }
        return (indent, t);
    }
}

fn path_from_serde(p: &serde_path_to_error::Path) -> Vec<String> {
    let mut out = Vec::new();
    for seg in p.iter() {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push(format!("#{index}")),
            serde_path_to_error::Segment::Map { key } => out.push(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => out.push(variant.clone()),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

fn segs(owned: &[String]) -> Vec<Seg<'_>> {
    owned
        .iter()
        .map(|s| match s.strip_prefix('#').and_then(|n| n.parse().ok()) {
            Some(n) => Seg::Index(n),
            None => Seg::Key(s.as_str()),
        })
        .collect()
}

pub(super) fn deserialize<T: for<'de> Deserialize<'de>>(doc: &Doc<'_>) -> Result<T, SpecError> {
    let de = serde_norway::Deserializer::from_str(&doc.text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let owned = path_from_serde(e.path());
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        let mut message = inner.to_string();
        // The location is reported separately; drop serde's " at line N column M".
        if let Some(i) = message.find(" at line ") {
            message.truncate(i);
        }
        // The field is reported separately too; drop a leading "a.b[0].c: ".
        if let Some((prefix, rest)) = message.split_once(": ") {
            if !prefix.contains(' ') {
                message = rest.to_string();
            }
        }
        let segments = segs(&owned);
        SpecError {
            file: doc.file.to_path_buf(),
            line: line
                .map(|l| l + doc.first_line - 1)
                .unwrap_or_else(|| doc.first_line + locate(&doc.text, &segments)),
            field: render_path(&segments),
            message,
        }
    })
}
