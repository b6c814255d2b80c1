//! A stand-alone `capstan lint`, for the benchmark and for trying the linter before the
//! `capstan` binary mounts it: `cargo run -p capstan-lint --example lint -- migrations/`.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "capstan-lint",
    about = "Lint Postgres migrations (capstan lint)"
)]
struct Cli {
    #[command(flatten)]
    lint: capstan_lint::LintArgs,
}

fn main() {
    let cli = Cli::parse();
    let code = capstan_lint::run_lint(
        &cli.lint,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    std::process::exit(code);
}
