//! The judge: canary against baseline over the same interval, metric by metric, to
//! one verdict with its evidence.
//!
//! Pure: no IO, no async, no clock (the caller passes the interval and the time of
//! judgement). Too little data is [`Verdict::Inconclusive`], never a pass.
//!
//! The modules behind this facade: `config` (thresholds, metric specs and
//! rules), `metric` (one metric's test and evidence), `verdict` (groups, score
//! and verdict), `report` (the report and its evidence, which read back from
//! JSON), `observed` (what each side showed), `sample` (the sorted samples the tests read) and [`stats`]
//! (the tests themselves).

mod config;
mod metric;
mod observed;
mod report;
mod sample;
pub mod stats;
mod verdict;

pub use config::{Direction, JudgeError, MetricSpec, Rule, Thresholds};
pub use metric::{judge_metric, Outcome};
pub use observed::{Counts, Observed};
pub use report::{
    Evidence, GroupResult, Interval, MannWhitneyEvidence, MetricResult, Report, SideCounts,
    SideSummary, TailEvidence,
};
pub use sample::Samples;
pub use stats::HodgesLehmann;
pub use verdict::{combine, judge, Verdict};
