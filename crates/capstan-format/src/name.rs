//! Migration file names and the id they carry.

use std::fmt;

/// The identity of a migration: its version and its snake_case name, as in
/// the file name `0007_drop_name.sql`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct MigrationId {
    /// The number in the file name.
    pub version: u64,
    /// The snake_case name after the number.
    pub name: String,
}

impl MigrationId {
    /// An id from its parts.
    pub fn new(version: u64, name: impl Into<String>) -> Self {
        MigrationId {
            version,
            name: name.into(),
        }
    }

    /// `0007_drop_name`: the label every message and file name uses.
    pub fn label(&self) -> Label<'_> {
        label(self.version, &self.name)
    }

    /// `0007_drop_name.sql`.
    pub fn file_name(&self) -> String {
        format!("{}.sql", self.label())
    }
}

impl fmt::Display for MigrationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.label().fmt(f)
    }
}

/// A migration's label, `0007_drop_name`, borrowed from wherever the version
/// and name are kept; it displays without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label<'a> {
    version: u64,
    name: &'a str,
}

/// The label of the migration `version`, `name`: the version with at least
/// four digits, an underscore, the name (`0007_drop_name`). The one place
/// this form is written.
pub fn label(version: u64, name: &str) -> Label<'_> {
    Label { version, name }
}

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}_{}", self.version, self.name)
    }
}

/// Parses a capstan file name, `NNNN_snake_name.sql`: at least four digits,
/// an underscore, a lower-case letter, then lower-case letters, digits and
/// underscores. `None` for any other name.
pub fn parse_file_name(file_name: &str) -> Option<MigrationId> {
    let stem = file_name.strip_suffix(".sql")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.len() < 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !name_ok {
        return None;
    }
    Some(MigrationId::new(digits.parse().ok()?, name))
}

/// The version of any numbered SQL file, `DIGITS_anything.sql` (capstan's
/// own names, and the looser ones of other tools the linter reads, such as
/// `1_add_email.sql`); `None` when the name does not start that way.
pub fn version_prefix(file_name: &str) -> Option<u64> {
    let stem = file_name.strip_suffix(".sql")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.is_empty() || name.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_follow_the_pattern() {
        assert_eq!(
            parse_file_name("0001_create_users.sql"),
            Some(MigrationId::new(1, "create_users"))
        );
        assert_eq!(
            parse_file_name("20240101_x.sql"),
            Some(MigrationId::new(20240101, "x"))
        );
        for bad in [
            "1_a.sql",
            "0001-a.sql",
            "0001_A.sql",
            "0001_.sql",
            "0001_a.txt",
            "abcd_a.sql",
            "0001_1a.sql",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn labels_pad_to_four_digits_and_round_trip() {
        let id = MigrationId::new(7, "drop_name");
        assert_eq!(id.to_string(), "0007_drop_name");
        assert_eq!(id.label().to_string(), "0007_drop_name");
        assert_eq!(label(20240101, "x").to_string(), "20240101_x");
        assert_eq!(parse_file_name(&id.file_name()), Some(id));
    }

    #[test]
    fn versions_of_any_numbered_file() {
        assert_eq!(version_prefix("0007_add_email.sql"), Some(7));
        assert_eq!(version_prefix("1_Add-Email.sql"), Some(1));
        assert_eq!(version_prefix("add_email.sql"), None);
        assert_eq!(version_prefix("0007.sql"), None);
        assert_eq!(version_prefix("0007_a.txt"), None);
    }
}
