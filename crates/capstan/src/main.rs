//! The `capstan` command line: parses, dispatches, maps failures to exit codes.
//! The work is done in the library crates.

// The source of docs/exit-codes.md; its test checks the doc against it.
#[cfg(test)]
mod exit_codes;
mod preflight;

use anyhow::Context as _;
use clap::{ArgAction, CommandFactory, Parser, Subcommand};

/// capstan: make the 3 a.m. deploy of a database-backed service boring.
#[derive(Debug, Parser)]
#[command(
    name = "capstan",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:
  capstan migrate new \"create users\"     # migrations/0001_create_users.sql
  capstan migrate up                     # apply pending migrations
  capstan lint                           # lint ./migrations before review
  capstan -q migrate up --json           # JSON on stdout, no progress on stderr

Log output: -v (info), -vv (debug), -vvv (trace), or CAPSTAN_LOG=FILTER
(e.g. CAPSTAN_LOG=capstan_migrate=debug), which wins over -v and -q."
)]
struct Cli {
    /// Print no progress on stderr (results, warnings and errors still print).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More log output on stderr: -v info, -vv debug, -vvv trace (CAPSTAN_LOG wins).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write, check and run schema migrations (Postgres or SQLite).
    #[command(after_help = "Examples:
  capstan migrate new \"add user email\"
  capstan migrate plan
  capstan migrate up --database postgres://app@db/app
  capstan migrate status --json")]
    Migrate(capstan_migrate::cli::MigrateArgs),
    /// Check that a migration set can run against the database (pending, ahead, drift).
    #[command(after_help = "Examples:
  capstan gate --app chirpy --dir migrations   # exit 0: compatible, 8: not
  capstan gate --json")]
    Gate(capstan_migrate::cli::GateArgs),
    /// The fleet registry: list instances, or run any program as a registered instance.
    #[command(after_help = "Examples:
  capstan fleet                                   # live, departed and expired instances
  capstan fleet run --app api --version 2.3.0 -- ./api --port 8080
  id=$(capstan fleet join --app api --version 2.3.0); capstan fleet leave \"$id\"")]
    Fleet(capstan_migrate::cli::FleetArgs),
    /// Lint migrations: locks, rewrites and breaking changes, before review.
    #[command(after_help = "Examples:
  capstan lint                                  # ./migrations (or capstan.toml's migrations_dir)
  capstan lint migrations/0007_add_index.sql
  capstan lint --format sarif > lint.sarif
  capstan lint --explain require-concurrent-index-creation")]
    Lint(capstan_lint::LintArgs),
    /// Map the references between services sharing a database (foreign keys,
    /// views, function bodies, triggers) and the objects no service owns.
    #[command(after_help = "Examples:
  capstan deps                                   # from the services' migrations
  capstan deps --database postgres://... --format dot | dot -Tsvg > deps.svg
  capstan deps --fail-on-cross                   # exit 1 on an undeclared reference")]
    Deps(capstan_lint::DepsArgs),
    /// Query a health endpoint for exec probes: exit 0 for pass/warn, 1 for fail or no answer.
    #[command(after_help = "Examples:
  capstan probe http://127.0.0.1:8080/readyz
  capstan probe http://127.0.0.1:8080/livez --timeout 2s -q")]
    Probe(capstan_probe::ProbeArgs),
    /// Rehearse a deploy: old and new binaries against every schema step, forward and back.
    #[command(after_help = "Examples:
  capstan rehearse -c rehearse.toml
  capstan rehearse -c rehearse.toml --load --format markdown -o rehearsal.md")]
    Rehearse(capstan_rehearse::cli::RehearseArgs),
    /// What migrations copied before destroying it: list, show, restore, purge.
    #[command(after_help = "Examples:
  capstan archive list
  capstan archive show 3
  capstan archive restore 3
  capstan archive purge --older-than 30d")]
    Archive(capstan_migrate::cli::ArchiveArgs),
    /// The application's schema as SQL (for sqlc and friends), without capstan's tables.
    #[command(after_help = "Examples:
  capstan schema dump -o schema.sql
  capstan schema dump --database postgres://app@db/app > schema.sql")]
    Schema(capstan_migrate::cli::SchemaArgs),
    /// Write the migrations that move a table to another service, without downtime.
    #[command(after_help = "Examples:
  capstan plan-move public.invoices --to billing
  capstan plan-move public.invoices --to billing --database postgres://app@db/app --dry-run

Step 1 (the target, expand) creates its schema; step 2 (the owner, expand)
moves the table there and keeps the old name as a view; step 3 deploys
binaries that use the new name; step 4 (the owner, contract) drops the view
once no old binary runs. Postgres only. See docs/services.md.")]
    PlanMove(capstan_migrate::cli::PlanMoveArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Examples:
  capstan completions bash > /etc/bash_completion.d/capstan
  capstan completions zsh > \"${fpath[1]}/_capstan\"
  capstan completions fish > ~/.config/fish/completions/capstan.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The canary judge for Argo Rollouts and Flagger: `judge serve`.
    #[command(after_help = "Examples:
  capstan judge serve --config judge.toml --listen 0.0.0.0:8080
  curl -s localhost:8080/api/v1/verdict | jq .verdict")]
    Judge(capstan_rollout::cli::JudgeArgs),
    /// Progressive rollouts: steps, the judge, automatic rollback (`rollout start|status|pause|resume|promote|abort`).
    #[command(after_help = "Examples:
  capstan rollout start --plan rollout.toml --service chirpy --release 2.0.0
  capstan rollout status --json
  capstan rollout pause --service chirpy; capstan rollout resume --service chirpy
  capstan rollout abort --service chirpy")]
    Rollout(capstan_rollout::rollout_cli::RolloutArgs),
    /// Wide events: tail, query and compare what the proxy recorded; receive OTLP traces.
    #[command(after_help = "Examples:
  capstan events tail --where 'status >= 500'
  capstan events query --where 'release = \"2.0.0\"' --group-by route --calc 'count, p99(duration_ms), error_rate' --since 1h
  capstan events compare --a 'status >= 500' --since 1h
  capstan events serve --listen 127.0.0.1:4318   # OTLP/HTTP receiver")]
    Events(capstan_events::cli::EventsArgs),
    /// Reverse proxy: cohorts, sticky weighted splits, mirroring, one event per request.
    #[command(after_help = "Examples:
  capstan proxy --config proxy.toml
  capstan proxy --listen 127.0.0.1:8080 --release 1.0.0=127.0.0.1:8081 --release 2.0.0=127.0.0.1:8082 \\
      --weight 1.0.0=90 --weight 2.0.0=10")]
    Proxy(capstan_proxy::cli::ProxyArgs),
    /// SLOs and error budgets: check, status, rules, the budget gate, the deploy log.
    #[command(after_help = "Examples:
  capstan slo check slos/
  capstan slo status --service chirpy --json
  capstan slo rules slos/ -o slo-rules.yaml && promtool check rules slo-rules.yaml
  capstan slo gate || echo 'frozen: the error budget is spent'")]
    Slo(capstan_slo::SloArgs),
    /// A live web view of every service's SLOs, budgets, deploys, rollouts and events.
    #[command(after_help = "Examples:
  capstan dashboard                                    # http://127.0.0.1:8900/, read-only
  CAPSTAN_DASHBOARD_TOKEN=$(cat token) capstan dashboard --listen 0.0.0.0:8900
  capstan dashboard --trusted-header X-Forwarded-User  # behind an authenticating proxy")]
    Dashboard(capstan_dashboard::DashboardArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    capstan_migrate::cli::set_quiet(cli.quiet);
    if let Command::Completions { shell } = &cli.command {
        let mut script = Vec::new();
        clap_complete::generate(*shell, &mut Cli::command(), "capstan", &mut script);
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), &script);
        return Ok(());
    }
    // The linter is synchronous (it starts its own runtime for --schema-from).
    if let Command::Lint(args) = &cli.command {
        // One write per buffer, not per line: a run over hundreds of files
        // prints thousands of lines.
        let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let code = capstan_lint::run_lint(args, &mut out, &mut std::io::stderr());
        let _ = std::io::Write::flush(&mut out);
        drop(out);
        std::process::exit(code);
    }
    // Synchronous too (it starts its own runtime for --database).
    if let Command::Deps(args) = &cli.command {
        let code = capstan_lint::run_deps(args, &mut std::io::stdout(), &mut std::io::stderr());
        std::process::exit(code);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async {
        match cli.command {
            Command::Migrate(args) => {
                capstan_migrate::cli::run_with_hooks(
                    args,
                    capstan_migrate::cli::MigrationSource::Dir,
                    capstan_migrate::cli::Hooks {
                        preflight: Some(&preflight::LintPreflight),
                        detector: Some(std::sync::Arc::new(capstan_lint::Archivist)),
                    },
                )
                .await
            }
            Command::Archive(args) => capstan_migrate::cli::run_archive(args).await,
            Command::Gate(args) => {
                capstan_migrate::cli::run_gate(args, capstan_migrate::cli::MigrationSource::Dir)
                    .await
            }
            Command::Fleet(args) => capstan_migrate::cli::run_fleet(args).await,
            Command::Schema(args) => capstan_migrate::cli::run_schema(args).await,
            Command::PlanMove(args) => capstan_migrate::cli::run_plan_move(args).await,
            Command::Probe(mut args) => {
                args.quiet |= cli.quiet;
                capstan_probe::run_probe(args).await
            }
            Command::Rehearse(args) => capstan_rehearse::cli::run(args).await,
            Command::Lint(_) | Command::Deps(_) | Command::Completions { .. } => {
                unreachable!("handled before the runtime starts")
            }
            Command::Judge(args) => capstan_rollout::cli::run(args).await,
            Command::Rollout(args) => capstan_rollout::rollout_cli::run(args).await,
            Command::Events(args) => capstan_events::cli::run(args).await,
            Command::Proxy(args) => capstan_proxy::cli::run(args).await,
            Command::Slo(args) => capstan_slo::run_slo(args).await,
            Command::Dashboard(args) => capstan_dashboard::run(args).await,
        }
    });
    std::process::exit(code);
}
