//! What the cells do: start a binary and wait for it, smoke-test it, run
//! migrations, stop it; each adds its time to the step's [`Spent`](super::Spent).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::{Release, Smoke};
use crate::migrations::{Applied, MigrationError, MigrationInfo, Runner};
use crate::process::{free_port, Proc, Started};
use crate::report::{Failure, Outcome};
use crate::smoke::{self, Vars};
use crate::Error;

use super::cells::Cell;
use super::command::{command_of, ready_url};
use super::{Context, Step};

/// What happened when a binary was started.
pub(super) enum Start {
    Ready(Proc),
    Refused { code: Option<i32>, log: Vec<String> },
    Failed(Failure),
}

/// The line of a binary's log that says why it stopped: the gate's refusal, else the last one.
pub(super) fn gate_message(log: &[String]) -> String {
    log.iter()
        .rev()
        .find(|l| l.contains("refusing to start"))
        .or_else(|| log.iter().rev().find(|l| !l.trim().is_empty()))
        .cloned()
        .unwrap_or_else(|| "(no output)".into())
}

/// A binary that exited where it should have started.
pub(super) fn refusal_failure(release: &Release, code: Option<i32>, log: &[String]) -> Failure {
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

/// The last `n` lines of `log`.
pub(super) fn tail(log: &[String], n: usize) -> Vec<String> {
    log[log.len().saturating_sub(n)..].to_vec()
}

impl Context<'_> {
    pub(super) async fn describe(
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

    pub(super) fn runner<'r>(&self, release: &'r Release, url: &str) -> Result<Runner<'r>, Error> {
        let (argv, env) = command_of(self.config, release, 0, url)?;
        Ok(Runner::new(release, argv, env, url))
    }

    /// Starts `release` and waits until ready, or until it exits.
    pub(super) async fn start(
        &mut self,
        step: &Step<'_>,
        release: &Release,
    ) -> Result<Start, Error> {
        let port = match release.port {
            Some(p) => p,
            None => free_port().map_err(|e| Error::Database(format!("no free port: {e}")))?,
        };
        let (argv, env) = command_of(self.config, release, port, &step.db.url)?;
        let ready = ready_url(self.config, release, port, &step.db.url)?;
        let started = Instant::now();
        let proc = match Proc::spawn(&argv, &env, port) {
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
    pub(super) async fn start_expecting_ready(
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
    pub(super) async fn smoke(
        &mut self,
        step: &mut Step<'_>,
        release: &Release,
        proc: &Proc,
        cell: Cell,
    ) -> Result<(), Failure> {
        let cell = cell.number();
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

    pub(super) async fn migrate_up(
        &mut self,
        step: &mut Step<'_>,
        release: &Release,
        to: Option<u64>,
    ) -> Result<Result<Applied, Failure>, Error> {
        let runner = self.runner(release, &step.db.url)?;
        let r = runner.up(to).await;
        Ok(self.applied(step, r))
    }

    pub(super) fn applied_failure(&mut self, e: MigrationError) -> Failure {
        let mut windows = Vec::new();
        match self.record(&mut windows, Err(e)) {
            Err(f) => f,
            Ok(_) => unreachable!("an error stays an error"),
        }
    }

    pub(super) fn applied(
        &mut self,
        step: &mut Step<'_>,
        r: Result<Applied, MigrationError>,
    ) -> Result<Applied, Failure> {
        self.record(&mut step.windows, r)
    }

    pub(super) fn record(
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
    pub(super) async fn retire(&mut self, step: &mut Step<'_>, proc: Proc) {
        if let Some(l) = &step.load {
            l.remove(&proc.base_url).await;
        }
        proc.terminate();
        step.stopping.push(proc);
    }

    pub(super) async fn wait_stopped(&mut self, step: &mut Step<'_>) {
        let started = Instant::now();
        for mut p in step.stopping.drain(..) {
            p.wait(Duration::from_secs(10)).await;
        }
        self.spent.shutdown += started.elapsed();
    }

    pub(super) fn serve(&self, step: &Step<'_>, proc: &Proc) {
        if let Some(l) = &step.load {
            l.add(&proc.base_url);
        }
    }

    pub(super) async fn ensure(
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
    pub(super) async fn run_on(
        &mut self,
        step: &mut Step<'_>,
        release: &Release,
        slot: &mut Option<Proc>,
        cell: Cell,
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
}
