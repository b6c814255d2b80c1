//! The startup gate: may a binary with this embedded migration set run
//! against this database?
//!
//! - a migration the binary has and the database lacks is *pending*: the binary
//!   needs it, so the gate refuses (or waits). A pending *contract* migration is
//!   the exception: it runs only once every live instance embeds it, so the
//!   binary that carries it must start first, and must work before and after it;
//! - a migration the database has and the binary lacks is *ahead*: all-expand
//!   ahead is fine (a binary rollback); any contract ahead means the binary is
//!   too old for the schema;
//! - a migration both have whose up section differs from what ran is
//!   *drift*; one the database ran under another name with another up section
//!   is a *collision* (two branches took the same number); a dirty one is
//!   half-applied: all three refuse.

use serde::Serialize;

use crate::driver::AppliedRow;
use crate::fleet::{first_version_embedding, InstanceRow};
use crate::migrator::{compare, Database, Entry, Error, State};
use crate::source::MigrationSet;

/// A migration named by the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateItem {
    /// Version.
    pub version: u64,
    /// `0003_drop_name`.
    pub label: String,
    /// For a contract migration ahead: the first release known to embed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<String>,
    /// For a collision: the migration the database ran under this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ran: Option<String>,
}

/// The gate's verdict, with every migration that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compatibility {
    /// True when the binary may run.
    pub compatible: bool,
    /// In the binary, not applied: the binary needs them.
    pub pending: Vec<GateItem>,
    /// Contract migrations in the binary, not applied yet: fine, they run once
    /// the fleet allows (this binary works before and after them).
    pub pending_contract: Vec<GateItem>,
    /// Applied contract migrations the binary does not know: it is too old.
    pub ahead_contract: Vec<GateItem>,
    /// Applied expand migrations the binary does not know: fine (a rollback).
    pub ahead_expand: Vec<GateItem>,
    /// Applied with a different up section than the binary's.
    pub drifted: Vec<GateItem>,
    /// The database ran a different migration under this version (another
    /// name, another up section): two branches took the same number.
    pub collided: Vec<GateItem>,
    /// Failed part-way (no-transaction); needs `repair`.
    pub dirty: Vec<GateItem>,
    /// Indexes Postgres marks invalid on the application's tables: a failed
    /// `CREATE INDEX CONCURRENTLY` left them, and a unique one enforces
    /// nothing, so the binary may not run.
    pub invalid_indexes: Vec<crate::indexes::InvalidIndex>,
}

impl Compatibility {
    /// True when the binary may run.
    pub fn is_compatible(&self) -> bool {
        self.compatible
    }

    /// One sentence per finding, saying what to do. `app` names the binary's
    /// command (`chirpy`), `version` the binary (`chirpy 1.0.0`).
    pub fn messages(&self, app: &str, version: &str) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.collided {
            out.push(format!(
                "this binary's migration {} is not what ran as {:04}: the database ran {} there, a different migration (two branches took the same number). Renumber this binary's after it with `capstan migrate rebase`, merge the other, and build again",
                c.label,
                c.version,
                c.ran.as_deref().unwrap_or("another migration")
            ));
        }
        if !self.pending.is_empty() {
            out.push(format!(
                "the database lacks migration{} {} that this binary needs: {}",
                plural(self.pending.len()),
                labels(&self.pending),
                if self.collided.is_empty() {
                    format!("run `{app} migrate up`")
                } else {
                    "`up` runs them once the collision is resolved".to_string()
                }
            ));
        }
        for c in &self.ahead_contract {
            out.push(format!(
                "this binary ({version}) is older than contract migration {}, which removed or changed what it uses; deploy {} or later",
                c.label,
                c.deploy.as_deref().unwrap_or("the release that added it")
            ));
        }
        if !self.drifted.is_empty() {
            out.push(format!(
                "migration{} {} in this binary differ{} from what was applied (the up section): it was built from edited migrations; restore them, or record an intended edit with `capstan migrate hash --accept VERSION --reason`",
                plural(self.drifted.len()),
                labels(&self.drifted),
                if self.drifted.len() == 1 { "s" } else { "" }
            ));
        }
        if !self.dirty.is_empty() {
            out.push(format!(
                "migration{} {} failed part-way: run `{app} migrate repair`",
                plural(self.dirty.len()),
                labels(&self.dirty)
            ));
        }
        for x in &self.invalid_indexes {
            out.push(format!(
                "index {} on {} is INVALID (a CREATE INDEX CONCURRENTLY failed): it is not used and enforces nothing; drop it with `{}` and build it again (run the migration that creates it)",
                x.qualified(),
                x.table,
                x.drop_sql()
            ));
        }
        if !self.pending_contract.is_empty() {
            out.push(format!(
                "contract migration{} {} {} not applied yet; this binary works before and after {}, and `migrate up` applies {} once no live instance lacks {}",
                plural(self.pending_contract.len()),
                labels(&self.pending_contract),
                if self.pending_contract.len() == 1 { "is" } else { "are" },
                if self.pending_contract.len() == 1 { "it" } else { "them" },
                if self.pending_contract.len() == 1 { "it" } else { "them" },
                if self.pending_contract.len() == 1 { "it" } else { "them" },
            ));
        }
        if !self.ahead_expand.is_empty() {
            out.push(format!(
                "the database has newer expand migration{} {}; this binary works with them (a binary rollback)",
                plural(self.ahead_expand.len()),
                labels(&self.ahead_expand)
            ));
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn labels(items: &[GateItem]) -> String {
    items
        .iter()
        .map(|i| i.label.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pure gate: the binary's set against history (and the fleet, for advice).
pub fn check(set: &MigrationSet, history: &[AppliedRow], fleet: &[InstanceRow]) -> Compatibility {
    let item = |e: &Entry| GateItem {
        version: e.version,
        label: e.label(),
        deploy: None,
        ran: None,
    };
    let mut c = Compatibility {
        compatible: false,
        pending: Vec::new(),
        pending_contract: Vec::new(),
        ahead_contract: Vec::new(),
        ahead_expand: Vec::new(),
        drifted: Vec::new(),
        collided: Vec::new(),
        dirty: Vec::new(),
        invalid_indexes: Vec::new(),
    };
    for e in compare(set, history) {
        match e.state {
            State::Applied => {}
            // A pending contract migration that nothing pending follows:
            // the binary carries it so that the fleet can let it run.
            State::Pending if e.phase == "contract" => c.pending_contract.push(item(&e)),
            State::Pending => c.pending.push(item(&e)),
            State::Drifted => c.drifted.push(item(&e)),
            State::Collision => c.collided.push(GateItem {
                ran: e
                    .applied
                    .as_ref()
                    .map(|a| capstan_format::label(a.version, &a.name).to_string()),
                ..item(&e)
            }),
            State::Dirty => c.dirty.push(item(&e)),
            // Never from `compare`; a runner is applying it: the binary waits.
            State::InProgress => c.pending.push(item(&e)),
            State::Ahead if e.phase == "contract" => {
                let deploy = first_version_embedding(fleet, e.version).or_else(|| {
                    e.applied
                        .as_ref()
                        .map(|a| a.binary_version.clone())
                        .filter(|b| !b.starts_with("capstan "))
                });
                c.ahead_contract.push(GateItem { deploy, ..item(&e) });
            }
            State::Ahead => c.ahead_expand.push(item(&e)),
        }
    }
    // An expand migration after a pending contract one cannot be applied
    // before it, and the binary needs it: the contract one blocks too.
    if let Some(first_needed) = c.pending.first().map(|p| p.version) {
        let (later, blocking): (Vec<_>, Vec<_>) = c
            .pending_contract
            .drain(..)
            .partition(|p| p.version > first_needed);
        c.pending_contract = later;
        c.pending.extend(blocking);
        c.pending.sort_by_key(|p| p.version);
    }
    c.compatible = c.pending.is_empty()
        && c.ahead_contract.is_empty()
        && c.drifted.is_empty()
        && c.collided.is_empty()
        && c.dirty.is_empty();
    c
}

/// Reads history and the fleet from `db` and runs [`check`]. Changes nothing.
pub async fn check_database(db: &mut Database, set: &MigrationSet) -> Result<Compatibility, Error> {
    let history = db.driver().history().await?;
    let fleet = db.driver().fleet_list().await?;
    let mut c = check(set, &history, &fleet);
    c.invalid_indexes = db.driver().invalid_indexes().await?;
    c.compatible &= c.invalid_indexes.is_empty();
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse_migration;
    use std::path::Path;

    fn set(files: &[(&str, &str)]) -> MigrationSet {
        MigrationSet::new(
            files
                .iter()
                .map(|(n, t)| parse_migration(Path::new(n), t.as_bytes()).unwrap())
                .collect(),
        )
        .unwrap()
    }

    fn applied(m: &crate::source::Migration, by: &str) -> AppliedRow {
        AppliedRow {
            version: m.version,
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            up_checksum: Some(m.up_checksum.clone()),
            down_checksum: m.down_checksum.clone(),
            phase: m.phase.to_string(),
            state: "applied".into(),
            applied_at: String::new(),
            applied_by: String::new(),
            binary_version: by.into(),
            duration_ms: 0,
            no_transaction: false,
            error: None,
        }
    }

    const V1: (&str, &str) = (
        "0001_users.sql",
        "-- capstan:up\nCREATE TABLE users (id int, name text);",
    );
    const V2: (&str, &str) = (
        "0002_handle.sql",
        "-- capstan:up\nALTER TABLE users ADD COLUMN handle text;",
    );
    const V3: (&str, &str) = (
        "0003_drop_name.sql",
        "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN name;",
    );

    #[test]
    fn pending_refuses_and_says_to_migrate() {
        let v2 = set(&[V1, V2]);
        let history = vec![applied(&v2.migrations()[0], "chirpy 1.0.0")];
        let c = check(&v2, &history, &[]);
        assert!(!c.is_compatible());
        let msg = c.messages("chirpy", "chirpy 2.0.0").join("\n");
        assert!(msg.contains("0002_handle"), "{msg}");
        assert!(msg.contains("run `chirpy migrate up`"), "{msg}");
    }

    #[test]
    fn expand_ahead_is_a_rollback_and_compatible() {
        let v3 = set(&[V1, V2, V3]);
        let v1 = set(&[V1]);
        let history: Vec<_> = v3.migrations()[..2]
            .iter()
            .map(|m| applied(m, "chirpy 2.0.0"))
            .collect();
        let c = check(&v1, &history, &[]);
        assert!(c.is_compatible(), "{c:?}");
        assert_eq!(c.ahead_expand.len(), 1);
    }

    #[test]
    fn contract_ahead_refuses_and_names_the_release() {
        let v3 = set(&[V1, V2, V3]);
        let v1 = set(&[V1]);
        let history: Vec<_> = v3
            .migrations()
            .iter()
            .map(|m| applied(m, "chirpy 3.0.0"))
            .collect();
        let c = check(&v1, &history, &[]);
        assert!(!c.is_compatible());
        let msg = c.messages("chirpy", "chirpy 1.0.0").join("\n");
        assert!(
            msg.contains("older than contract migration 0003_drop_name"),
            "{msg}"
        );
        assert!(msg.contains("deploy chirpy 3.0.0 or later"), "{msg}");
    }

    #[test]
    fn a_pending_contract_migration_lets_the_binary_start() {
        let v3 = set(&[V1, V2, V3]);
        let history: Vec<_> = v3.migrations()[..2]
            .iter()
            .map(|m| applied(m, "chirpy 2.0.0"))
            .collect();
        let c = check(&v3, &history, &[]);
        assert!(c.is_compatible(), "{c:?}");
        assert_eq!(c.pending_contract.len(), 1);
        let msg = c.messages("chirpy", "chirpy 3.0.0").join("\n");
        assert!(msg.contains("0003_drop_name is not applied yet"), "{msg}");
    }

    #[test]
    fn an_expand_after_a_pending_contract_still_refuses() {
        const V4: (&str, &str) = (
            "0004_bio.sql",
            "-- capstan:up\nALTER TABLE users ADD COLUMN bio text;",
        );
        let v4 = set(&[V1, V2, V3, V4]);
        let history: Vec<_> = v4.migrations()[..2]
            .iter()
            .map(|m| applied(m, "chirpy 2.0.0"))
            .collect();
        let c = check(&v4, &history, &[]);
        assert!(!c.is_compatible(), "{c:?}");
        let pending: Vec<u64> = c.pending.iter().map(|p| p.version).collect();
        assert_eq!(pending, vec![3, 4]);
    }

    #[test]
    fn drift_refuses() {
        let v1 = set(&[V1]);
        let mut row = applied(&v1.migrations()[0], "x");
        row.up_checksum = Some("other".into());
        assert!(!check(&v1, &[row], &[]).is_compatible());
    }
}
