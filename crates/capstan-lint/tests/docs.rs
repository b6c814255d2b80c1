//! The rule pages under `docs/rules/` are generated from the code; this test fails when
//! they drift. Regenerate with `CAPSTAN_BLESS_DOCS=1 cargo test -p capstan-lint --test docs`.

use std::path::PathBuf;

#[test]
fn generated_rule_docs_are_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules");
    let bless = std::env::var_os("CAPSTAN_BLESS_DOCS").is_some();
    let files = capstan_lint::rule_docs();
    if bless {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    let mut stale = Vec::new();
    for (name, text) in &files {
        let path = dir.join(name);
        if bless {
            std::fs::write(&path, text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.clone());
        }
    }
    let expected: Vec<&String> = files.iter().map(|(n, _)| n).collect();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") && !expected.contains(&&name) {
            stale.push(format!("{name} (no such rule)"));
        }
    }
    assert!(
        stale.is_empty(),
        "docs/rules is out of date: {stale:?}\nregenerate with: CAPSTAN_BLESS_DOCS=1 cargo test -p capstan-lint --test docs"
    );
}

#[test]
fn every_rule_is_documented_completely() {
    for r in capstan_lint::RULES {
        assert!(
            !r.summary.is_empty() && !r.why.is_empty() && !r.help.is_empty(),
            "{} lacks docs",
            r.name()
        );
        assert!(!r.bad.is_empty(), "{} has no flagged example", r.name());
        assert!(
            r.name().chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{} is not kebab-case",
            r.name()
        );
    }
}
