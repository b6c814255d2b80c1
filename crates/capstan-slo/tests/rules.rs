//! `slo rules`: the rules pass the real `promtool check rules` and carry
//! Sloth's metric names.

use std::path::Path;
use std::process::Command;

use capstan_slo::{render_rules, spec};

const SLOS: &str = r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: http-availability
spec:
  service: web
  indicator:
    metadata:
      name: http-errors
    spec:
      ratioMetric:
        bad:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_requests_total{job="web",code=~"5.."}[{{.window}}]))
        total:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_requests_total{job="web"}[{{.window}}]))
  timeWindow:
    - duration: 28d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: latency
spec:
  service: web
  indicator:
    metadata:
      name: fast
    spec:
      ratioMetric:
        good:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_request_duration_seconds_bucket{le="0.3"}[{{.window}}]))
        total:
          metricSource:
            type: Prometheus
            spec:
              query: sum(rate(http_request_duration_seconds_count[{{.window}}]))
  timeWindow:
    - duration: 1M
      isRolling: false
      calendar:
        startTime: 2026-01-01 00:00:00
        timeZone: UTC
  budgetingMethod: Occurrences
  objectives:
    - displayName: fast
      target: 0.99
    - displayName: not too slow
      targetPercent: 95
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: store-sourced
spec:
  service: api
  indicator:
    metadata:
      name: api-ok
    spec:
      ratioMetric:
        good:
          metricSource: {type: capstan, spec: {query: "status < 500"}}
        total:
          metricSource: {type: capstan, spec: {query: "status >= 0"}}
  timeWindow:
    - duration: 30d
  budgetingMethod: Occurrences
  objectives:
    - target: 0.99
"#;

#[test]
fn rules_pass_promtool_and_use_sloth_names() {
    let c = spec::load(&[(Path::new("slos.yaml"), SLOS)]).unwrap();
    let (text, skipped) = render_rules(&c.slos);
    assert_eq!(skipped, vec!["store-sourced".to_string()]);
    for name in [
        "slo:sli_error:ratio_rate5m",
        "slo:sli_error:ratio_rate30m",
        "slo:sli_error:ratio_rate1h",
        "slo:sli_error:ratio_rate2h",
        "slo:sli_error:ratio_rate6h",
        "slo:sli_error:ratio_rate1d",
        "slo:sli_error:ratio_rate3d",
        "slo:sli_error:ratio_rate28d",
        "slo:sli_error:ratio_rate30d",
        "slo:objective:ratio",
        "slo:error_budget:ratio",
        "slo:time_period:days",
        "slo:current_burn_rate:ratio",
        "slo:period_burn_rate:ratio",
        "slo:period_error_budget_remaining:ratio",
        "sloth_slo_info",
        "sloth_id: \"web-http-availability\"",
        "sloth_id: \"web-latency-1\"",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
    // The 28-day SLO pages at 13.44x, the scaled 14.4x.
    assert!(text.contains("(13.44 * 0.001)"), "{text}");
    assert!(text.contains("(14.4 * 0.01)"), "{text}");
    assert!(text.contains("[5m]") && !text.contains("{{.window}}"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
        .expect(
            "promtool must be installed (Debian package `prometheus`; scripts/test.sh installs it)",
        );
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}\n{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SUCCESS"), "{stdout}");
}

#[test]
fn no_prometheus_slo_gives_an_empty_rules_file() {
    let only_store = SLOS.split("---\n").nth(2).unwrap();
    let c = spec::load(&[(Path::new("slos.yaml"), only_store)]).unwrap();
    let (text, skipped) = render_rules(&c.slos);
    assert_eq!(text, "groups: []\n");
    assert_eq!(skipped.len(), 1);
}
