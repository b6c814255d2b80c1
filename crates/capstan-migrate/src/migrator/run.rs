//! `up`: the runner lock, the contract gate, and running each pending
//! migration with its archive copies, retrying lock timeouts.

use std::time::Duration;

use super::*;
use crate::backoff::Backoff;

/// The outcome of the fleet check for one contract migration.
enum Gate {
    Clear,
    Forced(Vec<InstanceRow>),
    Held(HeldBack),
}

impl Migrator {
    /// Applies pending migrations (expand only; see [`Migrator::up_with`] for contract).
    pub async fn up(&self, db: &mut Database) -> Result<RunReport, Error> {
        self.up_with(db, &UpOptions::default(), &mut no_events)
            .await
    }

    /// Applies pending migrations with options, reporting progress to `events`.
    pub async fn up_with(
        &self,
        db: &mut Database,
        opts: &UpOptions,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        self.lock(db, events).await?;
        let result = self.up_holding_lock(db, opts, events).await;
        let unlocked = db.driver.unlock().await;
        let report = result?;
        unlocked?;
        Ok(report)
    }

    /// Takes the runner lock, waiting up to [`Settings::runner_lock_timeout`]
    /// for another runner (announced with [`Event::LockWait`]). Pair with
    /// [`Migrator::unlock`].
    pub async fn lock(
        &self,
        db: &mut Database,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<(), Error> {
        if self.settings.transaction_pooler
            && db.driver.dialect() == crate::split::Dialect::Postgres
        {
            return Err(Error::Db(DbError::new(
                FailureKind::Connection,
                format!(
                    "capstan.toml says {} is a transaction-mode pool ([migrate] pooler = \"transaction\"): capstan needs one server session for a whole run, so nothing was run. Use a direct URL to Postgres, or a session-mode pool",
                    db.describe()
                ),
            )));
        }
        if !db.driver.try_lock().await? {
            events(Event::LockWait);
            db.driver.lock(self.settings.runner_lock_timeout).await?;
        }
        Ok(())
    }

    /// Releases the runner lock taken by [`Migrator::lock`].
    pub async fn unlock(&self, db: &mut Database) -> Result<(), Error> {
        Ok(db.driver.unlock().await?)
    }

    /// [`Migrator::up_with`] for a caller that holds the runner lock (taken
    /// with [`Migrator::lock`]), so that what it checked first under the lock
    /// (e.g. the pending migrations it linted) is what runs.
    pub async fn up_holding_lock(
        &self,
        db: &mut Database,
        opts: &UpOptions,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        db.driver.ensure_schema().await?;
        self.register_service(db).await?;
        let history = db.driver.history().await?;
        let todo = self.pending(&history, opts)?;
        self.record_sections(db, &history).await?;
        let detected = self.detect(&history, &todo, Direction::Up, db.driver.dialect())?;
        self.check_no_archive(db, &history, &detected, &opts.no_archive)
            .await?;
        let mut report = RunReport::default();
        for m in todo {
            stop_if_asked(m, Direction::Up, &mut report)?;
            let mut note = None;
            if m.phase == Phase::Contract {
                match self.contract_gate(db, m, opts.contract, events).await? {
                    Gate::Clear => {}
                    Gate::Forced(over) => {
                        note = Some(format!(
                            "forced past live instances that do not embed it: {}",
                            over.iter()
                                .map(InstanceRow::describe)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    Gate::Held(h) => {
                        report.held_back = Some(h);
                        break;
                    }
                }
            }
            let note = match (note, opts.notes.get(&m.version)) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or_else(|| b.cloned()),
            };
            let archive = detected
                .get(&(m.version, Direction::Up))
                .map(|found| (found.as_slice(), opts.no_archive.as_slice()));
            self.run(
                db,
                m,
                Direction::Up,
                note.as_deref(),
                archive,
                &mut report,
                events,
            )
            .await?;
        }
        Ok(report)
    }

    /// Records the declared service in the database's registry, after
    /// checking that no other registered service owns what it claims. Every
    /// command that writes the service's history calls it (under the runner
    /// lock, after `ensure_schema`, before it writes), so a service is
    /// registered, and an overlap refused, whichever command comes first.
    pub(super) async fn register_service(&self, db: &mut Database) -> Result<(), Error> {
        let Some(me) = &self.service else {
            return Ok(());
        };
        for other in db.driver.registered_services().await? {
            if other.name == me.name {
                continue;
            }
            for entry in &me.owns {
                if let Some(theirs) = other.owns.iter().find(|o| o.overlaps(entry)) {
                    return Err(Error::ServiceOverlap {
                        service: me.name.clone(),
                        entry: entry.to_string(),
                        other_service: other.name.clone(),
                        other_entry: theirs.to_string(),
                    });
                }
            }
        }
        db.driver
            .register_service(me, &self.identity.applied_by)
            .await?;
        Ok(())
    }

    /// Decides whether contract migration `m` may run now, waiting if asked.
    async fn contract_gate(
        &self,
        db: &mut Database,
        m: &Migration,
        policy: ContractPolicy,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<Gate, Error> {
        let deadline = match policy {
            ContractPolicy::Wait(d) => Some(tokio::time::Instant::now() + d),
            _ => None,
        };
        let mut announced = false;
        loop {
            let fleet = db.driver.fleet_list().await?;
            let blocking = blockers(&fleet, m, self.settings.fleet_ttl);
            if blocking.is_empty() {
                return Ok(Gate::Clear);
            }
            let owned: Vec<InstanceRow> = blocking.into_iter().cloned().collect();
            match (policy, deadline) {
                (ContractPolicy::Force, _) => {
                    events(Event::Forced {
                        migration: m,
                        blockers: &owned,
                    });
                    return Ok(Gate::Forced(owned));
                }
                (_, Some(deadline)) if tokio::time::Instant::now() < deadline => {
                    if !announced {
                        events(Event::Waiting {
                            migration: m,
                            blockers: &owned,
                        });
                        announced = true;
                    }
                    let poll = (self.settings.fleet_ttl / 10)
                        .clamp(Duration::from_millis(100), Duration::from_secs(1));
                    tokio::time::sleep(poll).await;
                }
                _ => {
                    let waited = match policy {
                        ContractPolicy::Wait(d) => Some(d),
                        _ => None,
                    };
                    return Ok(Gate::Held(self.held_back(m, &fleet, waited)));
                }
            }
        }
    }

    /// Why `m` does not run now; `waited` is how long `--wait` waited, if it did.
    pub(super) fn held_back(
        &self,
        m: &Migration,
        fleet: &[InstanceRow],
        waited: Option<Duration>,
    ) -> HeldBack {
        let blocking: Vec<InstanceRow> = blockers(fleet, m, self.settings.fleet_ttl)
            .into_iter()
            .cloned()
            .collect();
        HeldBack {
            version: m.version,
            name: m.name.clone(),
            reason: format!(
                "contract migration {} removes or changes something that running instances still use: {}. {}",
                m.label(),
                blocking.iter().map(InstanceRow::describe).collect::<Vec<_>>().join(", "),
                match waited {
                    Some(d) => format!(
                        "They were still live after waiting {}; it runs once they are gone (deploy the new release first, or wait longer with --timeout), or use --force-contract to override",
                        humantime::format_duration(d)
                    ),
                    None => "It runs once they are gone (deploy the new release first); use --wait to wait for them, or --force-contract to override".to_string(),
                }
            ),
            blockers: blocking,
        }
    }

    /// Refuses dirty, drifted and out-of-order states; returns the migrations
    /// `up` would run, in order (contract ones are gated later, by the fleet).
    pub(super) fn pending<'s>(
        &'s self,
        history: &[AppliedRow],
        opts: &UpOptions,
    ) -> Result<Vec<&'s Migration>, Error> {
        let entries = compare(&self.set, history);
        check_clean(&entries)?;
        let newest_applied = entries
            .iter()
            .filter(|e| e.state != State::Pending)
            .map(|e| e.version)
            .max();
        let mut todo = Vec::new();
        for e in entries.iter().filter(|e| e.state == State::Pending) {
            if let Some(newest) = newest_applied.filter(|n| *n > e.version) {
                let applied = entries
                    .iter()
                    .find(|x| x.version == newest)
                    .map(Entry::label)
                    .unwrap_or_default();
                return Err(Error::OutOfOrder {
                    pending: e.label(),
                    pending_file: e
                        .file
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    applied,
                });
            }
            if opts.to.is_some_and(|to| e.version > to) {
                break;
            }
            let m = self
                .set
                .get(e.version)
                .ok_or(Error::UnknownVersion(e.version))?;
            todo.push(m);
        }
        Ok(todo)
    }

    /// Runs one section. `archive` holds its destroying statements and the
    /// objects the operator excluded from archiving.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run(
        &self,
        db: &mut Database,
        m: &Migration,
        direction: Direction,
        note: Option<&str>,
        archive: Option<(&[Destruction], &[String])>,
        report: &mut RunReport,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<(), Error> {
        let section = match direction {
            Direction::Up => &m.up,
            Direction::Down => m
                .down
                .as_ref()
                .ok_or_else(|| Error::NoDown(vec![format!("{}: no down section", m.label())]))?,
        };
        let statements = section
            .statements(db.driver.dialect())
            .map_err(|e| SourceError::Sql {
                path: m.path.clone(),
                line: section.first_line + e.line_offset,
                message: format!("{} is never closed", e.what),
            })?;
        events(Event::Start {
            migration: m,
            direction,
        });
        // Archive copies go right before the statements they protect, in the
        // same transaction; the catalog is read now, under the runner lock.
        let mut prepared = Vec::new();
        let mut notes: Vec<String> = note.map(str::to_string).into_iter().collect();
        if let Some((found, skip)) = archive.filter(|(f, _)| !f.is_empty()) {
            let cx = archive::PrepareContext {
                version: m.version,
                name: &m.name,
                direction,
                section,
                statements: &statements,
                identity: &self.identity,
                max_bytes: self.settings.archive_max_bytes,
                skip,
                transactional: !m.no_transaction,
            };
            let (copies, skipped) = archive::prepare(db.driver.as_mut(), &cx, found).await?;
            prepared = copies;
            notes.extend(skipped);
        }
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        let note = note.as_deref();
        let own_len = section.sql.len();
        let spliced = archive::splice(section, &statements, &prepared);
        let origin = spliced.origin;
        let section = &spliced.section;
        let statements = spliced.statements;
        let mut job = Job {
            migration: m,
            direction,
            section,
            statements: &statements,
            own_len,
            transactional: !m.no_transaction,
            resume_from: 0,
            resumed: false,
            lock_timeout: m.lock_timeout.unwrap_or(self.settings.lock_timeout),
            statement_timeout: m
                .statement_timeout
                .unwrap_or(self.settings.statement_timeout),
            identity: &self.identity,
            note,
        };
        let line_of = |f: &ExecFailure| -> Option<usize> {
            let base = section.first_line;
            match (f.line_offset, f.statement) {
                (Some(l), _) => Some(base + l),
                (None, Some(i)) => statements.get(i).map(|s| base + s.line_offset),
                _ => None,
            }
        };
        let mut attempt = 1;
        loop {
            match db.driver.execute(&job).await {
                Ok(outcome) => {
                    for n in &outcome.notices {
                        let line = n
                            .statement
                            .and_then(|i| statements.get(i))
                            .map(|s| section.first_line + s.line_offset);
                        events(Event::Notice {
                            migration: m,
                            notice: n,
                            line,
                        });
                    }
                    if outcome.done_here {
                        for p in &prepared {
                            archive::finish(db.driver.as_mut(), p.id).await?;
                            if let Some(entry) = archive::get(db.driver.as_mut(), p.id).await? {
                                events(Event::Archived {
                                    migration: m,
                                    entry: &entry,
                                });
                                report.archived.push(entry);
                            }
                        }
                    }
                    events(Event::Done {
                        migration: m,
                        direction,
                        duration: outcome.duration,
                        done_here: outcome.done_here,
                    });
                    if outcome.done_here {
                        report.ran.push(Ran {
                            version: m.version,
                            name: m.name.clone(),
                            direction,
                            duration_ms: outcome.duration.as_millis() as u64,
                        });
                    } else {
                        report.done_by_other_runner.push(m.version);
                    }
                    return Ok(());
                }
                Err(f) if f.kind.retryable() && attempt <= self.settings.lock_retries => {
                    let wait =
                        Backoff::new(self.settings.retry_backoff, self.settings.retry_backoff_max)
                            .delay(attempt - 1);
                    events(Event::Retry {
                        migration: m,
                        attempt,
                        wait,
                        message: &f.message,
                    });
                    if !job.transactional {
                        job.resume_from = f.statement.unwrap_or(job.resume_from);
                        // A failure with no statement came before the history mark.
                        job.resumed |= f.statement.is_some();
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(mut f) => {
                    if let Some(p) = f
                        .statement
                        .and_then(|i| origin.get(i).copied().flatten())
                        .and_then(|i| prepared.get(i))
                    {
                        f.message = if f.message.contains(archive::SIZE_CONSTRAINT) {
                            format!(
                                "the archive copy of {} is larger than the archive limit ({}); the statement here would destroy it without a copy. Rerun with `--no-archive {}` to go ahead without one (recorded in history), or raise `max_size` in the [archive] table of capstan.toml",
                                p.object,
                                self.settings
                                    .archive_max_bytes
                                    .map_or_else(|| "none".into(), archive::human_bytes),
                                p.object
                            )
                        } else {
                            format!(
                                "archiving {} before this statement failed: {}",
                                p.object, f.message
                            )
                        };
                        f.line_offset = None;
                    }
                    for n in &f.notices {
                        let line = n
                            .statement
                            .and_then(|i| statements.get(i))
                            .map(|s| section.first_line + s.line_offset);
                        events(Event::Notice {
                            migration: m,
                            notice: n,
                            line,
                        });
                    }
                    return Err(Error::Failed(Box::new(MigrationFailure {
                        label: m.label(),
                        file: m.path.clone(),
                        line: line_of(&f),
                        direction,
                        attempts: attempt,
                        no_transaction: m.no_transaction,
                        failure: f,
                        report: std::mem::take(report),
                    })));
                }
            }
        }
    }
}
