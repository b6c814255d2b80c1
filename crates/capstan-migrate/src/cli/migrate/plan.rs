//! `migrate plan`: what `up` would run, with the SQL and the lint findings.

use clap::Args;

use crate::archive;
use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};
use crate::cli::preflight::findings_json;
use crate::migrator::{ContractPolicy, Migrator, Plan, UpOptions};

/// The arguments of `migrate plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Stop after this version.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<u64>,
    /// Do not refuse pending migrations with lint errors.
    #[arg(long)]
    pub unsafe_ok: bool,
    /// Show contract migrations even if live instances block them.
    #[arg(long)]
    pub force_contract: bool,
    /// As `up --no-archive OBJECT` would: show this object as not archived.
    #[arg(long, value_name = "OBJECT")]
    pub no_archive: Vec<String>,
}

pub(super) async fn run(cx: &Context<'_>, args: PlanArgs) -> Result<Exit, Failure> {
    let contract = if args.force_contract {
        ContractPolicy::Force
    } else {
        ContractPolicy::Fleet
    };
    let m = cx.migrator()?;
    let mut db = cx.connect_read_only().await?;
    let opts = UpOptions {
        to: args.to,
        contract,
        no_archive: args.no_archive,
        ..UpOptions::default()
    };
    let plan = m.plan(&mut db, &opts).await?;
    let pending: Vec<u64> = plan.steps.iter().map(|s| s.version).collect();
    let (found, refused) = cx
        .lint_findings(&m, &mut db, &pending, args.unsafe_ok)
        .await?;
    // One document, also when lint refuses: the plan and its findings.
    let mut doc = serde_json::to_value(&plan).unwrap_or_default();
    if let serde_json::Value::Object(o) = &mut doc {
        o.insert(
            "lint".into(),
            serde_json::json!({"refused": refused, "findings": findings_json(&found)}),
        );
    }
    cx.out.result(&doc, || render(&plan, &m));
    Ok(if refused { Exit::Lint } else { Exit::Ok })
}

fn render(plan: &Plan, m: &Migrator) -> String {
    let mut s = String::new();
    if plan.steps.is_empty() {
        s.push_str("nothing to apply\n");
    }
    for step in &plan.steps {
        s.push_str(&format!(
            "-- {} ({}{}, lock timeout {} ms) {}\n{}\n",
            capstan_format::label(step.version, &step.name),
            step.phase,
            if step.no_transaction {
                ", no transaction"
            } else {
                ""
            },
            step.lock_timeout_ms,
            step.file.display(),
            step.sql.trim_end()
        ));
        for a in &step.archive {
            s.push_str(&render_planned_archive(a, m));
        }
    }
    if let Some(h) = &plan.held_back {
        s.push_str(&format!("-- stops before: {}\n", h.reason));
    }
    s.trim_end().to_string()
}

fn render_planned_archive(a: &archive::PlannedArchive, m: &Migrator) -> String {
    let what = if a.skipped {
        "not archived (--no-archive)".to_string()
    } else {
        match (a.rows, a.bytes) {
            (Some(r), Some(b)) => format!(
                "archives {r} rows, about {}{}",
                archive::human_bytes(b),
                if a.over_limit {
                    format!(
                        " — over the limit of {}: `up` refuses unless --no-archive {}",
                        m.settings()
                            .archive_max_bytes
                            .map_or_else(|| "none".into(), archive::human_bytes),
                        a.object
                    )
                } else {
                    String::new()
                }
            ),
            _ => "archives it (the table does not exist yet; sized when it runs)".to_string(),
        }
    };
    format!("--   line {}: {} {} — {what}\n", a.line, a.kind, a.object)
}
