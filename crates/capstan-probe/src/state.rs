//! The pure part: thresholds, and from the recorded state to the reports.
//!
//! Nothing here does IO or reads a clock: the runner passes in what happened and
//! when, so the rules are tested directly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::check::{CheckConfig, DependencyKind, Observation};
use crate::report::{CheckResult, HealthReport, Status};
use crate::GateStatus;

/// Whether a check counts as up, and how many results in a row point the other way.
///
/// Architecture Invariant: a check flips only after `failure_threshold` failures or
/// `success_threshold` successes in a row; a check that has never succeeded is down.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Thresholded {
    pub up: bool,
    pub failures_in_row: u32,
    pub successes_in_row: u32,
}

impl Thresholded {
    /// Records one result; returns whether `up` flipped.
    pub fn record(
        &mut self,
        success: bool,
        failure_threshold: u32,
        success_threshold: u32,
    ) -> bool {
        if success {
            self.failures_in_row = 0;
            self.successes_in_row = self.successes_in_row.saturating_add(1);
            if !self.up && self.successes_in_row >= success_threshold {
                self.up = true;
                return true;
            }
        } else {
            self.successes_in_row = 0;
            self.failures_in_row = self.failures_in_row.saturating_add(1);
            if self.up && self.failures_in_row >= failure_threshold {
                self.up = false;
                return true;
            }
        }
        false
    }
}

/// How one run of a check ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Run {
    /// When it ended (or was given up on).
    pub at: SystemTime,
    /// How long it took, or how long it had been pending.
    pub duration: Duration,
    pub result: Result<Observation, String>,
}

/// Everything known about one check.
#[derive(Debug, Clone)]
pub(crate) struct CheckRecord {
    pub config: Arc<CheckConfig>,
    pub state: Thresholded,
    pub last: Option<Run>,
}

impl CheckRecord {
    pub fn new(config: Arc<CheckConfig>) -> Self {
        Self {
            config,
            state: Thresholded::default(),
            last: None,
        }
    }

    /// Records a run; returns whether the check flipped.
    pub fn record(&mut self, run: Run) -> bool {
        let flipped = self.state.record(
            run.result.is_ok(),
            self.config.failure_threshold,
            self.config.success_threshold,
        );
        self.last = Some(run);
        flipped
    }

    /// The check's status as the health body shows it.
    pub fn status(&self) -> Status {
        match (self.state.up, self.config.kind) {
            (true, _) => Status::Pass,
            (false, DependencyKind::Private) => Status::Fail,
            (false, DependencyKind::Shared) => Status::Warn,
        }
    }

    fn output(&self) -> Option<String> {
        let c = &self.config;
        let Some(run) = &self.last else {
            return Some("not checked yet".to_owned());
        };
        match (&run.result, self.state.up) {
            (Ok(obs), true) => obs.output.clone(),
            (Err(e), false) => Some(e.clone()),
            (Err(e), true) => Some(format!(
                "{e} ({} of {} failures in a row before it fails)",
                self.state.failures_in_row, c.failure_threshold
            )),
            (Ok(obs), false) => {
                let progress = format!(
                    "recovering: {} of {} successes in a row before it passes",
                    self.state.successes_in_row, c.success_threshold
                );
                Some(match &obs.output {
                    Some(o) => format!("{o} ({progress})"),
                    None => progress,
                })
            }
        }
    }

    pub fn result(&self) -> CheckResult {
        let c = &self.config;
        let (value, unit) = match &self.last {
            None => (None, None),
            Some(Run {
                result:
                    Ok(Observation {
                        value: Some(v),
                        unit,
                        ..
                    }),
                ..
            }) => (Some(*v), unit.clone()),
            Some(run) => (
                Some(run.duration.as_secs_f64() * 1000.0),
                Some("ms".to_owned()),
            ),
        };
        CheckResult {
            component_id: Some(c.id.clone()),
            component_type: Some(c.component_type.clone()),
            observed_value: value
                .and_then(|v| serde_json::Number::from_f64(round3(v)).map(Into::into)),
            observed_unit: unit,
            status: self.status(),
            time: self.last.as_ref().map(|r| rfc3339(r.at)),
            output: self.output(),
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// RFC 3339 in UTC with milliseconds.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Who the service is, copied into every full report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceInfo {
    pub service_id: Option<String>,
    pub version: Option<String>,
    pub release_id: Option<String>,
    pub description: Option<String>,
}

/// The whole state the background runners and the application write.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub info: ServiceInfo,
    pub gate: GateStatus,
    pub gate_since: SystemTime,
    pub warmed_up: Option<SystemTime>,
    pub draining: Option<SystemTime>,
    pub checks: Vec<CheckRecord>,
}

impl Model {
    pub fn new(info: ServiceInfo, now: SystemTime) -> Self {
        Self {
            info,
            gate: GateStatus::default(),
            gate_since: now,
            warmed_up: None,
            draining: None,
            checks: Vec::new(),
        }
    }

    fn base(&self, status: Status, output: Option<String>) -> HealthReport {
        HealthReport {
            status,
            version: self.info.version.clone(),
            release_id: self.info.release_id.clone(),
            service_id: self.info.service_id.clone(),
            description: self.info.description.clone(),
            output,
            checks: BTreeMap::new(),
        }
    }

    fn gate_result(&self) -> CheckResult {
        let (status, output) = match &self.gate {
            GateStatus::Compatible => (Status::Pass, None),
            GateStatus::Waiting(why) => (Status::Fail, Some(format!("waiting: {why}"))),
            GateStatus::Refused(why) => (Status::Fail, Some(format!("refused: {why}"))),
        };
        CheckResult {
            component_id: Some("gate".to_owned()),
            component_type: Some("component".to_owned()),
            observed_value: None,
            observed_unit: None,
            status,
            time: Some(rfc3339(self.gate_since)),
            output,
        }
    }

    /// `/readyz`: the gate passed, not draining, every private dependency up; a
    /// shared dependency that is down only warns.
    pub fn readyz(&self) -> HealthReport {
        let gate = self.gate_result();
        let mut status = gate.status;
        let mut reasons = Vec::new();
        if let Some(o) = &gate.output {
            reasons.push(format!("gate {o}"));
        }
        let mut checks = BTreeMap::new();
        checks.insert("gate:compatibility".to_owned(), vec![gate]);
        for record in &self.checks {
            let result = record.result();
            if result.status > Status::Pass {
                reasons.push(format!(
                    "{}: {}",
                    record.config.id,
                    result.output.as_deref().unwrap_or("failing")
                ));
            }
            status = status.max(result.status);
            checks.insert(record.config.key(), vec![result]);
        }
        if let Some(at) = self.draining {
            status = Status::Fail;
            reasons.insert(0, "draining".to_owned());
            checks.insert(
                "process:draining".to_owned(),
                vec![CheckResult {
                    component_id: Some("process".to_owned()),
                    component_type: Some("system".to_owned()),
                    observed_value: None,
                    observed_unit: None,
                    status: Status::Fail,
                    time: Some(rfc3339(at)),
                    output: Some("draining".to_owned()),
                }],
            );
        }
        let output = (status > Status::Pass).then(|| reasons.join("; "));
        let mut report = self.base(status, output);
        report.checks = checks;
        report
    }

    /// `/startupz`: the gate passed and warm-up finished.
    pub fn startupz(&self) -> HealthReport {
        let gate = self.gate_result();
        let warm = CheckResult {
            component_id: Some("warmup".to_owned()),
            component_type: Some("component".to_owned()),
            observed_value: None,
            observed_unit: None,
            status: if self.warmed_up.is_some() {
                Status::Pass
            } else {
                Status::Fail
            },
            time: self.warmed_up.map(rfc3339),
            output: self.warmed_up.is_none().then(|| "warming up".to_owned()),
        };
        let status = gate.status.max(warm.status);
        let reasons: Vec<String> = [
            gate.output.as_ref().map(|o| format!("gate {o}")),
            warm.output.clone(),
        ]
        .into_iter()
        .flatten()
        .collect();
        let output = (status > Status::Pass).then(|| reasons.join("; "));
        let mut report = self.base(status, output);
        report
            .checks
            .insert("gate:compatibility".to_owned(), vec![gate]);
        report
            .checks
            .insert("warmup:completed".to_owned(), vec![warm]);
        report
    }
}

impl ServiceInfo {
    /// `/livez`: the process answers, so it passes.
    pub fn livez(&self, uptime: Duration, now: SystemTime) -> HealthReport {
        let mut report = HealthReport::status_only(Status::Pass);
        report.version = self.version.clone();
        report.release_id = self.release_id.clone();
        report.service_id = self.service_id.clone();
        report.description = self.description.clone();
        report.checks.insert(
            "uptime".to_owned(),
            vec![CheckResult {
                component_id: None,
                component_type: Some("system".to_owned()),
                observed_value: serde_json::Number::from_f64(round3(uptime.as_secs_f64()))
                    .map(Into::into),
                observed_unit: Some("s".to_owned()),
                status: Status::Pass,
                time: Some(rfc3339(now)),
                output: None,
            }],
        );
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(results: &[bool], fail: u32, succeed: u32) -> Vec<bool> {
        let mut m = Thresholded::default();
        results
            .iter()
            .map(|&ok| {
                m.record(ok, fail, succeed);
                m.up
            })
            .collect()
    }

    #[test]
    fn starts_down_and_comes_up_after_success_threshold() {
        assert_eq!(machine(&[true], 3, 1), [true]);
        assert_eq!(machine(&[true, true, true], 3, 2), [false, true, true]);
    }

    #[test]
    fn flips_down_only_after_failure_threshold_in_a_row() {
        assert_eq!(
            machine(&[true, false, false, false, false], 3, 1),
            [true, true, true, false, false]
        );
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        assert_eq!(
            machine(&[true, false, false, true, false, false, false], 3, 1),
            [true, true, true, true, true, true, false]
        );
    }

    #[test]
    fn a_failure_resets_the_success_count() {
        assert_eq!(
            machine(&[true, false, true, false, true, true], 1, 2),
            [false, false, false, false, false, true]
        );
    }

    #[test]
    fn record_reports_flips() {
        let mut m = Thresholded::default();
        assert!(m.record(true, 2, 1));
        assert!(!m.record(false, 2, 1));
        assert!(m.record(false, 2, 1));
        assert!(!m.record(false, 2, 1));
    }

    fn record(kind: DependencyKind, up: bool) -> CheckRecord {
        let mut r = CheckRecord::new(Arc::new(CheckConfig::new("db", kind).thresholds(1, 1)));
        r.record(Run {
            at: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(3),
            result: if up {
                Ok(Observation::ok())
            } else {
                Err("refused".into())
            },
        });
        r
    }

    fn ready_model(checks: Vec<CheckRecord>) -> Model {
        let mut m = Model::new(ServiceInfo::default(), SystemTime::UNIX_EPOCH);
        m.gate = GateStatus::Compatible;
        m.checks = checks;
        m
    }

    #[test]
    fn readiness_rules() {
        use DependencyKind::*;
        assert_eq!(ready_model(vec![]).readyz().status, Status::Pass);
        assert_eq!(
            ready_model(vec![record(Private, true)]).readyz().status,
            Status::Pass
        );
        assert_eq!(
            ready_model(vec![record(Private, false)]).readyz().status,
            Status::Fail
        );
        assert_eq!(
            ready_model(vec![record(Shared, false)]).readyz().status,
            Status::Warn
        );
        assert_eq!(
            ready_model(vec![record(Shared, false), record(Private, false)])
                .readyz()
                .status,
            Status::Fail
        );
        let mut m = ready_model(vec![]);
        m.gate = GateStatus::Waiting("0002 pending".into());
        assert_eq!(m.readyz().status, Status::Fail);
        assert_eq!(
            m.readyz().output.as_deref(),
            Some("gate waiting: 0002 pending")
        );
        let mut m = ready_model(vec![record(Shared, false)]);
        m.draining = Some(SystemTime::UNIX_EPOCH);
        assert_eq!(m.readyz().status, Status::Fail);
        assert!(m.readyz().output.unwrap().starts_with("draining"));
    }

    #[test]
    fn a_check_never_run_is_down_and_says_so() {
        let r = CheckRecord::new(Arc::new(CheckConfig::private("db")));
        let result = r.result();
        assert_eq!(result.status, Status::Fail);
        assert_eq!(result.output.as_deref(), Some("not checked yet"));
        assert_eq!(result.time, None);
    }

    #[test]
    fn startup_needs_gate_and_warmup() {
        let mut m = Model::new(ServiceInfo::default(), SystemTime::UNIX_EPOCH);
        assert_eq!(m.startupz().status, Status::Fail);
        m.gate = GateStatus::Compatible;
        assert_eq!(m.startupz().status, Status::Fail);
        assert_eq!(m.startupz().output.as_deref(), Some("warming up"));
        m.warmed_up = Some(SystemTime::UNIX_EPOCH);
        assert_eq!(m.startupz().status, Status::Pass);
        m.gate = GateStatus::Refused("drift in 0003".into());
        assert_eq!(m.startupz().status, Status::Fail);
    }
}
