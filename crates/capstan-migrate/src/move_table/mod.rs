//! `capstan plan-move`: the migrations that move a table from the service
//! that owns it to another service sharing the database, without downtime.
//!
//! One physical table throughout, so no dual writes can diverge:
//!
//! 1. the target service, expand: `CREATE SCHEMA IF NOT EXISTS` its schema;
//! 2. the source service, expand: `ALTER TABLE … SET SCHEMA` into it, and a
//!    view under the old name (`SELECT *`, automatically updatable) with the
//!    table's privileges, so binaries using the old name keep reading and
//!    writing the same rows;
//! 3. new binaries use the new name (nothing to migrate);
//! 4. the source service, contract: `DROP VIEW` of the old name, held by the
//!    fleet gate until no live instance of the source lacks it.
//!
//! [`plan`] is pure (services, table, target, next free versions → files);
//! [`next_versions`] and [`write`] touch the directories; [`inspect`] reads
//! the live catalog through the driver. docs/services.md ("Moving a table to
//! a service") holds the rollback of every step.

use std::path::{Path, PathBuf};

use capstan_service::{Owned, Owner, Service, ServiceError, Services, DEFAULT_SCHEMA};
use serde::Serialize;

use crate::driver::{DbError, Driver, MoveFacts};
use crate::source::{self, MigrationId, Phase};
use crate::sum;

/// Why no move was planned. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MoveError {
    /// The table argument is not `table` or `schema.table`.
    #[error("table `{entry}`: {why} (write `schema.table`, like `public.invoices`)")]
    BadTable {
        /// The argument as given.
        entry: String,
        /// What is wrong.
        why: String,
    },
    /// `capstan.toml` is unreadable or its `service` key is wrong.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// No service owns the table.
    #[error("{table} is owned by no service: add it (or its schema) to the `owns` of the service that uses it today in {config}, then plan the move")]
    NotOwned {
        /// The table.
        table: String,
        /// The config file.
        config: PathBuf,
    },
    /// The target service owns the table already.
    #[error("{table} is owned by service `{service}` already: nothing to move")]
    AlreadyThere {
        /// The table.
        table: String,
        /// The service.
        service: String,
    },
    /// A service without a migration directory.
    #[error("service `{service}` has no `dir` in {config} (line {line}): its migrations have nowhere to go; add `dir = \"services/{service}/migrations\"`")]
    NoDir {
        /// The service.
        service: String,
        /// The config file.
        config: PathBuf,
        /// The service's line.
        line: usize,
    },
    /// No schema to move the table into.
    #[error("service `{service}` owns no schema to move {table} into: add one to its `owns` in {config} (line {line}), or pass --schema")]
    NoSchema {
        /// The target service.
        service: String,
        /// The table.
        table: String,
        /// The config file.
        config: PathBuf,
        /// The service's line.
        line: usize,
    },
    /// `--schema` names a schema another service owns, or the table's own.
    #[error("schema `{schema}`: {why}")]
    BadSchema {
        /// The schema.
        schema: String,
        /// Why it cannot receive the table.
        why: String,
    },
    /// SQLite has no schemas to move a table between.
    #[error("plan-move needs Postgres: SQLite has no schemas, so a table cannot change owner by moving to one (keep it where it is and list it in the new service's `owns` instead)")]
    Sqlite,
    /// The table is not in the database.
    #[error("{table} does not exist in {database}: check the name (or the database)")]
    Missing {
        /// The table.
        table: String,
        /// The database (password redacted).
        database: String,
    },
    /// The live table cannot be kept working under its old name by a
    /// simple view.
    #[error("{table} cannot be moved behind a view: {why}")]
    NotMovable {
        /// The table.
        table: String,
        /// Why.
        why: String,
    },
    /// A migration directory cannot be read (a bad file name, an unreadable entry).
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// The sum file could not be written.
    #[error(transparent)]
    Sum(#[from] sum::SumError),
    /// Writing a file failed (what was written is removed again).
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// Reading the catalog failed.
    #[error("{0}")]
    Db(#[from] DbError),
}

/// What to move where, as the command line says it.
#[derive(Debug, Clone)]
pub struct MoveRequest<'a> {
    /// `schema.table`, or `table` (in `public`).
    pub table: &'a str,
    /// The target service.
    pub to: &'a str,
    /// The schema to move into (default: the target's first owned schema).
    pub schema: Option<&'a str>,
    /// The config file the services come from (for messages, and the base
    /// of their `dir`s).
    pub config: &'a Path,
}

/// One step of the move, as the files and the documentation number them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// 1: the target creates the schema (expand).
    CreateSchema,
    /// 2: the source moves the table and leaves a view (expand).
    MoveTable,
    /// 4: the source drops the view (contract).
    DropView,
}

impl Step {
    /// The step's number (3 is the switch of binaries: no file).
    pub fn number(self) -> u8 {
        match self {
            Step::CreateSchema => 1,
            Step::MoveTable => 2,
            Step::DropView => 4,
        }
    }
}

/// A migration file the move writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedFile {
    /// The step.
    pub step: Step,
    /// The service whose directory receives it.
    pub service: String,
    /// Its path (the service's directory joined with the file name).
    pub path: PathBuf,
    /// Its version in that directory.
    pub version: u64,
    /// Its phase.
    pub phase: Phase,
    /// Its text.
    #[serde(skip)]
    pub text: String,
}

/// The whole move: who gives what to whom, and the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovePlan {
    /// The table's schema now.
    pub from_schema: String,
    /// The table's name (unchanged by the move).
    pub table: String,
    /// The schema it moves into.
    pub to_schema: String,
    /// The service that owns it now.
    pub source: String,
    /// The service it moves to.
    pub target: String,
    /// The files, in the order they are applied.
    pub files: Vec<PlannedFile>,
    /// Changes to `capstan.toml` the move asks for, in words.
    pub config_advice: Vec<String>,
}

impl MovePlan {
    /// `schema.table` now, quoted for SQL where needed.
    pub fn old_name(&self) -> String {
        qualified(&self.from_schema, &self.table)
    }

    /// `schema.table` after the move, quoted for SQL where needed.
    pub fn new_name(&self) -> String {
        qualified(&self.to_schema, &self.table)
    }
}

/// The two services and the names a move works with, resolved and checked
/// (every error of the configuration is found here, before any IO).
#[derive(Debug, Clone)]
pub struct Resolved<'s> {
    /// The table's schema.
    pub from_schema: String,
    /// The table.
    pub table: String,
    /// The schema it moves into.
    pub to_schema: String,
    /// The owner now.
    pub source: &'s Service,
    /// The owner after the move.
    pub target: &'s Service,
    /// The source's migration directory (resolved against the config's directory).
    pub source_dir: PathBuf,
    /// The target's migration directory.
    pub target_dir: PathBuf,
}

/// Checks the request against the services: the table's owner, the target,
/// their directories and the schema to move into.
pub fn resolve<'s>(
    services: &'s Services,
    request: &MoveRequest<'_>,
) -> Result<Resolved<'s>, MoveError> {
    let (from_schema, table) = match Owned::parse(request.table) {
        Ok(Owned::Table { schema, table }) => (schema, table),
        Ok(Owned::Schema(table)) => (DEFAULT_SCHEMA.to_string(), table),
        Err(why) => {
            return Err(MoveError::BadTable {
                entry: request.table.to_string(),
                why,
            })
        }
    };
    let shown = qualified(&from_schema, &table);
    let target = services.get(request.to)?;
    let source = match services.owner_of(Some(&from_schema), &table) {
        Owner::Service(s) => s,
        Owner::Nobody => {
            return Err(MoveError::NotOwned {
                table: shown,
                config: request.config.to_path_buf(),
            })
        }
    };
    if source.name == target.name {
        return Err(MoveError::AlreadyThere {
            table: shown,
            service: target.name.clone(),
        });
    }
    let to_schema = match request.schema {
        Some(s) => match Owned::parse(s) {
            Ok(Owned::Schema(s)) => s,
            _ => {
                return Err(MoveError::BadSchema {
                    schema: s.to_string(),
                    why: "not a schema name".into(),
                })
            }
        },
        None => target
            .owns
            .iter()
            .find_map(|o| match o {
                Owned::Schema(s) => Some(s.clone()),
                Owned::Table { .. } => None,
            })
            .ok_or_else(|| MoveError::NoSchema {
                service: target.name.clone(),
                table: shown.clone(),
                config: request.config.to_path_buf(),
                line: target.line,
            })?,
    };
    if to_schema == from_schema {
        return Err(MoveError::BadSchema {
            schema: to_schema,
            why: format!("{shown} is in it already; the target's schema must be another one"),
        });
    }
    match services.owner_of_schema(&to_schema) {
        Owner::Service(s) if s.name != target.name => {
            return Err(MoveError::BadSchema {
                schema: to_schema,
                why: format!(
                    "owned by service `{}`, not by `{}`: the moved table would belong to the wrong service",
                    s.name, target.name
                ),
            })
        }
        _ => {}
    }
    let base = request.config.parent().unwrap_or(Path::new(""));
    let dir_of = |s: &Service| {
        s.dir
            .as_ref()
            .map(|d| base.join(d))
            .ok_or_else(|| MoveError::NoDir {
                service: s.name.clone(),
                config: request.config.to_path_buf(),
                line: s.line,
            })
    };
    Ok(Resolved {
        source_dir: dir_of(source)?,
        target_dir: dir_of(target)?,
        from_schema,
        table,
        to_schema,
        source,
        target,
    })
}

/// The next free version of `dir` (1 when it is missing or empty), counting
/// every file named like a migration, as `migrate new` does.
pub fn next_version(dir: &Path) -> Result<u64, MoveError> {
    if !dir.exists() {
        return Ok(1);
    }
    let files = source::read_dir_files(dir)?;
    let latest = files
        .iter()
        .filter_map(|(p, _)| source::parse_file_name(&p.file_name()?.to_string_lossy()))
        .map(|(v, _)| v)
        .max();
    Ok(latest.map_or(1, |v| v + 1))
}

/// The files of the move, numbered from `target_next` in the target's
/// directory and `source_next` in the source's. Pure.
pub fn plan(resolved: &Resolved<'_>, target_next: u64, source_next: u64) -> MovePlan {
    let old = qualified(&resolved.from_schema, &resolved.table);
    let new = qualified(&resolved.to_schema, &resolved.table);
    let schema = ident(&resolved.to_schema);
    let source = &resolved.source.name;
    let target = &resolved.target.name;
    let slug = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    let (t, s) = (slug(&resolved.table), slug(&resolved.to_schema));
    let step1 = MigrationId::new(target_next, format!("create_schema_{s}"));
    let step2 = MigrationId::new(source_next, format!("move_{t}_to_{s}"));
    let step4 = MigrationId::new(source_next + 1, format!("drop_old_name_of_{t}"));
    let view = format!("CREATE VIEW {old} AS SELECT * FROM {new};\n");
    let grants = copy_grants(&resolved.to_schema, &resolved.table, &old, false);

    let text1 = format!(
        "-- capstan:phase expand\n\
         -- Moving {old} from service `{source}` to service `{target}`, step 1 of 4: the\n\
         -- schema the table moves into. Step 2 is `{source}`'s {step2_file}.\n\
         -- capstan:up\n\
         CREATE SCHEMA IF NOT EXISTS {schema};\n\
         \n\
         -- capstan:down\n\
         -- Only an empty schema goes: it may have existed before, with other objects.\n\
         DO $down$\n\
         BEGIN\n\
         \x20 IF NOT EXISTS (SELECT FROM pg_depend WHERE refclassid = 'pg_namespace'::regclass\n\
         \x20                AND refobjid = to_regnamespace({schema_lit})) THEN\n\
         \x20   DROP SCHEMA IF EXISTS {schema};\n\
         \x20 END IF;\n\
         END\n\
         $down$;\n",
        step2_file = step2.file_name(),
        schema_lit = lit(&schema),
    );
    let text2 = format!(
        "-- capstan:phase expand\n\
         -- Moving {old} from service `{source}` to service `{target}`, step 2 of 4: the\n\
         -- table moves into `{target}`'s schema (its indexes, constraints, triggers,\n\
         -- owned sequences and privileges follow it; foreign keys and views that\n\
         -- use it keep pointing at it), and a view under the old name keeps binaries\n\
         -- that use it working: a `SELECT *` view of one table is updatable\n\
         -- (INSERT … RETURNING, ON CONFLICT (columns), UPDATE, DELETE; the table's\n\
         -- defaults and triggers apply). Needs step 1 (`{target}`'s {step1_file}).\n\
         -- Columns added to {new} later are not in the view until it is recreated.\n\
         -- capstan:up\n\
         -- capstan:ignore changing-schema,wrong-phase,service-boundary hands the table to `{target}`; the view below keeps the old name working until step 4\n\
         ALTER TABLE {old} SET SCHEMA {schema};\n\
         {view}\
         {grants}\
         \n\
         -- capstan:down\n\
         DROP VIEW {old};\n\
         -- capstan:ignore changing-schema,wrong-phase,service-boundary moves the table back where the old binaries look for it\n\
         ALTER TABLE {new} SET SCHEMA {from};\n",
        step1_file = step1.file_name(),
        grants = copy_grants(&resolved.to_schema, &resolved.table, &old, true),
        from = ident(&resolved.from_schema),
    );
    let text4 = format!(
        "-- capstan:phase contract\n\
         -- Moving {old} from service `{source}` to service `{target}`, step 4 of 4: the\n\
         -- old name goes. Runs only when no live instance of `{source}` lacks this\n\
         -- migration, i.e. every binary left uses {new}.\n\
         -- capstan:up\n\
         DROP VIEW {old};\n\
         \n\
         -- capstan:down\n\
         {view}\
         {grants}",
    );
    let file =
        |step, service: &str, dir: &Path, id: &MigrationId, phase, text: String| PlannedFile {
            step,
            service: service.to_string(),
            path: dir.join(id.file_name()),
            version: id.version,
            phase,
            text,
        };
    let mut config_advice = Vec::new();
    if !resolved.target.owns_schema(&resolved.to_schema) {
        config_advice.push(format!(
            "add \"{}\" to the `owns` of service `{target}`",
            resolved.to_schema
        ));
    }
    let listed = Owned::Table {
        schema: resolved.from_schema.clone(),
        table: resolved.table.clone(),
    };
    if resolved.source.owns.contains(&listed) {
        config_advice.push(format!(
            "after step 4, remove \"{listed}\" from the `owns` of service `{source}` (until then it names the view)"
        ));
    }
    MovePlan {
        from_schema: resolved.from_schema.clone(),
        table: resolved.table.clone(),
        to_schema: resolved.to_schema.clone(),
        source: source.clone(),
        target: target.clone(),
        files: vec![
            file(
                Step::CreateSchema,
                target,
                &resolved.target_dir,
                &step1,
                Phase::Expand,
                text1,
            ),
            file(
                Step::MoveTable,
                source,
                &resolved.source_dir,
                &step2,
                Phase::Expand,
                text2,
            ),
            file(
                Step::DropView,
                source,
                &resolved.source_dir,
                &step4,
                Phase::Contract,
                text4,
            ),
        ],
        config_advice,
    }
}

/// A `DO` block giving the view `view` every privilege the moved table
/// `schema.table` grants (its owner's aside: the view's owner has them),
/// read from the catalog when the migration runs, so the roles of the old
/// binaries keep their access through the old name. With `schema_usage`,
/// those roles also get `USAGE` on the new schema, for when they use the
/// new name.
fn copy_grants(schema: &str, table: &str, view: &str, schema_usage: bool) -> String {
    let moved = lit(&qualified(schema, table));
    let usage = if schema_usage {
        format!(
            "    EXECUTE format('GRANT USAGE ON SCHEMA %s TO %s', {}, g.role);\n",
            lit(&ident(schema))
        )
    } else {
        String::new()
    };
    format!(
        "DO $grants$\n\
         DECLARE g record;\n\
         BEGIN\n\
         \x20 FOR g IN\n\
         \x20   SELECT a.privilege_type AS privilege, a.is_grantable AS grantable,\n\
         \x20          CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END AS role\n\
         \x20   FROM pg_class c, aclexplode(c.relacl) a\n\
         \x20   WHERE c.oid = {moved}::regclass AND a.grantee <> c.relowner\n\
         \x20 LOOP\n\
         \x20   EXECUTE format('GRANT %s ON {view_in_lit} TO %s%s', g.privilege, g.role,\n\
         \x20                  CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);\n\
         {usage}\
         \x20 END LOOP;\n\
         END\n\
         $grants$;\n",
        view_in_lit = view.replace('\'', "''").replace('%', "%%"),
    )
}

/// Writes the plan's files and adds them to each directory's `capstan.sum`.
/// All or nothing: a file already there is an error before anything is
/// written, and a failure removes what was written (each sum is rewritten
/// last, from the directory as it is then).
pub fn write(plan: &MovePlan) -> Result<Vec<PathBuf>, MoveError> {
    for f in &plan.files {
        if f.path.exists() {
            return Err(MoveError::Io {
                path: f.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            });
        }
    }
    let mut written: Vec<PathBuf> = Vec::new();
    let undo = |written: &[PathBuf]| {
        for p in written {
            let _ = std::fs::remove_file(p);
        }
    };
    let mut dirs: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for f in &plan.files {
        let dir = f.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let res = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&f.path, &f.text));
        if let Err(source) = res {
            undo(&written);
            return Err(MoveError::Io {
                path: f.path.clone(),
                source,
            });
        }
        written.push(f.path.clone());
        match dirs.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) => names.push(name),
            None => dirs.push((dir, vec![name])),
        }
    }
    let sums: Vec<PathBuf> = dirs.iter().map(|(d, _)| d.join(sum::SUM_FILE)).collect();
    let before: Vec<Option<Vec<u8>>> = sums.iter().map(|p| std::fs::read(p).ok()).collect();
    for (dir, names) in &dirs {
        let result = source::read_dir_files(dir)
            .map_err(MoveError::from)
            .and_then(|files| sum::update(dir, &files, names).map_err(MoveError::from));
        if let Err(e) = result {
            undo(&written);
            for (path, old) in sums.iter().zip(&before) {
                match old {
                    Some(bytes) => {
                        let _ = std::fs::write(path, bytes);
                    }
                    None => {
                        let _ = std::fs::remove_file(path);
                    }
                }
            }
            return Err(e);
        }
    }
    Ok(written)
}

/// What the live catalog says about a move, for the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// Things to take care of before the steps they name; none is a refusal.
    pub warnings: Vec<String>,
    /// What uses the table and keeps working (views, foreign keys).
    pub notes: Vec<String>,
}

/// Reads the catalog: the table must exist as a plain table with no
/// partitions or inheritance children, and no table may have its new name
/// yet. What depends on it is listed. SQLite is refused.
pub async fn inspect(driver: &mut dyn Driver, plan: &MovePlan) -> Result<Inspection, MoveError> {
    if driver.dialect() == crate::split::Dialect::Sqlite {
        return Err(MoveError::Sqlite);
    }
    let old = plan.old_name();
    let Some(facts) = driver
        .move_facts(&plan.from_schema, &plan.table, &plan.to_schema)
        .await?
    else {
        return Err(MoveError::Missing {
            table: old,
            database: driver.describe(),
        });
    };
    judge(plan, &facts)
}

/// [`inspect`]'s verdict on the catalog's facts. Pure.
pub fn judge(plan: &MovePlan, facts: &MoveFacts) -> Result<Inspection, MoveError> {
    let old = plan.old_name();
    let new = plan.new_name();
    let refuse = |why: String| MoveError::NotMovable {
        table: old.clone(),
        why,
    };
    match facts.kind.as_str() {
        "r" => {}
        "p" => {
            return Err(refuse(
                "it is partitioned: SET SCHEMA moves the parent only, its partitions would stay behind in the old schema".into(),
            ))
        }
        "v" | "m" => return Err(refuse("it is a view, not a table".into())),
        "f" => return Err(refuse("it is a foreign table".into())),
        other => return Err(refuse(format!("it is not a table (relkind `{other}`)"))),
    }
    if !facts.children.is_empty() {
        return Err(refuse(format!(
            "tables inherit from it ({}), and they would stay behind in the old schema",
            facts.children.join(", ")
        )));
    }
    if facts.is_child {
        return Err(refuse(
            "it inherits from another table or is a partition: move its parent instead".into(),
        ));
    }
    if facts.new_name_taken {
        return Err(refuse(format!(
            "{new} exists already: step 2 would fail; drop or rename it first"
        )));
    }
    let mut out = Inspection::default();
    if facts.row_security {
        out.warnings.push(format!(
            "{old} has row-level security: the view under the old name reads it as the view's owner, so old binaries bypass the policies the owner is exempt from until step 4; set `security_invoker = true` on the view (Postgres 15+) in step 2 if that matters"
        ));
    }
    if facts.column_privileges {
        out.warnings.push(format!(
            "{old} has column privileges: step 2 copies table privileges to the view, not column ones; grant them on the view by hand in step 2"
        ));
    }
    for f in &facts.functions {
        out.warnings.push(format!(
            "function {f} names `{}` in its body: it resolves the name when it runs, so it uses the view after step 2 and fails after step 4; point it at {new} before step 4",
            plan.table
        ));
    }
    for v in &facts.views {
        out.notes.push(format!(
            "view {v} uses {old}: it follows the table to {new} (views bind to the table, not its name)"
        ));
    }
    for fk in &facts.foreign_keys {
        out.notes.push(format!(
            "foreign key of {fk} references {old}: it follows the table to {new}"
        ));
    }
    out.warnings.push(format!(
        "while the view exists, old binaries cannot TRUNCATE or COPY FROM {old}, nor name a constraint in ON CONFLICT ON CONSTRAINT (list its columns instead); a column added to {new} is not in the view until it is recreated"
    ));
    Ok(out)
}

/// `schema.name`, each part quoted when it must be.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// An identifier as SQL must spell it: as is when it is lower case letters,
/// digits and `_` (and no reserved word), else double-quoted.
pub fn ident(name: &str) -> String {
    const RESERVED: &[&str] = &[
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "current_user",
        "default",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "fetch",
        "for",
        "foreign",
        "from",
        "grant",
        "group",
        "having",
        "in",
        "into",
        "leading",
        "limit",
        "not",
        "null",
        "offset",
        "on",
        "only",
        "or",
        "order",
        "primary",
        "references",
        "returning",
        "select",
        "session_user",
        "some",
        "table",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "when",
        "where",
        "window",
        "with",
    ];
    let plain = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && !RESERVED.contains(&name);
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests;
