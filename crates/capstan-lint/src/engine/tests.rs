//! The engine's tests: sections, streaming, positions, live sizes, dialects.

use super::parse::STREAM_THRESHOLD;
use super::text::LineIndex;
use super::*;

#[cfg(test)]
mod streaming_tests {
    use super::*;

    /// A section above the streaming threshold gives the same findings, at the same
    /// positions, as small sections do.
    #[test]
    fn large_sections_stream_with_the_same_findings() {
        let mut sql = String::from("CREATE TABLE users (id bigint, email text);\n");
        let mut n = 0;
        while sql.len() < STREAM_THRESHOLD + 1000 {
            sql.push_str(&format!(
                "INSERT INTO users (id, email) VALUES ({n}, 'u{n}@example.com; not a split');\n"
            ));
            n += 1;
        }
        sql.push_str("CREATE TABEL oops (a int);\n");
        sql.push_str("CREATE INDEX users_email_idx ON users (email);\n");
        sql.push_str(
            "ALTER TABLE users RENAME TO accounts;\nCREATE VIEW users AS SELECT * FROM accounts;\n",
        );
        assert!(sql.len() > STREAM_THRESHOLD);
        let mut linter = Linter::new(Config::default());
        linter.replay(Input {
            file: "0001.sql",
            source: "CREATE TABLE users (id bigint, email text);",
        });
        let f = linter.lint(Input {
            file: "0002.sql",
            source: &sql[sql.find('\n').unwrap() + 1..],
        });
        let got: Vec<(&str, usize)> = f.iter().map(|f| (f.rule.as_str(), f.line)).collect();
        let lines = n + 1;
        assert_eq!(
            got,
            vec![
                ("syntax-error", lines),
                ("require-concurrent-index-creation", lines + 1)
            ],
            "{f:#?}"
        );
        assert_eq!(f[0].column, 8);
    }

    #[test]
    fn line_index_counts_characters() {
        let idx = LineIndex::new("ab\nçé x\n");
        assert_eq!(idx.pos(0), (1, 1));
        assert_eq!(idx.pos(3), (2, 1));
        assert_eq!(idx.pos(8), (2, 4));
    }
}

#[cfg(test)]
mod section_tests {
    use super::*;

    #[test]
    fn down_sections_are_linted_as_their_own_unit_with_file_lines() {
        let mut linter = Linter::new(Config::default());
        linter.replay(Input {
            file: "0001.sql",
            source: "CREATE TABLE users (id bigint, email text);\nCREATE INDEX users_email_idx ON users (email);",
        });
        let src = "-- capstan:no-transaction\n-- capstan:up\nDROP INDEX CONCURRENTLY IF EXISTS users_email_idx;\n-- capstan:down\nCREATE INDEX users_email_idx ON users (email);\n";
        let f = linter.lint(Input {
            file: "0002.sql",
            source: src,
        });
        let got: Vec<(&str, usize, SectionKind)> = f
            .iter()
            .map(|f| (f.rule.as_str(), f.line, f.section))
            .collect();
        assert_eq!(
            got,
            vec![
                ("non-idempotent-no-transaction", 5, SectionKind::Down),
                ("require-concurrent-index-creation", 5, SectionKind::Down),
            ]
        );
        // The down section does not change the model: the index stays dropped.
        assert!(!linter.schema().indexes.contains_key("users_email_idx"));
        let cfg = Config {
            lint_down: false,
            ..Config::default()
        };
        let mut linter = Linter::new(cfg);
        linter.replay(Input {
            file: "0001.sql",
            source: "CREATE TABLE users (id bigint, email text);\nCREATE INDEX users_email_idx ON users (email);",
        });
        let f = linter.lint(Input {
            file: "0002.sql",
            source: src,
        });
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn a_byte_order_mark_is_not_a_syntax_error() {
        let mut linter = Linter::new(Config::default());
        let f = linter.lint(Input {
            file: "0001.sql",
            source: "\u{feff}CREATE TABLE t (a int);\nCREATE INDEX i ON t2 (a);\n",
        });
        let got: Vec<(&str, usize, usize)> = f
            .iter()
            .map(|f| (f.rule.as_str(), f.line, f.column))
            .collect();
        assert_eq!(got, vec![("require-concurrent-index-creation", 2, 1)]);
    }

    #[test]
    fn lock_findings_on_small_live_tables_are_warnings_that_say_why() {
        let setup = "CREATE TABLE users (id bigint, name text);\nCREATE TABLE big (id bigint, name text);\n";
        let sql = "-- capstan:up\nCREATE INDEX users_name ON users (name);\nCREATE INDEX big_name ON big (name);\nALTER TABLE users RENAME COLUMN name TO full_name;\n";
        let mut live = crate::Live::default();
        live.tables.insert(
            "users".into(),
            crate::TableSize {
                rows: 1204,
                bytes: 73728,
            },
        );
        live.tables.insert(
            "big".into(),
            crate::TableSize {
                rows: 50_000_000,
                bytes: 8 << 30,
            },
        );
        let mut linter = Linter::new(Config::default()).with_live(live.clone());
        linter.replay(Input {
            file: "1.sql",
            source: setup,
        });
        let found = linter.lint(Input {
            file: "2.sql",
            source: sql,
        });
        let of = |line: usize, rule: &str| {
            found
                .iter()
                .find(|f| f.line == line && f.rule == rule)
                .unwrap_or_else(|| panic!("{rule} on line {line}: {found:#?}"))
        };
        let small = of(2, "require-concurrent-index-creation");
        assert_eq!(small.severity, Severity::Warning);
        assert!(
            small.message.contains(
                "users has 1,204 rows (72 kB) right now: the SHARE lock is held for milliseconds"
            ),
            "{}",
            small.message
        );
        assert_eq!(
            of(3, "require-concurrent-index-creation").severity,
            Severity::Error
        );
        // Breaking changes stay errors whatever the size.
        assert_eq!(of(4, "renaming-column").severity, Severity::Error);
        // A row threshold of 0: no table is small, not even an empty one.
        live.tables.insert(
            "users".into(),
            crate::TableSize {
                rows: 0,
                bytes: 8192,
            },
        );
        let strict = Config {
            small_table_rows: 0,
            ..Config::default()
        };
        let mut linter = Linter::new(strict).with_live(live);
        linter.replay(Input {
            file: "1.sql",
            source: setup,
        });
        let found = linter.lint(Input {
            file: "2.sql",
            source: sql,
        });
        assert!(
            found.iter().all(|f| f.severity == Severity::Error),
            "{found:#?}"
        );
    }

    #[test]
    fn tables_created_by_earlier_files_are_not_new() {
        let mut linter = Linter::new(Config::default());
        assert!(linter
            .lint(Input {
                file: "0001.sql",
                source: "CREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);"
            })
            .is_empty());
        let f = linter.lint(Input {
            file: "0002.sql",
            source: "CREATE INDEX t_a2 ON t (a);",
        });
        assert_eq!(f[0].rule, "require-concurrent-index-creation");
    }
}

#[cfg(test)]
mod sqlite_tests {
    use super::*;
    use crate::config::Dialect;

    #[test]
    fn sqlite_keeps_compatibility_rules_and_drops_postgres_lock_rules() {
        let cfg = Config {
            dialect: Dialect::Sqlite,
            ..Config::default()
        };
        let mut linter = Linter::new(cfg);
        linter.replay(Input {
            file: "0001.sql",
            source: "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);",
        });
        let f = linter.lint(Input {
            file: "0002.sql",
            source: "CREATE INDEX users_email ON users (email);\n\
                     ALTER TABLE users RENAME COLUMN email TO mail;\n\
                     CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT);\n\
                     ALTER TABLE users ADD COLUMN plan TEXT NOT NULL;\n",
        });
        let got: Vec<(&str, usize, Severity)> = f
            .iter()
            .map(|f| (f.rule.as_str(), f.line, f.severity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("renaming-column", 2, Severity::Error),
                ("syntax-error", 3, Severity::Info),
                ("wrong-phase", 4, Severity::Error),
                ("adding-required-column", 4, Severity::Error),
            ],
            "{f:#?}"
        );
    }
}
