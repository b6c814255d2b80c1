//! `gate`: is this migration set compatible with the database?

use clap::Args;

use super::context::{ConnArgs, Context};
use super::exit::{Exit, Failure};
use super::MigrationSource;

/// `gate`: is this migration set compatible with the database?
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// Database, directory and run options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The application name used in advice (`run \`APP migrate up\``); without
    /// --service, a service capstan.toml declares by this name is the one checked.
    #[arg(long, default_value = "capstan")]
    pub app: String,
}

pub(super) async fn run(cx: &Context<'_>, app: &str) -> Result<Exit, Failure> {
    let set = cx.set()?;
    let mut db = cx.connect_read_only().await?;
    let version = match &cx.source {
        MigrationSource::Embedded { binary_version, .. } => binary_version.clone(),
        MigrationSource::Dir => format!("{app} (migrations in {})", cx.dir.display()),
    };
    let compat = crate::gate::check_database(&mut db, &set).await?;
    let messages = compat.messages(app, &version);
    cx.service_result(&compat, || {
        let mut s = if compat.is_compatible() {
            "compatible: this migration set can run against the database".to_string()
        } else {
            "incompatible:".to_string()
        };
        for m in &messages {
            s.push_str(&format!("\n  {m}"));
        }
        s
    });
    Ok(if compat.is_compatible() {
        Exit::Ok
    } else {
        Exit::Gate
    })
}
