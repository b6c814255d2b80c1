//! `capstan deps`: the graph of references between services sharing a
//! database — from the live catalog (`--database`) and from each declared
//! service's migrations read through the linter's parser — and the objects
//! no service owns.

use super::layouts::{migration_files, read_text};
use super::{read_error, CliError, EXIT_FINDINGS, EXIT_OK};
use crate::config::ConfigError;
use crate::reach::{references, search_path_set, writes, Obj};
use crate::schema::Schema;
use capstan_service::{Owner, Services};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Output formats of `capstan deps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DepsFormat {
    /// Edges grouped by service pair, then the unowned objects.
    #[default]
    Text,
    /// One JSON document (docs/json.md).
    Json,
    /// A Graphviz digraph of services, edges labelled with their references.
    Dot,
}

/// Map the references between services that share a database.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DepsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: DepsFormat,
    /// Read the live catalog of this database too (without it: the migration
    /// sets of the declared services only).
    #[arg(long, value_name = "DATABASE_URL")]
    pub database: Option<String>,
    /// Configuration file declaring the services (default: `capstan.toml`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Only the references from or to this service.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Exit 1 when a reference crosses services without `depends_on` declaring it.
    #[arg(long)]
    pub fail_on_cross: bool,
}

/// One end of a reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct End {
    kind: &'static str,
    object: String,
    service: Option<String>,
}

/// One object depending on another of a different owner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct Edge {
    from: End,
    to: End,
    kind: &'static str,
    source: &'static str,
    declared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct Unowned {
    kind: &'static str,
    object: String,
}

#[derive(Debug, Serialize)]
struct Report {
    services: Vec<String>,
    edges: Vec<Edge>,
    unowned: Vec<Unowned>,
}

/// Runs `capstan deps`; returns the exit code.
pub fn run(args: &DepsArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match run_inner(args, out) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            e.exit_code()
        }
    }
}

fn run_inner(args: &DepsArgs, out: &mut dyn Write) -> Result<i32, CliError> {
    let path = args
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("capstan.toml"));
    let text = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
    let services = Services::parse(&text, &path).map_err(ConfigError::from)?;
    if services.is_empty() {
        return Err(CliError::Deps(format!(
            "{}: declares no service: add `[[service]]` tables (name, dir, owns) first",
            path.display()
        )));
    }
    if let Some(name) = &args.service {
        services.get(name).map_err(ConfigError::from)?;
    }
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut edges = Vec::new();
    let mut unowned = Vec::new();
    for service in services.iter() {
        if let Some(dir) = &service.dir {
            edges.extend(from_migrations(&services, &service.name, &base.join(dir))?);
        }
    }
    if let Some(url) = &args.database {
        let (live, orphans) = live::read(url, &services).map_err(CliError::Deps)?;
        edges.extend(live);
        unowned = orphans;
    }
    if let Some(name) = &args.service {
        edges.retain(|e| {
            e.from.service.as_deref() == Some(name) || e.to.service.as_deref() == Some(name)
        });
    }
    edges.sort();
    edges.dedup();
    unowned.sort();
    unowned.dedup();
    let report = Report {
        services: services.names(),
        edges,
        unowned,
    };
    let io = CliError::Output;
    match args.format {
        DepsFormat::Json => {
            let json = serde_json::to_string_pretty(&report).expect("the report serializes");
            writeln!(out, "{json}").map_err(io)?;
        }
        DepsFormat::Text => write!(out, "{}", text_of(&report)).map_err(io)?,
        DepsFormat::Dot => write!(out, "{}", dot_of(&report)).map_err(io)?,
    }
    let undeclared = report.edges.iter().any(|e| !e.declared);
    Ok(if args.fail_on_cross && undeclared {
        EXIT_FINDINGS
    } else {
        EXIT_OK
    })
}

fn end(obj: &Obj, owner: Owner<'_>) -> End {
    End {
        kind: obj.kind.word(),
        object: obj.qualified(),
        service: owner.name().map(str::to_string),
    }
}

/// An edge when `from` and `to` have different owners and `to` has one.
fn edge(
    services: &Services,
    from: &Obj,
    from_owner: Owner<'_>,
    to: &Obj,
    kind: &'static str,
    source: &'static str,
) -> Option<Edge> {
    let Owner::Service(to_service) = to.owner(services) else {
        return None;
    };
    if from_owner.name() == Some(to_service.name.as_str()) {
        return None;
    }
    let declared = match from_owner {
        Owner::Service(s) => s.depends_on.iter().any(|d| d.service == to_service.name),
        Owner::Nobody => false,
    };
    Some(Edge {
        from: end(from, from_owner),
        to: end(to, Owner::Service(to_service)),
        kind,
        source,
        declared,
    })
}

/// The references a service's migrations make to other services' objects,
/// and the changes they make to them (`changes`), up sections only.
fn from_migrations(services: &Services, name: &str, dir: &Path) -> Result<Vec<Edge>, CliError> {
    if !dir.is_dir() {
        return Err(CliError::Deps(format!(
            "service `{name}`: no migration directory `{}`",
            dir.display()
        )));
    }
    let acting = services.get(name).map_err(ConfigError::from)?;
    let mut out = Vec::new();
    let mut schema = Schema::default();
    for (_, file) in migration_files(dir)? {
        let text = read_text(&file)?;
        let src = crate::source::split(&text);
        let up = &text[src.up.start..src.up.end];
        let Ok(parsed) = pg_query::parse(up, 0) else {
            continue;
        };
        let mut search = capstan_service::DEFAULT_SCHEMA.to_string();
        for raw in &parsed.protobuf.stmts {
            let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
                continue;
            };
            if let Some(s) = search_path_set(node) {
                search = s;
            }
            for r in references(node, &search) {
                let owner = match r.from.owner(services) {
                    Owner::Nobody => Owner::Service(acting),
                    o => o,
                };
                out.extend(edge(
                    services,
                    &r.from,
                    owner,
                    &r.to,
                    r.kind.name(),
                    "migrations",
                ));
            }
            for w in writes(node, &search, &schema) {
                if let Owner::Service(s) = w.obj.owner(services) {
                    if s.name != name {
                        out.push(Edge {
                            from: End {
                                kind: "service",
                                object: name.to_string(),
                                service: Some(name.to_string()),
                            },
                            to: end(&w.obj, Owner::Service(s)),
                            kind: "changes",
                            source: "migrations",
                            declared: acting.depends_on.iter().any(|d| d.service == s.name),
                        });
                    }
                }
            }
            schema.apply(node);
        }
    }
    Ok(out)
}

fn text_of(report: &Report) -> String {
    let mut s = String::new();
    let mut pairs: BTreeMap<(String, String), Vec<&Edge>> = BTreeMap::new();
    for e in &report.edges {
        let who = |x: &End| x.service.clone().unwrap_or_else(|| "(no service)".into());
        pairs.entry((who(&e.from), who(&e.to))).or_default().push(e);
    }
    if pairs.is_empty() {
        s.push_str("no cross-service reference\n");
    }
    for ((from, to), list) in &pairs {
        s.push_str(&format!("{from} -> {to}\n"));
        for e in list {
            s.push_str(&format!(
                "  {:<12} {} {} -> {} {}  ({}{})\n",
                e.kind,
                e.from.kind,
                e.from.object,
                e.to.kind,
                e.to.object,
                e.source,
                if e.declared { ", declared" } else { "" }
            ));
        }
    }
    if !report.unowned.is_empty() {
        s.push_str("owned by no service:\n");
        for u in &report.unowned {
            s.push_str(&format!("  {} {}\n", u.kind, u.object));
        }
    }
    s
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot_of(report: &Report) -> String {
    let mut s = String::from("digraph services {\n  rankdir=LR;\n  node [shape=box];\n");
    for name in &report.services {
        s.push_str(&format!("  {};\n", dot_quote(name)));
    }
    let mut pairs: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in &report.edges {
        let who = |x: &End| x.service.clone().unwrap_or_else(|| "(no service)".into());
        pairs
            .entry((who(&e.from), who(&e.to)))
            .or_default()
            .push(format!("{} {} -> {}", e.kind, e.from.object, e.to.object));
    }
    for ((from, to), labels) in pairs {
        let mut labels = labels;
        labels.dedup();
        s.push_str(&format!(
            "  {} -> {} [label={}];\n",
            dot_quote(&from),
            dot_quote(&to),
            dot_quote(&labels.join("\n"))
        ));
    }
    s.push_str("}\n");
    s
}

mod live {
    //! The live catalog's references and unowned objects.
    use super::{edge, Edge, Unowned};
    use crate::reach::{body_tables, Obj, ObjKind};
    use capstan_service::{Owner, Services};

    const USER: &str = "NOT LIKE 'pg\\_%' AND {n}.nspname NOT IN ('information_schema', 'capstan', 'capstan_archive')";

    fn user(n: &str) -> String {
        format!("{n}.nspname {}", USER.replace("{n}", n))
    }

    fn obj(kind: ObjKind, schema: String, name: String) -> Obj {
        Obj {
            kind,
            schema,
            name,
            on: None,
        }
    }

    fn rel_kind(k: &str) -> ObjKind {
        match k {
            "v" => ObjKind::View,
            "m" => ObjKind::MatView,
            "S" => ObjKind::Sequence,
            _ => ObjKind::Table,
        }
    }

    pub(super) fn read(
        url: &str,
        services: &Services,
    ) -> Result<(Vec<Edge>, Vec<Unowned>), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("--database: cannot start the database client: {e}"))?;
        // Connecting is bounded by `connect_timeout`; a server that then
        // never answers a catalog query is bounded here.
        rt.block_on(async {
            tokio::time::timeout(CATALOG_TIMEOUT, read_async(url, services))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "--database: the catalog was not read within {} s (the server does not answer)",
                        CATALOG_TIMEOUT.as_secs()
                    ))
                })
        })
    }

    /// How long reading the live catalog may take, once connected.
    const CATALOG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

    async fn read_async(
        url: &str,
        services: &Services,
    ) -> Result<(Vec<Edge>, Vec<Unowned>), String> {
        eprintln!(
            "using database {} (from --database)",
            capstan_migrate::redact(url)
        );
        let client = capstan_migrate::connect_postgres_str(url)
            .await
            .map_err(|e| format!("--database: {e}"))?
            .client;
        let q = |e: tokio_postgres::Error| format!("--database: cannot read the catalog: {e}");
        let mut edges = Vec::new();
        let fks = client
            .query(
                &format!(
                    "SELECT fn.nspname::text, fc.relname::text, tn.nspname::text, tc.relname::text \
                     FROM pg_constraint c JOIN pg_class fc ON fc.oid = c.conrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
                     JOIN pg_class tc ON tc.oid = c.confrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace \
                     WHERE c.contype = 'f' AND {}",
                    user("fn")
                ),
                &[],
            )
            .await
            .map_err(q)?;
        for r in fks {
            let from = obj(ObjKind::Table, r.get(0), r.get(1));
            let to = obj(ObjKind::Table, r.get(2), r.get(3));
            edges.extend(edge(
                services,
                &from,
                from.owner(services),
                &to,
                "foreign-key",
                "catalog",
            ));
        }
        let views = client
            .query(
                &format!(
                    "SELECT DISTINCT vn.nspname::text, v.relname::text, v.relkind::text, tn.nspname::text, t.relname::text, t.relkind::text \
                     FROM pg_rewrite r JOIN pg_class v ON v.oid = r.ev_class JOIN pg_namespace vn ON vn.oid = v.relnamespace \
                     JOIN pg_depend d ON d.objid = r.oid AND d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
                     JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
                     WHERE v.relkind IN ('v', 'm') AND t.oid <> v.oid AND {}",
                    user("vn")
                ),
                &[],
            )
            .await
            .map_err(q)?;
        for r in views {
            let from = obj(rel_kind(r.get(2)), r.get(0), r.get(1));
            let to = obj(rel_kind(r.get(5)), r.get(3), r.get(4));
            edges.extend(edge(
                services,
                &from,
                from.owner(services),
                &to,
                "view",
                "catalog",
            ));
        }
        let funcs = client
            .query(
                &format!(
                    "SELECT n.nspname::text, p.proname::text, l.lanname::text, p.prosrc \
                     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang \
                     WHERE l.lanname NOT IN ('c', 'internal') AND {} \
                     AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = p.oid AND e.deptype = 'e')",
                    user("n")
                ),
                &[],
            )
            .await
            .map_err(q)?;
        let mut unowned = Vec::new();
        for r in funcs {
            let schema: String = r.get(0);
            let from = obj(ObjKind::Function, schema.clone(), r.get(1));
            let owner = from.owner(services);
            if owner == Owner::Nobody {
                unowned.push(Unowned {
                    kind: "function",
                    object: from.qualified(),
                });
            }
            let body: String = r.get(3);
            for to in body_tables(r.get(2), &body, &schema) {
                edges.extend(edge(services, &from, owner, &to, "function", "catalog"));
            }
        }
        let triggers = client
            .query(
                &format!(
                    "SELECT tn.nspname::text, t.relname::text, pn.nspname::text, p.proname::text \
                     FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
                     JOIN pg_proc p ON p.oid = g.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace \
                     WHERE NOT g.tgisinternal AND {}",
                    user("tn")
                ),
                &[],
            )
            .await
            .map_err(q)?;
        for r in triggers {
            let from = obj(ObjKind::Function, r.get(2), r.get(3));
            let to = obj(ObjKind::Table, r.get(0), r.get(1));
            edges.extend(edge(
                services,
                &from,
                from.owner(services),
                &to,
                "trigger",
                "catalog",
            ));
        }
        let rels = client
            .query(
                &format!(
                    "SELECT n.nspname::text, c.relname::text, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {} \
                     AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.objid = c.oid AND e.deptype = 'e')",
                    user("n")
                ),
                &[],
            )
            .await
            .map_err(q)?;
        for r in rels {
            let o = obj(rel_kind(r.get(2)), r.get(0), r.get(1));
            if o.owner(services) == Owner::Nobody {
                unowned.push(Unowned {
                    kind: o.kind.word(),
                    object: o.qualified(),
                });
            }
        }
        Ok((edges, unowned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            services: vec!["users".into(), "chirps".into()],
            edges: vec![Edge {
                from: End {
                    kind: "table",
                    object: "chirps.chirps".into(),
                    service: Some("chirps".into()),
                },
                to: End {
                    kind: "table",
                    object: "users.users".into(),
                    service: Some("users".into()),
                },
                kind: "foreign-key",
                source: "catalog",
                declared: false,
            }],
            unowned: vec![Unowned {
                kind: "table",
                object: "public.orphans".into(),
            }],
        }
    }

    #[test]
    fn text_groups_by_pair_and_lists_the_unowned() {
        assert_eq!(
            text_of(&report()),
            "chirps -> users\n  foreign-key  table chirps.chirps -> table users.users  (catalog)\nowned by no service:\n  table public.orphans\n"
        );
    }

    #[test]
    fn dot_is_a_digraph_of_services() {
        let dot = dot_of(&report());
        assert!(dot.starts_with("digraph services {"), "{dot}");
        assert!(
            dot.contains(
                "  \"chirps\" -> \"users\" [label=\"foreign-key chirps.chirps -> users.users\"];"
            ),
            "{dot}"
        );
    }
}
