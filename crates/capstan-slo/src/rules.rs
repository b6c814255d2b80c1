//! Prometheus recording and alerting rules for Prometheus-sourced SLOs,
//! with Sloth's metric names and labels so existing dashboards keep working.

use std::fmt::Write as _;

use crate::math::{conditions, Severity, BURN_WINDOWS};
use crate::policy::minutes_label;
use crate::spec::{CalendarUnit, Counted, Indicator, Query, Slo, TimeWindow};

/// The window rules use: a rolling window's length, or a calendar period's
/// usual length (`1M` → 30d, `1Q` → 90d, `1Y` → 365d), in minutes.
pub fn rule_window_minutes(w: &TimeWindow) -> i64 {
    match *w {
        TimeWindow::Rolling { minutes } => minutes,
        TimeWindow::Calendar { count, unit, .. } => {
            let days = match unit {
                CalendarUnit::Day => 1,
                CalendarUnit::Week => 7,
                CalendarUnit::Month => 30,
                CalendarUnit::Quarter => 90,
                CalendarUnit::Year => 365,
            };
            i64::from(count) * days * 1440
        }
    }
}

/// A number without float noise: `1 - 0.999` is `0.001`.
fn num(x: f64) -> String {
    let s = format!("{x:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The error-ratio expression of `slo` over `window` (like `5m`).
fn error_ratio_expr(counted: &Counted, total: &str, window: &str) -> String {
    let fill = |q: &str| {
        q.replace("{{.window}}", window)
            .replace("{{ .window }}", window)
    };
    match counted {
        Counted::Bad(Query::Prometheus { query }) => {
            format!("({})\n/\n({})", fill(query), fill(total))
        }
        Counted::Good(Query::Prometheus { query }) => {
            format!("1 - (\n({})\n/\n({})\n)", fill(query), fill(total))
        }
        _ => unreachable!("only Prometheus SLOs get rules"),
    }
}

fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    s.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rules file for every Prometheus-sourced ratio SLO of `slos` (one
/// group each of SLI recordings, metadata recordings and alerts). SLOs of
/// other sources are skipped; the names of those skipped are returned.
pub fn render(slos: &[Slo]) -> (String, Vec<String>) {
    let mut out = String::from("groups:\n");
    let mut skipped = Vec::new();
    let mut any = false;
    for slo in slos {
        let Indicator::Ratio {
            counted,
            total: Query::Prometheus { query: total },
        } = &slo.indicator
        else {
            skipped.push(slo.name.clone());
            continue;
        };
        any = true;
        for (i, objective) in slo.objectives.iter().enumerate() {
            let name = if slo.objectives.len() == 1 {
                slo.name.clone()
            } else {
                format!("{}-{i}", slo.name)
            };
            let id = format!("{}-{}", slo.service, name);
            let labels = |extra: &str| {
                format!(
                    "      labels:\n        sloth_id: {}\n        sloth_service: {}\n        sloth_slo: {}\n{extra}",
                    yaml_str(&id),
                    yaml_str(&slo.service),
                    yaml_str(&name)
                )
            };
            let sel = format!("{{sloth_id={}}}", yaml_str(&id));
            let window_min = rule_window_minutes(&slo.window);
            let period = minutes_label(window_min);
            let budget = 1.0 - objective.target;
            // SLI recordings.
            let _ = writeln!(
                out,
                "  - name: {}",
                yaml_str(&format!("sloth-slo-sli-recordings-{id}"))
            );
            let _ = writeln!(out, "    rules:");
            let mut windows: Vec<String> =
                BURN_WINDOWS.iter().map(|(w, _)| w.to_string()).collect();
            if !windows.contains(&period) {
                windows.push(period.clone());
            }
            for w in &windows {
                let _ = writeln!(out, "    - record: slo:sli_error:ratio_rate{w}");
                let _ = writeln!(
                    out,
                    "      expr: |\n{}",
                    indent(&error_ratio_expr(counted, total, w), 8)
                );
                out.push_str(&labels(&format!("        sloth_window: {}\n", yaml_str(w))));
            }
            // Metadata recordings.
            let _ = writeln!(
                out,
                "  - name: {}",
                yaml_str(&format!("sloth-slo-meta-recordings-{id}"))
            );
            let _ = writeln!(out, "    rules:");
            let meta: Vec<(&str, String)> = vec![
                ("slo:objective:ratio", format!("vector({})", objective.target)),
                ("slo:error_budget:ratio", format!("vector(1 - {})", objective.target)),
                ("slo:time_period:days", format!("vector({})", window_min / 1440)),
                (
                    "slo:current_burn_rate:ratio",
                    format!("slo:sli_error:ratio_rate5m{sel}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{sel}"),
                ),
                (
                    "slo:period_burn_rate:ratio",
                    format!("slo:sli_error:ratio_rate{period}{sel}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\nslo:error_budget:ratio{sel}"),
                ),
                (
                    "slo:period_error_budget_remaining:ratio",
                    format!("1 - slo:period_burn_rate:ratio{sel}"),
                ),
                ("sloth_slo_info", "vector(1)".to_string()),
            ];
            for (rec, expr) in meta {
                let _ = writeln!(out, "    - record: {rec}");
                let _ = writeln!(out, "      expr: |\n{}", indent(&expr, 8));
                let extra = if rec == "sloth_slo_info" {
                    format!(
                        "        sloth_objective: {}\n        sloth_mode: \"capstan\"\n",
                        yaml_str(&objective.target.to_string())
                    )
                } else {
                    String::new()
                };
                out.push_str(&labels(&extra));
            }
            // Alerts: the workbook's multi-window multi-burn-rate pairs.
            let _ = writeln!(
                out,
                "  - name: {}",
                yaml_str(&format!("sloth-slo-alerts-{id}"))
            );
            let _ = writeln!(out, "    rules:");
            for (sev, alert) in [
                (Severity::Page, "ErrorBudgetBurnPage"),
                (Severity::Ticket, "ErrorBudgetBurnTicket"),
            ] {
                let parts: Vec<String> = conditions(window_min)
                    .into_iter()
                    .filter(|c| c.severity == sev)
                    .map(|c| {
                        let f = format!("({} * {})", num(c.factor), num(budget));
                        format!(
                            "(\n  max(slo:sli_error:ratio_rate{}{sel} > {f}) without (sloth_window)\n  and\n  max(slo:sli_error:ratio_rate{}{sel} > {f}) without (sloth_window)\n)",
                            minutes_label(c.short_minutes),
                            minutes_label(c.long_minutes)
                        )
                    })
                    .collect();
                let sev_name = if sev == Severity::Page {
                    "page"
                } else {
                    "ticket"
                };
                let _ = writeln!(out, "    - alert: {}", yaml_str(alert));
                let _ = writeln!(out, "      expr: |\n{}", indent(&parts.join("\nor\n"), 8));
                out.push_str(&labels(&format!(
                    "        severity: {}\n        sloth_severity: {}\n",
                    yaml_str(sev_name),
                    yaml_str(sev_name)
                )));
                let _ = writeln!(out, "      annotations:");
                let _ = writeln!(
                    out,
                    "        summary: {}",
                    yaml_str(&format!(
                        "{} SLO {} is burning its error budget too fast ({sev_name})",
                        slo.service, name
                    ))
                );
                let _ = writeln!(
                    out,
                    "        title: {}",
                    yaml_str("(page) {{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is too fast.")
                        .replace("(page)", &format!("({sev_name})"))
                );
            }
        }
    }
    if !any {
        out = "groups: []\n".to_string();
    }
    (out, skipped)
}
