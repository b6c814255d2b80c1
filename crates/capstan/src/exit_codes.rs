//! The exit codes of every `capstan` command, in one table: the numbers come
//! from the constants each command's crate returns, the words are the
//! contract. `docs/exit-codes.md` is generated from it; a test fails when
//! they differ (regenerate with `CAPSTAN_BLESS_DOCS=1 cargo test -p capstan
//! --bin capstan exit_codes`).
//!
//! The classes hold across commands: 0 success, 2 usage (clap's code: the
//! command line is wrong), 3 bad input (a file, a flag's value or the
//! configuration is wrong, nothing was changed); higher codes mean what their
//! command's table says.

use capstan_migrate::cli as migrate;

/// One exit code of one command.
pub struct Code {
    /// The process exit code.
    pub code: i32,
    /// What it means.
    pub meaning: &'static str,
    /// Cases, in words (may be empty).
    pub examples: &'static str,
}

/// The codes of one command (or of a family of commands sharing them).
pub struct Command {
    /// The section heading, like "`capstan proxy`".
    pub title: &'static str,
    /// Prose before the table.
    pub intro: &'static str,
    /// Its codes, in increasing order.
    pub codes: &'static [Code],
    /// Prose after the table.
    pub notes: &'static str,
}

/// The meaning of exit code 2 for every command.
const USAGE: &str = "usage";
/// How every command's exit code 3 starts.
const BAD_INPUT: &str = "bad input; nothing was changed";

const fn code(code: i32, meaning: &'static str, examples: &'static str) -> Code {
    Code {
        code,
        meaning,
        examples,
    }
}

const fn usage(examples: &'static str) -> Code {
    code(migrate::EXIT_USAGE, USAGE, examples)
}

const fn bad_input(examples: &'static str) -> Code {
    code(migrate::EXIT_BAD_INPUT, BAD_INPUT, examples)
}

/// Every command's exit codes.
pub const TABLE: &[Command] = &[
    Command {
        title: "`capstan migrate`, `gate`, `fleet`, `archive`, `schema` (and `APP migrate` in an application that embeds its migrations)",
        intro: "",
        codes: &[
            code(migrate::EXIT_OK, "success", "`up` applied everything pending, `verify` passed, `status` printed"),
            code(migrate::EXIT_FAILED, "a migration failed, or `verify` found a difference", "SQL error (the migration was rolled back, or is now dirty if it ran without a transaction); a down section that does not restore the schema; an archive copy over `[archive] max_size` (rolled back; `--no-archive OBJECT` goes ahead)"),
            usage("unknown flag, missing argument; `migrate hash --accept` without a `--reason` (or a blank one); `migrate new` in an application binary; `archive purge` with neither `--older-than` nor `[archive] retention`"),
            bad_input("malformed or unknown directive, missing up section, duplicate or missing versions, bad file name, non-UTF-8, empty or huge file, missing, stale or unreadable `capstan.sum` (a CRLF checkout of it is accepted), bad `capstan.toml`, bad or empty database URL (`--database ''`, an empty `DATABASE_URL`), including a bad `sslmode`, an unknown connection parameter, a `connect_timeout` (or `PGCONNECT_TIMEOUT`) that is not 1 to 3600 whole seconds, and an `sslrootcert`/`sslcert`/`sslkey` file that does not exist; `up` with no database URL anywhere on migrations that need Postgres (they are not put into the embedded SQLite default, see [connecting.md](connecting.md)); a lock or statement timeout that is not whole milliseconds (`500us`) or is over Postgres' limit of about 24 days (`999999999s`), from a flag, `capstan.toml` or a directive (`0` is allowed: no timeout); an entry of the migration directory named like a migration that is not a regular file or a link to one (`*.SQL`, a directory, a dangling link, a link loop, a FIFO; `hash` refuses too); `--dir` naming a file; `archive show`/`restore` of an entry that does not exist; `--no-archive NAME` that names nothing the run destroys"),
            code(migrate::EXIT_DATABASE, "the database is unreachable or refused a privilege; nothing was changed", "connection refused, authentication failed, no answer within `connect_timeout` (the whole TCP, TLS, startup and authentication exchange), a TLS certificate refused (`verify-ca`/`verify-full`) or TLS required by one side and not offered by the other, `permission denied` creating capstan's schema; the URL leads to a transaction-mode pool (PgBouncer `pool_mode = transaction`, detected, or declared with `[migrate] pooler = \"transaction\"`): use a direct or session-mode URL"),
            code(migrate::EXIT_REFUSED, "refused by the database's state; nothing was run", "a dirty migration (see `migrate repair`), an applied migration whose up section was edited since (drift; an edited down section is allowed), a different migration applied under a file's version (`collision`: two branches took the same number; `rebase` the file), `hash --accept` of a version that is not applied (`not-applied`) or not in the directory, a pending migration older than an applied one, `down` past a migration without a down section, `baseline` on a database with history, `baseline --from TOOL` when the old tool's history table is missing, failed or dirty, names a version no file was imported from, or is not a prefix of the directory (`tool-history`), `rebase` of an applied migration; `archive restore` when today's schema makes a faithful restore impossible (table gone, primary key changed, column retyped) or the database rejects it (rolled back); `archive show`/`restore` when a type the archived values are cast back to no longer exists, or the copy was damaged outside capstan (see [archive.md](archive.md)); on Postgres, capstan's schemas (`capstan`, `capstan_archive`) hold an object owned by a role the running role is not a member of, or a trigger, rule or policy (`untrusted-schema`: the message names each object, its owner and the trigger's function); capstan's history table holds a row capstan cannot have written: a NULL, a negative version, a phase other than expand/contract, a state other than applied/dirty, a value of another type or a retyped column, a version recorded twice, or a fleet registry row with a NULL or a value of another type (`bad-history`: the message names the table, the column and the row)"),
            code(migrate::EXIT_CONTRACT_HELD, "`up` stopped before a contract migration that live instances still need", "everything before it was applied; the message names the blocking instances; re-run once they are gone, or with `--wait`, or `--force-contract`"),
            code(migrate::EXIT_LOCK_TIMEOUT, "a lock was not granted after every retry", "another transaction held a lock the migration needs for longer than `lock_timeout × (lock_retries + 1)` plus backoff; the migration was rolled back. Also: another runner held the runner lock longer than `--runner-lock-timeout` (`[migrate] runner_lock_timeout`, default 10m); nothing was run, and the message names the holder (pid, `application_name`, client, since when)"),
            code(migrate::EXIT_GATE, "`gate`: the migration set cannot run against the database", "pending migrations the binary needs, a contract migration ahead of the binary, drift, a collision (`collided`), a dirty migration, an INVALID index on the application's tables (a failed `CREATE INDEX CONCURRENTLY`)"),
            code(migrate::EXIT_LINT, "`plan` / `up` refused pending migrations with lint errors; nothing was run", "an index built without `CONCURRENTLY` on a live table, a contract statement in an expand migration; fix, suppress with `-- capstan:ignore RULE reason`, or pass `--unsafe-ok` (recorded in history). Skipped on a database where nothing is applied yet. A `service-boundary` finding (a migration changing what another service, or no service, owns) refuses even with `--unsafe-ok` and on an empty database: fix ownership in `capstan.toml`"),
            code(migrate::EXIT_FROZEN, "`up` refused a contract migration: `[slo.policy]` is configured and the error budget gate is frozen; nothing was run", "an SLO's budget is spent or a page alert fires; the message names each SLO; `capstan slo gate --override \"reason\"` lets it through (recorded)"),
            code(migrate::EXIT_INTERRUPTED, "`up` / `down` stopped by SIGINT or SIGTERM (`kind` `interrupted`)", "one signal: the running migration finished and the next did not start (nothing dirty); two: a no-transaction migration stopped at a statement boundary and is recorded dirty with the signal; the report lists what was applied. Also while waiting for the runner lock (nothing was run)"),
        ],
        notes: "`capstan fleet run` exits with its child's code (128 + the signal number when\n\
a signal killed it; 127 when the command does not exist, 126 when it cannot\n\
run; 4 when the registry cannot be reached, before anything started).\n\
\n\
Advice in a message names the binary that was run: `chirpy-v2 migrate repair`\n\
in an application that mounts `migrate`, `capstan migrate repair` in capstan.",
    },
    Command {
        title: "`capstan plan-move`",
        intro: "Nothing is written unless the command exits 0.",
        codes: &[
            code(migrate::EXIT_OK, "the move's migrations were written (printed with `--dry-run`)", "warnings about what depends on the table are printed on stderr and do not change the code"),
            usage("unknown flag, no table, no `--to`"),
            bad_input("a table no service owns, or that the `--to` service owns already; an unknown service; a source or target service without `dir`; a target that owns no schema (and no `--schema`); a `--schema` another service owns; an unreadable or invalid `capstan.toml` (the line is named); with `--database`: a table that does not exist, a view, a partitioned table, a table with inheritance children or that is a child, a new name that is taken, a SQLite URL (no schemas); a file of the move that exists already"),
            code(migrate::EXIT_DATABASE, "`--database` is unreachable or refused a privilege", "as for `migrate`"),
        ],
        notes: "",
    },
    Command {
        title: "`capstan lint`",
        intro: "",
        codes: &[
            code(capstan_lint::EXIT_OK, "no finding at or above `--fail-on` (default `error`)", ""),
            code(capstan_lint::EXIT_FINDINGS, "at least one finding at or above `--fail-on`", "`--deny-warnings` means `--fail-on warning`"),
            usage("unknown flag value, unknown rule for `--explain`, no migration directory, a directory whose layout needs `--from`, an unknown `--changed-since` ref"),
            bad_input("SQL that Postgres rejects (a `syntax-error` finding; the rest of the file is still linted, and every finding is printed), an unreadable path, invalid UTF-8 (the file and line are named), bad `capstan.toml` (the key is named; `[[service]]` errors name their line), a `--service` that `capstan.toml` does not declare, an unreachable `--schema-from` database"),
        ],
        notes: "",
    },
    Command {
        title: "`capstan deps`",
        intro: "",
        codes: &[
            code(capstan_lint::EXIT_OK, "the map was printed (whatever references it shows)", ""),
            code(capstan_lint::EXIT_FINDINGS, "`--fail-on-cross`: a reference crosses services without `depends_on` declaring it", ""),
            usage("unknown flag or format"),
            bad_input("no `capstan.toml`, one that declares no service, a bad `[[service]]` table (its line is named), an unknown `--service`, a service's missing `dir`, an unreachable `--database`"),
        ],
        notes: "",
    },
    Command {
        title: "`capstan rehearse`",
        intro: "",
        codes: &[
            code(capstan_rehearse::cli::EXIT_OK, "every cell had its expected result", ""),
            code(capstan_rehearse::cli::EXIT_UNEXPECTED, "at least one unexpected cell (or a step failed to set up)", ""),
            usage(""),
            bad_input("`rehearse.toml` or the `--release` flags, a smoke file, a migration directory or its `capstan.sum`, `services`, `[move]` (or a move on SQLite), `--max-stall`, `--step`, `--database`"),
            code(capstan_rehearse::cli::EXIT_DATABASE, "the database server cannot be used", "connect, `CREATE DATABASE`"),
            code(capstan_rehearse::cli::EXIT_INTERRUPTED, "interrupted (Ctrl-C, SIGTERM)", "the binaries it started and its scratch databases are gone"),
        ],
        notes: "Details in [rehearse.md](rehearse.md).",
    },
    Command {
        title: "`capstan slo`",
        intro: "",
        codes: &[
            code(capstan_slo::EXIT_OK, "success", "`gate`: ship (or overridden, recorded); `check`: valid, warnings (if any) on standard error"),
            code(capstan_slo::EXIT_WARNINGS, "`check --deny-warnings`: the files are valid but the dependency check warned", "an objective promises more than its hard dependencies publish, a hard dependency publishes no SLO, or an SLO names a service `capstan.toml` does not declare"),
            usage("unknown flag, bad `--at`, `--timeout` or `--since`, empty `--override` reason"),
            bad_input("an SLO file (every error as `file:line: field: message`) or `capstan.toml` is invalid"),
            code(capstan_slo::EXIT_SOURCE, "a source could not answer", "the event store is missing or unreadable, Prometheus unreachable within `--timeout` or refusing the query"),
            code(capstan_slo::EXIT_FROZEN, "`gate`: frozen by the error budget policy (`[slo.policy]`)", "each reason on standard error"),
        ],
        notes: "Details in [slo.md](slo.md).",
    },
    Command {
        title: "`capstan events`",
        intro: "",
        codes: &[
            code(capstan_events::cli::EXIT_OK, "success", "`serve`: stopped by SIGTERM or Ctrl-C after writing queued events"),
            usage("unknown flag, missing argument"),
            bad_input("a `--where`/`--a`/`--b` expression or `--calc` list (the message names the column), a `--since`/`--from`/`--to` time"),
            code(capstan_events::cli::EXIT_STORE, "the event store cannot be used", "it does not exist (`tail`, `query`, `compare`), cannot be opened or read, or `serve` cannot listen"),
        ],
        notes: "Details in [events.md](events.md).",
    },
    Command {
        title: "`capstan proxy`",
        intro: "",
        codes: &[
            code(capstan_proxy::cli::EXIT_OK, "stopped by SIGTERM or Ctrl-C", "after draining in-flight requests and writing queued events"),
            code(capstan_proxy::cli::EXIT_FAILED, "a listener could not be bound, or the event store could not be opened", ""),
            usage("unknown flag"),
            bad_input("bad `proxy.toml` or flags (the message names the file, line and key); nothing was started"),
        ],
        notes: "Details in [proxy.md](proxy.md).",
    },
    Command {
        title: "`capstan rollout`",
        intro: "",
        codes: &[
            code(capstan_rollout::rollout_cli::EXIT_OK, "success", "`start`: promoted to 100 %; `status`: shown; `pause`, `resume`, `promote`, `abort`: queued"),
            code(capstan_rollout::rollout_cli::EXIT_FAILED, "the state file, the event store or the proxy's admin API failed", ""),
            usage(""),
            bad_input("a bad plan or flags"),
            code(capstan_rollout::rollout_cli::EXIT_NO_ROLLOUT, "`status`, `pause`, `resume`, `promote`, `abort`: there is no (unfinished) rollout of the service", ""),
            code(capstan_rollout::rollout_cli::EXIT_ROLLED_BACK, "`start`: rolled back", "a failing verdict, a page-rate burn, or `abort`"),
            code(capstan_rollout::rollout_cli::EXIT_HELD, "`start`: stopped for a human", "a hold limit, or a gate closed before the next step; `resume`, `promote` or `abort`, then `start` again"),
            code(capstan_rollout::rollout_cli::EXIT_GATE_REFUSED, "`start`: a gate refused the start (or could not decide)", "the SLO budget, schema or fleet gate"),
        ],
        notes: "Details in [rollout.md](rollout.md).",
    },
    Command {
        title: "`capstan judge serve`",
        intro: "",
        codes: &[
            code(capstan_rollout::cli::EXIT_OK, "stopped by SIGINT or SIGTERM", "in-flight requests finish"),
            code(capstan_rollout::cli::EXIT_FAILED, "it cannot listen or serve", ""),
            usage(""),
            bad_input("a bad `judge.toml` (the message names the file, the field or the line)"),
        ],
        notes: "Details in [judge.md](judge.md).",
    },
    Command {
        title: "`capstan dashboard`",
        intro: "",
        codes: &[
            code(capstan_dashboard::EXIT_OK, "stopped by SIGTERM or Ctrl-C", "open event streams get two seconds"),
            usage("unknown flag, bad `--refresh`"),
            bad_input("`capstan.toml`, the token file or `CAPSTAN_DASHBOARD_TOKEN` (shorter than 16 characters), `--trusted-header`; nothing was started"),
            code(capstan_dashboard::EXIT_LISTEN, "the address could not be bound", ""),
        ],
        notes: "Details in [dashboard.md](dashboard.md).",
    },
    Command {
        title: "`capstan probe`",
        intro: "",
        codes: &[
            code(0, "the endpoint answered pass or warn", ""),
            code(1, "the endpoint answered fail, or did not answer", ""),
            usage(""),
        ],
        notes: "",
    },
];

/// `docs/exit-codes.md`: every command's table, and the JSON error kinds.
pub fn markdown() -> String {
    let mut s = String::from(
        "# Exit codes\n\n\
<!-- Generated from crates/capstan/src/exit_codes.rs by `CAPSTAN_BLESS_DOCS=1 cargo test -p capstan --bin capstan exit_codes`; do not edit. -->\n\n\
A stable contract: scripts and CI may branch on these. New codes may be added;\n\
existing ones keep their meaning. Every command means the same by the first\n\
few: 0 success, 2 usage (the command line is wrong), 3 bad input (a file, a\n\
flag's value or the configuration is wrong; nothing was changed).\n",
    );
    for command in TABLE {
        s.push_str(&format!("\n## {}\n\n", command.title));
        if !command.intro.is_empty() {
            s.push_str(command.intro);
            s.push_str("\n\n");
        }
        s.push_str("| code | meaning | examples |\n|---|---|---|\n");
        for c in command.codes {
            s.push_str(&format!(
                "| {} | {} | {} |\n",
                c.code, c.meaning, c.examples
            ));
        }
        if !command.notes.is_empty() {
            s.push('\n');
            s.push_str(command.notes);
            s.push('\n');
        }
    }
    s.push_str("\n## JSON errors\n\n");
    s.push_str(&json_kinds());
    s
}

/// The paragraph on `migrate`'s JSON error document, listing every kind.
fn json_kinds() -> String {
    let kinds: Vec<String> = migrate::Kind::ALL
        .iter()
        .map(|k| format!("`{}`", k.as_str()))
        .collect();
    format!(
        "With `--json`, a failure of a `migrate`-family command also prints\n\
`{{\"error\":{{\"kind\",\"message\",\"exit_code\"}}}}` on stdout (`lint` adds `findings`;\n\
see [json.md](json.md)); `kind` is one of {}.\n",
        kinds.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/exit-codes.md");

    #[test]
    fn exit_codes_doc_is_generated_from_the_table() {
        let want = markdown();
        if std::env::var_os("CAPSTAN_BLESS_DOCS").is_some() {
            std::fs::write(DOC, &want).unwrap();
        }
        let have = std::fs::read_to_string(DOC).unwrap_or_default();
        assert!(
            have == want,
            "docs/exit-codes.md is out of date with crates/capstan/src/exit_codes.rs\n\
regenerate with: CAPSTAN_BLESS_DOCS=1 cargo test -p capstan --bin capstan exit_codes"
        );
    }

    #[test]
    fn exit_codes_every_migrate_code_is_documented() {
        let migrate = &TABLE[0];
        for exit in migrate::Exit::ALL {
            assert!(
                migrate.codes.iter().any(|c| c.code == exit.code()),
                "{exit:?} is not in the table"
            );
        }
    }

    #[test]
    fn exit_codes_mean_the_same_in_every_command() {
        for command in TABLE {
            let mut seen = std::collections::BTreeSet::new();
            for c in command.codes {
                assert!(seen.insert(c.code), "{}: {} twice", command.title, c.code);
                match c.code {
                    2 => assert_eq!(c.meaning, USAGE, "{}", command.title),
                    3 => assert_eq!(c.meaning, BAD_INPUT, "{}", command.title),
                    _ => {}
                }
            }
            let codes: Vec<i32> = command.codes.iter().map(|c| c.code).collect();
            let mut sorted = codes.clone();
            sorted.sort_unstable();
            assert_eq!(codes, sorted, "{}: codes out of order", command.title);
        }
    }
}
