//! The cells of one step, as data ([`Cell`]) and one function each: which
//! binary runs on which schema state, and what it must do there.

use std::ops::ControlFlow;
use std::time::Instant;

use capstan_migrate::Phase;

use crate::config::Release;
use crate::load::Load;
use crate::migrations::{MigrationError, MigrationInfo};
use crate::process::Proc;
use crate::report::{self, Failure, Outcome};
use crate::Error;

use super::actions::{gate_message, refusal_failure, tail, Start};
use super::{ms, Context, Step};

/// One row of a step's matrix. The report numbers them 1 to 6 (see the
/// crate docs); cell 3 and cell 5 each have more than one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cell {
    /// 1: release N on N's schema (the baseline).
    Baseline,
    /// 2: N+1's expand migrations applied while N serves; N still passes.
    Expanded,
    /// 3: N+1 starts next to N (its gate lets it) and passes; then N leaves.
    NewBinary,
    /// 3: N+1's gate holds it back until its contract runs, as it should.
    NewBinaryWaits,
    /// 4: binary rollback: N restarted on the expanded schema.
    Rollback,
    /// 5: N+1's contract migrations applied with N stopped; N+1 passes.
    ContractNew,
    /// 5: N on the contracted schema: the gate refuses it.
    ContractOld,
    /// 5: N+1 has no contract migrations (skipped).
    NoContract,
    /// 6: everything stopped, down to N's schema, N passes again.
    Down,
    /// Move 2: the target's new migrations (plan-move's step 1) while the
    /// source's old binary serves.
    MoveTarget,
    /// Move 3: the source's expand migrations (step 2: the table moves, a
    /// view keeps the old name) while the old binary serves.
    MoveSource,
    /// Move 4: the target's binary starts beside the old one (step 3).
    MoveNew,
    /// Move 4: the old binary again, beside the new one.
    MoveOldBeside,
    /// Move 5: the old binary stopped, the source's contract (step 4)
    /// applied; the new binary passes.
    MoveContract,
    /// Move 6: step 4 rolled back; the old binary restarted beside the new.
    MoveUndoContract,
    /// Move 6: the new binary beside the restarted old one.
    MoveUndoContractNew,
    /// Move 7: the new binary stopped, step 2 rolled back; the old binary passes.
    MoveUndoSource,
    /// Move 8: step 1 rolled back; the old binary passes.
    MoveUndoTarget,
}

/// The cells a failed expand leaves unrun.
const AFTER_EXPAND: [Cell; 5] = [
    Cell::NewBinary,
    Cell::Rollback,
    Cell::ContractNew,
    Cell::ContractOld,
    Cell::Down,
];

impl Cell {
    /// Its number in the report.
    pub(super) fn number(self) -> u8 {
        match self {
            Cell::Baseline => 1,
            Cell::Expanded => 2,
            Cell::NewBinary | Cell::NewBinaryWaits => 3,
            Cell::Rollback => 4,
            Cell::ContractNew | Cell::ContractOld | Cell::NoContract => 5,
            Cell::Down => 6,
            Cell::MoveTarget => 2,
            Cell::MoveSource => 3,
            Cell::MoveNew | Cell::MoveOldBeside => 4,
            Cell::MoveContract => 5,
            Cell::MoveUndoContract | Cell::MoveUndoContractNew => 6,
            Cell::MoveUndoSource => 7,
            Cell::MoveUndoTarget => 8,
        }
    }

    /// Its title in the report.
    fn title(self) -> &'static str {
        match self {
            Cell::Baseline => "baseline",
            Cell::Expanded => "old binary on the expanded schema",
            Cell::NewBinary => "new binary starts: gate and smoke",
            Cell::NewBinaryWaits => "new binary waits for its contract",
            Cell::Rollback => "rollback: old binary restarted",
            Cell::ContractNew => "contract applied: new binary",
            Cell::ContractOld => "contract applied: old binary refused",
            Cell::NoContract => "contract",
            Cell::Down => "down to the old schema",
            Cell::MoveTarget => "step 1 (target, expand) applied: old binary serves",
            Cell::MoveSource => "step 2 (source, expand) applied: old binary serves",
            Cell::MoveNew => "step 3: new binary starts beside the old",
            Cell::MoveOldBeside => "step 3: old binary beside the new",
            Cell::MoveContract => {
                "step 4 (source, contract) applied, old binary stopped: new binary"
            }
            Cell::MoveUndoContract => "rollback of step 4: old binary restarted beside the new",
            Cell::MoveUndoContractNew => "rollback of step 4: new binary beside the old",
            Cell::MoveUndoSource => "rollback of step 2: new binary stopped, old binary serves",
            Cell::MoveUndoTarget => "rollback of step 1: old binary serves",
        }
    }

    /// True when the cell's binary is the newer release's (N+1).
    fn runs_new(self) -> bool {
        matches!(
            self,
            Cell::NewBinary
                | Cell::NewBinaryWaits
                | Cell::ContractNew
                | Cell::NoContract
                | Cell::MoveNew
                | Cell::MoveContract
                | Cell::MoveUndoContractNew
        )
    }
}

/// What a step's cells know before the first runs: the new migrations and
/// the names of the schema states.
struct Plan<'a> {
    /// N's latest migration version (the target of the down cell).
    n_latest: u64,
    /// N+1's migrations N lacks, in order.
    new: Vec<&'a MigrationInfo>,
    /// The leading expand migrations of `new`.
    expand: Vec<&'a MigrationInfo>,
    /// N's schema: `1.0.0`.
    s_n: String,
    /// N's schema plus N+1's expand migrations: `1.0.0 + 2.0.0 expand`.
    s_exp: String,
    /// N+1's whole schema: `2.0.0`.
    s_m: String,
    /// Back down: `1.0.0 (down from 2.0.0)`.
    s_down: String,
}

impl<'a> Plan<'a> {
    fn new(n: &Release, m: &Release, set_n: &[MigrationInfo], set_m: &'a [MigrationInfo]) -> Self {
        let n_latest = set_n.iter().map(|x| x.version).max().unwrap_or(0);
        let new: Vec<&MigrationInfo> = set_m.iter().filter(|x| x.version > n_latest).collect();
        let expand: Vec<&MigrationInfo> = new
            .iter()
            .copied()
            .take_while(|x| x.phase == Phase::Expand)
            .collect();
        let s_exp = if expand.is_empty() {
            n.name.clone()
        } else {
            format!("{} + {} expand", n.name, m.name)
        };
        Plan {
            n_latest,
            new,
            expand,
            s_n: n.name.clone(),
            s_exp,
            s_m: m.name.clone(),
            s_down: format!("{} (down from {})", n.name, m.name),
        }
    }

    fn has_contract(&self) -> bool {
        self.expand.len() < self.new.len()
    }

    /// The new migrations after the expand ones.
    fn rest(&self) -> &[&'a MigrationInfo] {
        &self.new[self.expand.len()..]
    }
}

/// The binaries one cell hands on to the next.
#[derive(Default)]
struct Binaries {
    /// N, from the baseline until N+1 has started.
    old: Option<Proc>,
    /// N+1, from cell 3 until the rollback.
    new: Option<Proc>,
    /// What serves between cells 4 and 6: N restarted, then N+1 after its contract.
    serving: Option<Proc>,
    /// N+1's gate held it back in cell 3 until its contract runs.
    new_waits_for_contract: bool,
}

fn pass_or_fail(r: Result<(), Failure>) -> Outcome {
    match r {
        Ok(()) => Outcome::Pass { note: None },
        Err(f) => Outcome::Fail(f),
    }
}

impl Context<'_> {
    /// Walks the cells of `step`. Returns a failure that stopped the step
    /// before its first cell.
    pub(super) async fn walk(&mut self, step: &mut Step<'_>) -> Result<Option<Failure>, Error> {
        let (n, m) = (step.n, step.m);
        let (set_n, set_m) = match (self.sets.get(&n.name), self.sets.get(&m.name)) {
            (Some(a), Some(b)) => (a.clone(), b.clone()),
            _ => unreachable!("sets are read before the steps; a failure skips the step"),
        };
        if let Some(f) = self.prepare(step).await? {
            return Ok(Some(f));
        }
        let plan = Plan::new(n, m, &set_n, &set_m);
        if self.options.load {
            step.load = Some(Load::start(self.options.load_workers));
        }
        let mut bins = Binaries::default();
        self.baseline(step, &plan, &mut bins).await?;
        if self.expanded(step, &plan, &mut bins).await?.is_break() {
            return Ok(None);
        }
        self.new_binary(step, &plan, &mut bins).await?;
        self.rollback(step, &plan, &mut bins).await?;
        if plan.has_contract() {
            if self.contract_new(step, &plan, &mut bins).await?.is_break() {
                return Ok(None);
            }
            self.contract_old(step, &plan.s_m).await?;
        } else {
            let t = Instant::now();
            let reason = format!("{} has no contract migrations", m.name);
            let outcome = Outcome::Skipped { reason };
            self.push(step, Cell::NoContract, &plan.s_exp, vec![], outcome, t);
        }
        self.down(step, &plan, &mut bins).await?;
        Ok(None)
    }

    /// N's schema, then the seed: a failure here stops the step.
    async fn prepare(&mut self, step: &mut Step<'_>) -> Result<Option<Failure>, Error> {
        let n = step.n;
        if let Err(f) = self.migrate_up(step, n, None).await? {
            return Ok(Some(Failure {
                summary: format!("cannot build {}'s schema: {}", n.name, f.summary),
                ..f
            }));
        }
        self.seed(step).await
    }

    /// Loads N's seed (once N's schema exists), after clearing the load
    /// windows: a failure here stops the step.
    pub(super) async fn seed(&mut self, step: &mut Step<'_>) -> Result<Option<Failure>, Error> {
        step.windows.clear();
        let Some(seed) = &step.n.seed else {
            return Ok(None);
        };
        let t = Instant::now();
        let r = step.db.seed(seed).await;
        self.spent.seed += t.elapsed();
        Ok(r.err().map(|e| Failure {
            summary: e.to_string(),
            what: format!("seed {}", seed.display()),
            output: String::new(),
            log: Vec::new(),
        }))
    }

    /// Cell 1: N starts on its own schema and passes.
    async fn baseline(
        &mut self,
        step: &mut Step<'_>,
        plan: &Plan<'_>,
        bins: &mut Binaries,
    ) -> Result<(), Error> {
        let n = step.n;
        let t = Instant::now();
        let outcome = match self.start_expecting_ready(step, n).await? {
            Ok(p) => {
                self.serve(step, &p);
                let r = self.smoke(step, n, &p, Cell::Baseline).await;
                bins.old = Some(p);
                pass_or_fail(r)
            }
            Err(f) => Outcome::Fail(f),
        };
        self.push(step, Cell::Baseline, &plan.s_n, vec![], outcome, t);
        Ok(())
    }

    /// Cell 2: N+1's expand migrations while N serves. A failure leaves the
    /// later cells unrun.
    async fn expanded(
        &mut self,
        step: &mut Step<'_>,
        plan: &Plan<'_>,
        bins: &mut Binaries,
    ) -> Result<ControlFlow<()>, Error> {
        let (n, m) = (step.n, step.m);
        let t = Instant::now();
        let mut ran = Vec::new();
        if let Some(last) = plan.expand.last() {
            match self.migrate_up(step, m, Some(last.version)).await? {
                Ok(a) => ran = a.ran,
                Err(f) => {
                    let labels = plan.expand.iter().map(|x| x.label.clone()).collect();
                    self.push(
                        step,
                        Cell::Expanded,
                        &plan.s_exp,
                        labels,
                        Outcome::Fail(f),
                        t,
                    );
                    let reason = "the expand migrations failed";
                    self.not_run(step, &AFTER_EXPAND, reason, &plan.s_exp);
                    return Ok(ControlFlow::Break(()));
                }
            }
        }
        let outcome = self.run_on(step, n, &mut bins.old, Cell::Expanded).await?;
        self.push(step, Cell::Expanded, &plan.s_exp, ran, outcome, t);
        Ok(ControlFlow::Continue(()))
    }

    /// Cell 3: N+1 starts next to N (a rolling update), then N leaves. A
    /// binary that embeds a pending contract migration must be held back by
    /// its gate until cell 5: that is expected.
    async fn new_binary(
        &mut self,
        step: &mut Step<'_>,
        plan: &Plan<'_>,
        bins: &mut Binaries,
    ) -> Result<(), Error> {
        let (n, m) = (step.n, step.m);
        let t = Instant::now();
        let contract_labels: Vec<&str> = plan
            .rest()
            .iter()
            .filter(|x| x.phase == Phase::Contract)
            .map(|x| x.label.as_str())
            .collect();
        let mut waits = false;
        let outcome = match self.start(step, m).await? {
            Start::Ready(p) => {
                self.serve(step, &p);
                let r = self.smoke(step, m, &p, Cell::NewBinary).await;
                bins.new = Some(p);
                pass_or_fail(r)
            }
            Start::Failed(f) => Outcome::Fail(f),
            Start::Refused { code, log } => {
                let msg = gate_message(&log);
                let waits_for_contract = msg.contains("refusing to start")
                    && contract_labels.iter().any(|l| msg.contains(l))
                    && !plan.expand.iter().any(|x| msg.contains(&x.label));
                if waits_for_contract {
                    waits = true;
                    Outcome::ExpectedRefusal {
                        message: format!(
                            "{} needs {} first, which may run only once {} is stopped (cell {}): {msg}",
                            m.name,
                            contract_labels.join(", "),
                            n.name,
                            Cell::ContractNew.number()
                        ),
                    }
                } else {
                    Outcome::Fail(refusal_failure(m, code, &log))
                }
            }
        };
        if bins.new.is_some() {
            if let Some(p) = bins.old.take() {
                self.retire(step, p).await;
            }
        }
        bins.new_waits_for_contract = waits;
        let cell = if waits {
            Cell::NewBinaryWaits
        } else {
            Cell::NewBinary
        };
        self.push(step, cell, &plan.s_exp, vec![], outcome, t);
        Ok(())
    }

    /// Cell 4: binary rollback: N again on this schema, N+1 leaves.
    async fn rollback(
        &mut self,
        step: &mut Step<'_>,
        plan: &Plan<'_>,
        bins: &mut Binaries,
    ) -> Result<(), Error> {
        let n = step.n;
        let t = Instant::now();
        let mut back = None;
        let outcome = self.run_on(step, n, &mut back, Cell::Rollback).await?;
        if let Some(p) = bins.old.take() {
            self.retire(step, p).await;
        }
        if let Some(p) = bins.new.take() {
            self.retire(step, p).await;
        }
        self.push(step, Cell::Rollback, &plan.s_exp, vec![], outcome, t);
        bins.serving = back;
        Ok(())
    }

    /// Cell 5, first form: N+1 serves, N stopped, then the rest of N+1's
    /// migrations. A failure leaves the down cell unrun.
    async fn contract_new(
        &mut self,
        step: &mut Step<'_>,
        plan: &Plan<'_>,
        bins: &mut Binaries,
    ) -> Result<ControlFlow<()>, Error> {
        let m = step.m;
        let cell = Cell::ContractNew;
        let t = Instant::now();
        let mut fwd = None;
        let mut pushed = false;
        // N+1 serves through the contract, unless its gate needs the contract first.
        if !bins.new_waits_for_contract {
            if let Err(f) = self.ensure(step, m, &mut fwd).await? {
                self.push(step, cell, &plan.s_m, vec![], Outcome::Fail(f), t);
                pushed = true;
            }
        }
        if let Some(p) = bins.serving.take() {
            self.retire(step, p).await;
        }
        // N must have left the fleet registry before a contract migration may run.
        self.wait_stopped(step).await;
        let t5 = if pushed { Instant::now() } else { t };
        match self.migrate_up(step, m, None).await? {
            Ok(a) => {
                if !pushed {
                    let outcome = self.run_on(step, m, &mut fwd, cell).await?;
                    self.push(step, cell, &plan.s_m, a.ran, outcome, t5);
                }
            }
            Err(f) => {
                if !pushed {
                    let labels = plan.rest().iter().map(|x| x.label.clone()).collect();
                    self.push(step, cell, &plan.s_m, labels, Outcome::Fail(f), t5);
                } else if let Some(report::Cell {
                    outcome: Outcome::Fail(first),
                    ..
                }) = step.cells.last_mut()
                {
                    first.summary = format!(
                        "{}; then the contract migrations failed: {}",
                        first.summary, f.summary
                    );
                }
                if let Some(p) = fwd.take() {
                    self.retire(step, p).await;
                }
                let reason = "the contract migrations failed";
                self.not_run(step, &[Cell::Down], reason, &plan.s_m);
                return Ok(ControlFlow::Break(()));
            }
        }
        bins.serving = fwd;
        Ok(ControlFlow::Continue(()))
    }

    /// Cell 5, second form: the old binary on the contracted schema, which
    /// the gate must refuse (or which must still pass if it starts).
    pub(super) async fn contract_old(
        &mut self,
        step: &mut Step<'_>,
        schema: &str,
    ) -> Result<(), Error> {
        let (n, m) = (step.n, step.m);
        let t = Instant::now();
        let outcome = match self.start(step, n).await? {
            Start::Refused { code, log } => {
                let msg = gate_message(&log);
                if msg.contains("refusing to start") {
                    Outcome::ExpectedRefusal { message: msg }
                } else {
                    Outcome::Fail(Failure {
                        summary: format!(
                            "{} exited with {} instead of being refused by the gate: {msg}",
                            n.name,
                            code.map_or("a signal".into(), |c| format!("code {c}"))
                        ),
                        what: n.command.join(" "),
                        output: String::new(),
                        log: tail(&log, 30),
                    })
                }
            }
            Start::Failed(f) => Outcome::Fail(f),
            Start::Ready(p) => {
                let r = self.smoke(step, n, &p, Cell::ContractOld).await;
                let outcome = match r {
                    Ok(()) => Outcome::Pass {
                        note: Some(format!(
                            "not refused: {}'s contract migrations leave what {} uses",
                            m.name, n.name
                        )),
                    },
                    Err(mut f) => {
                        f.summary = format!(
                            "the gate let {} start on {}'s contracted schema and it fails (is the migration marked `-- capstan:phase contract`?): {}",
                            n.name, m.name, f.summary
                        );
                        Outcome::Fail(f)
                    }
                };
                self.retire(step, p).await;
                outcome
            }
        };
        self.push(step, Cell::ContractOld, schema, vec![], outcome, t);
        Ok(())
    }

    /// Cell 6: schema rollback: everything stopped, down to N's schema, N again.
    async fn down(
        &mut self,
        step: &mut Step<'_>,
        plan: &Plan<'_>,
        bins: &mut Binaries,
    ) -> Result<(), Error> {
        let (n, m) = (step.n, step.m);
        let cell = Cell::Down;
        let t = Instant::now();
        if plan.new.is_empty() {
            let reason = format!("{} has no new migrations", m.name);
            let outcome = Outcome::Skipped { reason };
            self.push(step, cell, &plan.s_n, vec![], outcome, t);
            if let Some(p) = bins.serving.take() {
                self.retire(step, p).await;
            }
            return Ok(());
        }
        if let Some(p) = bins.serving.take() {
            self.retire(step, p).await;
        }
        self.wait_stopped(step).await;
        let runner = self.runner(m, &step.db.url)?;
        let r = runner.down(plan.n_latest).await;
        let outcome = match r {
            Err(MigrationError::NoDown(why)) => {
                let reason = format!("no down sections: {why}");
                let outcome = Outcome::Skipped { reason };
                self.push(step, cell, &plan.s_down, vec![], outcome, t);
                return Ok(());
            }
            r => match self.applied(step, r) {
                Err(f) => Outcome::Fail(f),
                Ok(_) => {
                    let mut again = None;
                    let o = self.run_on(step, n, &mut again, cell).await?;
                    if let Some(p) = again.take() {
                        self.retire(step, p).await;
                    }
                    o
                }
            },
        };
        let labels = plan.new.iter().rev().map(|x| x.label.clone()).collect();
        self.push(step, cell, &plan.s_down, labels, outcome, t);
        Ok(())
    }

    /// Records `cell`'s result. With load on, a stall longer than the limit
    /// or a failed request turns a passing cell into a failure.
    pub(super) fn push(
        &self,
        step: &mut Step<'_>,
        cell: Cell,
        schema: &str,
        migrations: Vec<String>,
        outcome: Outcome,
        started: Instant,
    ) {
        let ended = Instant::now();
        let mut outcome = outcome;
        let load = step
            .load
            .as_ref()
            .map(|l| l.stats(started, ended, &step.windows));
        if let Some(l) = &load {
            let limit = self.options.max_stall.as_secs_f64() * 1000.0;
            if !outcome.is_failure() && l.stall_ms > limit {
                let during = if l.stall_during.is_empty() {
                    String::new()
                } else {
                    format!(" while {} ran", l.stall_during.join(", "))
                };
                outcome = Outcome::Fail(Failure {
                    summary: format!(
                        "requests stalled for {:.0} ms (limit {:.0} ms){during}: a migration holds a lock the application waits on (build indexes CONCURRENTLY, add constraints NOT VALID, batch big updates)",
                        l.stall_ms, limit
                    ),
                    what: format!("load: {} requests, {} errors, p50 {:.0} ms, p99 {:.0} ms, stall starting {:.0} ms into the cell", l.requests, l.errors, l.p50_ms, l.p99_ms, l.stall_at_ms),
                    output: String::new(),
                    log: Vec::new(),
                });
            } else if !outcome.is_failure() && l.errors > 0 {
                outcome = Outcome::Fail(Failure {
                    summary: format!("{} of {} requests failed under load", l.errors, l.requests),
                    what: "load generator".into(),
                    output: String::new(),
                    log: Vec::new(),
                });
            }
        }
        step.cells.push(report::Cell {
            number: cell.number(),
            title: cell.title().into(),
            binary: binary_of(step, cell).name.clone(),
            schema: schema.to_string(),
            migrations,
            outcome,
            duration_ms: ms(ended - started),
            load,
        });
    }

    /// Records `cells` as not run, for `reason`.
    pub(super) fn not_run(&self, step: &mut Step<'_>, cells: &[Cell], reason: &str, schema: &str) {
        for &cell in cells {
            step.cells.push(report::Cell {
                number: cell.number(),
                title: cell.title().into(),
                binary: binary_of(step, cell).name.clone(),
                schema: schema.into(),
                migrations: vec![],
                outcome: Outcome::NotRun {
                    reason: reason.into(),
                },
                duration_ms: 0,
                load: None,
            });
        }
    }
}

/// The release whose binary runs in `cell`.
fn binary_of<'s>(step: &Step<'s>, cell: Cell) -> &'s Release {
    if cell.runs_new() {
        step.m
    } else {
        step.n
    }
}
