//! The schema model: what the linter knows about the database before a statement runs.
//!
//! It is built by replaying earlier migrations ([`Schema::apply`]), or read from a live
//! database (`--schema-from`), and lets rules avoid crying wolf: a table created in the
//! same migration is exempt from locking rules, a `varchar` widening is not a rewrite,
//! a `SET NOT NULL` backed by a validated `CHECK (c IS NOT NULL)` is cheap.

use crate::ast::{list_name, object_name, opt_rv_name, str_of, ColType};
use pg_query::protobuf::{AlterTableType, ConstrType, NullTestType, ObjectType};
use pg_query::NodeEnum;
use std::collections::BTreeMap;

/// Kind of a table constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    /// `CHECK (...)`
    Check,
    /// `FOREIGN KEY`
    ForeignKey,
    /// `UNIQUE`
    Unique,
    /// `PRIMARY KEY`
    PrimaryKey,
    /// `EXCLUDE`
    Exclusion,
    /// Postgres 18 named `NOT NULL` constraints.
    NotNull,
}

/// A table constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Constraint name (generated names are approximated as Postgres does).
    pub name: String,
    /// Its kind.
    pub kind: ConstraintKind,
    /// Whether existing rows are known to satisfy it (false after `NOT VALID`).
    pub validated: bool,
    /// For `CHECK (col IS NOT NULL)`: the column.
    pub not_null_column: Option<String>,
    /// Columns it covers, when known.
    pub columns: Vec<String>,
}

/// A table column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Its type.
    pub ty: ColType,
    /// `NOT NULL`.
    pub not_null: bool,
    /// Whether it has a default.
    pub has_default: bool,
}

/// A table (or partition, or materialized view).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Columns, in order.
    pub columns: Vec<Column>,
    /// Constraints.
    pub constraints: Vec<Constraint>,
    /// Created by the migration being linted (or, with `--schema-from`, by a migration
    /// not yet applied): nobody reads or writes it yet, so locking rules don't apply.
    pub new: bool,
    /// Whether it is partitioned.
    pub partitioned: bool,
    /// Columns added by the migration being linted (every row holds NULL or
    /// the default there until a backfill).
    pub new_columns: Vec<String>,
}

impl Table {
    /// Finds a column.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
    fn column_mut(&mut self, name: &str) -> Option<&mut Column> {
        self.columns.iter_mut().find(|c| c.name == name)
    }
    /// Finds a constraint.
    pub fn constraint(&self, name: &str) -> Option<&Constraint> {
        self.constraints.iter().find(|c| c.name == name)
    }
}

/// An index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The table it is on.
    pub table: String,
    /// Whether it is unique.
    pub unique: bool,
    /// Created by the migration being linted.
    pub new: bool,
}

/// What the linter knows about the database. Names are `schema.name`, with `public.`
/// left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schema {
    /// Tables, partitions and materialized views.
    pub tables: BTreeMap<String, Table>,
    /// Indexes.
    pub indexes: BTreeMap<String, Index>,
    /// Enum types and their labels.
    pub enums: BTreeMap<String, Vec<String>>,
    /// Views (name → created by the migration being linted).
    pub views: BTreeMap<String, bool>,
    /// Functions, procedures and aggregates by name, without argument types
    /// (name → created by the migration being linted).
    pub functions: BTreeMap<String, bool>,
    /// Triggers, as `table.trigger` (→ created by the migration being linted).
    pub triggers: BTreeMap<String, bool>,
    /// Composite types and domains (→ created by the migration being linted);
    /// enums are in [`Schema::enums`].
    pub types: BTreeMap<String, bool>,
}

fn constraint_kind(contype: i32) -> Option<ConstraintKind> {
    Some(match ConstrType::try_from(contype).ok()? {
        ConstrType::ConstrCheck => ConstraintKind::Check,
        ConstrType::ConstrForeign => ConstraintKind::ForeignKey,
        ConstrType::ConstrUnique => ConstraintKind::Unique,
        ConstrType::ConstrPrimary => ConstraintKind::PrimaryKey,
        ConstrType::ConstrExclusion => ConstraintKind::Exclusion,
        _ => return None,
    })
}

/// For `CHECK (col IS NOT NULL)`, the column.
pub(crate) fn not_null_check_column(c: &pg_query::protobuf::Constraint) -> Option<String> {
    let expr = c.raw_expr.as_ref()?;
    match expr.node.as_ref()? {
        NodeEnum::NullTest(t) if t.nulltesttype == NullTestType::IsNotNull as i32 => {
            match t.arg.as_ref()?.node.as_ref()? {
                NodeEnum::ColumnRef(cr) => cr.fields.last().and_then(str_of).map(str::to_string),
                _ => None,
            }
        }
        _ => None,
    }
}

fn key_names(keys: &[pg_query::protobuf::Node]) -> Vec<String> {
    keys.iter().filter_map(str_of).map(str::to_string).collect()
}

fn default_constraint_name(table: &str, kind: ConstraintKind, cols: &[String]) -> String {
    let bare = table.rsplit('.').next().unwrap_or(table);
    let suffix = match kind {
        ConstraintKind::Check => "check",
        ConstraintKind::ForeignKey => "fkey",
        ConstraintKind::Unique => "key",
        ConstraintKind::PrimaryKey => return format!("{bare}_pkey"),
        ConstraintKind::Exclusion => "excl",
        ConstraintKind::NotNull => "not_null",
    };
    if cols.is_empty() {
        format!("{bare}_{suffix}")
    } else {
        format!("{bare}_{}_{suffix}", cols.join("_"))
    }
}

impl Schema {
    /// The table a name refers to.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    /// Forgets which objects are new (at a migration boundary).
    pub fn settle(&mut self) {
        for t in self.tables.values_mut() {
            t.new = false;
        }
        for i in self.indexes.values_mut() {
            i.new = false;
        }
        for v in self
            .views
            .values_mut()
            .chain(self.functions.values_mut())
            .chain(self.triggers.values_mut())
            .chain(self.types.values_mut())
        {
            *v = false;
        }
        for t in self.tables.values_mut() {
            t.new_columns.clear();
        }
    }

    /// Whether the model holds an object of this kind and name (`public.` left
    /// out; a trigger as `table.trigger`). `None` for kinds the model does not
    /// track (sequences, extensions, …).
    pub fn has_object(&self, kind: ObjectType, name: &str) -> Option<bool> {
        let name = name.strip_prefix("public.").unwrap_or(name);
        Some(match kind {
            ObjectType::ObjectView => self.views.contains_key(name),
            ObjectType::ObjectTable | ObjectType::ObjectMatview => self.tables.contains_key(name),
            ObjectType::ObjectFunction
            | ObjectType::ObjectProcedure
            | ObjectType::ObjectRoutine
            | ObjectType::ObjectAggregate => self.functions.contains_key(name),
            ObjectType::ObjectTrigger => self.triggers.contains_key(name),
            ObjectType::ObjectType | ObjectType::ObjectDomain => {
                self.types.contains_key(name) || self.enums.contains_key(name)
            }
            _ => return None,
        })
    }

    fn add_constraint(
        &mut self,
        table: &str,
        c: &pg_query::protobuf::Constraint,
        column: Option<&str>,
    ) {
        let Some(kind) = constraint_kind(c.contype) else {
            return;
        };
        let mut columns = key_names(&c.keys);
        if kind == ConstraintKind::ForeignKey {
            columns = key_names(&c.fk_attrs);
        }
        if columns.is_empty() {
            if let Some(col) = column {
                columns.push(col.to_string());
            }
        }
        let name = if c.conname.is_empty() {
            default_constraint_name(table, kind, &columns)
        } else {
            c.conname.clone()
        };
        let unique_index = matches!(kind, ConstraintKind::Unique | ConstraintKind::PrimaryKey)
            .then(|| {
                if c.indexname.is_empty() {
                    name.clone()
                } else {
                    c.indexname.clone()
                }
            });
        let not_null_column = not_null_check_column(c);
        let Some(t) = self.tables.get_mut(table) else {
            return;
        };
        if kind == ConstraintKind::PrimaryKey {
            for col in &columns {
                if let Some(cc) = t.column_mut(col) {
                    cc.not_null = true;
                }
            }
        }
        let new = t.new;
        t.constraints.retain(|x| x.name != name);
        t.constraints.push(Constraint {
            name,
            kind,
            validated: !c.skip_validation,
            not_null_column,
            columns,
        });
        if let Some(idx) = unique_index {
            if !c.indexname.is_empty() {
                // USING INDEX: the index is renamed to the constraint.
                self.indexes.remove(&c.indexname);
            }
            self.indexes.insert(
                idx,
                Index {
                    table: table.to_string(),
                    unique: true,
                    new,
                },
            );
        }
    }

    fn add_column(&mut self, table: &str, def: &pg_query::protobuf::ColumnDef) {
        let mut col = Column {
            name: def.colname.clone(),
            ty: def.type_name.as_ref().map(ColType::of).unwrap_or_default(),
            not_null: def.is_not_null,
            has_default: def.raw_default.is_some(),
        };
        if col.ty.name.ends_with("serial") {
            col.has_default = true;
            col.not_null = true;
            col.ty.name = match col.ty.name.as_str() {
                "bigserial" => "int8",
                "smallserial" => "int2",
                _ => "int4",
            }
            .to_string();
        }
        let mut inline = Vec::new();
        for c in &def.constraints {
            if let Some(NodeEnum::Constraint(c)) = c.node.as_ref() {
                match ConstrType::try_from(c.contype) {
                    Ok(ConstrType::ConstrNotnull) | Ok(ConstrType::ConstrPrimary) => {
                        col.not_null = true
                    }
                    Ok(ConstrType::ConstrDefault)
                    | Ok(ConstrType::ConstrIdentity)
                    | Ok(ConstrType::ConstrGenerated) => col.has_default = true,
                    _ => {}
                }
                inline.push(c.as_ref().clone());
            }
        }
        if let Some(t) = self.tables.get_mut(table) {
            t.columns.retain(|c| c.name != col.name);
            if !t.new_columns.contains(&col.name) {
                t.new_columns.push(col.name.clone());
            }
            t.columns.push(col);
        }
        for c in &inline {
            self.add_constraint(table, c, Some(&def.colname));
        }
    }

    fn drop_table(&mut self, name: &str) {
        self.tables.remove(name);
        self.indexes.retain(|_, i| i.table != name);
        let prefix = format!("{name}.");
        self.triggers.retain(|k, _| !k.starts_with(&prefix));
    }

    /// Updates the model with the effect of one statement. Statements the model does
    /// not track are ignored.
    pub fn apply(&mut self, stmt: &NodeEnum) {
        match stmt {
            NodeEnum::CreateStmt(c) => {
                let name = opt_rv_name(c.relation.as_ref());
                if c.if_not_exists && self.tables.contains_key(&name) {
                    return;
                }
                // A table that already exists (read from a live database) can only be
                // "created" again by a migration that was already applied: it is not new.
                let existed = self.tables.get(&name).is_some_and(|t| !t.new);
                self.tables.insert(
                    name.clone(),
                    Table {
                        new: !existed,
                        partitioned: c.partspec.is_some(),
                        ..Table::default()
                    },
                );
                for elt in &c.table_elts {
                    match elt.node.as_ref() {
                        Some(NodeEnum::ColumnDef(d)) => self.add_column(&name, d),
                        Some(NodeEnum::Constraint(k)) => self.add_constraint(&name, k, None),
                        _ => {}
                    }
                }
                for k in &c.constraints {
                    if let Some(NodeEnum::Constraint(k)) = k.node.as_ref() {
                        self.add_constraint(&name, k, None);
                    }
                }
            }
            NodeEnum::CreateTableAsStmt(c) => {
                if let Some(into) = c.into.as_ref() {
                    let name = opt_rv_name(into.rel.as_ref());
                    let columns = into
                        .col_names
                        .iter()
                        .filter_map(str_of)
                        .map(|n| Column {
                            name: n.to_string(),
                            ty: ColType::default(),
                            not_null: false,
                            has_default: false,
                        })
                        .collect();
                    self.tables.insert(
                        name,
                        Table {
                            columns,
                            new: true,
                            ..Table::default()
                        },
                    );
                }
            }
            NodeEnum::ViewStmt(v) => {
                self.views
                    .entry(opt_rv_name(v.view.as_ref()))
                    .or_insert(true);
            }
            NodeEnum::CreateFunctionStmt(f) => {
                self.functions.entry(list_name(&f.funcname)).or_insert(true);
            }
            NodeEnum::DefineStmt(d) if d.kind == ObjectType::ObjectAggregate as i32 => {
                self.functions.entry(list_name(&d.defnames)).or_insert(true);
            }
            NodeEnum::CreateTrigStmt(t) => {
                let table = opt_rv_name(t.relation.as_ref());
                self.triggers
                    .entry(format!("{table}.{}", t.trigname))
                    .or_insert(true);
            }
            NodeEnum::CompositeTypeStmt(c) => {
                self.types
                    .entry(opt_rv_name(c.typevar.as_ref()))
                    .or_insert(true);
            }
            NodeEnum::CreateDomainStmt(d) => {
                self.types.entry(list_name(&d.domainname)).or_insert(true);
            }
            NodeEnum::IndexStmt(i) => {
                let table = opt_rv_name(i.relation.as_ref());
                let name = if i.idxname.is_empty() {
                    format!("{table}_idx")
                } else {
                    crate::ast::qualify(
                        &i.relation
                            .as_ref()
                            .map(|r| r.schemaname.clone())
                            .unwrap_or_default(),
                        &i.idxname,
                    )
                };
                self.indexes.insert(
                    name,
                    Index {
                        table,
                        unique: i.unique,
                        new: true,
                    },
                );
            }
            NodeEnum::CreateEnumStmt(e) => {
                let vals = e
                    .vals
                    .iter()
                    .filter_map(str_of)
                    .map(str::to_string)
                    .collect();
                self.enums.insert(list_name(&e.type_name), vals);
            }
            NodeEnum::AlterEnumStmt(e) => {
                let name = list_name(&e.type_name);
                if let Some(vals) = self.enums.get_mut(&name) {
                    if !e.old_val.is_empty() {
                        for v in vals.iter_mut() {
                            if *v == e.old_val {
                                v.clone_from(&e.new_val);
                            }
                        }
                    } else if !vals.contains(&e.new_val) {
                        vals.push(e.new_val.clone());
                    }
                }
            }
            NodeEnum::DropStmt(d) => {
                let kind = ObjectType::try_from(d.remove_type).unwrap_or(ObjectType::Undefined);
                for obj in &d.objects {
                    let name = object_name(obj);
                    match kind {
                        ObjectType::ObjectTable
                        | ObjectType::ObjectMatview
                        | ObjectType::ObjectForeignTable => self.drop_table(&name),
                        ObjectType::ObjectIndex => {
                            self.indexes.remove(&name);
                        }
                        ObjectType::ObjectView => {
                            self.views.remove(&name);
                        }
                        ObjectType::ObjectType | ObjectType::ObjectDomain => {
                            self.enums.remove(&name);
                            self.types.remove(&name);
                        }
                        ObjectType::ObjectFunction
                        | ObjectType::ObjectProcedure
                        | ObjectType::ObjectRoutine
                        | ObjectType::ObjectAggregate => {
                            self.functions.remove(&name);
                        }
                        ObjectType::ObjectTrigger => {
                            self.triggers
                                .remove(name.strip_prefix("public.").unwrap_or(&name));
                        }
                        ObjectType::ObjectSchema => {
                            let prefix = format!("{name}.");
                            self.tables.retain(|k, _| !k.starts_with(&prefix));
                            self.indexes.retain(|k, _| !k.starts_with(&prefix));
                            self.views.retain(|k, _| !k.starts_with(&prefix));
                            self.enums.retain(|k, _| !k.starts_with(&prefix));
                            self.functions.retain(|k, _| !k.starts_with(&prefix));
                            self.triggers.retain(|k, _| !k.starts_with(&prefix));
                            self.types.retain(|k, _| !k.starts_with(&prefix));
                        }
                        _ => {}
                    }
                }
            }
            NodeEnum::RenameStmt(r) => {
                let kind = ObjectType::try_from(r.rename_type).unwrap_or(ObjectType::Undefined);
                let rel = opt_rv_name(r.relation.as_ref());
                let schema = r
                    .relation
                    .as_ref()
                    .map(|x| x.schemaname.clone())
                    .unwrap_or_default();
                match kind {
                    ObjectType::ObjectTable
                    | ObjectType::ObjectMatview
                    | ObjectType::ObjectForeignTable => {
                        if let Some(t) = self.tables.remove(&rel) {
                            let new_name = crate::ast::qualify(&schema, &r.newname);
                            for i in self.indexes.values_mut() {
                                if i.table == rel {
                                    i.table.clone_from(&new_name);
                                }
                            }
                            self.tables.insert(new_name, t);
                        }
                    }
                    ObjectType::ObjectView => {
                        if let Some(v) = self.views.remove(&rel) {
                            self.views
                                .insert(crate::ast::qualify(&schema, &r.newname), v);
                        }
                    }
                    ObjectType::ObjectIndex => {
                        if let Some(i) = self.indexes.remove(&rel) {
                            self.indexes
                                .insert(crate::ast::qualify(&schema, &r.newname), i);
                        }
                    }
                    ObjectType::ObjectColumn => {
                        if let Some(c) = self
                            .tables
                            .get_mut(&rel)
                            .and_then(|t| t.column_mut(&r.subname))
                        {
                            c.name.clone_from(&r.newname);
                        }
                    }
                    ObjectType::ObjectTabconstraint => {
                        if let Some(t) = self.tables.get_mut(&rel) {
                            for c in &mut t.constraints {
                                if c.name == r.subname {
                                    c.name.clone_from(&r.newname);
                                }
                            }
                        }
                    }
                    ObjectType::ObjectType => {
                        if let Some(obj) = r.object.as_ref() {
                            let old = object_name(obj);
                            if let Some(v) = self.enums.remove(&old) {
                                let schema = old.rsplit_once('.').map(|(s, _)| s).unwrap_or("");
                                self.enums
                                    .insert(crate::ast::qualify(schema, &r.newname), v);
                            }
                        }
                    }
                    _ => {}
                }
            }
            NodeEnum::AlterObjectSchemaStmt(a) => {
                if matches!(
                    ObjectType::try_from(a.object_type),
                    Ok(ObjectType::ObjectTable) | Ok(ObjectType::ObjectMatview)
                ) {
                    let rel = opt_rv_name(a.relation.as_ref());
                    if let Some(t) = self.tables.remove(&rel) {
                        let bare = a
                            .relation
                            .as_ref()
                            .map(|r| r.relname.clone())
                            .unwrap_or_default();
                        self.tables
                            .insert(crate::ast::qualify(&a.newschema, &bare), t);
                    }
                }
            }
            NodeEnum::AlterTableStmt(a) => {
                let table = opt_rv_name(a.relation.as_ref());
                for cmd in &a.cmds {
                    let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() else {
                        continue;
                    };
                    self.apply_alter(&table, cmd);
                }
            }
            _ => {}
        }
    }

    fn apply_alter(&mut self, table: &str, cmd: &pg_query::protobuf::AlterTableCmd) {
        let def = cmd.def.as_ref().and_then(|d| d.node.as_ref());
        match AlterTableType::try_from(cmd.subtype).unwrap_or(AlterTableType::Undefined) {
            AlterTableType::AtAddColumn => {
                if let Some(NodeEnum::ColumnDef(d)) = def {
                    self.add_column(table, d);
                }
            }
            AlterTableType::AtDropColumn => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.columns.retain(|c| c.name != cmd.name);
                    t.constraints.retain(|c| !c.columns.contains(&cmd.name));
                }
            }
            AlterTableType::AtAlterColumnType => {
                if let Some(NodeEnum::ColumnDef(d)) = def {
                    if let Some(c) = self
                        .tables
                        .get_mut(table)
                        .and_then(|t| t.column_mut(&cmd.name))
                    {
                        if let Some(tn) = d.type_name.as_ref() {
                            c.ty = ColType::of(tn);
                        }
                    }
                }
            }
            AlterTableType::AtSetNotNull => {
                if let Some(c) = self
                    .tables
                    .get_mut(table)
                    .and_then(|t| t.column_mut(&cmd.name))
                {
                    c.not_null = true;
                }
            }
            AlterTableType::AtDropNotNull => {
                if let Some(c) = self
                    .tables
                    .get_mut(table)
                    .and_then(|t| t.column_mut(&cmd.name))
                {
                    c.not_null = false;
                }
            }
            AlterTableType::AtColumnDefault => {
                if let Some(c) = self
                    .tables
                    .get_mut(table)
                    .and_then(|t| t.column_mut(&cmd.name))
                {
                    c.has_default = def.is_some();
                }
            }
            AlterTableType::AtAddConstraint => {
                if let Some(NodeEnum::Constraint(c)) = def {
                    self.add_constraint(table, c, None);
                }
            }
            AlterTableType::AtValidateConstraint => {
                if let Some(t) = self.tables.get_mut(table) {
                    for c in &mut t.constraints {
                        if c.name == cmd.name {
                            c.validated = true;
                        }
                    }
                }
            }
            AlterTableType::AtDropConstraint => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.constraints.retain(|c| c.name != cmd.name);
                }
                self.indexes.remove(&cmd.name);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(sql: &str) -> Schema {
        let mut s = Schema::default();
        for st in pg_query::parse(sql, 0).unwrap().protobuf.stmts {
            s.apply(st.stmt.unwrap().node.as_ref().unwrap());
        }
        s
    }

    #[test]
    fn tracks_tables_columns_and_constraints() {
        let s = replay(
            "CREATE TABLE users (id bigint PRIMARY KEY, email varchar(20) NOT NULL, name text);
             ALTER TABLE users ADD CONSTRAINT name_nn CHECK (name IS NOT NULL) NOT VALID;
             ALTER TABLE users VALIDATE CONSTRAINT name_nn;
             ALTER TABLE users ALTER COLUMN email TYPE varchar(50);
             ALTER TABLE users RENAME COLUMN name TO full_name;
             CREATE TYPE mood AS ENUM ('ok');
             ALTER TYPE mood ADD VALUE 'sad';",
        );
        let t = s.table("users").unwrap();
        assert!(t.column("id").unwrap().not_null);
        assert_eq!(t.column("email").unwrap().ty.display(), "varchar(50)");
        assert!(t.column("full_name").is_some());
        let c = t.constraint("name_nn").unwrap();
        assert!(c.validated);
        assert_eq!(c.not_null_column.as_deref(), Some("name"));
        assert!(s.indexes.contains_key("users_pkey"));
        assert_eq!(s.enums["mood"], vec!["ok", "sad"]);
    }

    #[test]
    fn drops_and_schema_qualified_names() {
        let s = replay(
            "CREATE TABLE app.t (id int); CREATE TABLE public.u (id int); DROP TABLE u; CREATE INDEX i ON app.t (id);",
        );
        assert!(s.table("app.t").is_some());
        assert!(s.table("u").is_none());
        assert_eq!(s.indexes["app.i"].table, "app.t");
    }
}
