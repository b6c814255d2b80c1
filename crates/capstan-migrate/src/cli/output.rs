//! Where every command writes: one [`Output`] per run, human text or JSON on
//! stdout, notes and errors on stderr, and the name of the binary the user
//! ran for the advice in them.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use serde::Serialize;

use super::exit::{Exit, Failure};
use super::progress::Progress;

static QUIET: AtomicBool = AtomicBool::new(false);

/// `-q`: print no progress on stderr (what runs, how long it takes, waits and
/// retries); results, warnings and errors still print. For the whole process.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `-q` was given.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// The name of the binary the user ran (`capstan`, `chirpy-v2`, `notes`):
/// the file name of the program's path, `capstan` when there is none.
pub(crate) fn program() -> &'static str {
    static PROGRAM: OnceLock<String> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        std::env::args_os()
            .next()
            .map(std::path::PathBuf::from)
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "capstan".to_string())
    })
}

/// The `migrate` subcommands that edit a migration directory: an
/// application that embeds its migrations cannot run them, so advice to run
/// them keeps naming `capstan`.
const DIRECTORY_COMMANDS: [&str; 4] = ["new", "hash", "rebase", "import"];

/// Advice in a message names the binary the user ran: the engine's messages
/// say `` `capstan migrate repair` ``, and an application that mounts
/// `migrate` (and `archive`) is not `capstan`. Advice for what only the
/// `capstan` CLI does (`lint`, editing the directory of `embedded`
/// migrations) keeps its name.
pub(crate) fn advise(message: &str, program: &str, embedded: bool) -> String {
    const ADVICE: &str = "`capstan ";
    if program == "capstan" {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(ADVICE) {
        out.push_str(&rest[..at]);
        let after = &rest[at + ADVICE.len()..];
        let word = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect()
        };
        let mounted = match word(after).as_str() {
            "migrate" => {
                let sub = word(after["migrate".len()..].trim_start());
                !(embedded && DIRECTORY_COMMANDS.contains(&sub.as_str()))
            }
            "archive" => true,
            _ => false,
        };
        out.push('`');
        out.push_str(if mounted { program } else { "capstan" });
        out.push(' ');
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Human text or JSON for one run of one command.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
    embedded: bool,
}

impl Output {
    /// `--json` or not.
    pub(crate) fn new(json: bool) -> Self {
        Output {
            json,
            embedded: false,
        }
    }

    /// For migrations that come from `source` (advice differs when they are
    /// embedded: the binary cannot edit them).
    pub(crate) fn for_source(mut self, source: &super::MigrationSource) -> Self {
        self.embedded = matches!(source, super::MigrationSource::Embedded { .. });
        self
    }

    /// Whether stdout carries JSON.
    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// The command's result on stdout: `value` as one JSON line, or the
    /// human text (built only when it is printed).
    pub(crate) fn result<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = serde_json::to_writer(&mut out, value);
            let _ = writeln!(out);
        } else {
            let _ = writeln!(out, "{}", human());
        }
    }

    /// Raw bytes on stdout (a schema dump), whatever the format.
    pub(crate) fn raw(&self, bytes: &[u8]) {
        let _ = std::io::stdout().lock().write_all(bytes);
    }

    /// A note on stderr that `-q` and `--json` silence.
    pub(crate) fn note(&self, text: impl std::fmt::Display) {
        if !quiet() && !self.json {
            eprintln!("{text}");
        }
    }

    /// A line on stderr that only `-q` silences.
    pub(crate) fn info(&self, text: impl std::fmt::Display) {
        if !quiet() {
            eprintln!("{text}");
        }
    }

    /// A warning or finding on stderr: always printed.
    pub(crate) fn warn(&self, text: impl std::fmt::Display) {
        eprintln!("{text}");
    }

    /// A JSON error document on stdout (only with `--json`).
    pub(crate) fn json_error(&self, error: serde_json::Value) {
        if self.json {
            println!("{}", serde_json::json!({ "error": error }));
        }
    }

    /// Progress of a run on stderr (nothing with `--json` or `-q`).
    pub(crate) fn progress(&self) -> Progress {
        Progress::new(self.json || quiet())
    }

    /// Ends a run: the failure as JSON (with `--json`) and on stderr, its
    /// advice naming the binary the user ran; returns the exit code.
    pub(crate) fn finish(&self, result: Result<Exit, Failure>) -> i32 {
        match result {
            Ok(exit) => exit.code(),
            Err(f) => {
                let message = advise(&f.message, program(), self.embedded);
                self.json_error(serde_json::json!({
                    "kind": f.kind.as_str(),
                    "message": message,
                    "exit_code": f.exit.code(),
                }));
                eprintln!("error: {message}");
                f.exit.code()
            }
        }
    }
}

/// `1 migration`, `2 migrations`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_binary_the_user_ran() {
        let m = "0003_x is dirty; nothing was run. Inspect the database, then run `capstan migrate repair`";
        assert_eq!(
            advise(m, "chirpy", true),
            "0003_x is dirty; nothing was run. Inspect the database, then run `chirpy migrate repair`"
        );
        assert_eq!(advise(m, "capstan", true), m);
        let m = "see `capstan archive list`; or `capstan migrate down` first";
        assert_eq!(
            advise(m, "chirpy", false),
            "see `chirpy archive list`; or `chirpy migrate down` first"
        );
    }

    #[test]
    fn advice_for_what_only_capstan_does_keeps_its_name() {
        // Not advice: a directive, the config file.
        let m = "add `-- capstan:ignore RULE reason` or edit `capstan.toml`";
        assert_eq!(advise(m, "chirpy", false), m);
        // The linter is not mounted by an application.
        let m = "details: `capstan lint`";
        assert_eq!(advise(m, "chirpy", false), m);
        // Embedded migrations are edited in the source tree, with capstan.
        let m = "record it with `capstan migrate hash --accept VERSION --reason`, then `capstan migrate up`";
        assert_eq!(
            advise(m, "chirpy", true),
            "record it with `capstan migrate hash --accept VERSION --reason`, then `chirpy migrate up`"
        );
        assert_eq!(
            advise(m, "chirpy", false),
            "record it with `chirpy migrate hash --accept VERSION --reason`, then `chirpy migrate up`"
        );
    }
}
