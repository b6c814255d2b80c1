//! A fast statement splitter for very large sections: finds the top-level `;`s,
//! skipping string literals (standard and `E''`), quoted identifiers, dollar-quoted
//! bodies and comments. Each piece is then parsed by the real Postgres parser, so a
//! wrong split can only surface as a reported syntax error, never as a missed one.
//! (SQL-standard `BEGIN ATOMIC` function bodies are kept whole.)

/// Splits `sql` after each top-level semicolon; pieces keep their leading trivia, and
/// a trailing piece holding only whitespace and comments is dropped.
pub(crate) fn split(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut atomic_depth = 0usize;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' => {
                let escapes =
                    i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e') && (i < 2 || !ident(b[i - 2]));
                i += 1;
                while i < b.len() {
                    if escapes && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
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
            }
            b'$' if i == 0 || !ident(b[i - 1]) => {
                // $tag$ ... $tag$ (not $1, a parameter)
                let tag_end = b[i + 1..]
                    .iter()
                    .position(|&x| !ident(x))
                    .map(|p| i + 1 + p);
                match tag_end {
                    Some(te)
                        if b[te] == b'$' && !b.get(i + 1).is_some_and(|x| x.is_ascii_digit()) =>
                    {
                        let tag = &sql[i..=te];
                        i = sql[te + 1..]
                            .find(tag)
                            .map_or(b.len(), |p| te + 1 + p + tag.len());
                    }
                    _ => i += 1,
                }
            }
            b';' if atomic_depth == 0 => {
                i += 1;
                out.push(&sql[start..i]);
                start = i;
            }
            c if c.is_ascii_alphabetic() && (i == 0 || !ident(b[i - 1])) => {
                let w_end = b[i..]
                    .iter()
                    .position(|&x| !ident(x))
                    .map_or(b.len(), |p| i + p);
                let word = &sql[i..w_end];
                let opens_atomic =
                    word.eq_ignore_ascii_case("atomic") && preceded_by_begin(&sql[start..i]);
                let opens_block = atomic_depth > 0
                    && (word.eq_ignore_ascii_case("case") || word.eq_ignore_ascii_case("begin"));
                if opens_atomic || opens_block {
                    atomic_depth += 1;
                } else if atomic_depth > 0 && word.eq_ignore_ascii_case("end") {
                    atomic_depth -= 1;
                }
                i = w_end;
            }
            _ => i += 1,
        }
    }
    let rest = &sql[start.min(sql.len())..];
    if crate::engine::skip_trivia(rest, 0) < rest.len() {
        out.push(rest);
    }
    out
}

fn preceded_by_begin(before: &str) -> bool {
    let t = before.trim_end();
    t.len() >= 5 && t[t.len() - 5..].eq_ignore_ascii_case("begin")
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits_at_top_level_semicolons_only() {
        let sql = "SELECT 'a;b', E'it\\'s;', \"we;ird\" FROM t; -- c;\n/* x; /* y; */ */ SELECT $$;$$, $f$ ; $f$, $1;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;\nSELECT 3";
        let pieces = split(sql);
        assert_eq!(pieces.len(), 4, "{pieces:#?}");
        for p in &pieces {
            assert!(pg_query::parse(p, 0).is_ok(), "{p}");
        }
    }

    #[test]
    fn agrees_with_the_parser_on_the_corpus() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let ours: Vec<&str> = split(&text).into_iter().map(str::trim).collect();
            let theirs: Vec<&str> = pg_query::split_with_parser(&text)
                .unwrap()
                .into_iter()
                .map(str::trim)
                .collect();
            let ours: Vec<&str> = ours
                .iter()
                .map(|s| s.trim_end_matches(';').trim())
                .filter(|s| !s.is_empty())
                .collect();
            let theirs: Vec<&str> = theirs
                .iter()
                .map(|s| s.trim_end_matches(';').trim())
                .collect();
            assert_eq!(ours.len(), theirs.len(), "{text}");
        }
    }
}
