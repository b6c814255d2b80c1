//! A service's dependencies as the pages show them: each dependency
//! (`depends_on` in `capstan.toml`) with its objectives and their budget
//! state, all taken from the snapshot's `slo status` answer, and the bound
//! its hard dependencies set (`capstan_slo::deps`, not computed here).

use capstan_service::Services;
use capstan_slo::deps::{self, BudgetState, Promise};
use capstan_slo::ObjectiveStatus;

use super::{pct, raw};

/// One objective of a dependency.
pub struct DepObjective {
    /// `slo` or `slo / objective`.
    pub name: String,
    /// The target, like `99.9 %`.
    pub target: String,
    /// Budget remaining, as text.
    pub remaining: String,
    /// Raw budget remaining.
    pub remaining_raw: String,
    /// `ok`, `ticket`, `page`.
    pub alert: &'static str,
    /// `ok`, `burning`, `exhausted`.
    pub state: &'static str,
}

/// One dependency of the service.
pub struct DepView {
    /// The service depended on.
    pub name: String,
    /// `hard` or `soft`.
    pub kind: &'static str,
    /// What it publishes (`99.9 %`), or empty when it has no SLO.
    pub publishes: String,
    /// Its objectives.
    pub objectives: Vec<DepObjective>,
    /// The worst state among its objectives: `ok`, `burning`, `exhausted`.
    pub state: &'static str,
}

/// The service's dependencies.
pub struct DepsView {
    /// Every dependency, in `depends_on` order.
    pub deps: Vec<DepView>,
    /// `99.85 %`: the most the hard dependencies allow (empty when none publishes).
    pub at_most: String,
    /// Raw bound.
    pub at_most_raw: String,
    /// `users 99.9 % × auth 99.95 %`.
    pub product: String,
    /// Hard dependencies that publish no SLO.
    pub unpublished: Vec<String>,
    /// The service's own objectives promising more than `at_most`.
    pub exceeding: Vec<String>,
    /// Hard dependencies whose budget burns or is spent, like
    /// `users (exhausted)`, joined (empty when none).
    pub troubled: String,
}

fn worst(a: BudgetState, b: BudgetState) -> BudgetState {
    let rank = |s: BudgetState| match s {
        BudgetState::Ok => 0,
        BudgetState::Burning => 1,
        BudgetState::Exhausted => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn label(st: &ObjectiveStatus) -> String {
    match &st.objective {
        Some(o) => format!("{} / {o}", st.slo),
        None => st.slo.clone(),
    }
}

/// The dependencies of `service` (`None` when `capstan.toml` does not
/// declare it or it depends on nothing).
pub fn deps_view(
    services: &Services,
    service: &str,
    statuses: &[ObjectiveStatus],
) -> Option<DepsView> {
    let svc = services.get(service).ok()?;
    if svc.depends_on.is_empty() {
        return None;
    }
    let promises = Promise::of_status(statuses);
    let bound = deps::bound(svc, &promises);
    let mut troubled = Vec::new();
    let views = svc
        .depends_on
        .iter()
        .map(|d| {
            let mut state = BudgetState::Ok;
            let objectives = statuses
                .iter()
                .filter(|st| st.service == d.service)
                .map(|st| {
                    let e = &st.evaluation;
                    let s = BudgetState::of(e);
                    state = worst(state, s);
                    DepObjective {
                        name: label(st),
                        target: deps::percent(e.target),
                        remaining: pct(e.budget.remaining),
                        remaining_raw: raw(e.budget.remaining),
                        alert: match e.alert.state {
                            capstan_slo::math::Severity::Ok => "ok",
                            capstan_slo::math::Severity::Ticket => "ticket",
                            capstan_slo::math::Severity::Page => "page",
                        },
                        state: s.as_str(),
                    }
                })
                .collect();
            if d.hard && state != BudgetState::Ok {
                troubled.push(format!("{} ({})", d.service, state.as_str()));
            }
            DepView {
                name: d.service.clone(),
                kind: if d.hard { "hard" } else { "soft" },
                publishes: deps::published(&d.service, &promises)
                    .map(|p| deps::percent(p.target))
                    .unwrap_or_default(),
                objectives,
                state: state.as_str(),
            }
        })
        .collect();
    let exceeding = match bound.at_most {
        Some(at_most) => statuses
            .iter()
            .filter(|st| st.service == service && deps::exceeds(st.evaluation.target, at_most))
            .map(|st| {
                format!(
                    "{} promises {}",
                    label(st),
                    deps::percent(st.evaluation.target)
                )
            })
            .collect(),
        None => Vec::new(),
    };
    Some(DepsView {
        deps: views,
        at_most: bound.at_most.map(deps::percent_at_most).unwrap_or_default(),
        at_most_raw: bound.at_most.map(raw).unwrap_or_default(),
        product: bound
            .hard
            .iter()
            .map(|p| format!("{} {}", p.service, deps::percent(p.target)))
            .collect::<Vec<_>>()
            .join(" × "),
        unpublished: bound.unpublished,
        exceeding,
        troubled: troubled.join(", "),
    })
}
