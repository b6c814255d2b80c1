//! What `migrate up` knows about the live database it is about to change: the
//! size of each table right now, and the session time zone. The linter uses
//! them to tell a lock held for milliseconds from one held for minutes.

use std::collections::BTreeMap;

/// The size of one table, from the catalog (Postgres: `pg_class.reltuples`, or
/// a count bounded by the row threshold when the table was never analyzed, and
/// `pg_total_relation_size`; SQLite: a count bounded by the row threshold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSize {
    /// Rows (an estimate on Postgres).
    pub rows: u64,
    /// Bytes on disk: the table, its indexes and TOAST (0 when unknown).
    pub bytes: u64,
}

/// Facts read from the database the migrations are about to run on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// Sizes of the tables that exist now, by name (`schema.name`, `public.`
    /// left out).
    pub tables: BTreeMap<String, TableSize>,
    /// The session's `TimeZone` setting on the connection that runs them.
    pub time_zone: Option<String>,
}

/// Whether a time zone name has a fixed offset of zero (Postgres then treats
/// `timestamp` and `timestamptz` as binary compatible, from version 12).
pub fn is_utc(zone: &str) -> bool {
    let z = zone.trim().trim_matches('\'').to_ascii_lowercase();
    let z = z.strip_prefix("etc/").unwrap_or(&z);
    matches!(
        z,
        "utc"
            | "uct"
            | "gmt"
            | "gmt0"
            | "gmt+0"
            | "gmt-0"
            | "universal"
            | "zulu"
            | "z"
            | "greenwich"
            | "0"
            | "+0"
            | "-0"
            | "+00"
            | "00:00"
            | "+00:00"
    )
}

/// `1204` → `1,204`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `73728` → `72 kB`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(human_bytes(73728), "72 kB");
        assert_eq!(human_bytes(8192), "8.0 kB");
        assert_eq!(human_bytes(100), "100 bytes");
    }

    #[test]
    fn utc_zones() {
        for z in ["UTC", "Etc/UTC", "GMT", "'utc'", "Zulu"] {
            assert!(is_utc(z), "{z}");
        }
        for z in ["Europe/London", "America/New_York", "CET", "+01"] {
            assert!(!is_utc(z), "{z}");
        }
    }
}
