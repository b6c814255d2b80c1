//! OpenSLO v1 files: `kind: SLO` (with an inline `indicator` or an
//! `indicatorRef`) and `kind: SLI`, several documents per file, SLIs shared
//! across files. Every error names the file, the line and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod check;
mod locate;
mod model;
mod raw;

use check::{check_name, header, indicator, validate_slo};
use locate::{deserialize, split_documents, Doc, Seg};
pub use model::{
    fixed_seconds, parse_duration, Budgeting, CalendarUnit, Counted, Indicator, Objective, Op,
    Origin, Query, Slo, SpecError, TimeWindow,
};
use raw::*;

/// The SLOs (and SLIs) read from a set of files.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Validated SLOs, in file order.
    pub slos: Vec<Slo>,
    /// Names of the SLIs defined with `kind: SLI`.
    pub slis: Vec<String>,
}

struct PendingSlo<'a> {
    doc: Doc<'a>,
    raw: RawSloDoc,
}

/// Lists the YAML files of `paths` (directories are read non-recursively,
/// `.yaml` and `.yml`, sorted).
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, SpecError> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| io_err(p, e))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && matches!(
                            f.extension().and_then(|e| e.to_str()),
                            Some("yaml") | Some("yml")
                        )
                })
                .collect();
            found.sort();
            files.extend(found);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            return Err(SpecError {
                file: p.clone(),
                line: 0,
                field: "(file)".into(),
                message: "no such file or directory".into(),
            });
        }
    }
    Ok(files)
}

fn io_err(p: &Path, e: std::io::Error) -> SpecError {
    SpecError {
        file: p.to_path_buf(),
        line: 0,
        field: "(file)".into(),
        message: format!("cannot read: {e}"),
    }
}

/// Reads and validates every SLO in `files`. Returns every error found (all
/// files are read; an SLO with errors is left out of the catalog).
pub fn load_files(files: &[PathBuf]) -> Result<Catalog, Vec<SpecError>> {
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match std::fs::read_to_string(f) {
            Ok(t) => texts.push((f.clone(), t)),
            Err(e) => errors.push(io_err(f, e)),
        }
    }
    let sources: Vec<(&Path, &str)> = texts
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    match load(&sources) {
        Ok(c) if errors.is_empty() => Ok(c),
        Ok(_) => Err(errors),
        Err(mut e) => {
            errors.append(&mut e);
            Err(errors)
        }
    }
}

/// Validates SLO documents given as (file name, text) pairs.
pub fn load(sources: &[(&Path, &str)]) -> Result<Catalog, Vec<SpecError>> {
    let mut errors = Vec::new();
    let mut slis: BTreeMap<String, (RawSliSpec, PathBuf, usize)> = BTreeMap::new();
    let mut pending = Vec::new();
    for (file, text) in sources {
        for (doc_text, first_line) in split_documents(text) {
            let doc = Doc {
                text: doc_text,
                first_line,
                file,
            };
            let header: RawHeader = match header(&doc) {
                Ok(h) => h,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            match header.api_version.as_deref() {
                Some("openslo/v1") => {}
                Some(other) => {
                    errors.push(doc.err(
                        &[Seg::Key("apiVersion")],
                        format!("`{other}` is not supported; use openslo/v1"),
                    ));
                    continue;
                }
                None => {
                    errors.push(doc.err(&[], "missing field `apiVersion` (openslo/v1)"));
                    continue;
                }
            }
            match header.kind.as_deref() {
                Some("SLO") => match deserialize::<RawSloDoc>(&doc) {
                    Ok(raw) => pending.push(PendingSlo { doc, raw }),
                    Err(e) => errors.push(e),
                },
                Some("SLI") => match deserialize::<RawSliDoc>(&doc) {
                    Ok(raw) => {
                        let name = raw.metadata.name.clone();
                        if let Err(e) = check_name(&doc, &name) {
                            errors.push(e);
                        }
                        if let Some((_, f, l)) = slis.get(&name) {
                            errors.push(doc.err(
                                &[Seg::Key("metadata"), Seg::Key("name")],
                                format!("SLI `{name}` is already defined at {}:{l}", f.display()),
                            ));
                        } else {
                            // Check its metrics now, so an unused SLI is checked too.
                            if let Err(e) =
                                indicator(&doc, &[Seg::Key("spec")], &raw.spec, "(any)")
                            {
                                errors.push(e);
                            }
                            slis.insert(name, (raw.spec, file.to_path_buf(), first_line));
                        }
                    }
                    Err(e) => errors.push(e),
                },
                // Other OpenSLO kinds may share the files; capstan does not use them.
                Some(
                    "Service" | "DataSource" | "AlertPolicy" | "AlertCondition"
                    | "AlertNotificationTarget",
                ) => {}
                Some(other) => errors.push(doc.err(
                    &[Seg::Key("kind")],
                    format!("unknown kind `{other}`; use SLO or SLI (Service, DataSource and Alert* documents are ignored)"),
                )),
                None => errors.push(doc.err(&[], "missing field `kind` (SLO or SLI)")),
            }
        }
    }
    let mut catalog = Catalog {
        slis: slis.keys().cloned().collect(),
        ..Catalog::default()
    };
    let mut names: BTreeMap<String, Origin> = BTreeMap::new();
    for p in pending {
        match validate_slo(&p.doc, p.raw, &slis) {
            Ok(slo) => {
                if let Some(o) = names.get(&slo.name) {
                    errors.push(p.doc.err(
                        &[Seg::Key("metadata"), Seg::Key("name")],
                        format!(
                            "SLO `{}` is already defined at {}:{}",
                            slo.name,
                            o.file.display(),
                            o.line
                        ),
                    ));
                    continue;
                }
                names.insert(slo.name.clone(), slo.origin.clone());
                catalog.slos.push(slo);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(catalog)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::locate::locate;
    use super::*;

    #[test]
    fn locate_finds_nested_keys_and_items() {
        let text = "apiVersion: openslo/v1\nkind: SLO\nspec:\n  service: a\n  objectives:\n    - displayName: x\n      target: 2\n    - target: 3\n";
        assert_eq!(
            locate(
                text,
                &[
                    Seg::Key("spec"),
                    Seg::Key("objectives"),
                    Seg::Index(0),
                    Seg::Key("target")
                ]
            ),
            6
        );
        assert_eq!(
            locate(
                text,
                &[
                    Seg::Key("spec"),
                    Seg::Key("objectives"),
                    Seg::Index(1),
                    Seg::Key("target")
                ]
            ),
            7
        );
        assert_eq!(locate(text, &[Seg::Key("spec"), Seg::Key("service")]), 3);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok((30, 'd')));
        assert_eq!(parse_duration("1M"), Ok((1, 'M')));
        assert_eq!(parse_duration("5m"), Ok((5, 'm')));
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("1x").is_err());
        assert_eq!(fixed_seconds(5, 'm'), Some(300));
        assert_eq!(fixed_seconds(1, 'M'), None);
    }
}
