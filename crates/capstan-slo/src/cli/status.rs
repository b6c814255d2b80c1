//! `slo status`: every objective evaluated from its source, and its
//! human rendering. The dashboard calls [`status`] too.

use std::path::PathBuf;

use serde::Serialize;

use crate::deploys::{DeployKind, DeployLog};
use crate::math::{self, rfc3339, DeployMark, Evaluation, Method, Severity};
use crate::policy;
use crate::source::{self, Loaded, Prometheus, SourceError};
use crate::spec::{self, Budgeting, Indicator, Slo, SpecError, TimeWindow};

use super::deploys::sync_deploys;
use super::gate::StatusError;
use super::settings::Settings;
use super::threshold::evaluate_threshold;

/// One objective's status.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveStatus {
    /// The SLO's name.
    pub slo: String,
    /// Its service.
    pub service: String,
    /// The objective's display name, if any.
    pub objective: Option<String>,
    /// `capstan` or `prometheus`.
    pub source: &'static str,
    /// Like `30d rolling` or `1M calendar (Europe/Paris)`.
    pub window: String,
    /// The budgeting method.
    pub budgeting: Budgeting,
    /// Whether the budget is also shown in minutes of downtime.
    pub availability: bool,
    /// The numbers.
    #[serde(flatten)]
    pub evaluation: Evaluation,
}

pub(super) fn window_label(w: &TimeWindow) -> String {
    match w {
        TimeWindow::Rolling { minutes } => format!("{} rolling", policy::minutes_label(*minutes)),
        TimeWindow::Calendar {
            count, unit, zone, ..
        } => {
            let u = match unit {
                spec::CalendarUnit::Day => "d",
                spec::CalendarUnit::Week => "w",
                spec::CalendarUnit::Month => "M",
                spec::CalendarUnit::Quarter => "Q",
                spec::CalendarUnit::Year => "Y",
            };
            format!("{count}{u} calendar ({})", zone.name())
        }
    }
}

pub(super) fn load_slos(paths: &[PathBuf]) -> Result<spec::Catalog, Vec<SpecError>> {
    let files = spec::collect_files(paths).map_err(|e| vec![e])?;
    spec::load_files(&files)
}

/// The document `capstan slo status --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When the SLOs were evaluated, unix ms.
    pub at_ms: i64,
    /// The same, RFC 3339.
    pub at: String,
    /// Every objective, in file order.
    pub slos: Vec<ObjectiveStatus>,
}

/// `capstan slo status`: reads the SLO files `settings` names, brings the
/// deploy log up to date from the database (a failure is a warning on
/// stderr) and evaluates every objective (of `service`, when given) at
/// `now_ms`. `inspect` sees each SLO's counts once, before its objectives are
/// evaluated (the dashboard draws its charts from them). The CLI and the
/// dashboard both call this, so their numbers never disagree.
pub async fn status(
    settings: &Settings,
    service: Option<&str>,
    now_ms: i64,
    inspect: &mut (dyn FnMut(&Slo, &Loaded) + Send),
) -> Result<StatusReport, StatusError> {
    let c = load_slos(&settings.slo_paths).map_err(StatusError::Spec)?;
    sync_deploys(settings).await;
    let slos = evaluate_each(settings, &c.slos, service, now_ms, inspect)
        .await
        .map_err(StatusError::Source)?;
    Ok(StatusReport {
        at_ms: now_ms,
        at: rfc3339(now_ms),
        slos,
    })
}

/// Evaluates every objective of `slos` (of `service`, when given) at `now_ms`.
pub async fn evaluate_all(
    settings: &Settings,
    slos: &[Slo],
    service: Option<&str>,
    now_ms: i64,
) -> Result<Vec<ObjectiveStatus>, SourceError> {
    evaluate_each(settings, slos, service, now_ms, &mut |_, _| {}).await
}

async fn evaluate_each(
    settings: &Settings,
    slos: &[Slo],
    service: Option<&str>,
    now_ms: i64,
    inspect: &mut (dyn FnMut(&Slo, &Loaded) + Send),
) -> Result<Vec<ObjectiveStatus>, SourceError> {
    let log = DeployLog::open_existing(&settings.store).map_err(|e| SourceError::Store {
        path: settings.store.clone(),
        message: e.to_string(),
    })?;
    // Each SLO's period and the deploys in it (which spans attribution reads).
    let mut plans: Vec<Option<(math::Period, Vec<DeployMark>)>> = Vec::new();
    for slo in slos {
        if service.is_some_and(|s| s != slo.service) {
            plans.push(None);
            continue;
        }
        let period = math::period(&slo.window, now_ms);
        let deploys: Vec<DeployMark> = match &log {
            Some(log) => log
                .list(Some(&slo.service), period.start_ms, now_ms)
                .map_err(|e| SourceError::Store {
                    path: settings.store.clone(),
                    message: e.to_string(),
                })?
                .into_iter()
                .filter(|d| d.kind != DeployKind::Override)
                .map(|d| DeployMark {
                    time_ms: d.time_ms,
                    label: d.label(),
                })
                .collect(),
            None => Vec::new(),
        };
        plans.push(Some((period, deploys)));
    }
    let mut out = Vec::new();
    let mut prefetched = prefetch_store_counts(settings, slos, &plans);
    for (i, slo) in slos.iter().enumerate() {
        let Some((period, deploys)) = &plans[i] else {
            continue;
        };
        if let Indicator::Threshold { metric } = &slo.indicator {
            out.extend(evaluate_threshold(settings, slo, metric, period, deploys)?);
            continue;
        }
        let loaded = match slo.indicator.source_kind() {
            "capstan" => prefetched[i]
                .take()
                .expect("every capstan SLO was prefetched")?,
            _ => {
                let Some(url) = &settings.prometheus else {
                    return Err(SourceError::Unsupported(format!(
                        "SLO `{}` reads Prometheus: give --prometheus URL or [slo] prometheus",
                        slo.name
                    )));
                };
                let prom = Prometheus::new(url, settings.timeout)?;
                let spans = math::required_windows(period, deploys);
                Loaded::Spans(prom.spans(slo, &spans).await?)
            }
        };
        inspect(slo, &loaded);
        for o in &slo.objectives {
            let evaluation = math::evaluate(
                &loaded,
                Method::of(slo.budgeting, o),
                o.target,
                &slo.window,
                now_ms,
                deploys,
                slo.is_availability(),
            );
            out.push(ObjectiveStatus {
                slo: slo.name.clone(),
                service: slo.service.clone(),
                objective: o.display_name.clone(),
                source: slo.indicator.source_kind(),
                window: window_label(&slo.window),
                budgeting: slo.budgeting,
                availability: slo.is_availability(),
                evaluation,
            });
        }
    }
    Ok(out)
}

/// The longest burn window, in minutes: the event store is read per minute
/// over this span before now; older spans are read as sums.
pub(super) fn recent_minutes() -> i64 {
    math::BURN_WINDOWS
        .iter()
        .map(|&(_, m)| m)
        .max()
        .unwrap_or(1440)
}

/// Reads the event store for every capstan-sourced SLO that has a plan, on as
/// many threads as there are cores (each opens its own read connection).
fn prefetch_store_counts(
    settings: &Settings,
    slos: &[Slo],
    plans: &[Option<(math::Period, Vec<DeployMark>)>],
) -> Vec<Option<Result<Loaded, SourceError>>> {
    let wanted: Vec<usize> = (0..slos.len())
        .filter(|&i| {
            plans[i].is_some()
                && slos[i].indicator.source_kind() == "capstan"
                && matches!(slos[i].indicator, Indicator::Ratio { .. })
        })
        .collect();
    let mut out: Vec<Option<Result<Loaded, SourceError>>> = (0..slos.len()).map(|_| None).collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    for chunk in wanted.chunks(threads) {
        let results: Vec<(usize, Result<Loaded, SourceError>)> = std::thread::scope(|sc| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|&i| {
                    let slo = &slos[i];
                    let (period, deploys) = plans[i].as_ref().expect("wanted SLOs have a plan");
                    let recent = if settings.whole_series {
                        (period.now_ms - period.start_ms) / math::MINUTE_MS + 1
                    } else {
                        recent_minutes()
                    };
                    sc.spawn(move || {
                        (
                            i,
                            source::capstan_counts(&settings.store, slo, period, deploys, recent),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a store reader panicked"))
                .collect()
        });
        for (i, r) in results {
            out[i] = Some(r);
        }
    }
    out
}

fn pct(x: f64) -> String {
    if x.is_infinite() {
        "∞".into()
    } else {
        format!("{:.2} %", x * 100.0)
    }
}

/// The human rendering of `slo status`.
pub fn render_status(statuses: &[ObjectiveStatus]) -> String {
    let mut s = String::new();
    if statuses.is_empty() {
        s.push_str("no SLOs\n");
    }
    for st in statuses {
        let e = &st.evaluation;
        s.push_str(&format!(
            "{}{} ({}): objective {} over {}, {:?}, {}\n",
            st.slo,
            st.objective
                .as_ref()
                .map(|o| format!(" / {o}"))
                .unwrap_or_default(),
            st.service,
            pct(e.target),
            st.window,
            st.budgeting,
            st.source
        ));
        let sli = e.sli.map(pct).unwrap_or_else(|| "no events".into());
        let (bad, total) = (e.counts.bad, e.counts.total);
        s.push_str(&match st.budgeting {
            Budgeting::Occurrences => {
                format!("  SLI: {sli}  ({bad:.0} bad of {total:.0} events)\n")
            }
            Budgeting::Timeslices => format!("  SLI: {sli}  ({bad:.0} bad of {total:.0} slices)\n"),
            Budgeting::RatioTimeslices => {
                format!("  SLI: {sli}  (mean over {total:.0} slices with events)\n")
            }
        });
        let minutes = match (e.budget.minutes_left, e.budget.minutes_total) {
            (Some(l), Some(t)) => format!(", {l:.1} of {t:.1} minutes of downtime left"),
            _ => String::new(),
        };
        s.push_str(&format!(
            "  budget: {} left ({} consumed){minutes}\n",
            pct(e.budget.remaining),
            pct(e.budget.consumed)
        ));
        s.push_str("  burn:");
        for b in &e.burn_rates {
            s.push_str(&format!(" {} {:.2}x", b.window, b.rate));
        }
        s.push('\n');
        match e.alert.state {
            Severity::Ok => s.push_str("  alert: ok\n"),
            sev => {
                let c = &e.alert.firing[0];
                s.push_str(&format!(
                    "  alert: {} ({:.1}x over {} and {})\n",
                    if sev == Severity::Page {
                        "PAGE"
                    } else {
                        "ticket"
                    },
                    c.factor,
                    policy::minutes_label(c.long_minutes),
                    policy::minutes_label(c.short_minutes)
                ));
            }
        }
        let f = &e.forecast;
        s.push_str(&match (f.exhausted, f.exhausted_at_ms) {
            (true, _) => "  forecast: budget exhausted\n".to_string(),
            (false, None) => "  forecast: not burning (1h burn rate 0)\n".to_string(),
            (false, Some(t)) => format!(
                "  forecast: budget runs out {} at the 1h burn rate ({:.2}x){}\n",
                rfc3339(t),
                f.burn_rate,
                if t > e.period.end_ms && e.period.end_ms > e.period.now_ms {
                    ", after this period ends"
                } else {
                    ""
                }
            ),
        });
        if !e.deploys.is_empty() {
            s.push_str("  budget spent in the hour after each deploy:\n");
            for d in &e.deploys {
                s.push_str(&format!(
                    "    {}  {}: {} of the budget{}\n",
                    rfc3339(d.deploy.time_ms),
                    d.deploy.label,
                    pct(d.budget_share),
                    d.minutes
                        .map(|m| format!(" ({m:.1} min)"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    s
}
