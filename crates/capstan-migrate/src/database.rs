//! An open database connection (Postgres or SQLite): the one place that
//! picks a driver for a URL.

use crate::driver::{AppliedRow, DbError, Driver, FailureKind};
use crate::error::Error;
use crate::url::DatabaseUrl;

/// An open database connection (Postgres or SQLite).
pub struct Database {
    pub(crate) driver: Box<dyn Driver>,
}

impl Database {
    /// Opens `url`. SQLite files are created if missing.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, Error> {
        Self::open(url, true).await
    }

    /// Opens `url` for reading: a missing SQLite file reads as an empty database
    /// and is not created.
    pub async fn connect_read_only(url: &DatabaseUrl) -> Result<Self, Error> {
        Self::open(url, false).await
    }

    // Without the driver features every arm returns, which is fine.
    #[allow(unreachable_code, unused_variables)]
    async fn open(url: &DatabaseUrl, create: bool) -> Result<Self, Error> {
        let driver: Box<dyn Driver> = match url {
            #[cfg(feature = "postgres")]
            DatabaseUrl::Postgres { raw } => {
                Box::new(crate::postgres::connect(raw, &url.to_string()).await?)
            }
            #[cfg(feature = "sqlite")]
            DatabaseUrl::Sqlite { path } => Box::new(crate::sqlite::connect(path, create)?),
            #[allow(unreachable_patterns)]
            _ => {
                let _ = create;
                return Err(Error::Db(DbError::new(
                    FailureKind::Connection,
                    format!("{url}: this build of capstan has no driver for it"),
                )));
            }
        };
        Ok(Database { driver })
    }

    /// Acts for `service`: its history, log, fleet and archive entries, its
    /// runner lock. Without it a database acts for
    /// [`crate::driver::DEFAULT_SERVICE`], which owns every row an older
    /// capstan wrote.
    pub fn for_service(mut self, service: &str) -> Self {
        self.driver.set_service(service);
        self
    }

    /// The service this connection acts for.
    pub fn service(&self) -> &str {
        self.driver.service()
    }

    /// Wraps a driver.
    pub fn from_driver(driver: Box<dyn Driver>) -> Self {
        Database { driver }
    }

    /// The driver, for advanced use.
    pub fn driver(&mut self) -> &mut dyn Driver {
        self.driver.as_mut()
    }

    /// The target, for messages (password redacted).
    pub fn describe(&self) -> String {
        self.driver.describe()
    }

    /// The services registered in the database (each declared service's
    /// `up` records its name, what it owns and what it depends on), by name.
    pub async fn services(&mut self) -> Result<Vec<capstan_service::Service>, Error> {
        Ok(self.driver.registered_services().await?)
    }

    /// Every service with rows in capstan's tables of this database (its
    /// history, log, fleet, archive or registry entry), sorted: the services
    /// a tool showing the whole database reads, each with
    /// [`Database::for_service`]. Changes nothing.
    pub async fn services_in_use(&mut self) -> Result<Vec<String>, Error> {
        Ok(self.driver.services_in_use().await?)
    }

    /// History rows, oldest first.
    pub async fn history(&mut self) -> Result<Vec<AppliedRow>, Error> {
        Ok(self.driver.history().await?)
    }
}
