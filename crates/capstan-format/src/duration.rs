//! Durations in directives, flags and configuration: one syntax
//! (humantime's: `2s`, `500ms`, `1m 30s`), plus the bare `0`.

use std::time::Duration;

/// The longest timeout Postgres accepts: `lock_timeout` and
/// `statement_timeout` are whole milliseconds in a 32-bit integer.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// Why a duration or timeout was refused. The text names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all.
    #[error("{reason} (write it like 2s, 500ms or 1m)")]
    Syntax {
        /// The value.
        value: String,
        /// What the duration parser said.
        reason: String,
    },
    /// A timeout with a fraction of a millisecond (`500us`).
    #[error("`{0}` is not a whole number of milliseconds; timeouts are counted in milliseconds (0 turns the timeout off)")]
    NotWholeMillis(String),
    /// A timeout over [`MAX_TIMEOUT`].
    #[error("`{value}` is longer than the longest timeout Postgres accepts ({max}); 0 turns the timeout off", max = humantime::format_duration(MAX_TIMEOUT))]
    TooLong {
        /// The value.
        value: String,
    },
}

/// Parses a duration such as `2s`, `500ms`, `1m`; `0` is no time at all.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| DurationError::Syntax {
        value: s.to_string(),
        reason: e.to_string(),
    })
}

/// Parses a lock or statement timeout: a duration such as `2s`, `500ms` or
/// `1m`, in whole milliseconds, at most [`MAX_TIMEOUT`] (about 24 days).
/// `0` turns the timeout off (wait as long as it takes). A value the database
/// would round to 0 (`500us`) or refuse (`999999999s`) is refused here, so a
/// typo never turns the timeout off or fails only when the migration runs.
pub fn parse_timeout(s: &str) -> Result<Duration, DurationError> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Ok(d);
    }
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(DurationError::NotWholeMillis(s.to_string()));
    }
    if d > MAX_TIMEOUT {
        return Err(DurationError::TooLong {
            value: s.to_string(),
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_whole_milliseconds_within_postgres_range() {
        assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
        assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("24days"), Ok(Duration::from_secs(24 * 86400)));
        for bad in ["500us", "1500us", "999999999s", "25days"] {
            let err = parse_timeout(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
            assert!(err.contains("0 turns the timeout off"), "{bad}: {err}");
        }
        for bad in ["soon", "", "500", "2 parsecs", "-1s"] {
            assert!(
                matches!(parse_timeout(bad), Err(DurationError::Syntax { .. })),
                "{bad}"
            );
        }
    }
}
