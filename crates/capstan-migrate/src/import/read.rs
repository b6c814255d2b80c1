//! Reading the source directory: entries, texts, version keys, and the
//! parts and drafts every tool's reader produces.

use super::*;

/// A directory entry of the source, hidden entries left out.
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) path: PathBuf,
    pub(super) is_dir: bool,
}

pub(super) fn list_dir(src: &Path) -> Result<Vec<Entry>, ImportError> {
    let dir_err = |source| ImportError::Dir {
        path: src.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(src).map_err(dir_err)? {
        let e = e.map_err(dir_err)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = e.path();
        out.push(Entry {
            name,
            is_dir: path.is_dir(),
            path,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads a file as UTF-8 text (a leading byte-order mark dropped).
pub(super) fn read_text(path: &Path) -> Result<String, ImportError> {
    let meta = std::fs::metadata(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        return Err(ImportError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        ImportError::NotUtf8 {
            path: path.to_path_buf(),
            line: bytes[..offset].iter().filter(|&&c| c == b'\n').count() + 1,
            offset,
        }
    })?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// The order of a migration in its tool. sqlx, goose and golang-migrate
/// parse versions as integers: `(digits without leading zeros, their
/// count)`, so `9` sorts before `10`. diesel compares version strings and
/// dbmate file names byte by byte (`10_x.sql` before `9_x.sql`): `(0, the
/// string)`, see [`text_key`].
pub(super) type VersionKey = (usize, String);

pub(super) fn version_key(digits: &str) -> VersionKey {
    let t = digits.trim_start_matches('0');
    (t.len(), t.to_string())
}

/// The key of a tool that orders by string (diesel, dbmate).
pub(super) fn text_key(s: &str) -> VersionKey {
    (0, s.to_string())
}

pub(super) fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// A section of SQL taken from a source file, with the line in that file of
/// each of its lines (for messages).
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) path: PathBuf,
    pub(super) rel: String,
    pub(super) text: String,
    pub(super) lines: Vec<usize>,
}

impl Part {
    pub(super) fn new(path: &Path, rel: String) -> Self {
        Part {
            path: path.to_path_buf(),
            rel,
            text: String::new(),
            lines: Vec::new(),
        }
    }

    /// The whole file.
    pub(super) fn whole(path: &Path, rel: String, text: &str) -> Self {
        let mut p = Part::new(path, rel);
        for (i, line) in text.split('\n').enumerate() {
            p.push(i + 1, line);
        }
        p
    }

    /// Appends `line` (without its newline), line `no` of the file.
    pub(super) fn push(&mut self, no: usize, line: &str) {
        if !self.lines.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
        self.lines.push(no);
    }

    /// The file line of the part's 0-based line `offset`.
    pub(super) fn line(&self, offset: usize) -> usize {
        self.lines
            .get(offset)
            .or(self.lines.last())
            .copied()
            .unwrap_or(1)
    }

    /// Removes `range` from the text, keeping `lines` in step: a range that
    /// starts a line and ends after a newline removes whole lines; otherwise
    /// the lines it spans join the first.
    pub(super) fn remove(&mut self, range: Range<usize>) {
        let first = self.text[..range.start].matches('\n').count();
        let k = self.text[range.clone()].matches('\n').count();
        let whole = (range.start == 0 || self.text.as_bytes()[range.start - 1] == b'\n')
            && self.text[range.clone()].ends_with('\n');
        let (from, to) = if whole {
            (first, first + k)
        } else {
            (first + 1, first + 1 + k)
        };
        let to = to.min(self.lines.len());
        if from < to {
            self.lines.drain(from..to);
        }
        self.text.replace_range(range, "");
    }

    pub(super) fn at(&self, offset: usize) -> String {
        format!("{}:{}", self.rel, self.line(offset))
    }

    pub(super) fn statements(&self) -> Result<Vec<Statement>, ImportError> {
        split::split(&self.text, Dialect::Postgres).map_err(|e| ImportError::Malformed {
            path: self.path.clone(),
            line: Some(self.line(e.line_offset)),
            message: format!("{} is never closed", e.what),
        })
    }
}

/// One source migration, read but not yet converted.
pub(super) struct Draft {
    pub(super) original_version: String,
    pub(super) name: String,
    pub(super) source: Vec<PathBuf>,
    pub(super) up: Part,
    pub(super) down: Option<Part>,
    pub(super) no_transaction: bool,
    pub(super) notes: Vec<String>,
    pub(super) warnings: Vec<String>,
}

pub(super) type Drafts = BTreeMap<VersionKey, Draft>;

pub(super) fn relative(src: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(src).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

pub(super) fn insert(
    tool: Tool,
    drafts: &mut Drafts,
    key: VersionKey,
    draft: Draft,
    path: &Path,
) -> Result<(), ImportError> {
    if let Some(existing) = drafts.get(&key) {
        return Err(ImportError::DuplicateVersion {
            tool,
            version: draft.original_version,
            first: existing.source[0].clone(),
            second: path.to_path_buf(),
        });
    }
    drafts.insert(key, draft);
    Ok(())
}

pub(super) fn malformed(path: &Path, line: usize, message: impl Into<String>) -> ImportError {
    ImportError::Malformed {
        path: path.to_path_buf(),
        line: Some(line),
        message: message.into(),
    }
}
