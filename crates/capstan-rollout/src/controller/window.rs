//! The current step's events, each read once. Every analysis and every early
//! look judges everything since the step started; reading that from the store
//! each time would cost a look time proportional to the step's age (minutes
//! of traffic at thousands of requests a second), on the same CPUs that serve
//! the users. A [`Window`] keeps the counts and durations it has read and,
//! at each look, reads only the events stored since the last one.
//!
//! The first read takes the step's events by time; later reads follow the
//! store's ids, which grow with every insert, and keep the events whose time
//! is inside the step ([`capstan_events::Store::outcomes`]). An event written
//! late (the recorder batches) is counted when it arrives, as a fresh
//! time-range read would count it.

use super::shadow::Mirrored;
use super::State;
use crate::judge::Counts;

/// What the events of one step showed so far, for one canary and baseline.
#[derive(Debug, Clone)]
pub struct Window {
    service: String,
    baseline: String,
    canary: String,
    from_ms: i64,
    /// The highest id read; `None` before the first read.
    last_id: Option<i64>,
    /// The canary's requests and errors.
    pub canary_counts: Counts,
    /// The baseline's requests and errors.
    pub baseline_counts: Counts,
    /// The canary's durations, ms.
    pub canary_ms: Vec<f64>,
    /// The baseline's durations, ms.
    pub baseline_ms: Vec<f64>,
    /// The mirrored requests (the shadow step's inputs).
    pub mirrored: Mirrored,
}

impl Window {
    /// An empty window for the step `state` is in: its service, releases and
    /// start (`step_started_ms`, which a resumed controller moves to now).
    pub fn new(state: &State) -> Window {
        let none = Counts {
            errors: 0,
            total: 0,
        };
        Window {
            service: state.service.clone(),
            baseline: state.baseline.clone(),
            canary: state.canary.clone(),
            from_ms: state.step_started_ms,
            last_id: None,
            canary_counts: none,
            baseline_counts: none,
            canary_ms: Vec::new(),
            baseline_ms: Vec::new(),
            mirrored: Mirrored::default(),
        }
    }

    /// Whether this window still counts for `state` (same step start and
    /// releases); a new step, or a resume, needs a new one.
    pub fn is_for(&self, state: &State) -> bool {
        self.from_ms == state.step_started_ms
            && self.service == state.service
            && self.baseline == state.baseline
            && self.canary == state.canary
    }

    /// Where the window's data start.
    pub fn from_ms(&self) -> i64 {
        self.from_ms
    }

    /// Reads the events stored since the last call (only the columns the judge
    /// needs).
    pub fn catch_up(&mut self, store: &capstan_events::Store) -> Result<(), capstan_events::Error> {
        let service = self.service.clone();
        let last = store.outcomes(self.last_id, self.from_ms, &service, |o| self.add(&o))?;
        self.last_id = Some(last);
        Ok(())
    }

    fn add(&mut self, e: &capstan_events::Outcome) {
        // A body the client broke off or stalled: neither a request the
        // release answered nor a latency of it.
        if e.client_body {
            return;
        }
        self.mirrored.add(e, &self.baseline);
        let (counts, ms) = if e.release == self.canary {
            (&mut self.canary_counts, &mut self.canary_ms)
        } else if e.release == self.baseline {
            (&mut self.baseline_counts, &mut self.baseline_ms)
        } else {
            return;
        };
        counts.total += 1;
        if e.status >= 500 || e.failed {
            counts.errors += 1;
        }
        if e.duration_ms.is_finite() && e.duration_ms >= 0.0 {
            ms.push(e.duration_ms);
        }
    }
}
