//! `--schema-from DATABASE_URL`: reads the schema model from a live Postgres.

use crate::ast::{qualify, ColType};
use crate::schema::{Column, Constraint, ConstraintKind, Index, Schema, Table};

const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'";

/// Reads tables, columns, constraints, indexes, enums and views. Says on
/// stderr which database (password hidden); errors never hold the password.
pub(crate) fn read_schema(url: &str) -> Result<Schema, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("--schema-from: cannot start the database client: {e}"))?;
    rt.block_on(read(url))
}

async fn read(url: &str) -> Result<Schema, String> {
    // TLS, the PG* variables, the password file and connect_timeout, as every
    // capstan connection; the message names the server, never the password.
    eprintln!(
        "using database {} (from --schema-from)",
        capstan_migrate::redact(url)
    );
    let client = capstan_migrate::connect_postgres_str(url)
        .await
        .map_err(|e| format!("--schema-from: {e}"))?
        .client;
    let q = |e: tokio_postgres::Error| format!("--schema-from: cannot read the catalog: {e}");
    let mut schema = Schema::default();
    let rels = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'm', 'f', 'v') AND {USER_SCHEMAS}"
            ),
            &[],
        )
        .await
        .map_err(q)?;
    for row in rels {
        let name = qualify(row.get(0), row.get(1));
        let kind: String = row.get(2);
        if kind == "v" {
            schema.views.insert(name, false);
        } else {
            schema.tables.insert(
                name,
                Table {
                    partitioned: kind == "p",
                    ..Table::default()
                },
            );
        }
    }
    let cols = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                 (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') \
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'm', 'f') AND {USER_SCHEMAS} \
                 ORDER BY c.oid, a.attnum"
            ),
            &[],
        )
        .await
        .map_err(q)?;
    for row in cols {
        let table = qualify(row.get(0), row.get(1));
        if let Some(t) = schema.tables.get_mut(&table) {
            t.columns.push(Column {
                name: row.get(2),
                ty: ColType::parse(row.get(3)),
                not_null: row.get(4),
                has_default: row.get(5),
            });
        }
    }
    let cons = client
        .query(
            &format!(
                "SELECT n.nspname::text, c.relname::text, con.conname::text, con.contype::text, con.convalidated, pg_get_constraintdef(con.oid), \
                 COALESCE((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = con.conrelid AND a.attnum = ANY(con.conkey)), '{{}}') \
                 FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE {USER_SCHEMAS}"
            ),
            &[],
        )
        .await
        .map_err(q)?;
    for row in cons {
        let table = qualify(row.get(0), row.get(1));
        let kind = match row.get::<_, String>(3).as_str() {
            "c" => ConstraintKind::Check,
            "f" => ConstraintKind::ForeignKey,
            "u" => ConstraintKind::Unique,
            "p" => ConstraintKind::PrimaryKey,
            "x" => ConstraintKind::Exclusion,
            "n" => ConstraintKind::NotNull,
            _ => continue,
        };
        let def: String = row.get(5);
        let not_null_column = if kind == ConstraintKind::Check {
            not_null_column(&def)
        } else {
            None
        };
        if let Some(t) = schema.tables.get_mut(&table) {
            t.constraints.push(Constraint {
                name: row.get(2),
                kind,
                validated: row.get(4),
                not_null_column,
                columns: row.get(6),
            });
        }
    }
    let idx = client
        .query(
            &format!(
                "SELECT n.nspname::text, i.relname::text, tn.nspname::text, t.relname::text, ix.indisunique \
                 FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid JOIN pg_namespace n ON n.oid = i.relnamespace \
                 JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace WHERE {USER_SCHEMAS}"
            ),
            &[],
        )
        .await
        .map_err(q)?;
    for row in idx {
        schema.indexes.insert(
            qualify(row.get(0), row.get(1)),
            Index {
                table: qualify(row.get(2), row.get(3)),
                unique: row.get(4),
                new: false,
            },
        );
    }
    let enums = client
        .query(
            &format!(
                "SELECT n.nspname::text, t.typname::text, e.enumlabel::text FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid \
                 JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {USER_SCHEMAS} ORDER BY t.oid, e.enumsortorder"
            ),
            &[],
        )
        .await
        .map_err(q)?;
    for row in enums {
        schema
            .enums
            .entry(qualify(row.get(0), row.get(1)))
            .or_default()
            .push(row.get(2));
    }
    // Functions, triggers, composite types and domains: enough to tell a
    // `DROP ... IF EXISTS` of something that is not there.
    let objects = client
        .query(
            &format!(
                "SELECT 'f', n.nspname::text, p.proname::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_SCHEMAS} \
                 UNION ALL SELECT 'g', n.nspname::text, c.relname::text || '.' || t.tgname::text FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND {USER_SCHEMAS} \
                 UNION ALL SELECT 't', n.nspname::text, ty.typname::text FROM pg_type ty JOIN pg_namespace n ON n.oid = ty.typnamespace \
                 LEFT JOIN pg_class c ON c.oid = ty.typrelid WHERE (ty.typtype = 'd' OR (ty.typtype = 'c' AND c.relkind = 'c')) AND {USER_SCHEMAS}"
            ),
            &[],
        )
        .await
        .map_err(q)?;
    for row in objects {
        let name = qualify(row.get(1), row.get(2));
        match row.get::<_, &str>(0) {
            "f" => schema.functions.insert(name, false),
            "g" => schema.triggers.insert(name, false),
            _ => schema.types.insert(name, false),
        };
    }
    drop(client);
    Ok(schema)
}

/// `CHECK ((email IS NOT NULL))` → `email`.
fn not_null_column(def: &str) -> Option<String> {
    let sql = format!("ALTER TABLE t ADD CONSTRAINT c {def}");
    let parsed = pg_query::parse(&sql, 0).ok()?;
    let stmt = parsed
        .protobuf
        .stmts
        .first()?
        .stmt
        .as_ref()?
        .node
        .as_ref()?;
    let pg_query::NodeEnum::AlterTableStmt(a) = stmt else {
        return None;
    };
    let cmd = a.cmds.first()?.node.as_ref()?;
    let pg_query::NodeEnum::AlterTableCmd(cmd) = cmd else {
        return None;
    };
    match cmd.def.as_ref()?.node.as_ref()? {
        pg_query::NodeEnum::Constraint(c) => crate::schema::not_null_check_column(c),
        _ => None,
    }
}
