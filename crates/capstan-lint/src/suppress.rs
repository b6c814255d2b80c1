//! Inline suppression: `-- capstan:ignore RULE[,RULE...] reason`.
//!
//! On the line(s) just before a statement it silences those rules for that statement;
//! in the file's header (before `-- capstan:up`, or at the top of a plain SQL file
//! followed by a blank line) or written `-- capstan:ignore-file`, for the whole file.
//! `-- capstan:lint-ignore` is accepted as a synonym. `all` silences every rule. An
//! ignore that silences nothing, or names an unknown rule, is itself reported.

use crate::finding::SectionKind;
use crate::rules;
use crate::source::MigrationSource;

#[derive(Debug, Clone)]
pub(crate) struct Ignore {
    pub offset: usize,
    pub rules: Vec<String>,
    pub file_wide: bool,
    pub target: Option<(SectionKind, usize)>,
    pub used: bool,
}

impl Ignore {
    pub fn covers(&self, rule: &str) -> bool {
        self.rules.iter().any(|r| r == rule || r == "all")
    }

    /// What is wrong with this ignore, once every finding has been matched.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let unknown: Vec<&String> = self
            .rules
            .iter()
            .filter(|r| r.as_str() != "all" && rules::find(r).is_none())
            .collect();
        for r in &unknown {
            out.push(format!(
                "`{r}` is not a capstan lint rule, so this ignore silences nothing"
            ));
        }
        if self.rules.is_empty() {
            out.push("this ignore names no rule (write `-- capstan:ignore RULE reason`)".into());
        } else if !self.used && unknown.len() < self.rules.len() {
            let what = if self.file_wide {
                "in this file"
            } else {
                "on the next statement"
            };
            out.push(format!(
                "this ignore of `{}` matches no finding {what}: remove it",
                self.rules.join(",")
            ));
        }
        out
    }
}

pub(crate) fn collect(text: &str, src: &MigrationSource) -> Vec<Ignore> {
    let mut out = Vec::new();
    let mut offset = 0;
    let has_header = src.header_end > 0;
    let mut only_comments_so_far = true;
    let mut pending_top: Vec<usize> = Vec::new();
    for raw in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw.len();
        let line = if line_start == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        }
        .trim();
        if line.is_empty() {
            if only_comments_so_far && !has_header {
                // A blank line after the top comments makes them file-wide.
                for &i in &pending_top {
                    let ig: &mut Ignore = &mut out[i];
                    ig.file_wide = true;
                }
                pending_top.clear();
            }
            continue;
        }
        if !line.starts_with("--") {
            only_comments_so_far = false;
            continue;
        }
        let Some(directive) = crate::source::directive_of(line) else {
            continue;
        };
        let (name, args) = directive
            .split_once(char::is_whitespace)
            .unwrap_or((directive, ""));
        let file_wide = match name.to_ascii_lowercase().as_str() {
            "ignore" | "lint-ignore" => has_header && line_start < src.header_end,
            "ignore-file" => true,
            _ => continue,
        };
        let first = args.split_whitespace().next().unwrap_or("");
        let rules: Vec<String> = first
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect();
        if only_comments_so_far && !has_header && !file_wide {
            pending_top.push(out.len());
        }
        out.push(Ignore {
            offset: line_start,
            rules,
            file_wide,
            target: None,
            used: false,
        });
    }
    out
}
