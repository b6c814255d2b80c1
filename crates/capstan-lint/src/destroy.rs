//! Statements that destroy data, found with the real parser and the schema
//! model: what `capstan migrate` archives before running them (feature
//! `migrate`; the findings are the engine's `archive::Destruction`).
//!
//! A statement destroys data when it drops a column or a table, truncates a
//! table, deletes or updates every row (no `WHERE`), or changes a column's type
//! to one that may not hold every old value. Objects created earlier in the
//! same section (a table, or a column added there) are exempt: nothing that
//! existed before the migration is lost. Statements inside function bodies or
//! `DO` blocks are not seen.
//!
//! ```
//! use capstan_lint::{Config, Input, Linter, Tracker};
//! use capstan_migrate::DestructionKind as Kind;
//!
//! let mut linter = Linter::new(Config::default());
//! linter.replay(Input { file: "0001.sql", source: "CREATE TABLE users (id bigint PRIMARY KEY, name text);" });
//! let mut t = Tracker::new(linter.schema().clone());
//! let found = t.statement("ALTER TABLE users DROP COLUMN name");
//! assert_eq!(found[0].kind, Kind::DropColumn);
//! assert_eq!(found[0].columns, vec!["name"]);
//! assert!(t.statement("DELETE FROM users WHERE id = 1").is_empty());
//! ```

use std::collections::BTreeSet;

use pg_query::protobuf::{AlterTableType, DropBehavior, ObjectType, RangeVar};
use pg_query::NodeEnum;

use crate::ast::{object_name, rv_name, str_of, ColType};
use crate::schema::Schema;

pub use capstan_migrate::{Destruction, DestructionKind as Kind};

/// Walks a section statement by statement, keeping the schema model current
/// (which also marks the tables the section creates as new).
#[derive(Debug, Clone)]
pub struct Tracker {
    schema: Schema,
    added: BTreeSet<(String, String)>,
}

impl Tracker {
    /// Starts from the schema as it is before the section (settled: no
    /// table in it counts as new).
    pub fn new(mut schema: Schema) -> Tracker {
        schema.settle();
        Tracker {
            schema,
            added: BTreeSet::new(),
        }
    }

    /// The destroying effects of `sql` (one statement, or several; each
    /// destruction's `statement` is left 0 for the caller to set), then
    /// applies it to the model. SQL the parser rejects destroys nothing it
    /// can see.
    pub fn statement(&mut self, sql: &str) -> Vec<Destruction> {
        let Ok(parsed) = pg_query::parse(sql, 0) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for raw in &parsed.protobuf.stmts {
            let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
                continue;
            };
            out.extend(self.destructions(node));
            self.remember(node);
            self.schema.apply(node);
        }
        out
    }

    /// Created by this section (the model marks it new until it settles).
    fn is_created(&self, table: &str) -> bool {
        self.schema.table(table).is_some_and(|t| t.new)
    }

    /// Columns the section adds (the model keeps no such mark for columns).
    fn remember(&mut self, node: &NodeEnum) {
        let NodeEnum::AlterTableStmt(a) = node else {
            return;
        };
        let table = a.relation.as_ref().map(rv_name).unwrap_or_default();
        for cmd in &a.cmds {
            let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() else {
                continue;
            };
            if AlterTableType::try_from(cmd.subtype) == Ok(AlterTableType::AtAddColumn) {
                if let Some(NodeEnum::ColumnDef(d)) = cmd.def.as_ref().and_then(|d| d.node.as_ref())
                {
                    self.added.insert((table.clone(), d.colname.clone()));
                }
            }
        }
    }

    fn on(&self, rv: &RangeVar, kind: Kind, columns: Vec<String>) -> Option<Destruction> {
        let name = rv_name(rv);
        if self.is_created(&name) {
            return None;
        }
        let columns: Vec<String> = columns
            .into_iter()
            .filter(|c| !self.added.contains(&(name.clone(), c.clone())))
            .collect();
        if kind.destroys_columns() && columns.is_empty() {
            return None;
        }
        Some(Destruction {
            statement: 0,
            kind,
            schema: (!rv.schemaname.is_empty()).then(|| rv.schemaname.clone()),
            table: rv.relname.clone(),
            columns,
            cascade: false,
        })
    }

    fn destructions(&self, node: &NodeEnum) -> Vec<Destruction> {
        let mut out = Vec::new();
        match node {
            NodeEnum::AlterTableStmt(a) => {
                let Some(rv) = a.relation.as_ref() else {
                    return out;
                };
                if ObjectType::try_from(a.objtype) != Ok(ObjectType::ObjectTable) {
                    return out;
                }
                let table = rv_name(rv);
                for cmd in &a.cmds {
                    let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() else {
                        continue;
                    };
                    match AlterTableType::try_from(cmd.subtype) {
                        Ok(AlterTableType::AtDropColumn) => {
                            out.extend(self.on(rv, Kind::DropColumn, vec![cmd.name.clone()]));
                        }
                        Ok(AlterTableType::AtAlterColumnType) => {
                            let def = match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                                Some(NodeEnum::ColumnDef(d)) => Some(d.as_ref()),
                                _ => None,
                            };
                            // `USING expr` can compute anything from the old value.
                            let using = def.is_some_and(|d| d.raw_default.is_some());
                            let new = def.and_then(|d| d.type_name.as_ref()).map(ColType::of);
                            let old = self
                                .schema
                                .table(&table)
                                .and_then(|t| t.column(&cmd.name))
                                .map(|c| c.ty.clone());
                            let keeps_values = !using
                                && matches!((&old, &new), (Some(o), Some(n)) if lossless(o, n));
                            if !keeps_values {
                                out.extend(self.on(rv, Kind::AlterType, vec![cmd.name.clone()]));
                            }
                        }
                        _ => {}
                    }
                }
            }
            NodeEnum::DropStmt(d)
                if ObjectType::try_from(d.remove_type) == Ok(ObjectType::ObjectTable) =>
            {
                for obj in &d.objects {
                    // The name's parts as the parser gives them: a quoted
                    // name may itself contain a dot (`"odd.name"`), and an
                    // explicit `public.` must stay (it may not be first on
                    // the search path).
                    let parts: Vec<&str> = match obj.node.as_ref() {
                        Some(NodeEnum::List(l)) => l.items.iter().filter_map(str_of).collect(),
                        _ => Vec::new(),
                    };
                    let (schema, table) = match parts.as_slice() {
                        [.., s, t] => (s.to_string(), t.to_string()),
                        [t] => (String::new(), t.to_string()),
                        [] => (String::new(), object_name(obj)),
                    };
                    let rv = RangeVar {
                        schemaname: schema,
                        relname: table,
                        ..RangeVar::default()
                    };
                    out.extend(self.on(&rv, Kind::DropTable, Vec::new()));
                }
            }
            NodeEnum::TruncateStmt(t) => {
                let cascade = DropBehavior::try_from(t.behavior) == Ok(DropBehavior::DropCascade);
                for r in &t.relations {
                    if let Some(NodeEnum::RangeVar(rv)) = r.node.as_ref() {
                        out.extend(self.on(rv, Kind::Truncate, Vec::new()).map(|mut d| {
                            d.cascade = cascade;
                            d
                        }));
                    }
                }
            }
            NodeEnum::DeleteStmt(d) if d.where_clause.is_none() => {
                if let Some(rv) = d.relation.as_ref() {
                    out.extend(self.on(rv, Kind::Delete, Vec::new()));
                }
            }
            NodeEnum::UpdateStmt(u) if u.where_clause.is_none() => {
                if let Some(rv) = u.relation.as_ref() {
                    let mut cols: Vec<String> = Vec::new();
                    for t in &u.target_list {
                        if let Some(NodeEnum::ResTarget(r)) = t.node.as_ref() {
                            if !r.name.is_empty() && !cols.contains(&r.name) {
                                cols.push(r.name.clone());
                            }
                        }
                    }
                    out.extend(self.on(rv, Kind::Update, cols));
                }
            }
            _ => {}
        }
        out
    }
}

/// Whether a type change without `USING` keeps every old value or fails:
/// the binary-compatible changes, widening (a larger integer, a float of more
/// precision, an unconstrained numeric, text), and the casts Postgres refuses
/// rather than truncates (a shorter `varchar`/`char` limit, a smaller integer).
/// Rounding casts (to an integer from numeric or float, a smaller numeric
/// scale, a date from a timestamp, a lower time precision) lose values.
pub fn lossless(old: &ColType, new: &ColType) -> bool {
    if crate::facts::compatible(old, new) {
        return true;
    }
    if old.array != new.array {
        return false;
    }
    let ints = ["int2", "int4", "int8"];
    let texts = ["text", "varchar", "bpchar"];
    let unbounded_numeric = new.name == "numeric" && new.mods.is_empty();
    match (old.name.as_str(), new.name.as_str()) {
        (a, b) if ints.contains(&a) && ints.contains(&b) => true,
        (a, b) if texts.contains(&a) && texts.contains(&b) => true,
        ("float4", "float8") => true,
        ("int2" | "int4" | "int8" | "numeric", "numeric") => unbounded_numeric,
        (_, "text") => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Input, Linter};

    fn tracker() -> Tracker {
        let mut l = Linter::new(Config::default());
        l.replay(Input {
            file: "0001.sql",
            source: "CREATE TABLE users (id bigint PRIMARY KEY, name text, age numeric(10,2), code varchar(10));\nCREATE TABLE logs (line text);",
        });
        Tracker::new(l.schema().clone())
    }

    fn kinds(sql: &str) -> Vec<(Kind, String, Vec<String>)> {
        tracker()
            .statement(sql)
            .into_iter()
            .map(|d| (d.kind, d.table, d.columns))
            .collect()
    }

    #[test]
    fn finds_every_destroying_statement() {
        assert_eq!(
            kinds("ALTER TABLE users DROP COLUMN name"),
            vec![(Kind::DropColumn, "users".into(), vec!["name".into()])]
        );
        assert_eq!(kinds("DROP TABLE users, logs").len(), 2);
        assert_eq!(kinds("TRUNCATE logs")[0].0, Kind::Truncate);
        assert!(!tracker().statement("TRUNCATE logs")[0].cascade);
        assert!(tracker().statement("TRUNCATE logs CASCADE")[0].cascade);
        assert_eq!(kinds("DELETE FROM logs")[0].0, Kind::Delete);
        assert_eq!(
            kinds("UPDATE users SET name = upper(name), age = 0"),
            vec![(
                Kind::Update,
                "users".into(),
                vec!["name".into(), "age".into()]
            )]
        );
        assert_eq!(
            kinds("ALTER TABLE users ALTER COLUMN age TYPE integer")[0].0,
            Kind::AlterType
        );
    }

    #[test]
    fn bounded_changes_and_lossless_types_destroy_nothing() {
        assert!(kinds("DELETE FROM logs WHERE line = ''").is_empty());
        assert!(kinds("UPDATE users SET name = 'x' WHERE id = 1").is_empty());
        assert!(kinds("ALTER TABLE users ALTER COLUMN code TYPE varchar(20)").is_empty());
        assert!(kinds("ALTER TABLE users ALTER COLUMN code TYPE text").is_empty());
        assert!(kinds("ALTER TABLE users ALTER COLUMN id TYPE numeric").is_empty());
        assert!(kinds("ALTER TABLE users ALTER COLUMN name TYPE varchar(5)").is_empty());
        assert!(kinds("ALTER TABLE users ALTER COLUMN id TYPE integer").is_empty());
        assert!(kinds("ALTER TABLE users ADD COLUMN email text").is_empty());
        assert!(kinds("SELECT 1").is_empty());
    }

    #[test]
    fn objects_created_in_the_same_section_are_exempt() {
        let mut t = tracker();
        assert!(t
            .statement("CREATE TABLE tmp (id int); INSERT INTO tmp VALUES (1)")
            .is_empty());
        assert!(t.statement("DROP TABLE tmp").is_empty());
        assert!(t
            .statement("ALTER TABLE users ADD COLUMN nick text")
            .is_empty());
        assert!(t.statement("UPDATE users SET nick = name").is_empty());
        let found = t.statement("UPDATE users SET nick = name, name = NULL");
        assert_eq!(found[0].columns, vec!["name"]);
    }

    #[test]
    fn a_schema_qualified_table_keeps_its_schema() {
        let found = tracker().statement("DROP TABLE audit.events");
        assert_eq!(found[0].schema.as_deref(), Some("audit"));
        assert_eq!(found[0].table, "events");
    }

    #[test]
    fn a_dropped_table_keeps_its_name_as_written() {
        let found = tracker().statement(r#"DROP TABLE "odd.name", public.logs"#);
        assert_eq!(
            (found[0].schema.as_deref(), found[0].table.as_str()),
            (None, "odd.name")
        );
        assert_eq!(
            (found[1].schema.as_deref(), found[1].table.as_str()),
            (Some("public"), "logs")
        );
    }

    #[test]
    fn an_unknown_old_type_is_archived() {
        assert_eq!(
            kinds("ALTER TABLE ghosts ALTER COLUMN x TYPE int")[0].0,
            Kind::AlterType
        );
    }
}
