//! Validation: turns the raw documents into the model, each error naming
//! the file, the line and the field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDateTime;
use chrono_tz::Tz;
use serde::Deserialize;

use super::locate::{deserialize, locate, Doc, Seg};
use super::model::{
    fixed_seconds, parse_duration, Budgeting, CalendarUnit, Counted, Indicator, Objective, Op,
    Origin, Query, Slo, SpecError, TimeWindow,
};
use super::raw::*;

pub(super) fn header(doc: &Doc<'_>) -> Result<RawHeader, SpecError> {
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

pub(super) fn check_name(doc: &Doc<'_>, name: &str) -> Result<(), SpecError> {
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

pub(super) fn validate_slo(
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
            service_line: doc.first_line + locate(&doc.text, &k("service")),
        },
    })
}

pub(super) fn indicator<'b>(
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
        line: doc.first_line
            + locate(
                &doc.text,
                &p(if o.target.is_some() {
                    "target"
                } else {
                    "targetPercent"
                }),
            ),
    })
}
