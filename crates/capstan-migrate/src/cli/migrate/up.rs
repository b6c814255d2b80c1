//! `migrate up`: apply pending migrations, under the runner lock, after the
//! preflight and the error budget gate.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure, Kind};
use crate::cli::render::{render_report, report_partial};
use crate::migrator::{ContractPolicy, Database, Migrator, RunReport, UpOptions};
use crate::source::{parse_duration, Phase};

/// The arguments of `migrate up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Stop after this version.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<u64>,
    /// Wait for the live instances that block a contract migration to leave.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (default 10m).
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
    /// Apply contract migrations even though live instances still need what they remove (recorded in history).
    #[arg(long, conflicts_with = "wait")]
    pub force_contract: bool,
    /// Apply pending migrations despite lint errors (recorded in history).
    #[arg(long)]
    pub unsafe_ok: bool,
    /// Destroy this object (`users.name`, `users`) without an archive copy (recorded in history); repeatable.
    #[arg(long, value_name = "OBJECT")]
    pub no_archive: Vec<String>,
    /// Afterwards, write the application's schema to FILE (as `schema dump -o FILE`;
    /// default: capstan.toml's schema_file).
    #[arg(long, value_name = "FILE")]
    pub dump_schema: Option<PathBuf>,
}

pub(super) async fn run(cx: &Context<'_>, args: UpArgs) -> Result<Exit, Failure> {
    let contract = match (args.wait, args.force_contract) {
        (_, true) => ContractPolicy::Force,
        (true, _) => ContractPolicy::Wait(match &args.timeout {
            Some(t) => {
                parse_duration(t).map_err(|e| Failure::bad_input(format!("--timeout: {e}")))?
            }
            None => Duration::from_secs(600),
        }),
        _ => ContractPolicy::Fleet,
    };
    let m = cx.migrator()?;
    cx.check_default_fits()?;
    let mut db = cx.connect().await?;
    let mut opts = UpOptions {
        to: args.to,
        contract,
        no_archive: args.no_archive,
        ..UpOptions::default()
    };
    let mut progress = cx.out.progress();
    // Everything is decided under the runner lock: what another runner
    // did while this one waited (or is doing, outside a transaction)
    // is seen as done, not as pending or dirty.
    crate::interrupt::install();
    m.lock(&mut db, &mut |e| progress.event(e)).await?;
    let result = async {
        if !checks_pass(cx, &m, &mut db, &mut opts, args.unsafe_ok).await? {
            return Ok(None);
        }
        Ok::<_, Failure>(Some(
            m.up_holding_lock(&mut db, &opts, &mut |e| progress.event(e))
                .await,
        ))
    }
    .await;
    let unlocked = m.unlock(&mut db).await;
    let Some(result) = result? else {
        return Ok(Exit::Lint);
    };
    if result.is_ok() {
        unlocked?;
    }
    progress.finish();
    let report: RunReport = result.map_err(|e| report_partial(&cx.out, e))?;
    cx.out.result(&report, || render_report(&report, "up"));
    cx.keep_schema(&mut db, args.dump_schema).await?;
    Ok(if report.held_back.is_some() {
        Exit::ContractHeld
    } else {
        Exit::Ok
    })
}

/// Under the runner lock, before anything runs: the preflight (lint errors
/// refuse the run unless `unsafe_ok`, which notes them in history) and the
/// error budget gate for the pending contract migrations. `false`: refused
/// by lint (already reported).
async fn checks_pass(
    cx: &Context<'_>,
    m: &Migrator,
    db: &mut Database,
    opts: &mut UpOptions,
    unsafe_ok: bool,
) -> Result<bool, Failure> {
    let Some(gate) = cx.preflight else {
        return Ok(true);
    };
    let pending = m.pending_versions(db, opts).await?;
    let Some(overridden) = cx.lint_pending(m, db, &pending, unsafe_ok).await? else {
        return Ok(false);
    };
    for f in overridden {
        let note = opts
            .notes
            .entry(f.version)
            .or_insert_with(|| "unsafe-ok: applied despite lint errors:".to_string());
        note.push(' ');
        note.push_str(&f.text);
    }
    let contracts: Vec<u64> = m
        .set()
        .migrations()
        .iter()
        .filter(|x| x.phase == Phase::Contract && pending.contains(&x.version))
        .map(|x| x.version)
        .collect();
    if contracts.is_empty() {
        return Ok(true);
    }
    let config = cx.config_path.exists().then_some(cx.config_path.as_path());
    if let Some(reason) = gate
        .contract_gate(&contracts, config)
        .map_err(Failure::bad_input)?
    {
        return Err(Failure::new(
            Exit::Frozen,
            Kind::Frozen,
            format!("contract migration {contracts:?} not run: {reason}"),
        ));
    }
    Ok(true)
}
