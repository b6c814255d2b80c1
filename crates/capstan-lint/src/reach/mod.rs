//! What a statement reaches across service boundaries: the objects it
//! creates, alters, drops, renames, truncates or writes data into
//! ([`writes`]), and the objects it makes another depend on — a foreign key,
//! a view's query, a function's body, a trigger ([`references`]).
//!
//! Names come from the parse tree, already folded as Postgres folds them; an
//! unqualified name resolves to the schema the caller passes (the first of
//! the migration's `SET search_path`, else `public`). A shared leaf like
//! `facts`: it imports only the data modules, and the boundary rules and
//! `capstan deps` read it.

use crate::ast::str_of;
use crate::schema::Schema;
use capstan_service::{Owner, Services};
use pg_query::protobuf::{Node, ObjectType, RangeVar};
use pg_query::NodeEnum;
use std::fmt;

mod refs;
#[cfg(feature = "cli")]
pub use refs::body_tables;
pub use refs::{references, search_path_set};

/// The kind of a database object, as far as ownership goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjKind {
    /// A table (or a partition, a foreign table).
    Table,
    /// A view.
    View,
    /// A materialized view.
    MatView,
    /// A sequence.
    Sequence,
    /// An index: owned by its table's owner.
    Index,
    /// A function, procedure or aggregate.
    Function,
    /// A type or a domain.
    Type,
    /// A trigger: owned by its table's owner.
    Trigger,
    /// A schema (`owner_of_schema`).
    Schema,
    /// A relation of a kind the statement does not tell (a name in a
    /// function body).
    Relation,
}

impl ObjKind {
    /// The word for it in messages.
    pub fn word(self) -> &'static str {
        match self {
            ObjKind::Table => "table",
            ObjKind::View => "view",
            ObjKind::MatView => "materialized view",
            ObjKind::Sequence => "sequence",
            ObjKind::Index => "index",
            ObjKind::Function => "function",
            ObjKind::Type => "type",
            ObjKind::Trigger => "trigger",
            ObjKind::Schema => "schema",
            ObjKind::Relation => "relation",
        }
    }
}

/// A database object a statement names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Obj {
    /// Its kind.
    pub kind: ObjKind,
    /// Its schema (for a schema: its own name).
    pub schema: String,
    /// Its name (for a schema: its own name).
    pub name: String,
    /// For an index or a trigger: its table (schema, name), when known.
    pub on: Option<(String, String)>,
}

impl Obj {
    fn new(kind: ObjKind, schema: &str, name: &str) -> Obj {
        Obj {
            kind,
            schema: schema.to_string(),
            name: name.to_string(),
            on: None,
        }
    }

    /// Who owns it: a schema by `owner_of_schema`, an index or a trigger by
    /// its table, anything else by its schema and name.
    pub fn owner<'s>(&self, services: &'s Services) -> Owner<'s> {
        match (&self.kind, &self.on) {
            (ObjKind::Schema, _) => services.owner_of_schema(&self.name),
            (_, Some((schema, table))) => services.owner_of(Some(schema), table),
            _ => services.owner_of(Some(&self.schema), &self.name),
        }
    }

    /// Whether the owner cannot be told: an index or a trigger whose table
    /// is unknown, in a schema no service owns as a whole.
    pub fn owner_unknown(&self, services: &Services) -> bool {
        matches!(self.kind, ObjKind::Index | ObjKind::Trigger)
            && self.on.is_none()
            && services.owner_of(Some(&self.schema), &self.name) == Owner::Nobody
    }

    /// `schema.name` (a schema: its name; a trigger: its name).
    pub fn qualified(&self) -> String {
        match self.kind {
            ObjKind::Schema | ObjKind::Trigger => self.name.clone(),
            _ => format!("{}.{}", self.schema, self.name),
        }
    }
}

impl fmt::Display for Obj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.kind.word(), self.qualified())?;
        match (&self.kind, &self.on) {
            (ObjKind::Trigger, Some((s, t))) => write!(f, " on `{s}.{t}`"),
            _ => Ok(()),
        }
    }
}

/// A statement changing an object (or its data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The object.
    pub obj: Obj,
    /// What the statement does to it: `creates`, `alters`, `drops`,
    /// `renames`, `moves`, `moves into`, `truncates`, `writes into`.
    pub verb: &'static str,
    /// The parse-tree location of its name (`-1`: the statement's start).
    pub location: i32,
}

/// How one object comes to depend on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefKind {
    /// A foreign key into the other table.
    ForeignKey,
    /// A view or materialized view reading it.
    View,
    /// A function whose body names it.
    Function,
    /// A trigger on it (runs the function).
    Trigger,
}

impl RefKind {
    /// The stable name (`foreign-key`, `view`, `function`, `trigger`), as
    /// `capstan deps` prints it.
    #[cfg(feature = "cli")]
    pub fn name(self) -> &'static str {
        match self {
            RefKind::ForeignKey => "foreign-key",
            RefKind::View => "view",
            RefKind::Function => "function",
            RefKind::Trigger => "trigger",
        }
    }

    /// What the depending object does, for messages.
    pub fn phrase(self) -> &'static str {
        match self {
            RefKind::ForeignKey => "has a foreign key into",
            RefKind::View => "reads",
            RefKind::Function => "names in its body",
            RefKind::Trigger => "is run by a trigger on",
        }
    }
}

/// One object depending on another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The depending object (a constrained table, a view, a function).
    pub from: Obj,
    /// The object depended on.
    pub to: Obj,
    /// How.
    pub kind: RefKind,
    /// The parse-tree location of the reference (`-1`: unknown).
    pub location: i32,
}

fn rv_obj(kind: ObjKind, rv: &RangeVar, search: &str) -> Obj {
    let schema = if rv.schemaname.is_empty() {
        search
    } else {
        &rv.schemaname
    };
    Obj::new(kind, schema, &rv.relname)
}

/// `[schema.]name` from a list of name parts (the catalog part dropped).
fn parts_obj(kind: ObjKind, parts: &[&str], search: &str) -> Option<Obj> {
    match parts {
        [name] => Some(Obj::new(kind, search, name)),
        [.., schema, name] => Some(Obj::new(kind, schema, name)),
        [] => None,
    }
}

/// The name parts of a dropped, renamed or moved object's node.
fn node_parts(node: &Node) -> Vec<&str> {
    match node.node.as_ref() {
        Some(NodeEnum::List(l)) => l.items.iter().filter_map(str_of).collect(),
        Some(NodeEnum::String(s)) => vec![s.sval.as_str()],
        Some(NodeEnum::TypeName(t)) => t.names.iter().filter_map(str_of).collect(),
        Some(NodeEnum::ObjectWithArgs(o)) => o.objname.iter().filter_map(str_of).collect(),
        _ => Vec::new(),
    }
}

fn names(nodes: &[Node]) -> Vec<&str> {
    nodes.iter().filter_map(str_of).collect()
}

/// The kind of an `ObjectType` this module follows.
fn kind_of(t: i32) -> Option<ObjKind> {
    Some(match ObjectType::try_from(t).ok()? {
        ObjectType::ObjectTable | ObjectType::ObjectForeignTable => ObjKind::Table,
        ObjectType::ObjectView => ObjKind::View,
        ObjectType::ObjectMatview => ObjKind::MatView,
        ObjectType::ObjectSequence => ObjKind::Sequence,
        ObjectType::ObjectIndex => ObjKind::Index,
        ObjectType::ObjectFunction
        | ObjectType::ObjectProcedure
        | ObjectType::ObjectRoutine
        | ObjectType::ObjectAggregate => ObjKind::Function,
        ObjectType::ObjectType | ObjectType::ObjectDomain => ObjKind::Type,
        ObjectType::ObjectTrigger => ObjKind::Trigger,
        ObjectType::ObjectSchema => ObjKind::Schema,
        ObjectType::ObjectColumn
        | ObjectType::ObjectTabconstraint
        | ObjectType::ObjectRule
        | ObjectType::ObjectPolicy => ObjKind::Relation,
        _ => return None,
    })
}

/// An index found in the model gets its table.
fn with_index_table(mut obj: Obj, schema: &Schema) -> Obj {
    if obj.kind == ObjKind::Index {
        let key = crate::ast::qualify(&obj.schema, &obj.name);
        if let Some(index) = schema.indexes.get(&key) {
            obj.on = Some(split_model_name(&index.table));
        }
    }
    obj
}

/// A model name (`schema.name`, `public.` left out) as (schema, name).
fn split_model_name(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, n)) => (s.to_string(), n.to_string()),
        None => (
            capstan_service::DEFAULT_SCHEMA.to_string(),
            name.to_string(),
        ),
    }
}

/// The objects `node` changes, with what it does to each. `search` is the
/// schema unqualified names resolve to; `schema` (the model) gives an
/// index's table. Temporary tables, comments, grants and ownership changes
/// are not followed.
pub fn writes(node: &NodeEnum, search: &str, schema: &Schema) -> Vec<Write> {
    let mut out = Vec::new();
    let mut push = |obj: Obj, verb: &'static str, location: i32| {
        out.push(Write {
            obj: with_index_table(obj, schema),
            verb,
            location,
        })
    };
    let rv = |kind, r: &RangeVar| rv_obj(kind, r, search);
    match node {
        NodeEnum::CreateStmt(c) => {
            if let Some(r) = c.relation.as_ref().filter(|r| r.relpersistence != "t") {
                push(rv(ObjKind::Table, r), "creates", r.location);
            }
        }
        NodeEnum::CreateTableAsStmt(c) => {
            let kind = if c.objtype == ObjectType::ObjectMatview as i32 {
                ObjKind::MatView
            } else {
                ObjKind::Table
            };
            if let Some(r) = c
                .into
                .as_ref()
                .and_then(|i| i.rel.as_ref())
                .filter(|r| r.relpersistence != "t")
            {
                push(rv(kind, r), "creates", r.location);
            }
        }
        NodeEnum::ViewStmt(v) => {
            if let Some(r) = v.view.as_ref().filter(|r| r.relpersistence != "t") {
                push(rv(ObjKind::View, r), "creates", r.location);
            }
        }
        NodeEnum::CreateSeqStmt(s) => {
            if let Some(r) = s.sequence.as_ref().filter(|r| r.relpersistence != "t") {
                push(rv(ObjKind::Sequence, r), "creates", r.location);
            }
        }
        NodeEnum::AlterSeqStmt(s) => {
            if let Some(r) = &s.sequence {
                push(rv(ObjKind::Sequence, r), "alters", r.location);
            }
        }
        NodeEnum::IndexStmt(i) => {
            if let Some(r) = &i.relation {
                let table = rv(ObjKind::Table, r);
                let mut obj = Obj::new(ObjKind::Index, &table.schema, &i.idxname);
                obj.on = Some((table.schema, table.name));
                push(obj, "creates", r.location);
            }
        }
        NodeEnum::CreateFunctionStmt(f) => {
            if let Some(obj) = parts_obj(ObjKind::Function, &names(&f.funcname), search) {
                push(obj, "creates", -1);
            }
        }
        NodeEnum::AlterFunctionStmt(f) => {
            if let Some(obj) = f
                .func
                .as_ref()
                .and_then(|o| parts_obj(ObjKind::Function, &names(&o.objname), search))
            {
                push(obj, "alters", -1);
            }
        }
        NodeEnum::DefineStmt(d) => {
            let kind = match ObjectType::try_from(d.kind) {
                Ok(ObjectType::ObjectType) => Some(ObjKind::Type),
                Ok(ObjectType::ObjectAggregate) => Some(ObjKind::Function),
                _ => None,
            };
            if let Some(obj) = kind.and_then(|k| parts_obj(k, &names(&d.defnames), search)) {
                push(obj, "creates", -1);
            }
        }
        NodeEnum::CompositeTypeStmt(c) => {
            if let Some(r) = &c.typevar {
                push(rv(ObjKind::Type, r), "creates", r.location);
            }
        }
        NodeEnum::CreateEnumStmt(e) => {
            if let Some(obj) = parts_obj(ObjKind::Type, &names(&e.type_name), search) {
                push(obj, "creates", -1);
            }
        }
        NodeEnum::CreateRangeStmt(e) => {
            if let Some(obj) = parts_obj(ObjKind::Type, &names(&e.type_name), search) {
                push(obj, "creates", -1);
            }
        }
        NodeEnum::CreateDomainStmt(d) => {
            if let Some(obj) = parts_obj(ObjKind::Type, &names(&d.domainname), search) {
                push(obj, "creates", -1);
            }
        }
        NodeEnum::AlterEnumStmt(e) => {
            if let Some(obj) = parts_obj(ObjKind::Type, &names(&e.type_name), search) {
                push(obj, "alters", -1);
            }
        }
        NodeEnum::AlterDomainStmt(d) => {
            if let Some(obj) = parts_obj(ObjKind::Type, &names(&d.type_name), search) {
                push(obj, "alters", -1);
            }
        }
        NodeEnum::CreateTrigStmt(t) => {
            if let Some(r) = &t.relation {
                let table = rv(ObjKind::Table, r);
                let mut obj = Obj::new(ObjKind::Trigger, &table.schema, &t.trigname);
                obj.on = Some((table.schema, table.name));
                push(obj, "creates", r.location);
            }
        }
        NodeEnum::CreateSchemaStmt(s) => {
            push(
                Obj::new(ObjKind::Schema, &s.schemaname, &s.schemaname),
                "creates",
                -1,
            );
        }
        NodeEnum::AlterTableStmt(a) => {
            let kind = kind_of(a.objtype).unwrap_or(ObjKind::Table);
            if let Some(r) = &a.relation {
                push(rv(kind, r), "alters", r.location);
            }
        }
        NodeEnum::DropStmt(d) => {
            let Some(kind) = kind_of(d.remove_type) else {
                return out;
            };
            for o in &d.objects {
                let parts = node_parts(o);
                let obj = match (kind, parts.as_slice()) {
                    (ObjKind::Schema, [name]) => Obj::new(ObjKind::Schema, name, name),
                    (ObjKind::Trigger, [.., table, trigger]) => {
                        let t = parts_obj(ObjKind::Table, &parts[..parts.len() - 1], search);
                        let Some(t) = t else { continue };
                        let mut obj = Obj::new(ObjKind::Trigger, &t.schema, trigger);
                        obj.on = Some((t.schema, (*table).to_string()));
                        obj
                    }
                    (ObjKind::Relation, _) => continue,
                    _ => match parts_obj(kind, &parts, search) {
                        Some(obj) => obj,
                        None => continue,
                    },
                };
                push(obj, "drops", -1);
            }
        }
        NodeEnum::RenameStmt(r) => {
            let kind = kind_of(r.rename_type);
            match (&r.relation, kind) {
                (Some(rel), Some(ObjKind::Trigger)) => {
                    let table = rv(ObjKind::Table, rel);
                    let mut obj = Obj::new(ObjKind::Trigger, &table.schema, &r.subname);
                    obj.on = Some((table.schema, table.name));
                    push(obj, "renames", rel.location);
                }
                (Some(rel), Some(ObjKind::Relation) | None) => {
                    let kind = kind_of(r.relation_type).unwrap_or(ObjKind::Table);
                    push(rv(kind, rel), "alters", rel.location);
                }
                (Some(rel), Some(kind)) => push(rv(kind, rel), "renames", rel.location),
                (None, Some(ObjKind::Schema)) => push(
                    Obj::new(ObjKind::Schema, &r.subname, &r.subname),
                    "renames",
                    -1,
                ),
                (None, Some(kind)) => {
                    if let Some(obj) = r
                        .object
                        .as_deref()
                        .and_then(|o| parts_obj(kind, &node_parts(o), search))
                    {
                        push(obj, "renames", -1);
                    }
                }
                (None, None) => {}
            }
        }
        NodeEnum::AlterObjectSchemaStmt(a) => {
            let Some(kind) = kind_of(a.object_type) else {
                return out;
            };
            let obj = match (&a.relation, &a.object) {
                (Some(rel), _) => Some(rv(kind, rel)),
                (None, Some(o)) => parts_obj(kind, &node_parts(o), search),
                _ => None,
            };
            if let Some(obj) = obj {
                let moved = Obj::new(kind, &a.newschema, &obj.name);
                push(obj, "moves", -1);
                push(moved, "moves into", -1);
            }
        }
        NodeEnum::TruncateStmt(t) => {
            for n in &t.relations {
                if let Some(NodeEnum::RangeVar(r)) = n.node.as_ref() {
                    push(rv(ObjKind::Table, r), "truncates", r.location);
                }
            }
        }
        NodeEnum::InsertStmt(i) => {
            if let Some(r) = &i.relation {
                push(rv(ObjKind::Table, r), "writes into", r.location);
            }
        }
        NodeEnum::UpdateStmt(u) => {
            if let Some(r) = &u.relation {
                push(rv(ObjKind::Table, r), "writes into", r.location);
            }
        }
        NodeEnum::DeleteStmt(d) => {
            if let Some(r) = &d.relation {
                push(rv(ObjKind::Table, r), "writes into", r.location);
            }
        }
        NodeEnum::MergeStmt(m) => {
            if let Some(r) = &m.relation {
                push(rv(ObjKind::Table, r), "writes into", r.location);
            }
        }
        NodeEnum::CopyStmt(c) if c.is_from => {
            if let Some(r) = &c.relation {
                push(rv(ObjKind::Table, r), "writes into", r.location);
            }
        }
        NodeEnum::RefreshMatViewStmt(r) => {
            if let Some(rel) = &r.relation {
                push(rv(ObjKind::MatView, rel), "refreshes", rel.location);
            }
        }
        _ => {}
    }
    out
}
