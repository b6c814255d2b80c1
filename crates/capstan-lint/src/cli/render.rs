//! Renderers: human (rustc-like), JSON, SARIF 2.1.0 and GitHub annotations.

use crate::finding::{Finding, Severity};
use crate::rules;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{self, Write};

/// Version of the JSON output shape.
pub(crate) const JSON_VERSION: u32 = 1;

pub(crate) struct Summary {
    pub files: usize,
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    pub fail_on: Severity,
    pub failed: bool,
}

impl Summary {
    pub fn new(findings: &[Finding], files: usize, fail_on: Severity) -> Summary {
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        Summary {
            files,
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            infos: count(Severity::Info),
            fail_on,
            failed: findings.iter().any(|f| f.severity >= fail_on),
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The human format: rustc-style snippets, written here rather than with
/// `annotate-snippets`. That crate marks a finding that spans lines with `/`,
/// `|` and `|___^` gutters and closes each snippet with an empty ` |` line
/// before the notes; this format underlines the first line of the statement
/// and shows up to two more lines plain, which keeps multi-line statements
/// (the usual case in a migration) readable, and ends with the `= see:` line
/// that names the rule's `--explain` page.
pub(crate) fn human(
    out: &mut dyn Write,
    findings: &[Finding],
    texts: &BTreeMap<&str, &str>,
    summary: &Summary,
) -> io::Result<()> {
    for f in findings {
        writeln!(out, "{}[{}]: {}", f.severity, f.rule, f.message)?;
        let lines: Vec<&str> = texts
            .get(f.file.as_str())
            .map(|t| t.lines().collect())
            .unwrap_or_default();
        let last = f.end_line.max(f.line).min(f.line + 2);
        let width = last.to_string().len();
        let pad = " ".repeat(width);
        writeln!(out, "{pad}--> {}:{}:{}", f.file, f.line, f.column)?;
        if let Some(first) = lines.get(f.line - 1) {
            writeln!(out, "{pad} |")?;
            writeln!(out, "{:>width$} | {}", f.line, first)?;
            let start = f.column - 1;
            let len = first.chars().count();
            let end = if f.end_line == f.line {
                (f.end_column - 1).min(len)
            } else {
                len
            };
            let carets = end.saturating_sub(start).max(1);
            writeln!(out, "{pad} | {}{}", " ".repeat(start), "^".repeat(carets))?;
            for n in f.line + 1..=last {
                if let Some(l) = lines.get(n - 1) {
                    writeln!(out, "{:>width$} | {}", n, l)?;
                }
            }
            if f.end_line > last {
                writeln!(out, "{pad} | ...")?;
            }
        }
        if let Some(help) = &f.help {
            writeln!(out, "{pad} = help: {help}")?;
        }
        writeln!(out, "{pad} = see: capstan lint --explain {}", f.rule)?;
        writeln!(out)?;
    }
    if findings.is_empty() {
        writeln!(out, "no findings in {}", plural(summary.files, "file"))?;
    } else {
        writeln!(
            out,
            "{}, {}, {} in {}",
            plural(summary.errors, "error"),
            plural(summary.warnings, "warning"),
            plural(summary.infos, "info"),
            plural(summary.files, "file")
        )?;
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct JsonDoc<'a> {
    version: u32,
    findings: &'a [Finding],
    summary: JsonSummary,
}

#[derive(serde::Serialize)]
struct JsonSummary {
    files: usize,
    errors: usize,
    warnings: usize,
    infos: usize,
    fail_on: Severity,
    failed: bool,
}

pub(crate) fn json(out: &mut dyn Write, findings: &[Finding], summary: &Summary) -> io::Result<()> {
    let doc = JsonDoc {
        version: JSON_VERSION,
        findings,
        summary: JsonSummary {
            files: summary.files,
            errors: summary.errors,
            warnings: summary.warnings,
            infos: summary.infos,
            fail_on: summary.fail_on,
            failed: summary.failed,
        },
    };
    serde_json::to_writer(&mut *out, &doc)?;
    writeln!(out)
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

fn uri(file: &str) -> String {
    let f = file.replace('\\', "/");
    let f = f.strip_prefix("./").unwrap_or(&f).to_string();
    f.replace(' ', "%20")
}

pub(crate) fn sarif(out: &mut dyn Write, findings: &[Finding]) -> io::Result<()> {
    let base = rules_base();
    let rule_list: Vec<_> = rules::ALL
        .iter()
        .map(|r| {
            let mut rule = json!({
                "id": r.name(),
                "name": r.name(),
                "shortDescription": { "text": r.summary },
                "fullDescription": { "text": r.why },
                "help": { "text": r.help, "markdown": crate::docs::render_rule(r) },
                "defaultConfiguration": { "level": sarif_level(r.severity) },
            });
            if let Some(base) = &base {
                rule["helpUri"] = json!(format!("{base}{}.md", r.name()));
            }
            rule
        })
        .collect();
    let results: Vec<_> = findings
        .iter()
        .map(|f| {
            let index = rules::ALL.iter().position(|r| r.name() == f.rule).unwrap_or(0);
            let text = match &f.help {
                Some(h) => format!("{} (help: {h})", f.message),
                None => f.message.clone(),
            };
            json!({
                "ruleId": f.rule,
                "ruleIndex": index,
                "level": sarif_level(f.severity),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&f.file) },
                        "region": {
                            "startLine": f.line,
                            "startColumn": f.column,
                            "endLine": f.end_line.max(f.line),
                            "endColumn": if f.end_line > f.line { f.end_column } else { f.end_column.max(f.column + 1) },
                        }
                    }
                }],
            })
        })
        .collect();
    let mut driver = json!({
        "name": "capstan-lint",
        "version": env!("CARGO_PKG_VERSION"),
        "rules": rule_list,
    });
    if let Some(base) = &base {
        driver["informationUri"] = json!(format!("{base}README.md"));
    }
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": driver },
            "results": results,
        }],
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

/// Where the rule documents (`NAME.md`) are, ending in `/`:
/// `CAPSTAN_LINT_RULES_URL` when set, else `docs/rules/` of the repository in
/// the crate's Cargo metadata, on its default branch. None while that is a
/// placeholder (`example.invalid`): SARIF then carries each rule's full text
/// (`help.markdown`) and no link.
fn rules_base() -> Option<String> {
    let with_slash = |b: &str| format!("{}/", b.trim_end_matches('/'));
    if let Some(b) = std::env::var("CAPSTAN_LINT_RULES_URL")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        return Some(with_slash(b.trim()));
    }
    let repo = env!("CARGO_PKG_REPOSITORY").trim_end_matches('/');
    if repo.is_empty() || repo.contains(".invalid") {
        return None;
    }
    Some(with_slash(&format!("{repo}/blob/HEAD/docs/rules")))
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

pub(crate) fn github(
    out: &mut dyn Write,
    findings: &[Finding],
    summary: &Summary,
) -> io::Result<()> {
    for f in findings {
        let level = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "notice",
        };
        let mut message = f.message.clone();
        if let Some(h) = &f.help {
            message.push_str("\nhelp: ");
            message.push_str(h);
        }
        writeln!(
            out,
            "::{level} file={},line={},col={},endLine={},title={}::{}",
            escape_property(&f.file),
            f.line,
            f.column,
            f.end_line.max(f.line),
            escape_property(&format!("capstan lint: {}", f.rule)),
            escape_data(&message)
        )?;
    }
    writeln!(
        out,
        "capstan lint: {}, {}, {} in {}",
        plural(summary.errors, "error"),
        plural(summary.warnings, "warning"),
        plural(summary.infos, "info"),
        plural(summary.files, "file")
    )
}
