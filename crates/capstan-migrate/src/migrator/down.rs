//! `down` and `hash --accept`: rolling back, and recording the section
//! hashes of applied migrations.

use super::*;

impl Migrator {
    /// Rolls back applied migrations newer than `to` (default: the newest one),
    /// newest first. Refuses before touching anything if one has no down section.
    pub async fn down(
        &self,
        db: &mut Database,
        to: Option<u64>,
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        self.down_with(db, to, &[], events).await
    }

    /// [`Migrator::down`], destroying the objects named in `no_archive`
    /// without an archive copy (recorded in history).
    pub async fn down_with(
        &self,
        db: &mut Database,
        to: Option<u64>,
        no_archive: &[String],
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        self.lock(db, events).await?;
        let result = self.down_locked(db, to, no_archive, events).await;
        let unlocked = db.driver.unlock().await;
        let report = result?;
        unlocked?;
        Ok(report)
    }

    pub(super) async fn down_locked(
        &self,
        db: &mut Database,
        to: Option<u64>,
        no_archive: &[String],
        events: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<RunReport, Error> {
        let history = db.driver.history().await?;
        let entries = compare(&self.set, &history);
        check_clean(&entries)?;
        // Something is applied, so this run may write history: the service
        // is registered first (or refused, when another owns what it claims).
        if self.service.is_some() && !history.is_empty() {
            db.driver.ensure_schema().await?;
            self.register_service(db).await?;
        }
        if self.sections_to_record(&history).next().is_some() {
            db.driver.ensure_schema().await?;
            self.record_sections(db, &history).await?;
        }
        let applied: Vec<&Entry> = entries
            .iter()
            .filter(|e| matches!(e.state, State::Applied | State::Ahead))
            .collect();
        let Some(newest) = applied.last() else {
            return Ok(RunReport::default());
        };
        let to = to.unwrap_or(newest.version.saturating_sub(1));
        let targets: Vec<&Entry> = applied
            .iter()
            .rev()
            .filter(|e| e.version > to)
            .copied()
            .collect();
        let mut problems = Vec::new();
        for e in &targets {
            match e.state {
                State::Ahead => problems.push(format!(
                    "{}: applied but not in this migration directory (an older directory or binary?)",
                    e.label()
                )),
                _ => {
                    let m = self.set.get(e.version).ok_or(Error::UnknownVersion(e.version))?;
                    if m.down.is_none() {
                        problems.push(format!("{}: no `-- capstan:down` section", e.label()));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(Error::NoDown(problems));
        }
        let todo: Vec<&Migration> = targets
            .iter()
            .map(|e| {
                self.set
                    .get(e.version)
                    .ok_or(Error::UnknownVersion(e.version))
            })
            .collect::<Result<_, _>>()?;
        let detected = self.detect(&history, &todo, Direction::Down, db.driver.dialect())?;
        self.check_no_archive(db, &history, &detected, no_archive)
            .await?;
        if !detected.values().all(Vec::is_empty) {
            db.driver.ensure_schema().await?;
        }
        let mut report = RunReport::default();
        for m in todo {
            stop_if_asked(m, Direction::Down, &mut report)?;
            let archive = detected
                .get(&(m.version, Direction::Down))
                .map(|found| (found.as_slice(), no_archive));
            self.run(db, m, Direction::Down, None, archive, &mut report, events)
                .await?;
        }
        Ok(report)
    }

    /// The applied migrations whose history row lacks the section hashes of
    /// its file (a row an older capstan wrote) or records another down
    /// section (an edit, which is allowed), each with its log action.
    pub(super) fn sections_to_record<'a>(
        &'a self,
        history: &'a [AppliedRow],
    ) -> impl Iterator<Item = SectionUpdate<'a>> + 'a {
        history.iter().filter_map(move |row| {
            let m = self.set.get(row.version)?;
            if classify(m, row) != State::Applied {
                return None;
            }
            match &row.up_checksum {
                None => Some(SectionUpdate {
                    migration: m,
                    whole: false,
                    action: None,
                    detail: None,
                }),
                Some(_) if row.down_checksum != m.down_checksum => Some(SectionUpdate {
                    migration: m,
                    whole: false,
                    action: Some("down edited".into()),
                    detail: Some(format!(
                        "the down section changed after the migration ran (sha256 {} -> {}); `down` runs the new one",
                        row.down_checksum.as_deref().unwrap_or("none"),
                        m.down_checksum.as_deref().unwrap_or("none")
                    )),
                }),
                Some(_) => None,
            }
        })
    }

    /// Records [`Migrator::sections_to_record`] (call under the runner lock,
    /// after `ensure_schema`), in one transaction.
    pub(super) async fn record_sections(
        &self,
        db: &mut Database,
        history: &[AppliedRow],
    ) -> Result<(), Error> {
        let updates: Vec<SectionUpdate<'_>> = self.sections_to_record(history).collect();
        if updates.is_empty() {
            return Ok(());
        }
        db.driver
            .record(Record::Sections {
                updates,
                identity: &self.identity,
            })
            .await?;
        Ok(())
    }

    /// Records an intended edit of applied migration `version`: history
    /// takes the hashes of its file as it is now, and the log says who, when
    /// and `reason`. Refuses an empty reason, a version with no file or no
    /// history row, a dirty one, and a different migration that ran under
    /// the same number, changing nothing.
    pub async fn accept(
        &self,
        db: &mut Database,
        version: u64,
        reason: &str,
    ) -> Result<Accepted, Error> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Error::MissingReason);
        }
        let m = self
            .set
            .get(version)
            .ok_or(Error::UnknownVersion(version))?;
        db.driver.lock(self.settings.runner_lock_timeout).await?;
        let result = async {
            let history = db.driver.history().await?;
            let row = history
                .iter()
                .find(|r| r.version == version)
                .ok_or_else(|| Error::NotApplied(m.label()))?;
            let entry = compare(&self.set, std::slice::from_ref(row))
                .into_iter()
                .find(|e| e.version == version)
                .ok_or(Error::UnknownVersion(version))?;
            match entry.state {
                State::Dirty => return Err(Error::Dirty(vec![DirtyInfo::from(row)])),
                State::Collision => {
                    return Err(Error::Collision(
                        CollisionInfo::of(&entry).into_iter().collect(),
                    ))
                }
                _ => {}
            }
            let matches = row.up_checksum.as_deref() == Some(m.up_checksum.as_str())
                && row.down_checksum == m.down_checksum
                && row.checksum == m.checksum;
            let accepted = Accepted {
                version,
                name: m.name.clone(),
                recorded: !matches,
                previous_up_checksum: row.up_checksum.clone(),
                up_checksum: m.up_checksum.clone(),
            };
            if matches {
                return Ok(accepted);
            }
            db.driver.ensure_schema().await?;
            self.register_service(db).await?;
            let detail = format!(
                "reason: {reason}; up section sha256 {} -> {}; down section sha256 {} -> {}; file sha256 {} -> {}",
                row.up_checksum.as_deref().unwrap_or("not recorded"),
                m.up_checksum,
                row.down_checksum.as_deref().unwrap_or("none"),
                m.down_checksum.as_deref().unwrap_or("none"),
                row.checksum,
                m.checksum
            );
            db.driver
                .record(Record::Sections {
                    updates: vec![SectionUpdate {
                        migration: m,
                        whole: true,
                        action: Some("accept".into()),
                        detail: Some(detail),
                    }],
                    identity: &self.identity,
                })
                .await?;
            Ok(accepted)
        }
        .await;
        let unlocked = db.driver.unlock().await;
        let accepted = result?;
        unlocked?;
        Ok(accepted)
    }
}
