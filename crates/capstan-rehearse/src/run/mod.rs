//! The deploy path of one step, cell by cell: [`rehearse`] makes a scratch
//! database per step and walks its cells (`cells`: each cell an enum variant
//! with one function; `move_cells`: a table's move between two services,
//! the one step of a `[move]` plan); `command` expands each
//! release's command line, `actions` starts binaries, smoke-tests them and
//! runs migrations, timing each kind of work.

mod actions;
mod cells;
mod command;
mod move_cells;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::config::{Config, Release};
use crate::db::{Scratch, Scratches};
use crate::load::Load;
use crate::migrations::MigrationInfo;
use crate::process::Proc;
use crate::report::{Cell, Report, StepReport, Timings};
use crate::{Error, Options};

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Rehearses every step of `config` and reports every cell.
pub async fn rehearse(config: &Config, options: &Options) -> Result<Report, Error> {
    let started = Instant::now();
    if config.moving.is_some() && matches!(options.backend, crate::db::Backend::Sqlite) {
        // SQLite has no schemas: plan-move refuses it, and so does its rehearsal.
        return Err(config.origin.error(
            None,
            "",
            "[move] needs Postgres (a table moves between schemas): give --database postgres://…",
        ));
    }
    let indices: Vec<usize> = (0..config.releases.len() - 1)
        .filter(|i| options.only_step.is_none_or(|s| s == *i))
        .collect();
    let tag = |i: usize| crate::db::scratch_name(&options.scratch_prefix, &format!("s{}", i + 1));
    // The first step's database is made while the releases' migration sets
    // are read, each later one while the step before it runs; each is
    // dropped while the next step runs.
    let scratches = Scratches::new(&options.backend);
    let mut next = indices
        .first()
        .map(|&i| scratches.create_in_background(&tag(i)));
    let mut cx = Context {
        config,
        options,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()
            .map_err(|e| Error::Database(format!("cannot build an HTTP client: {e}")))?,
        spent: Spent::default(),
        sets: HashMap::new(),
    };
    // Read every release's migration set (read-only, on any database).
    let describe_dir = tempfile::tempdir()
        .map_err(|e| Error::Database(format!("cannot create a temporary directory: {e}")))?;
    let describe_url = match &options.backend {
        crate::db::Backend::Postgres(admin) => admin.clone(),
        crate::db::Backend::Sqlite => format!(
            "sqlite://{}",
            describe_dir.path().join("describe.db").display()
        ),
    };
    let mut describe_errors = HashMap::new();
    let moving = config.moving.as_ref().map(|m| &m.source_migrations);
    for r in config.releases.iter().chain(moving) {
        if let Err(e) = cx.describe(r, &describe_url).await {
            describe_errors.insert(r.name.clone(), e);
        }
    }
    let mut steps = Vec::new();
    let mut drops = Vec::new();
    for (k, &i) in indices.iter().enumerate() {
        let t = Instant::now();
        let db = next.take().expect("created ahead").wait().await?;
        cx.spent.database += t.elapsed();
        next = indices
            .get(k + 1)
            .map(|&j| scratches.create_in_background(&tag(j)));
        let (n, m) = (&config.releases[i], &config.releases[i + 1]);
        let broken = describe_errors
            .get(&n.name)
            .or_else(|| describe_errors.get(&m.name))
            .or_else(|| moving.and_then(|s| describe_errors.get(&s.name)));
        let (report, db, stopping) = match broken {
            Some(e) => {
                let failure = cx.applied_failure(e.clone());
                (
                    StepReport {
                        from: n.name.clone(),
                        to: m.name.clone(),
                        cells: Vec::new(),
                        setup_error: Some(failure),
                    },
                    db,
                    Vec::new(),
                )
            }
            None => cx.step(n, m, db).await?,
        };
        steps.push(report);
        // The step's binaries have been sent SIGTERM; nothing later needs
        // them gone, so they exit (and the database goes) in the background.
        drops.push(db.drop_while_stopping(async move {
            for mut p in stopping {
                p.wait(Duration::from_secs(10)).await;
            }
        }));
    }
    // The last step's binaries stop while its database is dropped: time
    // waited while a drop still ran is the database's, the rest shutdowns.
    for d in drops {
        let t = Instant::now();
        let (drop_started, drop_ended) = d.wait().await?;
        let waited = t.elapsed();
        let on_drop = drop_ended
            .saturating_duration_since(t.max(drop_started))
            .min(waited);
        cx.spent.database += on_drop;
        cx.spent.shutdown += waited - on_drop;
    }
    let s = &cx.spent;
    let mut timings = Timings {
        total_ms: ms(started.elapsed()),
        migrations_ms: ms(s.migrations),
        seed_ms: ms(s.seed),
        startup_ms: ms(s.startup),
        smoke_ms: ms(s.smoke),
        shutdown_ms: ms(s.shutdown),
        database_ms: ms(s.database),
        overhead_pct: 0.0,
    };
    timings.finish();
    let mut report = Report {
        format_version: crate::report::FORMAT_VERSION,
        backend: options.backend.kind().to_string(),
        releases: config.releases.iter().map(|r| r.name.clone()).collect(),
        steps,
        timings,
        ok: true,
    };
    report.ok = report.failures() == 0;
    Ok(report)
}

/// Time spent per kind of work, summed exactly (rounded once, at the end).
#[derive(Default)]
struct Spent {
    migrations: Duration,
    seed: Duration,
    startup: Duration,
    smoke: Duration,
    shutdown: Duration,
    database: Duration,
}

/// What every step of a rehearsal shares.
struct Context<'a> {
    config: &'a Config,
    options: &'a Options,
    client: reqwest::Client,
    spent: Spent,
    sets: HashMap<String, Vec<MigrationInfo>>,
}

/// The state of one step.
struct Step<'s> {
    n: &'s Release,
    m: &'s Release,
    db: Scratch,
    cells: Vec<Cell>,
    prev: BTreeMap<String, String>,
    /// Who saved the latest `prev` values: `2.0.0 in cell 3`.
    prev_from: String,
    stopping: Vec<Proc>,
    windows: Vec<(String, Instant, Instant)>,
    load: Option<Load>,
}

impl Context<'_> {
    async fn step(
        &mut self,
        n: &Release,
        m: &Release,
        db: Scratch,
    ) -> Result<(StepReport, Scratch, Vec<Proc>), Error> {
        let mut step = Step {
            n,
            m,
            db,
            cells: Vec::new(),
            prev: BTreeMap::new(),
            prev_from: String::new(),
            stopping: Vec::new(),
            windows: Vec::new(),
            load: None,
        };
        let setup_error = if self.config.moving.is_some() {
            self.walk_move(&mut step).await?
        } else {
            self.walk(&mut step).await?
        };
        // Stop the load; the caller waits for the binaries still stopping
        // and drops the database.
        if let Some(l) = step.load.take() {
            l.stop().await;
        }
        let Step {
            db,
            cells,
            stopping,
            ..
        } = step;
        Ok((
            StepReport {
                from: n.name.clone(),
                to: m.name.clone(),
                cells,
                setup_error,
            },
            db,
            stopping,
        ))
    }
}
