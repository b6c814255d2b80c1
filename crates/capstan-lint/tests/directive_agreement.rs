//! The migration engine and the linter read every `-- capstan:` directive
//! form the same way: a file the engine refuses for its directives, the
//! linter reports with a `migration-format` finding on the same line, and a
//! file the engine accepts has no such finding.
#![cfg(feature = "migrate")]

use std::path::Path;

use capstan_lint::{Config, Input, Linter};
use capstan_migrate::{parse_migration, SourceError};

/// Directive lines for the file's header, valid and not.
const HEADERS: &[&str] = &[
    "",
    "-- capstan:no-transaction\n",
    "-- CAPSTAN:NO-TRANSACTION\n",
    "--capstan:no-transaction\n",
    "--   Capstan:No-Transaction\n",
    "-- capstan:no-transaction please\n",
    "-- capstan:no-transation\n",
    "-- capstan:no-transaction\n-- capstan:no-transaction\n",
    "-- capstan:phase expand\n",
    "-- capstan:phase contract\n",
    "-- CAPSTAN:PHASE CONTRACT\n",
    "-- capstan:phase Expand\n",
    "-- capstan:phase sideways\n",
    "-- capstan:phase\n",
    "-- capstan:phase contract now\n",
    "-- capstan:phase expand\n-- capstan:phase contract\n",
    "-- capstan:lock-timeout\n",
    "-- capstan:lock-timeout 2s 3s\n",
    "-- capstan:lock-timeout 2s\n-- capstan:lock-timeout 3s\n",
    "-- capstan:statement-timeout 1m\n-- capstan:statement-timeout 1m\n",
    "-- capstan:lock-timeout 2s\n-- capstan:statement-timeout 2s\n",
    "-- capstan: no-transaction\n",
    "-- capstan:\n",
    "-- capstan:frobnicate\n",
    "-- capstan:lint-ignore wrong-phase\n",
    "-- capstan:ignore all because\n",
    "-- capstan:ignore-file all\n",
    "-- capstanx:no-transaction\n",
    "-- not capstan:no-transaction\n",
    "-- a comment\n/* a block comment */\n\n",
    "CREATE TABLE early (id int);\n",
    "-- capstan:down\n",
    "-- capstan:down now\n",
];

/// Every duration spelling tried on both timeouts: accepted and refused.
const DURATIONS: &[&str] = &[
    "0",
    "2s",
    "500ms",
    "1m",
    "1min",
    "90sec",
    "1h",
    "2hours",
    "24days",
    "1500ms",
    "soon",
    "500",
    "500us",
    "1500us",
    "999999999s",
    "25days",
    "-1s",
    "2S",
    "1.5s",
    "1m30s",
    "0s",
    "0ms",
];

/// Directive lines placed inside the up section, and after the down marker.
const LATE: &[&str] = &[
    "-- capstan:phase contract\n",
    "-- capstan:no-transaction\n",
    "-- capstan:lock-timeout 2s\n",
    "-- capstan:statement-timeout 2s\n",
    "-- capstan:up\n",
    "-- capstan:down\n",
    "-- capstan:up again\n",
    "-- capstan:ignore all\n",
    "-- capstan:bogus\n",
    "-- CAPSTAN:Phase expand\n",
];

const MARKERS: &[(&str, &str)] = &[
    ("-- capstan:up\n", "-- capstan:down\n"),
    ("-- CAPSTAN:UP\n", "-- Capstan:Down\n"),
    ("-- capstan:up\n", ""),
];

/// The engine's verdict: `Ok`, or the line of its directive error. Other
/// refusals (no up section at all) are `None`: the linter lints those as plain SQL.
fn engine(text: &str) -> Option<Result<(), usize>> {
    match parse_migration(Path::new("0001_x.sql"), text.as_bytes()) {
        Ok(_) => Some(Ok(())),
        Err(SourceError::Directive { line, .. }) => Some(Err(line)),
        Err(SourceError::MissingUp { .. }) => None,
        Err(e) => panic!("{text:?}: unexpected refusal {e}"),
    }
}

/// The linter's verdict: `Ok`, or the line of its first `migration-format` finding.
fn linter(text: &str) -> Result<(), usize> {
    let mut linter = Linter::new(Config::default());
    let findings = linter.lint(Input {
        file: "0001_x.sql",
        source: text,
    });
    match findings
        .iter()
        .filter(|f| f.rule == "migration-format")
        .map(|f| f.line)
        .min()
    {
        None => Ok(()),
        Some(line) => Err(line),
    }
}

fn agree(text: &str, checked: &mut usize) {
    let Some(engine) = engine(text) else {
        return;
    };
    assert_eq!(
        engine,
        linter(text),
        "{text:?}: the engine and the linter disagree (left: engine, right: linter)"
    );
    *checked += 1;
}

#[test]
fn every_directive_form_gets_the_same_verdict_from_engine_and_linter() {
    let mut files = Vec::new();
    let mut headers: Vec<String> = HEADERS.iter().map(|h| h.to_string()).collect();
    for d in DURATIONS {
        headers.push(format!("-- capstan:lock-timeout {d}\n"));
        headers.push(format!("-- CAPSTAN:STATEMENT-TIMEOUT {d}\n"));
    }
    for header in &headers {
        for bom in ["", "\u{feff}"] {
            for (up, down) in MARKERS {
                files.push(format!("{bom}{header}{up}SELECT 1;\n{down}SELECT 2;\n"));
            }
        }
    }
    for late in LATE {
        for (up, down) in MARKERS {
            files.push(format!("{up}SELECT 1;\n{late}SELECT 2;\n{down}SELECT 3;\n"));
            if !down.is_empty() {
                files.push(format!("{up}SELECT 1;\n{down}SELECT 2;\n{late}"));
            }
        }
    }
    let mut checked = 0;
    for text in &files {
        agree(text, &mut checked);
    }
    // Nearly every file has an up marker: the comparison covered them.
    assert!(checked + 10 >= files.len(), "{checked} of {}", files.len());
    // Both accept and refuse something, so the comparison can fail.
    let verdicts: Vec<_> = files
        .iter()
        .map(String::as_str)
        .filter_map(engine)
        .collect();
    assert!(verdicts.iter().any(Result::is_ok));
    assert!(verdicts.iter().any(Result::is_err));
}
