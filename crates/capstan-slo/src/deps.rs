//! Objectives against dependencies: a service cannot promise more than the
//! services it needs publish. Pure (no IO): the services and their
//! `depends_on` come from `capstan.toml` ([`capstan_service::Services`]), the
//! objectives from the SLO files or from `slo status`'s answer.
//!
//! - What a service **publishes** is the lowest target among its
//!   availability objectives ([`Slo::is_availability`]); a service with no
//!   availability objective publishes the lowest target among all of its
//!   objectives. A service with no objective publishes nothing.
//! - **Hard** dependencies are serial: the service is up only when every one
//!   of them is, so it can promise at most the product of what they publish
//!   ([`compose`]). **Soft** dependencies degrade the service instead of
//!   failing it: they are listed, never multiplied.
//! - Only **direct** dependencies count: what a dependency publishes already
//!   includes what it depends on (multiplying its own dependencies again
//!   would count them twice).
//! - A hard dependency that publishes nothing is left out of the product,
//!   which is then still an upper bound (its availability is at most 1), and
//!   reported on its own.

use std::fmt;
use std::path::{Path, PathBuf};

use capstan_service::{Service, Services};
use serde::Serialize;

use crate::cli::ObjectiveStatus;
use crate::math::{Evaluation, Severity};
use crate::spec::Slo;

/// Two targets closer than this are equal (a product of decimal targets
/// is not exact in binary).
const EPSILON: f64 = 1e-12;

/// One objective, as the dependency check reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Promise<'a> {
    /// The service that makes it.
    pub service: &'a str,
    /// The SLO's name.
    pub slo: &'a str,
    /// The objective's display name, if any.
    pub objective: Option<&'a str>,
    /// The target, in [0, 1).
    pub target: f64,
    /// Whether the SLO measures availability.
    pub availability: bool,
}

impl<'a> Promise<'a> {
    /// Every objective of `slos`, in file order.
    pub fn of_slos(slos: &'a [Slo]) -> Vec<Promise<'a>> {
        slos.iter()
            .flat_map(|s| {
                s.objectives.iter().map(move |o| Promise {
                    service: &s.service,
                    slo: &s.name,
                    objective: o.display_name.as_deref(),
                    target: o.target,
                    availability: s.is_availability(),
                })
            })
            .collect()
    }

    /// Every objective of a `slo status` answer, in its order.
    pub fn of_status(statuses: &'a [ObjectiveStatus]) -> Vec<Promise<'a>> {
        statuses
            .iter()
            .map(|s| Promise {
                service: &s.service,
                slo: &s.slo,
                objective: s.objective.as_deref(),
                target: s.evaluation.target,
                availability: s.availability,
            })
            .collect()
    }
}

/// What a service publishes: one of its objectives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Published {
    /// The service.
    pub service: String,
    /// The SLO whose objective it is.
    pub slo: String,
    /// The objective's display name, if any.
    pub objective: Option<String>,
    /// The target.
    pub target: f64,
}

/// What `service` publishes: the lowest target among its availability
/// objectives, else among all of its objectives (the first on a tie);
/// `None` when it has none.
pub fn published(service: &str, promises: &[Promise<'_>]) -> Option<Published> {
    let mine: Vec<&Promise<'_>> = promises.iter().filter(|p| p.service == service).collect();
    let pool: Vec<&Promise<'_>> = if mine.iter().any(|p| p.availability) {
        mine.into_iter().filter(|p| p.availability).collect()
    } else {
        mine
    };
    pool.into_iter()
        .reduce(|a, b| if b.target < a.target { b } else { a })
        .map(|p| Published {
            service: p.service.to_string(),
            slo: p.slo.to_string(),
            objective: p.objective.map(str::to_string),
            target: p.target,
        })
}

/// The availability of serial dependencies: the product of theirs (1 for none).
pub fn compose(availabilities: &[f64]) -> f64 {
    availabilities.iter().product()
}

/// Whether `target` promises more than `at_most` allows (equal is fine).
pub fn exceeds(target: f64, at_most: f64) -> bool {
    target > at_most + EPSILON
}

/// What a service's dependencies allow it to promise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bound {
    /// The service.
    pub service: String,
    /// What each hard dependency that publishes something publishes, in
    /// `depends_on` order.
    pub hard: Vec<Published>,
    /// Hard dependencies that publish nothing.
    pub unpublished: Vec<String>,
    /// Soft dependencies (never multiplied).
    pub soft: Vec<String>,
    /// The product of `hard`'s targets: the most the service can promise;
    /// `None` when no hard dependency publishes anything.
    pub at_most: Option<f64>,
}

/// The bound `service`'s direct dependencies set.
pub fn bound(service: &Service, promises: &[Promise<'_>]) -> Bound {
    let mut hard = Vec::new();
    let mut unpublished = Vec::new();
    let mut soft = Vec::new();
    for d in &service.depends_on {
        if !d.hard {
            soft.push(d.service.clone());
        } else if let Some(p) = published(&d.service, promises) {
            hard.push(p);
        } else {
            unpublished.push(d.service.clone());
        }
    }
    let at_most =
        (!hard.is_empty()).then(|| compose(&hard.iter().map(|p| p.target).collect::<Vec<_>>()));
    Bound {
        service: service.name.clone(),
        hard,
        unpublished,
        soft,
        at_most,
    }
}

/// How an objective's error budget stands, for a dependency's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    /// Budget left and no burn-rate alert firing.
    Ok,
    /// A burn-rate alert fires (ticket or page).
    Burning,
    /// No budget left.
    Exhausted,
}

impl BudgetState {
    /// The state of an evaluated objective.
    pub fn of(e: &Evaluation) -> BudgetState {
        if e.forecast.exhausted || e.budget.remaining <= 0.0 {
            BudgetState::Exhausted
        } else if e.alert.state != Severity::Ok {
            BudgetState::Burning
        } else {
            BudgetState::Ok
        }
    }

    /// `ok`, `burning` or `exhausted`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetState::Ok => "ok",
            BudgetState::Burning => "burning",
            BudgetState::Exhausted => "exhausted",
        }
    }
}

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarningKind {
    /// An objective promises more than its hard dependencies publish.
    ExceedsDependencies,
    /// A hard dependency publishes no SLO.
    Unpublished,
    /// An SLO names a service `capstan.toml` does not declare.
    UndeclaredService,
}

/// A problem the dependency check found. Warnings, not errors: the files are
/// valid, the promises they make are questionable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// The file to fix (an SLO file, or `capstan.toml`).
    pub file: PathBuf,
    /// 1-based line: the objective's target, the SLO's `spec.service`, or the
    /// service in `capstan.toml`.
    pub line: usize,
    /// What it is about.
    pub kind: WarningKind,
    /// The service concerned.
    pub service: String,
    /// The SLO concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slo: Option<String>,
    /// The objective's target (`exceeds-dependencies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// The most the hard dependencies allow (`exceeds-dependencies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_most: Option<f64>,
    /// What each hard dependency publishes (`exceeds-dependencies`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Published>,
    /// The whole sentence.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// A ratio as a percentage with at most four decimals: `99.95 %`.
pub fn percent(x: f64) -> String {
    trimmed((x * 1e6).round() / 1e4)
}

/// Like [`percent`], rounded down: an upper bound shown never looks higher
/// than it is (99.9 % × 99.95 % = 99.85005 % shows as `99.85 %`).
pub fn percent_at_most(x: f64) -> String {
    trimmed((x * 1e6 + 1e-6).floor() / 1e4)
}

fn trimmed(p: f64) -> String {
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} %")
}

fn slo_label(slo: &Slo, objective: Option<&str>) -> String {
    match objective {
        Some(o) => format!("{}/{} ({o})", slo.service, slo.name),
        None => format!("{}/{}", slo.service, slo.name),
    }
}

fn names(list: &[String]) -> String {
    list.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks every objective of `slos` against what the hard dependencies of
/// its service publish (`services` read from `config`). Warnings come in
/// this order: hard dependencies that publish nothing (for services that
/// have SLOs, in `capstan.toml` order), then per SLO in file order, SLOs
/// naming an undeclared service and objectives above their bound. Nothing
/// is checked when `capstan.toml` declares no service.
pub fn check(services: &Services, config: &Path, slos: &[Slo]) -> Vec<Warning> {
    let mut out = Vec::new();
    if services.is_empty() {
        return out;
    }
    let promises = Promise::of_slos(slos);
    let mut bounds = Vec::new();
    for service in services.iter() {
        let b = bound(service, &promises);
        if slos.iter().any(|s| s.service == service.name) {
            for dep in &b.unpublished {
                out.push(Warning {
                    file: config.to_path_buf(),
                    line: service.line,
                    kind: WarningKind::Unpublished,
                    service: service.name.clone(),
                    slo: None,
                    target: None,
                    at_most: None,
                    dependencies: Vec::new(),
                    message: format!(
                        "`{}` depends on `{dep}` (hard), which publishes no SLO: what `{}` can promise is unknown (add an SLO for `{dep}`, or mark the dependency `hard = false`)",
                        service.name, service.name
                    ),
                });
            }
        }
        bounds.push(b);
    }
    for slo in slos {
        let Some(b) = bounds.iter().find(|b| b.service == slo.service) else {
            out.push(Warning {
                file: slo.origin.file.clone(),
                line: slo.origin.service_line,
                kind: WarningKind::UndeclaredService,
                service: slo.service.clone(),
                slo: Some(slo.name.clone()),
                target: None,
                at_most: None,
                dependencies: Vec::new(),
                message: format!(
                    "SLO `{}` names the service `{}`, which capstan.toml does not declare (it declares {}): its dependencies are unknown",
                    slo.name,
                    slo.service,
                    names(&services.names())
                ),
            });
            continue;
        };
        let Some(at_most) = b.at_most else {
            continue;
        };
        for o in &slo.objectives {
            if !exceeds(o.target, at_most) {
                continue;
            }
            let factors = b
                .hard
                .iter()
                .map(|p| format!("{} {}", p.service, percent(p.target)))
                .collect::<Vec<_>>()
                .join(" × ");
            let unknown = if b.unpublished.is_empty() {
                String::new()
            } else {
                format!(" (and {}, which publish no SLO)", names(&b.unpublished))
            };
            out.push(Warning {
                file: slo.origin.file.clone(),
                line: o.line,
                kind: WarningKind::ExceedsDependencies,
                service: slo.service.clone(),
                slo: Some(slo.name.clone()),
                target: Some(o.target),
                at_most: Some(at_most),
                dependencies: b.hard.clone(),
                message: format!(
                    "{} promises {} but its hard dependencies publish at most {}: {factors}{unknown}",
                    slo_label(slo, o.display_name.as_deref()),
                    percent(o.target),
                    percent_at_most(at_most)
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promise(
        service: &'static str,
        slo: &'static str,
        target: f64,
        availability: bool,
    ) -> Promise<'static> {
        Promise {
            service,
            slo,
            objective: None,
            target,
            availability,
        }
    }

    fn services(text: &str) -> Services {
        Services::parse(text, Path::new("capstan.toml")).unwrap()
    }

    #[test]
    fn serial_hard_dependencies_multiply() {
        assert_eq!(compose(&[]), 1.0);
        assert_eq!(compose(&[0.999]), 0.999);
        assert!((compose(&[0.999, 0.9995]) - 0.998_500_5).abs() < 1e-15);
        assert!((compose(&[0.99, 0.99, 0.99]) - 0.970_299).abs() < 1e-15);
    }

    #[test]
    fn a_service_publishes_its_lowest_availability_target() {
        let p = [
            promise("users", "users-latency", 0.95, false),
            promise("users", "users-availability", 0.9995, true),
            promise("users", "users-login", 0.999, true),
            promise("search", "search-latency", 0.99, false),
            promise("search", "search-p99", 0.9, false),
        ];
        let users = published("users", &p).unwrap();
        assert_eq!((users.slo.as_str(), users.target), ("users-login", 0.999));
        // No availability objective: the lowest of all.
        let search = published("search", &p).unwrap();
        assert_eq!((search.slo.as_str(), search.target), ("search-p99", 0.9));
        assert_eq!(published("auth", &p), None);
    }

    #[test]
    fn the_bound_multiplies_hard_dependencies_and_lists_the_rest() {
        let s = services(
            "[[service]]\nname = \"users\"\n[[service]]\nname = \"auth\"\n[[service]]\nname = \"search\"\n[[service]]\nname = \"mail\"\n\
             [[service]]\nname = \"chirps\"\ndepends_on = [\"users\", \"auth\", { service = \"search\", hard = false }, \"mail\"]\n",
        );
        let p = [
            promise("users", "u", 0.999, true),
            promise("auth", "a", 0.9995, true),
            promise("search", "s", 0.5, true),
        ];
        let b = bound(s.get("chirps").unwrap(), &p);
        assert_eq!(
            b.hard
                .iter()
                .map(|p| (p.service.as_str(), p.target))
                .collect::<Vec<_>>(),
            vec![("users", 0.999), ("auth", 0.9995)]
        );
        assert_eq!(b.unpublished, vec!["mail"]);
        assert_eq!(b.soft, vec!["search"]);
        assert!((b.at_most.unwrap() - 0.998_500_5).abs() < 1e-15);
        // Only direct dependencies: users' own dependencies are not multiplied again.
        let none = bound(s.get("users").unwrap(), &p);
        assert_eq!(none.at_most, None);
    }

    #[test]
    fn percentages_name_exact_numbers_and_bounds_round_down() {
        assert_eq!(percent(0.9995), "99.95 %");
        assert_eq!(percent(0.999), "99.9 %");
        assert_eq!(percent(0.99), "99 %");
        assert_eq!(percent(0.99999), "99.999 %");
        assert_eq!(percent_at_most(0.999 * 0.9995), "99.85 %");
        assert_eq!(percent_at_most(0.999), "99.9 %");
        assert_eq!(percent_at_most(0.99 * 0.99 * 0.99), "97.0299 %");
        assert_eq!(percent_at_most(0.999_999_99), "99.9999 %");
    }
}
