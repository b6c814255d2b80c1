//! `migrate verify`: on a scratch database, apply all, then check that each
//! down section restores the schema.

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};
use crate::cli::render::render_invalid_indexes;
use crate::migrator::{Event, VerifyReport};

pub(super) async fn run(cx: &Context<'_>) -> Result<Exit, Failure> {
    let m = cx.migrator()?;
    let mut db = cx.connect_read_only().await?;
    let mut progress = cx.out.progress();
    let result = m
        .verify(&mut db, &mut |e| {
            if matches!(e, Event::Notice { .. } | Event::Retry { .. }) {
                progress.event(e)
            }
        })
        .await;
    progress.finish();
    let report = result?;
    cx.out.result(&report, || render(&report));
    Ok(if report.ok() { Exit::Ok } else { Exit::Failed })
}

fn render(report: &VerifyReport) -> String {
    let mut s = String::new();
    for step in &report.steps {
        let label = capstan_format::label(step.version, &step.name).to_string();
        if !step.differences.is_empty() {
            s.push_str(&format!("FAIL {label}\n"));
            for d in &step.differences {
                s.push_str(&format!("     {d}\n"));
            }
        } else if step.down_checked {
            s.push_str(&format!(
                "ok   {label}: down restores the schema, up runs again\n"
            ));
        } else {
            s.push_str(&format!(
                "ok   {label}: applies (no down section to check)\n"
            ));
        }
    }
    s.push_str(&render_invalid_indexes(&report.invalid_indexes));
    s.push_str(if report.ok() {
        "verify passed"
    } else if report.steps.iter().all(|s| s.differences.is_empty()) {
        "verify failed: the database has invalid indexes"
    } else {
        "verify failed: a down section does not undo its up section"
    });
    s
}
