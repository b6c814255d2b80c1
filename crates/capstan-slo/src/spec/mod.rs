//! OpenSLO v1 files: `kind: SLO` (with an inline `indicator` or an
//! `indicatorRef`) and `kind: SLI`, several documents per file, SLIs shared
//! across files. Every error names the file, the line and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use serde::Deserialize;

mod locate;
mod raw;

use locate::{deserialize, locate, split_documents, Doc, Seg};
use raw::*;

/// One problem in an SLO file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{}:{line}: {field}: {message}", file.display())]
pub struct SpecError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the field (or of the document when the field is missing).
    pub line: usize,
    /// Dotted path of the field, like `spec.objectives[0].target`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Where an SLO was defined.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// 1-based line where its document starts.
    pub line: usize,
}

/// A query against one metric source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Query {
    /// A `capstan events` expression over the event store's rollups.
    Capstan {
        /// The expression, like `status < 500`.
        expr: String,
        /// The service whose events count (the SLO's `service` unless given).
        service: String,
    },
    /// PromQL; `{{.window}}` is replaced with the range (`5m`, `30d`, ...).
    Prometheus {
        /// The query text.
        query: String,
    },
}

impl Query {
    /// The source kind, for messages: `capstan` or `prometheus`.
    pub fn kind(&self) -> &'static str {
        match self {
            Query::Capstan { .. } => "capstan",
            Query::Prometheus { .. } => "prometheus",
        }
    }
}

/// Whether the ratio's numerator counts good or bad events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Counted {
    /// Good events over total.
    Good(Query),
    /// Bad events over total.
    Bad(Query),
}

impl Counted {
    /// The numerator's query.
    pub fn query(&self) -> &Query {
        match self {
            Counted::Good(q) | Counted::Bad(q) => q,
        }
    }
}

/// Comparison of a threshold metric with an objective's `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

impl Op {
    /// Whether `x op value` holds.
    pub fn holds(self, x: f64, value: f64) -> bool {
        match self {
            Op::Lt => x < value,
            Op::Lte => x <= value,
            Op::Gt => x > value,
            Op::Gte => x >= value,
        }
    }
}

/// What the SLO measures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Indicator {
    /// Good (or bad) events over total events.
    Ratio {
        /// The numerator.
        counted: Counted,
        /// The denominator.
        total: Query,
    },
    /// One metric compared with each objective's `op` and `value`.
    Threshold {
        /// The metric.
        metric: Query,
    },
}

impl Indicator {
    /// The source kind all of the indicator's queries use.
    pub fn source_kind(&self) -> &'static str {
        match self {
            Indicator::Ratio { total, .. } => total.kind(),
            Indicator::Threshold { metric } => metric.kind(),
        }
    }
}

/// A unit of a calendar window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CalendarUnit {
    /// Days (local, so 23 or 25 hours across a DST change).
    Day,
    /// Weeks.
    Week,
    /// Months.
    Month,
    /// Quarters (three months).
    Quarter,
    /// Years.
    Year,
}

/// The SLO's time window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TimeWindow {
    /// The last `minutes` minutes, ending now.
    Rolling {
        /// Window length in minutes.
        minutes: i64,
    },
    /// Calendar periods `count` × `unit` long, the first starting at `start`
    /// (local time in `zone`); the current period is evaluated.
    Calendar {
        /// Units per period.
        count: u32,
        /// The unit.
        unit: CalendarUnit,
        /// Local start of the first period.
        #[serde(serialize_with = "ser_naive")]
        start: NaiveDateTime,
        /// IANA time zone.
        #[serde(serialize_with = "ser_tz")]
        zone: Tz,
    },
}

fn ser_naive<S: serde::Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn ser_tz<S: serde::Serializer>(t: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

/// How the budget is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Budgeting {
    /// Good events over all events in the window.
    Occurrences,
    /// Good time slices over all slices.
    Timeslices,
    /// The average of the slices' ratios.
    RatioTimeslices,
}

/// One objective of an SLO.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Objective {
    /// `displayName`, if any.
    pub display_name: Option<String>,
    /// Target ratio in [0, 1).
    pub target: f64,
    /// For `thresholdMetric`: the comparison.
    pub op: Option<Op>,
    /// For `thresholdMetric`: the threshold.
    pub value: Option<f64>,
    /// For `Timeslices`: the ratio a slice needs to be good.
    pub time_slice_target: Option<f64>,
    /// For `Timeslices` / `RatioTimeslices`: slice length in minutes.
    pub time_slice_minutes: Option<i64>,
}

/// A validated SLO.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Slo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.displayName`, if any.
    pub display_name: Option<String>,
    /// `spec.service`.
    pub service: String,
    /// `spec.description`, if any.
    pub description: Option<String>,
    /// The indicator (inline or resolved from `indicatorRef`).
    pub indicator: Indicator,
    /// The time window.
    pub window: TimeWindow,
    /// The budgeting method.
    pub budgeting: Budgeting,
    /// The objectives (at least one).
    pub objectives: Vec<Objective>,
    /// Where it was defined.
    pub origin: Origin,
}

impl Slo {
    /// Whether this is an availability SLO: a ratio over the capstan store
    /// whose good events are `status < 500`-like (no latency term). Budgets
    /// of availability SLOs are also shown as minutes of downtime.
    pub fn is_availability(&self) -> bool {
        match &self.indicator {
            Indicator::Ratio { counted, .. } => {
                let text = match counted.query() {
                    Query::Capstan { expr, .. } => expr,
                    Query::Prometheus { query } => query,
                };
                !text.contains("duration") && !text.contains("latency") && !text.contains("le=")
            }
            Indicator::Threshold { .. } => false,
        }
    }
}

// ---------------------------------------------------------------- durations

/// Parses an OpenSLO duration shorthand: a positive integer and one of
/// `s m h d w M Q Y` (`m` is minutes, `M` months).
pub fn parse_duration(s: &str) -> Result<(u32, char), String> {
    let s = s.trim();
    let unit = s
        .chars()
        .last()
        .ok_or_else(|| "empty duration".to_string())?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if !"smhdwMQY".contains(unit) {
        return Err(format!(
            "`{s}`: unknown unit `{unit}`; use s, m (minutes), h, d, w, M (months), Q or Y"
        ));
    }
    let n: u32 = digits
        .parse()
        .ok()
        .filter(|n| *n > 0 && !digits.starts_with('0') && !digits.starts_with('+'))
        .ok_or_else(|| format!("`{s}`: expected a positive whole number and a unit, like 30d"))?;
    Ok((n, unit))
}

/// Length of a fixed-length duration in seconds (`None` for M, Q, Y).
pub fn fixed_seconds(n: u32, unit: char) -> Option<i64> {
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    Some(i64::from(n) * per)
}

// ---------------------------------------------------------------- loading

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

fn header(doc: &Doc<'_>) -> Result<RawHeader, SpecError> {
    // Read only the two header keys; the rest is checked per kind.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Loose {
        api_version: Option<String>,
        kind: Option<String>,
    }
    let v: Loose = deserialize(doc)?;
    Ok(RawHeader {
        api_version: v.api_version,
        kind: v.kind,
    })
}

fn check_name(doc: &Doc<'_>, name: &str) -> Result<(), SpecError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(doc.err(
            &[Seg::Key("metadata"), Seg::Key("name")],
            format!("`{name}` is not a valid name: lowercase letters, digits and '-', at most 63 characters"),
        ))
    }
}

fn validate_slo(
    doc: &Doc<'_>,
    raw: RawSloDoc,
    slis: &BTreeMap<String, (RawSliSpec, PathBuf, usize)>,
) -> Result<Slo, Vec<SpecError>> {
    let mut errors = Vec::new();
    let spec_path = [Seg::Key("spec")];
    let k = |name: &'static str| [Seg::Key("spec"), Seg::Key(name)];
    if let Err(e) = check_name(doc, &raw.metadata.name) {
        errors.push(e);
    }
    let spec = raw.spec;
    if spec.service.trim().is_empty() {
        errors.push(doc.err(&k("service"), "must not be empty"));
    }
    // The indicator: exactly one of indicator / indicatorRef.
    let indicator_result = match (&spec.indicator, &spec.indicator_ref) {
        (Some(_), Some(_)) => Err(doc.err(
            &k("indicatorRef"),
            "give either `indicator` or `indicatorRef`, not both",
        )),
        (None, None) => Err(doc.err(
            &spec_path,
            "missing `indicator` (inline SLI) or `indicatorRef` (name of an SLI)",
        )),
        (Some(inline), None) => {
            if let Err(e) = check_name(doc, &inline.metadata.name) {
                errors.push(e);
            }
            indicator(doc, &k("indicator"), &inline.spec, &spec.service)
        }
        (None, Some(name)) => match slis.get(name) {
            Some((sli, _, _)) => {
                indicator(doc, &k("indicatorRef"), sli, &spec.service).map_err(|mut e| {
                    e.message = format!("in SLI `{name}`: {}", e.message);
                    e
                })
            }
            None => Err(doc.err(
                &k("indicatorRef"),
                format!(
                    "no SLI named `{name}` in the files read{}",
                    if slis.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (known: {})",
                            slis.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    }
                ),
            )),
        },
    };
    let indicator = match indicator_result {
        Ok(i) => Some(i),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    // The time window: exactly one.
    let window = match spec.time_window.as_slice() {
        [w] => match time_window(doc, w) {
            Ok(w) => Some(w),
            Err(e) => {
                errors.push(e);
                None
            }
        },
        [] => {
            errors.push(doc.err(&k("timeWindow"), "needs exactly one time window"));
            None
        }
        _ => {
            errors.push(doc.err(
                &[Seg::Key("spec"), Seg::Key("timeWindow"), Seg::Index(1)],
                "needs exactly one time window",
            ));
            None
        }
    };
    let budgeting = match spec.budgeting_method.as_str() {
        "Occurrences" => Some(Budgeting::Occurrences),
        "Timeslices" => Some(Budgeting::Timeslices),
        "RatioTimeslices" => Some(Budgeting::RatioTimeslices),
        other => {
            errors.push(doc.err(
                &k("budgetingMethod"),
                format!("unknown budgeting method `{other}`; use Occurrences, Timeslices or RatioTimeslices"),
            ));
            None
        }
    };
    if spec.objectives.is_empty() {
        errors.push(doc.err(&k("objectives"), "needs at least one objective"));
    }
    let mut objectives = Vec::new();
    for (i, o) in spec.objectives.iter().enumerate() {
        match objective(doc, i, o, budgeting, indicator.as_ref()) {
            Ok(o) => objectives.push(o),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let (Some(indicator), Some(window), Some(budgeting)) = (indicator, window, budgeting) else {
        unreachable!("every missing part pushed an error")
    };
    if budgeting != Budgeting::Occurrences && indicator.source_kind() == "prometheus" {
        return Err(vec![doc.err(
            &k("budgetingMethod"),
            "time slices are computed from per-minute counts, which only the capstan source gives; use Occurrences with a Prometheus source",
        )]);
    }
    Ok(Slo {
        name: raw.metadata.name,
        display_name: raw.metadata.display_name,
        service: spec.service,
        description: spec.description,
        indicator,
        window,
        budgeting,
        objectives,
        origin: Origin {
            file: doc.file.to_path_buf(),
            line: doc.first_line + locate(&doc.text, &[]),
        },
    })
}

fn indicator<'b>(
    doc: &Doc<'_>,
    base: &[Seg<'b>],
    spec: &RawSliSpec,
    service: &str,
) -> Result<Indicator, SpecError> {
    let at = |extra: &[Seg<'b>]| -> Vec<Seg<'b>> {
        let mut v: Vec<Seg<'b>> = base.to_vec();
        // An inline indicator's fields live under its `spec`.
        if matches!(base.last(), Some(Seg::Key("indicator"))) {
            v.push(Seg::Key("spec"));
        }
        v.extend_from_slice(extra);
        v
    };
    let _ = &spec.description;
    match (&spec.ratio_metric, &spec.threshold_metric) {
        (Some(_), Some(_)) => Err(doc.err(
            &at(&[Seg::Key("thresholdMetric")]),
            "give either `ratioMetric` or `thresholdMetric`, not both",
        )),
        (None, None) => Err(doc.err(&at(&[]), "missing `ratioMetric` or `thresholdMetric`")),
        (None, Some(m)) => Ok(Indicator::Threshold {
            metric: query(doc, &at(&[Seg::Key("thresholdMetric")]), m, service, true)?,
        }),
        (Some(r), None) => {
            let rp = |f: &'static str| at(&[Seg::Key("ratioMetric"), Seg::Key(f)]);
            if r.raw.is_some() || r.raw_type.is_some() {
                return Err(doc.err(
                    &rp("raw"),
                    "raw ratio metrics (`raw`, `rawType`) are not supported; give good or bad, and total",
                ));
            }
            let counted = match (&r.good, &r.bad) {
                (Some(_), Some(_)) => {
                    return Err(
                        doc.err(&rp("bad"), "give exactly one of `good` and `bad`, not both")
                    )
                }
                (None, None) => {
                    return Err(doc.err(
                        &at(&[Seg::Key("ratioMetric")]),
                        "missing `good` or `bad` (exactly one)",
                    ))
                }
                (Some(g), None) => Counted::Good(query(doc, &rp("good"), g, service, false)?),
                (None, Some(b)) => Counted::Bad(query(doc, &rp("bad"), b, service, false)?),
            };
            let Some(total) = &r.total else {
                return Err(doc.err(&at(&[Seg::Key("ratioMetric")]), "missing `total`"));
            };
            let total = query(doc, &rp("total"), total, service, false)?;
            if total.kind() != counted.query().kind() {
                return Err(doc.err(
                    &rp("total"),
                    format!(
                        "the numerator reads {} and total reads {}; both must use the same source",
                        counted.query().kind(),
                        total.kind()
                    ),
                ));
            }
            Ok(Indicator::Ratio { counted, total })
        }
    }
}

fn query<'b>(
    doc: &Doc<'_>,
    base: &[Seg<'b>],
    m: &RawMetric,
    service: &str,
    threshold: bool,
) -> Result<Query, SpecError> {
    let mut p = base.to_vec();
    p.push(Seg::Key("metricSource"));
    let src = &m.metric_source;
    if src.metric_source_ref.is_some() {
        let mut f = p.clone();
        f.push(Seg::Key("metricSourceRef"));
        return Err(doc.err(
            &f,
            "`metricSourceRef` (a DataSource document) is not supported; give `type` and `spec` inline",
        ));
    }
    let kind_path = {
        let mut f = p.clone();
        f.push(Seg::Key("type"));
        f
    };
    let spec_path = |k: &'b str| {
        let mut f = p.clone();
        f.push(Seg::Key("spec"));
        f.push(Seg::Key(k));
        f
    };
    let Some(kind) = &src.kind else {
        return Err(doc.err(&p, "missing `type` (capstan or Prometheus)"));
    };
    let Some(text) = src.spec.query.as_ref().filter(|q| !q.trim().is_empty()) else {
        let mut f = p.clone();
        f.push(Seg::Key("spec"));
        return Err(doc.err(&f, "missing `query`"));
    };
    match kind.to_ascii_lowercase().as_str() {
        "capstan" => {
            if threshold {
                if let Err(e) = crate::threshold::parse(text) {
                    return Err(doc.err(&spec_path("query"), e));
                }
            } else if let Err(e) = capstan_events::Expr::parse(text) {
                return Err(doc.err(&spec_path("query"), format!("`{text}`: {e}")));
            }
            Ok(Query::Capstan {
                expr: text.clone(),
                service: src.spec.service.clone().unwrap_or_else(|| service.into()),
            })
        }
        "prometheus" => {
            if src.spec.service.is_some() {
                return Err(doc.err(
                    &spec_path("service"),
                    "`service` belongs to capstan sources; select the series in the PromQL",
                ));
            }
            Ok(Query::Prometheus {
                query: text.clone(),
            })
        }
        other => Err(doc.err(
            &kind_path,
            format!("metric source type `{other}` is not supported; use capstan or Prometheus"),
        )),
    }
}

fn time_window(doc: &Doc<'_>, w: &RawTimeWindow) -> Result<TimeWindow, SpecError> {
    let p = |f: &'static str| {
        vec![
            Seg::Key("spec"),
            Seg::Key("timeWindow"),
            Seg::Index(0),
            Seg::Key(f),
        ]
    };
    let (n, unit) = parse_duration(&w.duration).map_err(|e| doc.err(&p("duration"), e))?;
    let rolling = w.is_rolling.unwrap_or(w.calendar.is_none());
    match (rolling, &w.calendar) {
        (true, Some(_)) => Err(doc.err(
            &p("calendar"),
            "a rolling window has no calendar; set isRolling: false or remove calendar",
        )),
        (false, None) => Err(doc.err(
            &p("isRolling"),
            "a calendar window (isRolling: false) needs `calendar` with startTime and timeZone",
        )),
        (true, None) => {
            let Some(secs) = fixed_seconds(n, unit) else {
                return Err(doc.err(
                    &p("duration"),
                    format!("a rolling window needs a fixed length (s, m, h, d, w), not `{}`; `M` is months, `m` minutes: use 30d or 28d", w.duration),
                ));
            };
            if secs % 60 != 0 || secs < 3600 {
                return Err(doc.err(
                    &p("duration"),
                    format!(
                        "`{}`: a rolling window is whole minutes and at least 1h",
                        w.duration
                    ),
                ));
            }
            Ok(TimeWindow::Rolling { minutes: secs / 60 })
        }
        (false, Some(c)) => {
            let unit = match unit {
                'd' => CalendarUnit::Day,
                'w' => CalendarUnit::Week,
                'M' => CalendarUnit::Month,
                'Q' => CalendarUnit::Quarter,
                'Y' => CalendarUnit::Year,
                _ => {
                    return Err(doc.err(
                        &p("duration"),
                        format!(
                            "`{}`: a calendar window is days, weeks, M (months), Q or Y; `m` is minutes",
                            w.duration
                        ),
                    ))
                }
            };
            let cp = |f: &'static str| {
                vec![
                    Seg::Key("spec"),
                    Seg::Key("timeWindow"),
                    Seg::Index(0),
                    Seg::Key("calendar"),
                    Seg::Key(f),
                ]
            };
            let start = NaiveDateTime::parse_from_str(c.start_time.trim(), "%Y-%m-%d %H:%M:%S")
                .map_err(|e| {
                    doc.err(
                        &cp("startTime"),
                        format!("`{}`: {e}; expected `YYYY-MM-DD HH:MM:SS`", c.start_time),
                    )
                })?;
            let zone: Tz = c.time_zone.parse().map_err(|_| {
                doc.err(
                    &cp("timeZone"),
                    format!(
                        "`{}` is not an IANA time zone (like UTC or Europe/Paris)",
                        c.time_zone
                    ),
                )
            })?;
            Ok(TimeWindow::Calendar {
                count: n,
                unit,
                start,
                zone,
            })
        }
    }
}

fn objective(
    doc: &Doc<'_>,
    i: usize,
    o: &RawObjective,
    budgeting: Option<Budgeting>,
    indicator: Option<&Indicator>,
) -> Result<Objective, Vec<SpecError>> {
    let p = |f: &'static str| {
        vec![
            Seg::Key("spec"),
            Seg::Key("objectives"),
            Seg::Index(i),
            Seg::Key(f),
        ]
    };
    let item = [Seg::Key("spec"), Seg::Key("objectives"), Seg::Index(i)];
    let mut errors = Vec::new();
    let target = match (o.target, o.target_percent) {
        (Some(_), Some(_)) => {
            errors.push(doc.err(
                &p("targetPercent"),
                "give either `target` or `targetPercent`, not both",
            ));
            None
        }
        (None, None) => {
            errors.push(doc.err(&item, "missing `target` (like 0.999) or `targetPercent`"));
            None
        }
        (Some(t), None) => {
            if (0.0..1.0).contains(&t) {
                Some(t)
            } else {
                errors.push(doc.err(
                    &p("target"),
                    format!("{t} is outside [0, 1); 99.9 % is 0.999 (or targetPercent: 99.9)"),
                ));
                None
            }
        }
        (None, Some(t)) => {
            if (0.0..100.0).contains(&t) {
                Some(t / 100.0)
            } else {
                errors.push(doc.err(&p("targetPercent"), format!("{t} is outside [0, 100)")));
                None
            }
        }
    };
    let mut op = None;
    match indicator {
        Some(Indicator::Threshold { .. }) => {
            match o.op.as_deref() {
                Some("lt") => op = Some(Op::Lt),
                Some("lte") => op = Some(Op::Lte),
                Some("gt") => op = Some(Op::Gt),
                Some("gte") => op = Some(Op::Gte),
                Some(other) => errors.push(doc.err(
                    &p("op"),
                    format!("unknown op `{other}`; use lt, lte, gt or gte"),
                )),
                None => errors.push(doc.err(&item, "a thresholdMetric objective needs `op`")),
            }
            if o.value.is_none() {
                errors.push(doc.err(&item, "a thresholdMetric objective needs `value`"));
            }
            if let (
                Some(Indicator::Threshold {
                    metric: Query::Capstan { expr, .. },
                }),
                Some(op),
                Some(value),
            ) = (indicator, op, o.value)
            {
                if let Ok(m) = crate::threshold::parse(expr) {
                    if let Err(e) = crate::threshold::check_objective(&m, op, value) {
                        errors.push(doc.err(&p("value"), e));
                    }
                }
            }
        }
        Some(Indicator::Ratio { .. }) => {
            if o.op.is_some() {
                errors.push(doc.err(
                    &p("op"),
                    "`op` belongs to thresholdMetric objectives; a ratioMetric has only a target",
                ));
            }
            if o.value.is_some() {
                errors.push(doc.err(
                    &p("value"),
                    "`value` belongs to thresholdMetric objectives; a ratioMetric has only a target",
                ));
            }
        }
        None => {}
    }
    let mut slice_minutes = None;
    match budgeting {
        Some(Budgeting::Occurrences) => {
            for (set, f) in [
                (o.time_slice_target.is_some(), "timeSliceTarget"),
                (o.time_slice_window.is_some(), "timeSliceWindow"),
            ] {
                if set {
                    errors.push(doc.err(
                        &p(f),
                        format!(
                            "`{f}` belongs to Timeslices budgeting; budgetingMethod is Occurrences"
                        ),
                    ));
                }
            }
        }
        Some(b @ (Budgeting::Timeslices | Budgeting::RatioTimeslices)) => {
            match &o.time_slice_window {
                None => errors.push(doc.err(
                    &item,
                    format!("{b:?} budgeting needs `timeSliceWindow` (like 1m or 5m)"),
                )),
                Some(w) => match parse_duration(w) {
                    Err(e) => errors.push(doc.err(&p("timeSliceWindow"), e)),
                    Ok((n, u)) => match fixed_seconds(n, u) {
                        Some(s) if s % 60 == 0 && s <= 86_400 => slice_minutes = Some(s / 60),
                        _ => errors.push(doc.err(
                            &p("timeSliceWindow"),
                            format!("`{w}`: slices are whole minutes from 1m to 1d (counts are kept per minute)"),
                        )),
                    },
                },
            }
            if b == Budgeting::Timeslices {
                match o.time_slice_target {
                    None => errors.push(doc.err(
                        &item,
                        "Timeslices budgeting needs `timeSliceTarget` (the ratio a good slice reaches)",
                    )),
                    Some(t) if !(t > 0.0 && t <= 1.0) => errors.push(doc.err(
                        &p("timeSliceTarget"),
                        format!("{t} is outside (0, 1]"),
                    )),
                    Some(_) => {}
                }
            } else if o.time_slice_target.is_some()
                && !matches!(indicator, Some(Indicator::Threshold { .. }))
            {
                errors.push(doc.err(
                    &p("timeSliceTarget"),
                    "RatioTimeslices averages the slices' ratios; `timeSliceTarget` belongs to Timeslices",
                ));
            }
        }
        None => {}
    }
    if matches!(indicator, Some(Indicator::Threshold { .. }))
        && budgeting == Some(Budgeting::Occurrences)
    {
        errors.push(doc.err(
            &[Seg::Key("spec"), Seg::Key("budgetingMethod")],
            "a thresholdMetric is judged per time slice: use Timeslices",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Objective {
        display_name: o.display_name.clone(),
        target: target.expect("checked"),
        op,
        value: o.value,
        time_slice_target: o.time_slice_target,
        time_slice_minutes: slice_minutes,
    })
}

#[cfg(test)]
mod tests {
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
