//! The registry of services in the database: each service `up` acted for,
//! with what it owns and depends on, so that the services of one database
//! can be seen together (`deps`, the dashboard) and an overlap between two
//! projects' capstan.toml files is refused.

use async_trait::async_trait;
use capstan_service::Service;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use capstan_service::{Dependency, Owned};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use serde::{Deserialize, Serialize};

use super::DbError;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
use super::FailureKind;

/// The registry, as each driver stores it (`capstan.services`,
/// `capstan_services`): one row per service, its `owns` and `depends_on` as
/// JSON text.
#[async_trait]
pub trait ServiceStore: Send {
    /// Records `service` (replacing its earlier row), as `by`. Call after
    /// `ensure_schema`, under the runner lock.
    async fn register_service(&mut self, service: &Service, by: &str) -> Result<(), DbError>;
    /// Every registered service, by name (none before the first `up` of a
    /// declared service).
    async fn registered_services(&mut self) -> Result<Vec<Service>, DbError>;
    /// The name of every service that has a row in capstan's tables
    /// (history, log, fleet, archive or the registry), sorted; tables an
    /// older capstan laid out hold only [`super::DEFAULT_SERVICE`]'s rows.
    /// Empty when capstan's tables do not exist. Changes nothing.
    async fn services_in_use(&mut self) -> Result<Vec<String>, DbError>;
}

/// The query behind [`ServiceStore::services_in_use`] over the tables of
/// `tables` (name, column naming the service) that exist.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn in_use_sql(tables: &[(&str, &str)]) -> Option<String> {
    if tables.is_empty() {
        return None;
    }
    let parts: Vec<String> = tables
        .iter()
        .map(|(table, column)| format!("SELECT {column} FROM {table}"))
        .collect();
    Some(format!("{} ORDER BY 1", parts.join(" UNION ")))
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[derive(Serialize, Deserialize)]
struct StoredDependency {
    service: String,
    hard: bool,
}

/// The `owns` and `depends_on` cells of `service`.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn encode(service: &Service) -> (String, String) {
    let owns: Vec<String> = service.owns.iter().map(Owned::to_string).collect();
    let deps: Vec<StoredDependency> = service
        .depends_on
        .iter()
        .map(|d| StoredDependency {
            service: d.service.clone(),
            hard: d.hard,
        })
        .collect();
    (
        serde_json::to_string(&owns).expect("strings serialize"),
        serde_json::to_string(&deps).expect("dependencies serialize"),
    )
}

/// A registry row read back; `table` names the table in errors.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn decode(
    table: &str,
    name: &str,
    owns: &str,
    depends_on: &str,
) -> Result<Service, DbError> {
    let bad = |what: String| {
        DbError::new(
            FailureKind::BadHistory,
            format!("capstan's registry of services {table} holds something capstan never writes: service `{name}`: {what}. Nothing was run"),
        )
    };
    let mut service = Service::new(name);
    let owns: Vec<String> = serde_json::from_str(owns)
        .map_err(|e| bad(format!("owns is not a list of names ({e})")))?;
    for entry in owns {
        service
            .owns
            .push(Owned::parse(&entry).map_err(|e| bad(format!("owns `{entry}`: {e}")))?);
    }
    let deps: Vec<StoredDependency> = serde_json::from_str(depends_on)
        .map_err(|e| bad(format!("depends_on is not a list of dependencies ({e})")))?;
    service.depends_on = deps
        .into_iter()
        .map(|d| Dependency {
            service: d.service,
            hard: d.hard,
        })
        .collect();
    Ok(service)
}
