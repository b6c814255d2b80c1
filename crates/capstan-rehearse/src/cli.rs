//! `capstan rehearse`: the clap arguments, the rendering choice and the exit
//! codes (0: every cell as expected; 1: an unexpected cell; 3: bad
//! `rehearse.toml` or plan flag, smoke file or migration directory; 4: the database server
//! cannot be used; 130: interrupted — every process and scratch database it
//! made is gone by then).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::config::{Config, Flags};
use crate::db::Backend;
use crate::{rehearse, Error, Options};

/// Exit code: every cell had its expected result.
pub const EXIT_OK: i32 = 0;
/// Exit code: at least one cell had an unexpected result.
pub const EXIT_UNEXPECTED: i32 = 1;
/// Exit code: bad input (`rehearse.toml`, a smoke file, a migration directory, a flag).
pub const EXIT_BAD_INPUT: i32 = 3;
/// Exit code: the database server could not be used.
pub const EXIT_DATABASE: i32 = 4;
/// Exit code: interrupted (Ctrl-C or SIGTERM).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A matrix per step, then each failure in full.
    Text,
    /// The report as JSON (see docs/rehearse.md).
    Json,
    /// Markdown for a pull-request comment.
    Markdown,
}

/// `capstan rehearse`: run old and new binaries against every schema step of the deploy.
#[derive(Debug, Clone, Args)]
pub struct RehearseArgs {
    /// The rehearsal plan.
    #[arg(
        long,
        short = 'c',
        default_value = "rehearse.toml",
        value_name = "FILE",
        conflicts_with = "plan"
    )]
    pub config: PathBuf,
    /// The plan on the command line instead of in a file.
    #[command(flatten)]
    pub plan: Flags,
    /// Where scratch databases are made: `sqlite` (the default) or the
    /// postgres:// URL of a server (the role needs CREATEDB). Overrides the
    /// file's `database`.
    #[arg(
        long,
        env = "CAPSTAN_REHEARSE_DATABASE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database: Option<String>,
    /// Keep requests flowing to the running binaries through every step and
    /// report requests, errors, latency and the longest stall per cell.
    #[arg(long)]
    pub load: bool,
    /// Concurrent load workers.
    #[arg(long, default_value_t = 4, requires = "load", value_name = "N")]
    pub load_workers: usize,
    /// With --load: a longer stall is an unexpected result, like 500ms.
    #[arg(long, default_value = "1s", requires = "load", value_name = "DURATION")]
    pub max_stall: String,
    /// Rehearse only the step from release N (1-based) to N+1.
    #[arg(long, value_name = "N")]
    pub step: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Runs the rehearsal and returns the exit code.
pub async fn run(args: RehearseArgs) -> i32 {
    let config = if args.plan.releases.is_empty() {
        Config::load(&args.config)
    } else {
        Config::from_flags(&args.plan)
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let raw = args
        .database
        .clone()
        .or_else(|| config.database.clone())
        .unwrap_or_else(|| "sqlite".into());
    let backend = match Backend::parse(&raw) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: --database: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let mut options = Options::new(backend);
    options.load = args.load;
    options.load_workers = args.load_workers.max(1);
    options.max_stall = match capstan_migrate::parse_duration(&args.max_stall) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --max-stall: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    if let Some(s) = args.step {
        if s == 0 || s >= config.releases.len() {
            eprintln!(
                "error: --step {s}: steps go from 1 to {}",
                config.releases.len() - 1
            );
            return EXIT_BAD_INPUT;
        }
        options.only_step = Some(s - 1);
    }
    eprintln!(
        "rehearsing {} on {}",
        config
            .releases
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(" → "),
        options.backend.describe()
    );
    // Dropping the rehearsal future on a signal kills every process group it
    // started and drops its scratch databases.
    let result = tokio::select! {
        r = rehearse(&config, &options) => r,
        () = interrupted() => {
            eprintln!("interrupted: stopped every binary and dropped the scratch databases");
            return EXIT_INTERRUPTED;
        }
    };
    let report = match result {
        Ok(r) => r,
        Err(e @ Error::Config { .. }) => {
            eprintln!("error: {e}");
            return EXIT_BAD_INPUT;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_DATABASE;
        }
    };
    let text = match args.format {
        Format::Text => report.to_text(),
        Format::Json => report.to_json() + "\n",
        Format::Markdown => report.to_markdown(),
    };
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return EXIT_BAD_INPUT;
            }
            if args.format != Format::Text {
                eprint!("{}", report.to_text());
            }
        }
        None => print!("{text}"),
    }
    if report.ok {
        EXIT_OK
    } else {
        EXIT_UNEXPECTED
    }
}

async fn interrupted() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RehearseArgs,
    }

    #[test]
    fn the_plan_comes_from_a_file_or_from_flags_not_both() {
        let flags = Cli::try_parse_from([
            "r",
            "--release",
            "1=a",
            "--release",
            "2=b",
            "--smoke",
            "s.toml",
        ])
        .unwrap()
        .args;
        assert_eq!(flags.plan.releases, ["1=a", "2=b"]);
        let both = Cli::try_parse_from(["r", "-c", "x.toml", "--release", "1=a"]);
        assert!(both.is_err_and(|e| e.to_string().contains("cannot be used with")));
        // Any plan flag next to -c, not just --release: none is ignored.
        for flag in [
            ["--smoke", "s"],
            ["--env", "X=1"],
            ["--seed", "x.sql"],
            ["--migrations", "1=m"],
        ] {
            let with_file = Cli::try_parse_from(["r", "-c", "x.toml", flag[0], flag[1]]);
            assert!(
                with_file.is_err_and(|e| e.to_string().contains("cannot be used with")),
                "{flag:?}"
            );
        }
        let orphan = Cli::try_parse_from(["r", "--smoke", "s.toml"]);
        assert!(orphan.is_err_and(|e| e.to_string().contains("--release")));
        let two_smokes = Cli::try_parse_from([
            "r",
            "--release",
            "1=a",
            "--smoke",
            "s",
            "--smoke-command",
            "c",
        ]);
        assert!(two_smokes.is_err_and(|e| e.to_string().contains("cannot be used with")));
    }
}
