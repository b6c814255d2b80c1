//! The gates asked before a rollout starts and before every step forward:
//! the SLO budget gate (`[slo.policy]`), schema compatibility (the migration
//! history against what the baseline and the canary embed) and the fleet
//! registry (both releases have a live instance), and, when the canary's
//! migration directory is known, the expand migrations it needs that are not
//! applied yet.
//!
//! [`schema_and_fleet`] and [`pending_for_canary`] are pure; [`ask`] reads the
//! database, the directory and the SLOs.

use std::time::Duration;

use capstan_migrate::{AppliedRow, InstanceRow, MigrationSet, RowState, DEFAULT_TTL};

/// Why the schema closes the gate for `canary` of `app` whose migrations are
/// `set`: the migrations it embeds that the database has not applied and that
/// it therefore needs (expand migrations, or any being applied right now);
/// empty when none. A pending contract migration is no reason: it runs only
/// once no live instance lacks it, and the release carrying it works before
/// and after it.
pub fn pending_for_canary(
    set: &MigrationSet,
    history: &[AppliedRow],
    app: &str,
    canary: &str,
) -> Vec<String> {
    let c = capstan_migrate::check_gate(set, history, &[]);
    if c.pending.is_empty() {
        return Vec::new();
    }
    let labels: Vec<String> = c.pending.iter().map(|m| m.label.clone()).collect();
    vec![format!(
        "{app} {canary} needs migration{} {} that the database has not applied: its schema is missing; run `migrate up` first",
        if labels.len() == 1 { "" } else { "s" },
        labels.join(", ")
    )]
}
use capstan_migrate::Phase;

/// Why the schema or the fleet closes the gate for moving `canary` forward
/// against `baseline` of `app`; empty when open.
///
/// - a migration is dirty (failed part-way) or being applied: the schema is
///   in flux;
/// - an applied contract migration that the live instances of the baseline
///   or of the canary do not embed: that release cannot run on this schema
///   (the canary is too old, or the baseline could not take the traffic back
///   on a rollback);
/// - no live instance of the canary (nothing to send traffic to) or of the
///   baseline (nothing to roll back to).
pub fn schema_and_fleet(
    history: &[AppliedRow],
    fleet: &[InstanceRow],
    app: &str,
    baseline: &str,
    canary: &str,
    ttl: Duration,
) -> Vec<String> {
    let mut out = Vec::new();
    for r in history.iter().filter(|r| r.state != RowState::Applied) {
        out.push(format!(
            "migration {} ({}) is {}: the schema is in flux (`migrate repair` or wait)",
            r.version, r.name, r.state
        ));
    }
    for release in [canary, baseline] {
        let live: Vec<&InstanceRow> = fleet
            .iter()
            .filter(|r| r.instance.app == app && r.instance.version == release && r.is_live(ttl))
            .collect();
        if live.is_empty() {
            out.push(format!(
                "the fleet registry has no live instance of {app} {release}{}",
                if release == canary {
                    ": nothing would serve its traffic"
                } else {
                    ": nothing to roll back to"
                }
            ));
            continue;
        }
        for m in history
            .iter()
            .filter(|m| m.state == RowState::Applied && m.phase == Phase::Contract)
        {
            if let Some(i) = live
                .iter()
                .find(|i| !i.instance.versions.contains(&m.version))
            {
                out.push(format!(
                    "{} {release} does not embed the applied contract migration {} ({}){}: it cannot run on this schema",
                    app,
                    m.version,
                    m.name,
                    if i.instance.instance_id.is_empty() {
                        String::new()
                    } else {
                        format!(" (instance {})", i.instance.instance_id)
                    }
                ));
                break;
            }
        }
    }
    out
}

/// What the gates need besides the release names.
#[derive(Debug, Clone, Default)]
pub struct GateConfig {
    /// `capstan.toml` with `[slo.policy]`: the budget gate.
    pub slo_config: Option<std::path::PathBuf>,
    /// The application's database: its migration history and fleet registry.
    pub database: Option<String>,
    /// The application's name in the fleet registry.
    pub app: String,
    /// The canary's migration directory: its pending expand migrations close
    /// the schema gate (needs `database`).
    pub canary_migrations: Option<std::path::PathBuf>,
}

/// Asks every configured gate for `service` (`baseline` → `canary`); the
/// reasons it is closed, empty when open. A gate that cannot decide is
/// closed, with the reason.
pub async fn ask(cfg: &GateConfig, service: &str, baseline: &str, canary: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(config) = &cfg.slo_config {
        match budget(config, service).await {
            Ok(None) => {}
            Ok(Some(r)) => out.push(format!("budget: {r}")),
            Err(e) => out.push(format!("budget: the gate could not decide: {e}")),
        }
    }
    if let Some(url) = &cfg.database {
        let history_of = history_service(cfg.slo_config.as_deref(), service);
        match read_database(url, &history_of).await {
            Ok((history, fleet)) => {
                if let Some(dir) = &cfg.canary_migrations {
                    match MigrationSet::from_dir(dir) {
                        Ok(set) => out.extend(
                            pending_for_canary(&set, &history, &cfg.app, canary)
                                .into_iter()
                                .map(|r| format!("schema: {r}")),
                        ),
                        Err(e) => out.push(format!(
                            "schema: the canary's migrations ({}) could not be read: {e}",
                            dir.display()
                        )),
                    }
                }
                out.extend(
                    schema_and_fleet(&history, &fleet, &cfg.app, baseline, canary, DEFAULT_TTL)
                        .into_iter()
                        .map(|r| format!("schema/fleet: {r}")),
                )
            }
            Err(e) => out.push(format!("schema/fleet: the database could not be read: {e}")),
        }
    }
    out
}

/// The SLO budget gate; `Ok(None)` when open or without a policy.
pub async fn budget(config: &std::path::Path, service: &str) -> Result<Option<String>, String> {
    let settings = capstan_slo::Settings::load(config)?;
    let Some(policy) = settings.policy.clone() else {
        return Ok(None);
    };
    let (verdict, _) = capstan_slo::gate(&settings, &policy, Some(service), super::run::now_ms())
        .await
        .map_err(|e| e.to_string())?;
    Ok(match verdict {
        capstan_slo::Verdict::Frozen { reasons } => Some(reasons.join("; ")),
        _ => None,
    })
}

/// The capstan service whose migration history and fleet the gates read:
/// the rollout's service when `capstan.toml` declares a service of that name
/// (several services sharing one database), else the default service (a
/// project of one unnamed service). A `capstan.toml` that cannot be read is
/// the budget gate's to report.
fn history_service(config: Option<&std::path::Path>, service: &str) -> String {
    let declared = config
        .and_then(|p| std::fs::read_to_string(p).ok().map(|text| (p, text)))
        .and_then(|(p, text)| capstan_service::Services::parse(&text, p).ok())
        .is_some_and(|services| services.get(service).is_ok());
    if declared {
        service.to_string()
    } else {
        capstan_migrate::DEFAULT_SERVICE.to_string()
    }
}

async fn read_database(
    url: &str,
    service: &str,
) -> Result<(Vec<AppliedRow>, Vec<InstanceRow>), String> {
    let url = capstan_migrate::DatabaseUrl::parse(url).map_err(|e| e.to_string())?;
    let connect = async {
        let mut db = capstan_migrate::Database::connect_read_only(&url)
            .await
            .map_err(|e| e.to_string())?
            .for_service(service);
        let history = db.history().await.map_err(|e| e.to_string())?;
        // No registry yet: no instance ever registered.
        let fleet = db.driver().fleet_list().await.unwrap_or_default();
        Ok::<_, String>((history, fleet))
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "no answer within 10s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_read_the_history_of_the_declared_service_else_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("capstan.toml");
        std::fs::write(
            &config,
            "[[service]]\nname = \"users\"\n[[service]]\nname = \"chirps\"\n",
        )
        .unwrap();
        assert_eq!(history_service(Some(&config), "chirps"), "chirps");
        assert_eq!(history_service(Some(&config), "api"), "default");
        assert_eq!(history_service(None, "chirps"), "default");
        std::fs::write(&config, "database_url = \"x\"\n").unwrap();
        assert_eq!(history_service(Some(&config), "chirps"), "default");
    }
    use capstan_migrate::Instance;

    fn applied(version: u64, phase: &str, state: &str) -> AppliedRow {
        AppliedRow {
            version,
            name: format!("m{version}"),
            checksum: String::new(),
            up_checksum: None,
            down_checksum: None,
            phase: Phase::parse(phase).unwrap(),
            state: RowState::parse(state).unwrap(),
            applied_at: "2026-01-01T00:00:00Z".into(),
            applied_by: "t".into(),
            binary_version: "t".into(),
            duration_ms: 0,
            no_transaction: false,
            error: None,
        }
    }

    fn instance(version: &str, versions: &[u64], age_secs: f64) -> InstanceRow {
        InstanceRow {
            instance: Instance {
                instance_id: format!("i-{version}"),
                app: "chirpy".into(),
                version: version.into(),
                set_hash: String::new(),
                versions: versions.to_vec(),
                address: None,
            },
            started_at: String::new(),
            last_seen: String::new(),
            age_secs,
            departed_at: None,
        }
    }

    fn set(files: &[(&str, &str)]) -> MigrationSet {
        MigrationSet::from_embedded(files).unwrap()
    }

    const CANARY: [(&str, &str); 3] = [
        (
            "0001_users.sql",
            "-- capstan:up\nCREATE TABLE users (id int);",
        ),
        (
            "0002_handle.sql",
            "-- capstan:up\nALTER TABLE users ADD COLUMN handle text;",
        ),
        (
            "0003_drop_name.sql",
            "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN name;",
        ),
    ];

    #[test]
    fn an_expand_migration_the_canary_needs_and_the_database_lacks_closes_it() {
        let history = [applied(1, "expand", "applied")];
        let r = pending_for_canary(&set(&CANARY), &history, "chirpy", "2.0.0");
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].contains(
                "chirpy 2.0.0 needs migration 0002_handle that the database has not applied"
            ),
            "{r:?}"
        );
        // The pending contract migration is not named: it is fine to carry.
        assert!(!r[0].contains("0003"), "{r:?}");
    }

    #[test]
    fn a_pending_contract_alone_or_nothing_pending_leaves_it_open() {
        let history = [
            applied(1, "expand", "applied"),
            applied(2, "expand", "applied"),
        ];
        assert!(pending_for_canary(&set(&CANARY), &history, "chirpy", "2.0.0").is_empty());
        let history = [
            applied(1, "expand", "applied"),
            applied(2, "expand", "applied"),
            applied(3, "contract", "applied"),
        ];
        assert!(pending_for_canary(&set(&CANARY), &history, "chirpy", "2.0.0").is_empty());
        // An older canary (the database is ahead by an expand) needs nothing.
        let history = [
            applied(1, "expand", "applied"),
            applied(2, "expand", "applied"),
        ];
        assert!(pending_for_canary(&set(&CANARY[..1]), &history, "chirpy", "1.0.0").is_empty());
    }

    #[test]
    fn every_pending_expand_is_named() {
        let r = pending_for_canary(&set(&CANARY), &[], "chirpy", "2.0.0");
        assert!(
            r.len() == 1 && r[0].contains("migrations 0001_users, 0002_handle that"),
            "{r:?}"
        );
    }

    fn gate(history: &[AppliedRow], fleet: &[InstanceRow]) -> Vec<String> {
        schema_and_fleet(history, fleet, "chirpy", "1.0.0", "2.0.0", DEFAULT_TTL)
    }

    #[test]
    fn open_when_both_releases_are_live_and_embed_every_applied_contract() {
        let history = [
            applied(1, "expand", "applied"),
            applied(2, "expand", "applied"),
        ];
        // The baseline lacks expand 2: fine, an expand never breaks it.
        let fleet = [
            instance("1.0.0", &[1], 1.0),
            instance("2.0.0", &[1, 2, 3], 2.0),
        ];
        assert!(gate(&history, &fleet).is_empty());
    }

    #[test]
    fn an_applied_contract_the_baseline_lacks_closes_it() {
        let history = [
            applied(1, "expand", "applied"),
            applied(3, "contract", "applied"),
        ];
        let fleet = [
            instance("1.0.0", &[1], 1.0),
            instance("2.0.0", &[1, 3], 2.0),
        ];
        let r = gate(&history, &fleet);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(
            r[0].contains("chirpy 1.0.0 does not embed the applied contract migration 3"),
            "{r:?}"
        );
    }

    #[test]
    fn a_dirty_migration_closes_it() {
        let history = [
            applied(1, "expand", "applied"),
            applied(2, "expand", "dirty"),
        ];
        let fleet = [
            instance("1.0.0", &[1, 2], 1.0),
            instance("2.0.0", &[1, 2], 2.0),
        ];
        let r = gate(&history, &fleet);
        assert!(
            r.len() == 1 && r[0].contains("migration 2 (m2) is dirty"),
            "{r:?}"
        );
    }

    #[test]
    fn a_release_without_a_live_instance_closes_it() {
        let history = [applied(1, "expand", "applied")];
        // The canary's only instance stopped heartbeating a minute ago.
        let fleet = [instance("1.0.0", &[1], 1.0), instance("2.0.0", &[1], 60.0)];
        let r = gate(&history, &fleet);
        assert!(
            r.len() == 1 && r[0].contains("no live instance of chirpy 2.0.0"),
            "{r:?}"
        );
        let r = gate(&history, &[instance("2.0.0", &[1], 1.0)]);
        assert!(
            r.len() == 1 && r[0].contains("nothing to roll back to"),
            "{r:?}"
        );
    }
}
