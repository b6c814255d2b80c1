//! The error budget policy (`[slo.policy]`) and the gate's decision. The
//! decision is pure: it reads evaluations and the latest override.

use serde::Serialize;

use crate::deploys::Deploy;
use crate::math::{Evaluation, Severity, MINUTE_MS};

/// When deploys freeze.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// Freeze when less than this share of a budget is left (0: once spent).
    pub freeze_below: f64,
    /// Freeze while a page alert fires.
    pub freeze_on_page: bool,
    /// How long an override lets deploys through, ms.
    pub override_for_ms: i64,
    /// Services whose SLOs count (`None`: all).
    pub services: Option<Vec<String>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            freeze_below: 0.0,
            freeze_on_page: true,
            override_for_ms: 60 * MINUTE_MS,
            services: None,
        }
    }
}

impl Policy {
    /// The policy of a `[slo.policy]` table; errors name the key.
    pub fn from_config(c: &capstan_migrate::SloPolicyConfig) -> Result<Policy, String> {
        let mut p = Policy::default();
        if let Some(v) = c.freeze_below {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "[slo.policy] freeze_below: {v} is outside [0, 1] (a share of the budget: 0.1 freezes with 10 % left)"
                ));
            }
            p.freeze_below = v;
        }
        if let Some(v) = c.freeze_on_page {
            p.freeze_on_page = v;
        }
        if let Some(v) = &c.override_for {
            let d = capstan_migrate::parse_duration(v)
                .map_err(|e| format!("[slo.policy] override_for: {e}"))?;
            p.override_for_ms = d.as_millis() as i64;
        }
        p.services = c.services.clone();
        Ok(p)
    }

    /// Whether the policy reads SLOs of `service`.
    pub fn covers(&self, service: &str) -> bool {
        self.services
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == service))
    }
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum Verdict {
    /// Ship.
    Ship,
    /// Frozen, with the reasons.
    Frozen {
        /// One line per SLO that freezes.
        reasons: Vec<String>,
    },
    /// Would be frozen, but an override is in force.
    Overridden {
        /// What would have frozen it.
        reasons: Vec<String>,
        /// The override.
        by: Deploy,
    },
}

/// Why one evaluated objective freezes deploys, if it does.
pub fn freeze_reason(policy: &Policy, name: &str, e: &Evaluation) -> Option<String> {
    let mut why = Vec::new();
    if e.budget.remaining <= policy.freeze_below && (e.budget.consumed > 0.0) {
        if policy.freeze_below == 0.0 || e.budget.remaining <= 0.0 {
            why.push(format!(
                "error budget spent ({:.0} % consumed)",
                e.budget.consumed * 100.0
            ));
        } else {
            why.push(format!(
                "{:.1} % of the error budget left, below the policy's {:.1} %",
                e.budget.remaining * 100.0,
                policy.freeze_below * 100.0
            ));
        }
    }
    if policy.freeze_on_page && e.alert.state == Severity::Page {
        let c = &e.alert.firing[0];
        why.push(format!(
            "page alert firing (burn rate above {:.1}x over {} and {})",
            c.factor,
            minutes_label(c.long_minutes),
            minutes_label(c.short_minutes)
        ));
    }
    (!why.is_empty()).then(|| format!("SLO {name}: {}", why.join("; ")))
}

/// `60` → `1h`, `4320` → `3d`.
pub fn minutes_label(m: i64) -> String {
    if m % 1440 == 0 {
        format!("{}d", m / 1440)
    } else if m % 60 == 0 {
        format!("{}h", m / 60)
    } else {
        format!("{m}m")
    }
}

/// The decision from each objective's freeze reason and the override in
/// force (one recorded within `override_for` of now), if any.
pub fn decide(reasons: Vec<String>, override_in_force: Option<Deploy>) -> Verdict {
    match (reasons.is_empty(), override_in_force) {
        (true, _) => Verdict::Ship,
        (false, Some(by)) => Verdict::Overridden { reasons, by },
        (false, None) => Verdict::Frozen { reasons },
    }
}
