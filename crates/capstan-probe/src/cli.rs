//! `capstan probe URL [--timeout]`, as a clap subcommand to mount.

use std::time::Duration;

use crate::probe::probe;

/// Ask a probe endpoint; exit 0 for pass or warn, 1 for fail or no answer.
///
/// For exec probes in images without curl:
/// `capstan probe http://127.0.0.1:8080/readyz --timeout 2s`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// The endpoint, e.g. http://127.0.0.1:8080/readyz.
    pub url: String,
    /// How long to wait for the whole answer (e.g. 500ms, 2s).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print nothing; only the exit code tells.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 500ms or 2s)"))
}

/// Runs the probe, prints its status line to stdout, and returns the exit code.
pub async fn run_probe(args: ProbeArgs) -> i32 {
    let outcome = probe(&args.url, args.timeout).await;
    if !args.quiet {
        println!("{outcome}");
    }
    outcome.exit_code()
}
