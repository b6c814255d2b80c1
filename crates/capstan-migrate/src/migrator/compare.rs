//! `compare` (pure: set × history → states) and the one place that decides
//! applied / drifted / collision ([`classify`]).

use std::path::PathBuf;

use serde::Serialize;

use crate::driver::AppliedRow;
use crate::indexes::InvalidIndex;
use crate::source::{Migration, MigrationSet, Phase};

/// A migration's state, comparing the set with the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// In both, same checksum.
    Applied,
    /// In the set, not in the database.
    Pending,
    /// In the database, not in the set.
    Ahead,
    /// In both, under the same name, but the up section differs from what ran.
    Drifted,
    /// In both, but a different migration ran under this version: the
    /// names and the up sections differ (two branches took the same number).
    Collision,
    /// A no-transaction migration failed part-way; see `repair`.
    Dirty,
    /// A no-transaction migration a live runner is running now (its row is
    /// marked dirty until it finishes, and that runner holds the lock).
    #[serde(rename = "in-progress")]
    InProgress,
}

impl State {
    /// The JSON/text name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Ahead => "ahead",
            State::Drifted => "drifted",
            State::Collision => "collision",
            State::Dirty => "dirty",
            State::InProgress => "in-progress",
        }
    }
}

/// One line of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Version.
    pub version: u64,
    /// Name.
    pub name: String,
    /// Phase (from the file, or from history for an ahead migration).
    pub phase: Phase,
    /// State.
    pub state: State,
    /// The file, when the set has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The history row, when the database has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedRow>,
    /// Applied, and the file's down section differs from the one recorded
    /// (allowed: the next `up` or `down` records it, and `down` runs the file's).
    pub down_changed: bool,
}

impl Entry {
    /// `0007_drop_name`.
    pub fn label(&self) -> String {
        capstan_format::label(self.version, &self.name).to_string()
    }
}

/// How a history row compares with the file of the same version: the pure
/// core of [`compare`]. A row holds the hash of the up section that ran;
/// a row an older capstan wrote holds only the whole file's checksum, which
/// is compared instead. A different up section under another name is
/// another migration (a collision); under the same name, an edit (drift).
pub fn classify(m: &Migration, row: &AppliedRow) -> State {
    if row.is_dirty() {
        return State::Dirty;
    }
    let same = match &row.up_checksum {
        Some(up) => *up == m.up_checksum,
        None => m.matches_file_checksum(&row.checksum),
    };
    if same {
        State::Applied
    } else if row.name != m.name {
        State::Collision
    } else {
        State::Drifted
    }
}

/// Compares a set with history rows: the pure heart of `status`, `up` and the gate.
pub fn compare(set: &MigrationSet, history: &[AppliedRow]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut rows = history.iter().peekable();
    let mut files = set.migrations().iter().peekable();
    loop {
        let next_row = rows.peek().map(|r| r.version);
        let next_file = files.peek().map(|m| m.version);
        match (next_file, next_row) {
            (None, None) => break,
            (Some(f), r) if r.is_none_or(|r| f < r) => {
                let m = files.next().expect("peeked");
                out.push(Entry {
                    version: m.version,
                    name: m.name.clone(),
                    phase: m.phase,
                    state: State::Pending,
                    file: Some(m.path.clone()),
                    applied: None,
                    down_changed: false,
                });
            }
            (f, Some(r)) if f.is_none_or(|f| r < f) => {
                let row = rows.next().expect("peeked");
                out.push(Entry {
                    version: row.version,
                    name: row.name.clone(),
                    phase: row.phase,
                    state: if row.is_dirty() {
                        State::Dirty
                    } else {
                        State::Ahead
                    },
                    file: None,
                    applied: Some(row.clone()),
                    down_changed: false,
                });
            }
            _ => {
                let m = files.next().expect("peeked");
                let row = rows.next().expect("peeked");
                let state = classify(m, row);
                out.push(Entry {
                    version: m.version,
                    name: m.name.clone(),
                    phase: m.phase,
                    state,
                    file: Some(m.path.clone()),
                    applied: Some(row.clone()),
                    down_changed: state == State::Applied
                        && row.up_checksum.is_some()
                        && row.down_checksum != m.down_checksum,
                });
            }
        }
    }
    out
}

/// The result of `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Every migration known to the set or the database, by version.
    pub migrations: Vec<Entry>,
    /// Indexes Postgres marks invalid on the application's tables (a failed
    /// `CREATE INDEX CONCURRENTLY` left them: unused, enforcing nothing).
    pub invalid_indexes: Vec<InvalidIndex>,
}

impl Status {
    /// Entries in `state`.
    pub fn in_state(&self, state: State) -> impl Iterator<Item = &Entry> {
        self.migrations.iter().filter(move |e| e.state == state)
    }
}
