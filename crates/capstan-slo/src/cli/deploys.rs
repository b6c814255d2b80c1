//! The deploy log kept up to date from the database's migration history
//! and fleet registry.

use crate::deploys::{Deploy, DeployKind, DeployLog};

use super::settings::Settings;

/// Imports migrations applied and releases seen in the fleet registry of
/// `database` into the deploy log, for every service found there (each
/// read as [`Database::for_service`](capstan_migrate::Database::for_service)
/// would). A service's rows name it, so they annotate the SLOs of that
/// service; the `default` service's (a project that declares no service)
/// concern every service, as before services existed. Returns how many
/// rows were added.
pub async fn import_deploys(database: &str, log: &DeployLog) -> Result<usize, String> {
    let url = capstan_migrate::DatabaseUrl::parse(database).map_err(|e| e.to_string())?;
    let mut db = capstan_migrate::Database::connect_read_only(&url)
        .await
        .map_err(|e| e.to_string())?;
    let mut added = 0;
    for service in db.services_in_use().await.map_err(|e| e.to_string())? {
        db.driver().set_service(&service);
        added += import_service(&mut db, &service, log).await?;
    }
    Ok(added)
}

/// [`import_deploys`] for the service `db` acts for.
async fn import_service(
    db: &mut capstan_migrate::Database,
    service: &str,
    log: &DeployLog,
) -> Result<usize, String> {
    let parse = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .ok()
    };
    // The default service's rows keep the keys (and the "every service"
    // tag) they had before services, so a log is not imported twice.
    let (tag, prefix) = if service == capstan_migrate::DEFAULT_SERVICE {
        (String::new(), String::new())
    } else {
        (service.to_string(), format!("service:{service}:"))
    };
    let mut added = 0;
    for row in db.history().await.map_err(|e| e.to_string())? {
        if row.is_dirty() {
            continue;
        }
        let Some(t) = parse(&row.applied_at) else {
            continue;
        };
        let d = Deploy {
            time_ms: t,
            service: tag.clone(),
            kind: DeployKind::Migration,
            subject: row.version.to_string(),
            detail: format!("{}, {}", row.name, row.phase),
        };
        if log
            .record(
                &d,
                Some(&format!(
                    "{prefix}migration:{}:{}",
                    row.version, row.applied_at
                )),
            )
            .map_err(|e| e.to_string())?
        {
            added += 1;
        }
    }
    // The registry may not exist yet (no instance ever registered).
    if let Ok(rows) = db.driver().fleet_list().await {
        let mut first: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for r in rows {
            if let Some(t) = parse(&r.started_at) {
                let e = first
                    .entry((r.instance.app.clone(), r.instance.version.clone()))
                    .or_insert(t);
                *e = (*e).min(t);
            }
        }
        for ((app, version), t) in first {
            let d = Deploy {
                time_ms: t,
                service: tag.clone(),
                kind: DeployKind::Release,
                subject: format!("{app} {version}"),
                detail: String::new(),
            };
            if log
                .record(&d, Some(&format!("{prefix}release:{app}:{version}")))
                .map_err(|e| e.to_string())?
            {
                added += 1;
            }
        }
    }
    Ok(added)
}

/// Imports deploys from the configured database; a failure is a warning.
pub(super) async fn sync_deploys(settings: &Settings) {
    let Some(url) = &settings.database else {
        return;
    };
    let log = match DeployLog::open(&settings.store) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warning: deploy log not updated: {e}");
            return;
        }
    };
    // Bounded like every other read of a source (`--timeout`): a database
    // that connected and then stopped answering costs the import, not the
    // status.
    match tokio::time::timeout(settings.timeout, import_deploys(url, &log)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("warning: deploy log not updated from the database: {e}"),
        Err(_) => eprintln!(
            "warning: deploy log not updated from the database: no answer within {:?}",
            settings.timeout
        ),
    }
}
