//! OpenSLO parsing: valid files load, and each broken rule is an error naming
//! the file, the line and the field.

use std::path::Path;

use capstan_slo::spec::{self, Budgeting, CalendarUnit, Counted, Indicator, Query, TimeWindow};

const AVAILABILITY: &str = r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: api-availability
  displayName: API availability
spec:
  service: api
  indicator:
    metadata:
      name: api-errors
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: capstan
            spec:
              query: status < 500
        total:
          metricSource:
            type: capstan
            spec:
              query: status >= 0
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: good
      target: 0.999
"#;

fn load_one(text: &str) -> Result<spec::Catalog, Vec<spec::SpecError>> {
    spec::load(&[(Path::new("slos/api.yaml"), text)])
}

fn one_error(text: &str) -> spec::SpecError {
    let errs = load_one(text).expect_err("must be refused");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn an_inline_availability_slo_loads() {
    let c = load_one(AVAILABILITY).unwrap();
    let slo = &c.slos[0];
    assert_eq!(slo.name, "api-availability");
    assert_eq!(slo.service, "api");
    assert_eq!(slo.window, TimeWindow::Rolling { minutes: 30 * 1440 });
    assert_eq!(slo.budgeting, Budgeting::Occurrences);
    assert_eq!(slo.objectives[0].target, 0.999);
    assert!(slo.is_availability());
    match &slo.indicator {
        Indicator::Ratio {
            counted: Counted::Good(Query::Capstan { expr, service }),
            ..
        } => {
            assert_eq!(expr, "status < 500");
            assert_eq!(service, "api");
        }
        other => panic!("{other:?}"),
    }
}

const SLI_FILE: &str = r#"apiVersion: openslo/v1
kind: SLI
metadata:
  name: http-errors
spec:
  ratioMetric:
    bad:
      metricSource:
        type: Prometheus
        spec:
          query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
    total:
      metricSource:
        type: Prometheus
        spec:
          query: sum(rate(http_requests_total[{{.window}}]))
"#;

const REF_FILE: &str = r#"# two SLOs in one file
apiVersion: openslo/v1
kind: SLO
metadata:
  name: web-availability
spec:
  service: web
  indicatorRef: http-errors
  timeWindow:
    - duration: 1M
      isRolling: false
      calendar:
        startTime: 2026-01-01 00:00:00
        timeZone: Europe/Paris
  budgetingMethod: Occurrences
  objectives:
    - targetPercent: 99.5
---
apiVersion: openslo/v1
kind: Service
metadata:
  name: web
spec:
  description: ignored
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: web-slices
spec:
  service: web
  indicator:
    metadata:
      name: web-latency
    spec:
      ratioMetric:
        good:
          metricSource: {type: capstan, spec: {query: "duration_ms <= 300"}}
        total:
          metricSource: {type: capstan, spec: {query: "status >= 0"}}
  timeWindow:
    - duration: 28d
      isRolling: true
  budgetingMethod: Timeslices
  objectives:
    - target: 0.99
      timeSliceTarget: 0.95
      timeSliceWindow: 5m
"#;

#[test]
fn multi_document_files_and_an_sli_from_another_file() {
    let c = spec::load(&[
        (Path::new("slos/sli.yaml"), SLI_FILE),
        (Path::new("slos/web.yaml"), REF_FILE),
    ])
    .unwrap();
    assert_eq!(c.slis, vec!["http-errors".to_string()]);
    assert_eq!(c.slos.len(), 2);
    let web = &c.slos[0];
    assert_eq!(web.origin.line, 2);
    assert!((web.objectives[0].target - 0.995).abs() < 1e-12);
    match &web.window {
        TimeWindow::Calendar {
            count, unit, zone, ..
        } => {
            assert_eq!((*count, *unit), (1, CalendarUnit::Month));
            assert_eq!(zone.name(), "Europe/Paris");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &web.indicator,
        Indicator::Ratio {
            counted: Counted::Bad(Query::Prometheus { .. }),
            ..
        }
    ));
    let slices = &c.slos[1];
    assert_eq!(slices.origin.line, 26);
    assert_eq!(slices.budgeting, Budgeting::Timeslices);
    assert_eq!(slices.objectives[0].time_slice_minutes, Some(5));
    assert!(!slices.is_availability());
}

/// (what is broken, replace this, with this, expected line, field, words in the message)
const BROKEN: &[(&str, &str, &str, usize, &str, &str)] = &[
    ("target above 1", "target: 0.999", "target: 99.9", 30, "spec.objectives[0].target", "outside [0, 1)"),
    ("target of 1", "target: 0.999", "target: 1", 30, "spec.objectives[0].target", "outside [0, 1)"),
    ("target and targetPercent", "target: 0.999", "target: 0.999\n      targetPercent: 99.9", 31, "spec.objectives[0].targetPercent", "not both"),
    ("no target", "      target: 0.999\n", "", 29, "spec.objectives[0]", "missing `target`"),
    ("good and bad", "        total:", "        bad:\n          metricSource:\n            type: capstan\n            spec:\n              query: status >= 500\n        total:", 19, "spec.indicator.spec.ratioMetric.bad", "exactly one of `good` and `bad`"),
    ("neither good nor bad", "        good:\n          metricSource:\n            type: capstan\n            spec:\n              query: status < 500\n", "", 12, "spec.indicator.spec.ratioMetric", "missing `good` or `bad`"),
    ("rolling month", "duration: 30d", "duration: 1M", 25, "spec.timeWindow[0].duration", "`M` is months, `m` minutes"),
    ("minutes as a calendar", "    - duration: 30d\n      isRolling: true", "    - duration: 30m\n      isRolling: false\n      calendar:\n        startTime: 2026-01-01 00:00:00\n        timeZone: UTC", 25, "spec.timeWindow[0].duration", "`m` is minutes"),
    ("calendar on a rolling window", "      isRolling: true", "      isRolling: true\n      calendar:\n        startTime: 2026-01-01 00:00:00\n        timeZone: UTC", 27, "spec.timeWindow[0].calendar", "rolling window has no calendar"),
    ("calendar window without calendar", "isRolling: true", "isRolling: false", 26, "spec.timeWindow[0].isRolling", "needs `calendar`"),
    ("bad time zone", "    - duration: 30d\n      isRolling: true", "    - duration: 1M\n      isRolling: false\n      calendar:\n        startTime: 2026-01-01 00:00:00\n        timeZone: Mars/Olympus", 29, "spec.timeWindow[0].calendar.timeZone", "IANA"),
    ("bad start time", "    - duration: 30d\n      isRolling: true", "    - duration: 1M\n      isRolling: false\n      calendar:\n        startTime: yesterday\n        timeZone: UTC", 28, "spec.timeWindow[0].calendar.startTime", "YYYY-MM-DD"),
    ("bad duration", "duration: 30d", "duration: 30 days", 25, "spec.timeWindow[0].duration", "positive whole number"),
    ("unknown budgeting method", "budgetingMethod: Occurrences", "budgetingMethod: Sometimes", 27, "spec.budgetingMethod", "unknown budgeting method"),
    ("Timeslices without slice fields", "budgetingMethod: Occurrences", "budgetingMethod: Timeslices", 29, "spec.objectives[0]", "timeSliceWindow"),
    ("slice fields with Occurrences", "target: 0.999", "target: 0.999\n      timeSliceWindow: 1m", 31, "spec.objectives[0].timeSliceWindow", "belongs to Timeslices"),
    ("unknown field", "  service: api", "  service: api\n  serivce: api", 8, "spec.serivce", "unknown field `serivce`"),
    ("unknown nested field", "              query: status < 500", "              query: status < 500\n              qurey: x", 19, "spec.indicator.spec.ratioMetric.good.metricSource.spec.qurey", "unknown field `qurey`"),
    ("wrong type", "target: 0.999", "target: [1]", 30, "spec.objectives[0].target", "invalid type"),
    ("unknown source type", "            type: capstan\n            spec:\n              query: status < 500", "            type: Datadog\n            spec:\n              query: status < 500", 16, "spec.indicator.spec.ratioMetric.good.metricSource.type", "not supported"),
    ("bad capstan expression", "query: status < 500", "query: status <<< 500", 18, "spec.indicator.spec.ratioMetric.good.metricSource.spec.query", "column"),
    ("bad name", "  name: api-availability", "  name: API_availability", 4, "metadata.name", "not a valid name"),
    ("unknown indicatorRef", "  indicator:\n    metadata:\n      name: api-errors\n    spec:\n      ratioMetric:\n        counter: true\n        good:\n          metricSource:\n            type: capstan\n            spec:\n              query: status < 500\n        total:\n          metricSource:\n            type: capstan\n            spec:\n              query: status >= 0\n", "  indicatorRef: nope\n", 8, "spec.indicatorRef", "no SLI named `nope`"),
    ("wrong apiVersion", "apiVersion: openslo/v1", "apiVersion: openslo/v2alpha", 1, "apiVersion", "not supported"),
    ("unknown kind", "kind: SLO", "kind: Budget", 2, "kind", "unknown kind"),
    ("two time windows", "  budgetingMethod:", "    - duration: 7d\n      isRolling: true\n  budgetingMethod:", 27, "spec.timeWindow[1]", "exactly one time window"),
];

#[test]
fn each_broken_rule_names_file_line_and_field() {
    let mut failures = Vec::new();
    for (what, from, to, line, field, words) in BROKEN {
        assert!(
            AVAILABILITY.contains(from),
            "{what}: fixture lacks {from:?}"
        );
        let text = AVAILABILITY.replacen(from, to, 1);
        let errs = match load_one(&text) {
            Ok(_) => {
                failures.push(format!("{what}: accepted"));
                continue;
            }
            Err(e) => e,
        };
        let e = &errs[0];
        let rendered = e.to_string();
        if errs.iter().any(|e| e.file != Path::new("slos/api.yaml"))
            || e.file != Path::new("slos/api.yaml")
            || e.line != *line
            || e.field != *field
            || !e.message.contains(words)
            || !rendered.starts_with(&format!("slos/api.yaml:{line}: {field}: "))
        {
            failures.push(format!(
                "{what}: expected line {line} field {field} ~{words:?}, got {errs:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn yaml_syntax_errors_name_the_line() {
    let text = AVAILABILITY.replace("  service: api", "  service: [api");
    let e = &load_one(&text).unwrap_err()[0];
    assert_eq!(e.file, Path::new("slos/api.yaml"));
    assert!(e.line >= 7 && e.line <= 9, "{e}");
}

#[test]
fn lines_count_from_the_file_in_later_documents() {
    let text = format!(
        "{AVAILABILITY}---\n{}",
        AVAILABILITY
            .replace("api-availability", "second")
            .replace("target: 0.999", "target: 2")
    );
    let e = one_error(&text);
    // The second document starts on line 32; its target is its 30th line.
    assert_eq!(e.line, 31 + 30, "{e}");
    assert_eq!(e.field, "spec.objectives[0].target");
}

#[test]
fn duplicate_slo_names_are_refused() {
    let text = format!("{AVAILABILITY}---\n{AVAILABILITY}");
    let e = one_error(&text);
    assert_eq!(e.line, 35);
    assert!(
        e.message.contains("already defined at slos/api.yaml:1"),
        "{e}"
    );
}

#[test]
fn files_from_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), SLI_FILE).unwrap();
    std::fs::write(dir.path().join("b.yml"), REF_FILE).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
    let files = spec::collect_files(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(files.len(), 2);
    let c = spec::load_files(&files).unwrap();
    assert_eq!(c.slos.len(), 2);
    let missing = spec::collect_files(&[dir.path().join("nope")]).unwrap_err();
    assert!(missing.to_string().contains("no such file"), "{missing}");
}
