//! The deploy path of one step, cell by cell.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use capstan_migrate::Phase;

use crate::config::{expand, Config, Migrations, Release, Smoke};
use crate::db::{Scratch, Scratches};
use crate::load::Load;
use crate::migrations::{Applied, MigrationError, MigrationInfo, Runner};
use crate::process::{free_port, Proc, Started};
use crate::report::{Cell, Failure, Outcome, Report, StepReport, Timings};
use crate::smoke::{self, Vars};
use crate::{Error, Options};

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Rehearses every step of `config` and reports every cell.
pub async fn rehearse(config: &Config, options: &Options) -> Result<Report, Error> {
    let started = Instant::now();
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
    for r in &config.releases {
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
            .or_else(|| describe_errors.get(&m.name));
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

struct Context<'a> {
    config: &'a Config,
    options: &'a Options,
    client: reqwest::Client,
    spent: Spent,
    sets: HashMap<String, Vec<MigrationInfo>>,
}

/// A program with its arguments, and its environment.
type ProgramEnv = (Vec<String>, Vec<(String, String)>);

/// The built-in `${…}` values of one start of `release`.
fn builtins(
    config: &Config,
    release: &Release,
    port: u16,
    url: &str,
) -> [(&'static str, String); 4] {
    let dir = match &release.migrations {
        Migrations::Dir(d) => d.display().to_string(),
        Migrations::Embedded => String::new(),
    };
    [
        ("PORT", port.to_string()),
        ("DATABASE_URL", url.to_string()),
        ("MIGRATIONS_DIR", dir),
        ("REHEARSE_DIR", config.base_dir.display().to_string()),
    ]
}

/// Expands `s`, the `key` of `release`, for one start of it.
fn expand_for(
    config: &Config,
    release: &Release,
    values: &[(&'static str, String)],
    key: &str,
    s: &str,
) -> Result<String, Error> {
    let lookup = |name: &str| {
        values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    expand(s, &lookup).map_err(|m| {
        let index = config
            .releases
            .iter()
            .position(|r| r.name == release.name)
            .unwrap_or(0);
        config.origin.error(Some((index, &release.name)), key, m)
    })
}

/// Program and environment of `release`, `${…}` expanded.
fn command_of(
    config: &Config,
    release: &Release,
    port: u16,
    url: &str,
) -> Result<ProgramEnv, Error> {
    let values = builtins(config, release, port, url);
    let mut argv = release
        .command
        .iter()
        .map(|c| expand_for(config, release, &values, "command", c))
        .collect::<Result<Vec<_>, _>>()?;
    if argv[0].contains('/') && Path::new(&argv[0]).is_relative() {
        argv[0] = config.base_dir.join(&argv[0]).display().to_string();
    }
    let mut env = release
        .env
        .iter()
        .map(|(k, v)| {
            Ok((
                k.clone(),
                expand_for(config, release, &values, &format!("env.{k}"), v)?,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    env.push((release.database_env.clone(), url.to_string()));
    Ok((argv, env))
}

fn ready_url(config: &Config, release: &Release, port: u16, url: &str) -> Result<String, Error> {
    let values = builtins(config, release, port, url);
    let r = expand_for(config, release, &values, "ready", &release.ready)?;
    Ok(if r.starts_with('/') {
        format!("http://127.0.0.1:{port}{r}")
    } else {
        r
    })
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

/// What happened when a binary was started.
enum Start {
    Ready(Proc),
    Refused { code: Option<i32>, log: Vec<String> },
    Failed(Failure),
}

fn gate_message(log: &[String]) -> String {
    log.iter()
        .rev()
        .find(|l| l.contains("refusing to start"))
        .or_else(|| log.iter().rev().find(|l| !l.trim().is_empty()))
        .cloned()
        .unwrap_or_else(|| "(no output)".into())
}

/// A binary that exited where it should have started.
fn refusal_failure(release: &Release, code: Option<i32>, log: &[String]) -> Failure {
    let msg = gate_message(log);
    let summary = if msg.contains("refusing to start") {
        format!("{} was refused by the gate: {msg}", release.name)
    } else {
        format!(
            "{} exited with {} before it was ready: {msg}",
            release.name,
            code.map_or("a signal".into(), |c| format!("code {c}"))
        )
    };
    Failure {
        summary,
        what: release.command.join(" "),
        output: String::new(),
        log: tail(log, 30),
    }
}

fn tail(log: &[String], n: usize) -> Vec<String> {
    log[log.len().saturating_sub(n)..].to_vec()
}

impl Context<'_> {
    async fn describe(
        &mut self,
        release: &Release,
        url: &str,
    ) -> Result<Vec<MigrationInfo>, MigrationError> {
        if let Some(s) = self.sets.get(&release.name) {
            return Ok(s.clone());
        }
        let started = Instant::now();
        let (argv, env) =
            command_of(self.config, release, 0, url).map_err(|e| MigrationError::Failed {
                command: release.command.join(" "),
                output: e.to_string(),
                duration: Duration::ZERO,
            })?;
        let set = Runner::new(release, argv, env, url).describe().await;
        self.spent.migrations += started.elapsed();
        let set = set?;
        self.sets.insert(release.name.clone(), set.clone());
        Ok(set)
    }

    fn runner<'r>(&self, release: &'r Release, url: &str) -> Result<Runner<'r>, Error> {
        let (argv, env) = command_of(self.config, release, 0, url)?;
        Ok(Runner::new(release, argv, env, url))
    }

    /// Starts `release` and waits until ready, or until it exits.
    async fn start(&mut self, step: &Step<'_>, release: &Release) -> Result<Start, Error> {
        let port = match release.port {
            Some(p) => p,
            None => free_port().map_err(|e| Error::Database(format!("no free port: {e}")))?,
        };
        let (argv, env) = command_of(self.config, release, port, &step.db.url)?;
        let ready = ready_url(self.config, release, port, &step.db.url)?;
        let started = Instant::now();
        let proc = match Proc::spawn(&release.name, &argv, &env, port) {
            Ok(p) => p,
            Err(e) => {
                return Ok(Start::Failed(Failure {
                    summary: format!("cannot start {}: {e}", argv[0]),
                    what: argv.join(" "),
                    output: String::new(),
                    log: Vec::new(),
                }))
            }
        };
        let result = proc
            .wait_ready(&self.client, &ready, self.config.ready_timeout)
            .await;
        self.spent.startup += started.elapsed();
        Ok(match result {
            Started::Ready(p) => Start::Ready(*p),
            Started::Exited { code, log } => Start::Refused { code, log },
            Started::TimedOut { last, log } => Start::Failed(Failure {
                summary: format!(
                    "{} was not ready within {:?}: {ready} last answered {last}",
                    release.name, self.config.ready_timeout
                ),
                what: argv.join(" "),
                output: String::new(),
                log: tail(&log, 30),
            }),
        })
    }

    /// Starts `release` where it must start: an exit is an unexpected failure.
    async fn start_expecting_ready(
        &mut self,
        step: &Step<'_>,
        release: &Release,
    ) -> Result<Result<Proc, Failure>, Error> {
        Ok(match self.start(step, release).await? {
            Start::Ready(p) => Ok(p),
            Start::Failed(f) => Err(f),
            Start::Refused { code, log } => Err(refusal_failure(release, code, &log)),
        })
    }

    /// Runs the smoke test of `release` against `proc`.
    async fn smoke(
        &mut self,
        step: &mut Step<'_>,
        release: &Release,
        proc: &Proc,
        cell: u8,
    ) -> Result<(), Failure> {
        let started = Instant::now();
        let result = match &release.smoke {
            Smoke::None => Ok(()),
            Smoke::Requests { file, .. } => {
                let mut vars = Vars {
                    current: BTreeMap::new(),
                    prev: step.prev.clone(),
                };
                vars.current
                    .insert("run".into(), format!("{}-c{cell}", release.name));
                vars.current.insert("release".into(), release.name.clone());
                vars.current.insert("cell".into(), cell.to_string());
                let r = smoke::run(&self.client, &proc.base_url, file, &mut vars).await;
                let prev_from = std::mem::replace(
                    &mut step.prev_from,
                    format!("{} in cell {cell}", release.name),
                );
                for (k, v) in vars.current {
                    if !matches!(k.as_str(), "run" | "release" | "cell") {
                        step.prev.insert(k, v);
                    }
                }
                r.map(|_| ()).map_err(|f| Failure {
                    summary: if f.reads_prev {
                        format!("{}: {} (reading what {prev_from} wrote)", f.what, f.message)
                    } else {
                        format!("{}: {}", f.what, f.message)
                    },
                    what: f.what,
                    output: f.output,
                    log: Vec::new(),
                })
            }
            Smoke::Command(argv) => {
                let out = tokio::process::Command::new(&argv[0])
                    .args(&argv[1..])
                    .current_dir(&self.config.base_dir)
                    .env("BASE_URL", &proc.base_url)
                    .env("DATABASE_URL", &step.db.url)
                    .env("REHEARSE_RELEASE", &release.name)
                    .env("REHEARSE_CELL", cell.to_string())
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await;
                match out {
                    Ok(o) if o.status.success() => Ok(()),
                    Ok(o) => Err(Failure {
                        summary: format!("smoke command exited with {}", o.status),
                        what: argv.join(" "),
                        output: format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        ),
                        log: Vec::new(),
                    }),
                    Err(e) => Err(Failure {
                        summary: format!("cannot run the smoke command: {e}"),
                        what: argv.join(" "),
                        output: String::new(),
                        log: Vec::new(),
                    }),
                }
            }
        };
        self.spent.smoke += started.elapsed();
        match result {
            Ok(()) => Ok(()),
            Err(mut f) => {
                // Give the server a moment to log what it did.
                tokio::time::sleep(Duration::from_millis(20)).await;
                f.log = proc.lines_around(started, Instant::now(), 5);
                Err(f)
            }
        }
    }

    async fn migrate_up(
        &mut self,
        step: &mut Step<'_>,
        release: &Release,
        to: Option<u64>,
    ) -> Result<Result<Applied, Failure>, Error> {
        let runner = self.runner(release, &step.db.url)?;
        let r = runner.up(to).await;
        Ok(self.applied(step, r))
    }

    fn applied_failure(&mut self, e: MigrationError) -> Failure {
        let mut windows = Vec::new();
        match self.record(&mut windows, Err(e)) {
            Err(f) => f,
            Ok(_) => unreachable!("an error stays an error"),
        }
    }

    fn applied(
        &mut self,
        step: &mut Step<'_>,
        r: Result<Applied, MigrationError>,
    ) -> Result<Applied, Failure> {
        self.record(&mut step.windows, r)
    }

    fn record(
        &mut self,
        windows: &mut Vec<(String, Instant, Instant)>,
        r: Result<Applied, MigrationError>,
    ) -> Result<Applied, Failure> {
        match r {
            Ok(a) => {
                self.spent.migrations += a.duration;
                let label = if a.ran.is_empty() {
                    "migrations".to_string()
                } else {
                    a.ran.join(", ")
                };
                windows.push((label, a.window.0, a.window.1));
                Ok(a)
            }
            Err(MigrationError::Failed {
                command,
                output,
                duration,
            }) => {
                self.spent.migrations += duration;
                let first = output
                    .lines()
                    .find(|l| !l.trim().is_empty() && !l.starts_with("exit "))
                    .unwrap_or("")
                    .to_string();
                Err(Failure {
                    summary: format!("the migration failed: {first}"),
                    what: command,
                    output,
                    log: Vec::new(),
                })
            }
            Err(MigrationError::NoDown(why)) => Err(Failure {
                summary: why,
                what: "migrate down".into(),
                output: String::new(),
                log: Vec::new(),
            }),
        }
    }

    /// Stops a process: out of the load first, then SIGTERM; waited for later.
    async fn retire(&mut self, step: &mut Step<'_>, proc: Proc) {
        if let Some(l) = &step.load {
            l.remove(&proc.base_url).await;
        }
        proc.terminate();
        step.stopping.push(proc);
    }

    async fn wait_stopped(&mut self, step: &mut Step<'_>) {
        let started = Instant::now();
        for mut p in step.stopping.drain(..) {
            p.wait(Duration::from_secs(10)).await;
        }
        self.spent.shutdown += started.elapsed();
    }

    fn serve(&self, step: &Step<'_>, proc: &Proc) {
        if let Some(l) = &step.load {
            l.add(&proc.base_url);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        step: &mut Step<'_>,
        number: u8,
        title: &str,
        binary: &Release,
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
        step.cells.push(Cell {
            number,
            title: title.to_string(),
            binary: binary.name.clone(),
            schema: schema.to_string(),
            migrations,
            outcome,
            duration_ms: ms(ended - started),
            load,
        });
    }

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
        let setup_error = self.walk(&mut step).await?;
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

    /// Walks the cells of `step`. Returns a failure that stopped the step
    /// before its first cell.
    async fn walk(&mut self, step: &mut Step<'_>) -> Result<Option<Failure>, Error> {
        let (n, m) = (step.n, step.m);
        let url = step.db.url.clone();
        let (set_n, set_m) = match (self.sets.get(&n.name), self.sets.get(&m.name)) {
            (Some(a), Some(b)) => (a.clone(), b.clone()),
            _ => unreachable!("sets are read before the steps; a failure skips the step"),
        };
        // Schema at N, then the seed.
        if let Err(f) = self.migrate_up(step, n, None).await? {
            return Ok(Some(Failure {
                summary: format!("cannot build {}'s schema: {}", n.name, f.summary),
                ..f
            }));
        }
        step.windows.clear();
        if let Some(seed) = &n.seed {
            let t = Instant::now();
            let r = step.db.seed(seed).await;
            self.spent.seed += t.elapsed();
            if let Err(e) = r {
                return Ok(Some(Failure {
                    summary: e.to_string(),
                    what: format!("seed {}", seed.display()),
                    output: String::new(),
                    log: Vec::new(),
                }));
            }
        }
        let n_latest = set_n.iter().map(|x| x.version).max().unwrap_or(0);
        let new: Vec<&MigrationInfo> = set_m.iter().filter(|x| x.version > n_latest).collect();
        let expand: Vec<&MigrationInfo> = new
            .iter()
            .copied()
            .take_while(|x| x.phase == Phase::Expand)
            .collect();
        let has_contract = expand.len() < new.len();
        let s_n = n.name.clone();
        let s_exp = if expand.is_empty() {
            n.name.clone()
        } else {
            format!("{} + {} expand", n.name, m.name)
        };
        let s_m = m.name.clone();
        let s_down = format!("{} (down from {})", n.name, m.name);
        if self.options.load {
            step.load = Some(Load::start(self.options.load_workers));
        }

        // 1. Baseline.
        let t = Instant::now();
        let mut old = None;
        let outcome = match self.start_expecting_ready(step, n).await? {
            Ok(p) => {
                self.serve(step, &p);
                let r = self.smoke(step, n, &p, 1).await;
                old = Some(p);
                match r {
                    Ok(()) => Outcome::Pass { note: None },
                    Err(f) => Outcome::Fail(f),
                }
            }
            Err(f) => Outcome::Fail(f),
        };
        self.push(step, 1, "baseline", n, &s_n, vec![], outcome, t);

        // 2. N+1's expand migrations while N serves.
        let t = Instant::now();
        let mut ran = Vec::new();
        if let Some(last) = expand.last() {
            match self.migrate_up(step, m, Some(last.version)).await? {
                Ok(a) => ran = a.ran,
                Err(f) => {
                    let labels = expand.iter().map(|x| x.label.clone()).collect();
                    self.push(
                        step,
                        2,
                        "old binary on the expanded schema",
                        n,
                        &s_exp,
                        labels,
                        Outcome::Fail(f),
                        t,
                    );
                    self.not_run(step, 3, "the expand migrations failed", &s_exp);
                    return Ok(None);
                }
            }
        }
        let outcome = self.run_on(step, n, &mut old, 2).await?;
        self.push(
            step,
            2,
            "old binary on the expanded schema",
            n,
            &s_exp,
            ran,
            outcome,
            t,
        );

        // 3. N+1 starts next to N (a rolling update), then N leaves. A binary
        // that embeds a pending contract migration must be held back by its
        // gate until cell 5: that is expected.
        let t = Instant::now();
        let mut new_bin = None;
        let mut m_needs_contract = false;
        let contract_labels: Vec<&str> = new[expand.len()..]
            .iter()
            .filter(|x| x.phase == Phase::Contract)
            .map(|x| x.label.as_str())
            .collect();
        let outcome = match self.start(step, m).await? {
            Start::Ready(p) => {
                self.serve(step, &p);
                let r = self.smoke(step, m, &p, 3).await;
                new_bin = Some(p);
                match r {
                    Ok(()) => Outcome::Pass { note: None },
                    Err(f) => Outcome::Fail(f),
                }
            }
            Start::Failed(f) => Outcome::Fail(f),
            Start::Refused { code, log } => {
                let msg = gate_message(&log);
                let waits_for_contract = msg.contains("refusing to start")
                    && contract_labels.iter().any(|l| msg.contains(l))
                    && !expand.iter().any(|x| msg.contains(&x.label));
                if waits_for_contract {
                    m_needs_contract = true;
                    Outcome::ExpectedRefusal {
                        message: format!(
                            "{} needs {} first, which may run only once {} is stopped (cell 5): {msg}",
                            m.name,
                            contract_labels.join(", "),
                            n.name
                        ),
                    }
                } else {
                    Outcome::Fail(refusal_failure(m, code, &log))
                }
            }
        };
        if new_bin.is_some() {
            if let Some(p) = old.take() {
                self.retire(step, p).await;
            }
        }
        let title = if m_needs_contract {
            "new binary waits for its contract"
        } else {
            "new binary starts: gate and smoke"
        };
        self.push(step, 3, title, m, &s_exp, vec![], outcome, t);

        // 4. Binary rollback: N again on this schema, N+1 leaves.
        let t = Instant::now();
        let mut back = None;
        let outcome = self.run_on(step, n, &mut back, 4).await?;
        if let Some(p) = old.take() {
            self.retire(step, p).await;
        }
        if let Some(p) = new_bin.take() {
            self.retire(step, p).await;
        }
        self.push(
            step,
            4,
            "rollback: old binary restarted",
            n,
            &s_exp,
            vec![],
            outcome,
            t,
        );

        // 5. Contract: N+1 serves, N stopped, then the rest of N+1's migrations.
        let mut serving = back;
        if has_contract {
            let t = Instant::now();
            let mut fwd = None;
            let mut pushed = false;
            // N+1 serves through the contract, unless its gate needs the contract first.
            if !m_needs_contract {
                if let Err(f) = self.ensure(step, m, &mut fwd).await? {
                    self.push(
                        step,
                        5,
                        "contract applied: new binary",
                        m,
                        &s_m,
                        vec![],
                        Outcome::Fail(f),
                        t,
                    );
                    pushed = true;
                }
            }
            if let Some(p) = serving.take() {
                self.retire(step, p).await;
            }
            // N must have left the fleet registry before a contract migration may run.
            self.wait_stopped(step).await;
            let t5 = if pushed { Instant::now() } else { t };
            match self.migrate_up(step, m, None).await? {
                Ok(a) => {
                    if !pushed {
                        let outcome = self.run_on(step, m, &mut fwd, 5).await?;
                        self.push(
                            step,
                            5,
                            "contract applied: new binary",
                            m,
                            &s_m,
                            a.ran,
                            outcome,
                            t5,
                        );
                    }
                }
                Err(f) => {
                    let labels = new[expand.len()..]
                        .iter()
                        .map(|x| x.label.clone())
                        .collect();
                    if !pushed {
                        self.push(
                            step,
                            5,
                            "contract applied: new binary",
                            m,
                            &s_m,
                            labels,
                            Outcome::Fail(f),
                            t5,
                        );
                    } else if let Some(Cell {
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
                    self.not_run(step, 6, "the contract migrations failed", &s_m);
                    return Ok(None);
                }
            }
            // The old binary on the contracted schema: the gate must refuse it.
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
                    let r = self.smoke(step, n, &p, 5).await;
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
            self.push(
                step,
                5,
                "contract applied: old binary refused",
                n,
                &s_m,
                vec![],
                outcome,
                t,
            );
            serving = fwd;
        } else {
            let t = Instant::now();
            self.push(
                step,
                5,
                "contract",
                m,
                &s_exp,
                vec![],
                Outcome::Skipped {
                    reason: format!("{} has no contract migrations", m.name),
                },
                t,
            );
        }

        // 6. Schema rollback: everything stopped, down to N's schema, N again.
        let t = Instant::now();
        if new.is_empty() {
            self.push(
                step,
                6,
                "down to the old schema",
                n,
                &s_n,
                vec![],
                Outcome::Skipped {
                    reason: format!("{} has no new migrations", m.name),
                },
                t,
            );
            if let Some(p) = serving.take() {
                self.retire(step, p).await;
            }
            return Ok(None);
        }
        if let Some(p) = serving.take() {
            self.retire(step, p).await;
        }
        self.wait_stopped(step).await;
        let runner = self.runner(m, &url)?;
        let r = runner.down(n_latest).await;
        let outcome = match r {
            Err(MigrationError::NoDown(why)) => {
                self.push(
                    step,
                    6,
                    "down to the old schema",
                    n,
                    &s_down,
                    vec![],
                    Outcome::Skipped {
                        reason: format!("no down sections: {why}"),
                    },
                    t,
                );
                return Ok(None);
            }
            r => match self.applied(step, r) {
                Err(f) => Outcome::Fail(f),
                Ok(_) => {
                    let mut again = None;
                    let o = self.run_on(step, n, &mut again, 6).await?;
                    if let Some(p) = again.take() {
                        self.retire(step, p).await;
                    }
                    o
                }
            },
        };
        let labels = new.iter().rev().map(|x| x.label.clone()).collect();
        self.push(
            step,
            6,
            "down to the old schema",
            n,
            &s_down,
            labels,
            outcome,
            t,
        );
        Ok(None)
    }

    /// Starts `release` into `slot` if nothing runs there.
    async fn ensure(
        &mut self,
        step: &mut Step<'_>,
        release: &Release,
        slot: &mut Option<Proc>,
    ) -> Result<Result<(), Failure>, Error> {
        if slot.is_some() {
            return Ok(Ok(()));
        }
        match self.start_expecting_ready(step, release).await? {
            Ok(p) => {
                self.serve(step, &p);
                *slot = Some(p);
                Ok(Ok(()))
            }
            Err(f) => Ok(Err(f)),
        }
    }

    /// Makes sure `release` runs in `slot` (starting it if needed) and smoke-tests it.
    async fn run_on(
        &mut self,
        step: &mut Step<'_>,
        release: &Release,
        slot: &mut Option<Proc>,
        cell: u8,
    ) -> Result<Outcome, Error> {
        if let Err(f) = self.ensure(step, release, slot).await? {
            return Ok(Outcome::Fail(f));
        }
        let p = slot.take().expect("started");
        let r = self.smoke(step, release, &p, cell).await;
        *slot = Some(p);
        Ok(match r {
            Ok(()) => Outcome::Pass { note: None },
            Err(f) => Outcome::Fail(f),
        })
    }

    fn not_run(&self, step: &mut Step<'_>, from: u8, reason: &str, schema: &str) {
        let titles: [(u8, &str, bool); 5] = [
            (3, "new binary starts: gate and smoke", true),
            (4, "rollback: old binary restarted", false),
            (5, "contract applied: new binary", true),
            (5, "contract applied: old binary refused", false),
            (6, "down to the old schema", false),
        ];
        for (number, title, new_bin) in titles {
            if number < from {
                continue;
            }
            step.cells.push(Cell {
                number,
                title: title.into(),
                binary: if new_bin {
                    step.m.name.clone()
                } else {
                    step.n.name.clone()
                },
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
