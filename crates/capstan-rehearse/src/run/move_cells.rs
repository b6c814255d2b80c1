//! The cells of a table's move between two services (`[move]`): plan-move's
//! steps in their real order across the source's and the target's histories,
//! then each step rolled back, latest first, with the source's old binary
//! serving throughout and the target's new binary beside it while the table
//! can be reached by both names.

use std::time::Instant;

use capstan_migrate::Phase;

use crate::config::Release;
use crate::load::Load;
use crate::migrations::{Applied, MigrationError, MigrationInfo};
use crate::moving::Move;
use crate::process::Proc;
use crate::report::{Failure, Outcome};
use crate::Error;

use super::cells::Cell;
use super::{Context, Step};

/// What the move's cells know before the first runs.
struct MovePlan {
    /// The old binary's latest source migration (where step 2 rolls back to).
    old_latest: u64,
    /// The target's new migrations: step 1.
    target: Vec<MigrationInfo>,
    /// The source's leading new expand migrations: step 2.
    expand: Vec<MigrationInfo>,
    /// The rest of the source's new migrations: step 4.
    contract: Vec<MigrationInfo>,
}

/// The binaries that serve between cells.
#[derive(Default)]
struct Fleet {
    /// The source's old binary (the first release).
    old: Option<Proc>,
    /// The target's new binary (the second release).
    new: Option<Proc>,
}

/// The cells after each one, for the `not run` rows a failure leaves.
const ORDER: [Cell; 10] = [
    Cell::MoveTarget,
    Cell::MoveSource,
    Cell::MoveNew,
    Cell::MoveOldBeside,
    Cell::MoveContract,
    Cell::ContractOld,
    Cell::MoveUndoContract,
    Cell::MoveUndoContractNew,
    Cell::MoveUndoSource,
    Cell::MoveUndoTarget,
];

fn after(cell: Cell) -> &'static [Cell] {
    let i = ORDER.iter().position(|c| *c == cell).map_or(0, |i| i + 1);
    &ORDER[i..]
}

/// `service: 0002_label` for each label.
fn labelled(service: &str, labels: impl IntoIterator<Item = String>) -> Vec<String> {
    labels
        .into_iter()
        .map(|l| format!("{service}: {l}"))
        .collect()
}

impl Context<'_> {
    /// Walks the move's cells. Returns a failure that stopped it before
    /// its first cell.
    pub(super) async fn walk_move(
        &mut self,
        step: &mut Step<'_>,
    ) -> Result<Option<Failure>, Error> {
        let config = self.config;
        let mv = config.moving.as_ref().expect("walk_move runs for [move]");
        let (n, m, src) = (step.n, step.m, &mv.source_migrations);
        let set = |name: &str| {
            self.sets
                .get(name)
                .cloned()
                .expect("sets are read before the steps; a failure skips the step")
        };
        let (set_old, set_src, set_target) = (set(&n.name), set(&src.name), set(&m.name));
        let old_latest = set_old.iter().map(|x| x.version).max().unwrap_or(0);
        let new_src: Vec<MigrationInfo> = set_src
            .into_iter()
            .filter(|x| x.version > old_latest)
            .collect();
        let split = new_src
            .iter()
            .position(|x| x.phase != Phase::Expand)
            .unwrap_or(new_src.len());
        let plan = MovePlan {
            old_latest,
            target: set_target
                .into_iter()
                .filter(|x| x.version > mv.target_from)
                .collect(),
            expand: new_src[..split].to_vec(),
            contract: new_src[split..].to_vec(),
        };
        if let Some(f) = self.prepare_move(step, mv).await? {
            return Ok(Some(f));
        }
        if self.options.load {
            step.load = Some(Load::start(self.options.load_workers));
        }
        let s = MoveStates::new(n, mv);
        let mut fleet = Fleet::default();
        let t = Instant::now();
        let outcome = self.run_on(step, n, &mut fleet.old, Cell::Baseline).await?;
        self.push(step, Cell::Baseline, &s.before, vec![], outcome, t);

        // Step 1, the target's schema, then step 2, the table's move:
        // each applied while the old binary serves.
        let last_target = plan.target.last().map(|x| x.version);
        let last_expand = plan.expand.last().map(|x| x.version);
        for (cell, release, to, planned, schema) in [
            (Cell::MoveTarget, m, last_target, &plan.target, &s.step1),
            (Cell::MoveSource, src, last_expand, &plan.expand, &s.step2),
        ] {
            let t = Instant::now();
            let mut ran = Vec::new();
            if let Some(to) = to {
                match self.migrate_up(step, release, Some(to)).await? {
                    Ok(a) => ran = self.ran(release, a),
                    Err(f) => {
                        let labels = planned.iter().map(|x| x.label.clone());
                        let labels = labelled(service(release), labels);
                        let outcome = Outcome::Fail(f);
                        return self
                            .stop_with(step, &mut fleet, cell, schema, labels, outcome, t)
                            .await;
                    }
                }
            }
            let outcome = self.run_on(step, n, &mut fleet.old, cell).await?;
            self.push(step, cell, schema, ran, outcome, t);
        }

        // Step 3: the new binary beside the old, each reading what the other wrote.
        let t = Instant::now();
        let outcome = self.run_on(step, m, &mut fleet.new, Cell::MoveNew).await?;
        self.push(step, Cell::MoveNew, &s.step2, vec![], outcome, t);
        let t = Instant::now();
        let outcome = self
            .run_on(step, n, &mut fleet.old, Cell::MoveOldBeside)
            .await?;
        self.push(step, Cell::MoveOldBeside, &s.step2, vec![], outcome, t);

        // Step 4, once the source's fleet no longer needs the old name; then its rollback.
        if plan.contract.is_empty() {
            let t = Instant::now();
            let reason = format!("{} has no contract migrations", src.name);
            let outcome = Outcome::Skipped { reason };
            self.push(step, Cell::NoContract, &s.step2, vec![], outcome, t);
        } else {
            let t = Instant::now();
            if let Some(p) = fleet.old.take() {
                self.retire(step, p).await;
            }
            // The old binary must have left the source's fleet registry.
            self.wait_stopped(step).await;
            let ran = match self.migrate_up(step, src, None).await? {
                Ok(a) => self.ran(src, a),
                Err(f) => {
                    let labels = plan.contract.iter().map(|x| x.label.clone());
                    let labels = labelled(&mv.source, labels);
                    let (cell, outcome) = (Cell::MoveContract, Outcome::Fail(f));
                    return self
                        .stop_with(step, &mut fleet, cell, &s.step4, labels, outcome, t)
                        .await;
                }
            };
            let outcome = self
                .run_on(step, m, &mut fleet.new, Cell::MoveContract)
                .await?;
            self.push(step, Cell::MoveContract, &s.step4, ran, outcome, t);
            self.contract_old(step, &s.step4).await?;

            let t = Instant::now();
            let back_to = last_expand.unwrap_or(plan.old_latest);
            let labels = labelled(
                &mv.source,
                plan.contract.iter().rev().map(|x| x.label.clone()),
            );
            let cell = Cell::MoveUndoContract;
            match self.down_to(step, src, back_to).await? {
                Ok(()) => {
                    let outcome = self.run_on(step, n, &mut fleet.old, cell).await?;
                    self.push(step, cell, &s.undo4, labels, outcome, t);
                    let t = Instant::now();
                    let cell = Cell::MoveUndoContractNew;
                    let outcome = self.run_on(step, m, &mut fleet.new, cell).await?;
                    self.push(step, cell, &s.undo4, vec![], outcome, t);
                }
                Err(outcome) => {
                    return self
                        .stop_with(step, &mut fleet, cell, &s.undo4, labels, outcome, t)
                        .await
                }
            }
        }

        // Rollback of step 2: the new binary goes first (it uses the new name).
        let t = Instant::now();
        if let Some(p) = fleet.new.take() {
            self.retire(step, p).await;
        }
        self.wait_stopped(step).await;
        let labels = labelled(
            &mv.source,
            plan.expand.iter().rev().map(|x| x.label.clone()),
        );
        let cell = Cell::MoveUndoSource;
        match self.down_to(step, src, plan.old_latest).await? {
            Ok(()) => {
                let outcome = self.run_on(step, n, &mut fleet.old, cell).await?;
                self.push(step, cell, &s.undo2, labels, outcome, t);
            }
            Err(outcome) => {
                return self
                    .stop_with(step, &mut fleet, cell, &s.undo2, labels, outcome, t)
                    .await
            }
        }

        // Rollback of step 1: the schema as it was.
        let t = Instant::now();
        let labels = labelled(
            &mv.target,
            plan.target.iter().rev().map(|x| x.label.clone()),
        );
        let cell = Cell::MoveUndoTarget;
        match self.down_to(step, m, mv.target_from).await? {
            Ok(()) => {
                let outcome = self.run_on(step, n, &mut fleet.old, cell).await?;
                self.push(step, cell, &s.undo1, labels, outcome, t);
            }
            Err(outcome) => {
                return self
                    .stop_with(step, &mut fleet, cell, &s.undo1, labels, outcome, t)
                    .await
            }
        }
        self.retire_all(step, &mut fleet).await;
        Ok(None)
    }

    /// The source's schema as the old binary has it, the target's
    /// migrations before the move, then the seed.
    async fn prepare_move(
        &mut self,
        step: &mut Step<'_>,
        mv: &Move,
    ) -> Result<Option<Failure>, Error> {
        let (n, m) = (step.n, step.m);
        let mut build = vec![(n, None)];
        if mv.target_from > 0 {
            build.push((m, Some(mv.target_from)));
        }
        for (release, to) in build {
            if let Err(f) = self.migrate_up(step, release, to).await? {
                return Ok(Some(Failure {
                    summary: format!(
                        "cannot build {}'s schema before the move: {}",
                        service(release),
                        f.summary
                    ),
                    ..f
                }));
            }
        }
        self.seed(step).await
    }

    /// The labels of what `a` ran, with `release`'s service.
    fn ran(&self, release: &Release, a: Applied) -> Vec<String> {
        labelled(service(release), a.ran)
    }

    /// Rolls `release`'s service back to `to`: `Err` is the cell's outcome
    /// (skipped when a migration has no down section).
    async fn down_to(
        &mut self,
        step: &mut Step<'_>,
        release: &Release,
        to: u64,
    ) -> Result<Result<(), Outcome>, Error> {
        let runner = self.runner(release, &step.db.url)?;
        let r = runner.down(to).await;
        Ok(match r {
            Err(MigrationError::NoDown(why)) => Err(Outcome::Skipped {
                reason: format!("no down sections: {why}"),
            }),
            r => self.applied(step, r).map(|_| ()).map_err(Outcome::Fail),
        })
    }

    /// Records `outcome` for `cell`, the later cells as not run (the
    /// rollback cannot go on), and stops every binary.
    #[allow(clippy::too_many_arguments)]
    async fn stop_with(
        &mut self,
        step: &mut Step<'_>,
        fleet: &mut Fleet,
        cell: Cell,
        schema: &str,
        labels: Vec<String>,
        outcome: Outcome,
        started: Instant,
    ) -> Result<Option<Failure>, Error> {
        let reason = match &outcome {
            Outcome::Skipped { .. } => "an earlier step cannot be rolled back".to_string(),
            _ => format!("cell {} failed", cell.number()),
        };
        self.push(step, cell, schema, labels, outcome, started);
        self.not_run(step, after(cell), &reason, schema);
        self.retire_all(step, fleet).await;
        Ok(None)
    }

    async fn retire_all(&mut self, step: &mut Step<'_>, fleet: &mut Fleet) {
        for p in [fleet.old.take(), fleet.new.take()].into_iter().flatten() {
            self.retire(step, p).await;
        }
    }
}

/// The service a release acts for.
fn service(release: &Release) -> &str {
    release.service.as_deref().unwrap_or("default")
}

/// The names of the schema states of a move, for the report.
struct MoveStates {
    before: String,
    step1: String,
    step2: String,
    step4: String,
    undo4: String,
    undo2: String,
    undo1: String,
}

impl MoveStates {
    fn new(old: &Release, mv: &Move) -> Self {
        let t = &mv.table;
        MoveStates {
            before: format!("{} (before moving {t})", old.name),
            step1: format!("{} + step 1 ({})", old.name, mv.target),
            step2: format!("{} + steps 1–2 ({t} moved, old name a view)", old.name),
            step4: format!("moved (steps 1–4: {t}'s old name gone)"),
            undo4: "steps 1–2 (step 4 rolled back)".into(),
            undo2: "step 1 (step 2 rolled back)".into(),
            undo1: format!("{} (step 1 rolled back)", old.name),
        }
    }
}
