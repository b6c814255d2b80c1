//! `baseline`, `repair` and `verify`.

use super::*;

impl Migrator {
    /// The versions under which the database ran a different migration
    /// than this set's file of that number. Changes nothing.
    pub async fn collisions(&self, db: &mut Database) -> Result<Vec<CollisionInfo>, Error> {
        let history = db.driver.history().await?;
        Ok(compare(&self.set, &history)
            .iter()
            .filter(|e| e.state == State::Collision)
            .filter_map(CollisionInfo::of)
            .collect())
    }

    /// Records migrations up to `version` as applied without running them, to
    /// adopt a database whose schema already matches them.
    pub async fn baseline(&self, db: &mut Database, version: u64) -> Result<Vec<u64>, Error> {
        if self.set.get(version).is_none() {
            return Err(Error::UnknownVersion(version));
        }
        db.driver.lock(self.settings.runner_lock_timeout).await?;
        let result = async {
            db.driver.ensure_schema().await?;
            let history = db.driver.history().await?;
            if !history.is_empty() {
                return Err(Error::AlreadyRecorded(
                    history
                        .iter()
                        .map(|r| capstan_format::label(r.version, &r.name).to_string())
                        .collect(),
                ));
            }
            self.register_service(db).await?;
            let migrations: Vec<&Migration> = self
                .set
                .migrations()
                .iter()
                .filter(|m| m.version <= version)
                .collect();
            let versions = migrations.iter().map(|m| m.version).collect();
            db.driver
                .record(Record::MarkApplied {
                    migrations,
                    identity: &self.identity,
                    action: "baseline",
                })
                .await?;
            Ok(versions)
        }
        .await;
        let unlocked = db.driver.unlock().await;
        let versions = result?;
        unlocked?;
        Ok(versions)
    }

    /// Adopts a database another tool migrated: reads `tool`'s history table
    /// (`table`, or the tool's default) and records as applied, without
    /// running them, the migrations imported from the versions it applied
    /// (see [`crate::import::map_history`]). Records nothing when the tool
    /// applied nothing.
    pub async fn baseline_from(
        &self,
        db: &mut Database,
        tool: crate::import::Tool,
        table: Option<&str>,
    ) -> Result<ToolBaseline, Error> {
        let table = table.unwrap_or(tool.history_table()).to_string();
        let refuse = |message: String| Error::ToolHistory { tool, message };
        let rows = db
            .driver
            .tool_history(tool, &table)
            .await?
            .ok_or_else(|| {
                refuse(format!(
                    "the database has no table {table}: is this the database {tool} migrated? (name another with --table)"
                ))
            })?;
        let imported: Vec<crate::import::Imported> = self
            .set
            .migrations()
            .iter()
            .map(|m| crate::import::Imported {
                version: m.version,
                file_name: m.file_name.clone(),
                from: crate::import::imported_from(&m.text),
            })
            .collect();
        let target = crate::import::map_history(tool, &imported, &rows).map_err(refuse)?;
        let baselined = match target {
            Some(v) => self.baseline(db, v).await?,
            None => Vec::new(),
        };
        Ok(ToolBaseline {
            tool,
            table,
            rows: rows.len(),
            baselined,
        })
    }

    /// The dirty migrations, explained. Changes nothing.
    pub async fn dirty(&self, db: &mut Database) -> Result<Vec<DirtyInfo>, Error> {
        let history = db.driver.history().await?;
        let mut dirty = dirty_of(&history);
        if !dirty.is_empty() {
            let invalid = db.driver.invalid_indexes().await?;
            for d in &mut dirty {
                let Some(m) = self.set.get(d.version) else {
                    continue;
                };
                let statements = m.up.statements(db.driver.dialect()).unwrap_or_default();
                let names = crate::indexes::created_index_names(
                    statements.iter().map(|s| &m.up.sql[s.range.clone()]),
                );
                d.invalid_indexes = invalid
                    .iter()
                    .filter(|x| names.iter().any(|n| x.named_by(n)))
                    .cloned()
                    .collect();
            }
        }
        Ok(dirty)
    }

    /// Resolves a dirty migration as the operator says.
    pub async fn repair(&self, db: &mut Database, action: RepairAction) -> Result<(), Error> {
        db.driver.lock(self.settings.runner_lock_timeout).await?;
        let result = async {
            let history = db.driver.history().await?;
            let version = match action {
                RepairAction::MarkApplied(v) | RepairAction::MarkRolledBack(v) => v,
            };
            let Some(row) = history
                .iter()
                .find(|r| r.version == version && r.is_dirty())
            else {
                // Not dirty, but maybe what `repair` is asked about: a
                // different migration that ran under this number.
                let collisions: Vec<CollisionInfo> = compare(&self.set, &history)
                    .iter()
                    .filter(|e| e.version == version && e.state == State::Collision)
                    .filter_map(CollisionInfo::of)
                    .collect();
                if !collisions.is_empty() {
                    return Err(Error::Collision(collisions));
                }
                return Err(Error::NotDirty(version));
            };
            db.driver.ensure_schema().await?;
            self.register_service(db).await?;
            match action {
                RepairAction::MarkApplied(_) => {
                    let m = self
                        .set
                        .get(version)
                        .ok_or(Error::UnknownVersion(version))?;
                    db.driver
                        .record(Record::MarkApplied {
                            migrations: vec![m],
                            identity: &self.identity,
                            action: "repair: marked applied",
                        })
                        .await?;
                }
                RepairAction::MarkRolledBack(_) => {
                    db.driver
                        .record(Record::Forget {
                            version,
                            name: &row.name,
                            identity: &self.identity,
                            action: "repair: marked rolled back",
                        })
                        .await?;
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        let unlocked = db.driver.unlock().await;
        result?;
        unlocked?;
        Ok(())
    }

    /// On a scratch database next to `db`: applies every migration and checks
    /// that each down section restores the schema and that up runs again.
    pub async fn verify(
        &self,
        db: &mut Database,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<VerifyReport, Error> {
        let scratch = db.driver.create_scratch().await?;
        let mut scratch = Database { driver: scratch };
        let result = self.verify_on(&mut scratch, events).await;
        let dropped = db.driver.drop_scratch(scratch.driver).await;
        let mut report = result?;
        dropped?;
        report.invalid_indexes = db.driver.invalid_indexes().await?;
        Ok(report)
    }

    pub(super) async fn verify_on(
        &self,
        db: &mut Database,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<VerifyReport, Error> {
        db.driver.ensure_schema().await?;
        let mut steps = Vec::new();
        let mut report = RunReport::default();
        for m in self.set.migrations() {
            let before = db.driver.snapshot().await?;
            self.run(db, m, Direction::Up, None, None, &mut report, events)
                .await?;
            let after = db.driver.snapshot().await?;
            let (differences, stop) = if m.down.is_some() {
                self.round_trip(db, m, &before, &after, &mut report, events)
                    .await?
            } else {
                (Vec::new(), false)
            };
            steps.push(VerifyStep {
                version: m.version,
                name: m.name.clone(),
                down_checked: m.down.is_some(),
                differences,
            });
            if stop {
                // The schema is in an unknown state: later steps would mislead.
                break;
            }
        }
        Ok(VerifyReport {
            steps,
            invalid_indexes: Vec::new(),
        })
    }

    /// Runs `m`'s down section, compares with `before`, runs up again and
    /// compares with `after`. Returns the differences, and true when a section
    /// failed (the scratch schema is then in an unknown state).
    pub(super) async fn round_trip(
        &self,
        db: &mut Database,
        m: &Migration,
        before: &crate::driver::Snapshot,
        after: &crate::driver::Snapshot,
        report: &mut RunReport,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<(Vec<String>, bool), Error> {
        let mut differences = Vec::new();
        let legs = [
            (
                Direction::Down,
                before,
                "the down section fails",
                "after down",
            ),
            (
                Direction::Up,
                after,
                "up fails when run again after down",
                "after down and up again",
            ),
        ];
        for (direction, expected, failed, context) in legs {
            match self.run(db, m, direction, None, None, report, events).await {
                Err(Error::Failed(f)) => {
                    differences.push(format!("{failed}: {f}"));
                    return Ok((differences, true));
                }
                other => other?,
            }
            let now = db.driver.snapshot().await?;
            differences.extend(
                expected
                    .diff(&now)
                    .into_iter()
                    .map(|d| format!("{context}, {d}")),
            );
        }
        Ok((differences, false))
    }
}
