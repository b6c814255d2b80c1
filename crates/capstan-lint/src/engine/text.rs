//! Positions in the file: byte offsets to lines and columns, trivia, and how
//! far a finding's underline runs.

/// Maps byte offsets to 1-based line and character column.
pub(super) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }
    pub fn pos(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

/// Skips whitespace and comments from `offset`.
pub(crate) fn skip_trivia(text: &str, mut i: usize) -> usize {
    let b = text.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            return i;
        }
    }
}

/// End of what a hit inside a statement points at: a clause led by a keyword (`SET NOT
/// NULL`, `DROP COLUMN x`, `ADD CONSTRAINT ...`) runs to the end of its line (or of the
/// statement); anything else (a type, a name) is one token.
pub(super) fn clause_end(text: &str, at: usize, stmt_end: usize) -> usize {
    const LEADS: [&str; 9] = [
        "SET",
        "DROP",
        "ALTER",
        "ATTACH",
        "DETACH",
        "VALIDATE",
        "ADD",
        "RENAME",
        "CONSTRAINT",
    ];
    let rest = &text[at.min(text.len())..];
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if LEADS.iter().any(|l| l.eq_ignore_ascii_case(&word)) {
        let line_end = rest.find('\n').map_or(text.len(), |i| at + i);
        let end = line_end.min(stmt_end.max(at + word.len()));
        // Trim trailing spaces and a trailing comma.
        let trimmed = text[at..end].trim_end().trim_end_matches(',').trim_end();
        return at + trimmed.len();
    }
    token_end(text, at)
}

/// End of the token (or parenthesised type like `varchar(20)`) starting at `at`.
pub(super) fn token_end(text: &str, at: usize) -> usize {
    let mut depth = 0i32;
    for (i, c) in text[at.min(text.len())..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            ')' | ',' | ';' => return at + i,
            c if c.is_whitespace() && depth == 0 => return at + i,
            '\n' => return at + i,
            _ => {}
        }
    }
    text.len()
}

/// End of the line containing `at` (trailing whitespace excluded).
pub(super) fn line_end(text: &str, at: usize) -> usize {
    let rest = &text[at.min(text.len())..];
    let line = rest.split('\n').next().unwrap_or("");
    at + line.trim_end().len()
}
