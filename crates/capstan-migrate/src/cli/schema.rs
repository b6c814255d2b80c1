//! `schema dump`: the application's schema as SQL, without capstan's tables.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::context::{ConnArgs, Context};
use super::exit::{Exit, Failure};
use crate::migrator::{Database, Error};

/// `schema`: the application's schema as SQL.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Database, directory and run options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: SchemaCommand,
}

/// The `schema` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SchemaCommand {
    /// Print the application's schema (no capstan tables), in a deterministic order.
    #[command(after_help = "Examples:
  capstan schema dump                    # to stdout
  capstan schema dump -o schema.sql      # for sqlc: schema: schema.sql
  capstan migrate up --dump-schema schema.sql

Postgres: pg_dump --schema-only when pg_dump is on PATH and accepts the
server, else the catalog; SQLite: sqlite_master. Set schema_file in
capstan.toml to rewrite it after every up and down.")]
    Dump {
        /// Write it to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

pub(super) async fn run(cx: &Context<'_>, command: SchemaCommand) -> Result<Exit, Failure> {
    let SchemaCommand::Dump { output } = command;
    let url = cx.url()?;
    let mut db = Database::connect_read_only(&url).await?;
    let dump = crate::schema_dump::dump(&mut db, &url)
        .await
        .map_err(Error::from)?;
    if let Some(note) = &dump.note {
        cx.out
            .info(format_args!("{note}; dumped from the catalog instead"));
    }
    match &output {
        Some(path) => {
            crate::schema_dump::write(path, &dump.sql)
                .map_err(|e| Failure::bad_input(format!("cannot write {}: {e}", path.display())))?;
            cx.out.result(
                &serde_json::json!({"written": path, "method": dump.method}),
                || format!("wrote the schema to {}", path.display()),
            );
        }
        None if cx.out.json() => cx.out.result(
            &serde_json::json!({"schema": dump.sql, "method": dump.method}),
            String::new,
        ),
        None => cx.out.raw(dump.sql.as_bytes()),
    }
    Ok(Exit::Ok)
}
