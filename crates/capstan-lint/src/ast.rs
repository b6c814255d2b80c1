//! Small helpers over `pg_query`'s protobuf tree.

use pg_query::protobuf::{a_const, Node, RangeVar, TypeName};
use pg_query::NodeEnum;

/// `schema.name`, with `public` (the default search path) left out.
pub(crate) fn qualify(schema: &str, name: &str) -> String {
    if schema.is_empty() || schema == "public" {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    }
}

pub(crate) fn rv_name(rv: &RangeVar) -> String {
    qualify(&rv.schemaname, &rv.relname)
}

pub(crate) fn opt_rv_name(rv: Option<&RangeVar>) -> String {
    rv.map(rv_name).unwrap_or_default()
}

pub(crate) fn str_of(node: &Node) -> Option<&str> {
    match node.node.as_ref()? {
        NodeEnum::String(s) => Some(&s.sval),
        _ => None,
    }
}

/// A dotted name from a list of `String` nodes (`schema.object`), `public.` left out.
pub(crate) fn list_name(nodes: &[Node]) -> String {
    let parts: Vec<&str> = nodes.iter().filter_map(str_of).collect();
    match parts.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        [schema, name] => qualify(schema, name),
        more => more.join("."),
    }
}

/// The name of a dropped/renamed object given as a node (a `List` of names, a
/// `String`, a `TypeName` or an `ObjectWithArgs`).
pub(crate) fn object_name(node: &Node) -> String {
    match node.node.as_ref() {
        Some(NodeEnum::List(l)) => list_name(&l.items),
        Some(NodeEnum::String(s)) => s.sval.clone(),
        Some(NodeEnum::TypeName(t)) => list_name(&t.names),
        Some(NodeEnum::ObjectWithArgs(o)) => list_name(&o.objname),
        _ => String::new(),
    }
}

pub(crate) fn int_of(node: &Node) -> Option<i64> {
    match node.node.as_ref()? {
        NodeEnum::AConst(c) => match c.val.as_ref()? {
            a_const::Val::Ival(i) => Some(i.ival as i64),
            _ => None,
        },
        NodeEnum::Integer(i) => Some(i.ival as i64),
        _ => None,
    }
}

/// A column type as the linter sees it: base name (last part, lowercase as the parser
/// gives it), integer modifiers and whether it is an array.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ColType {
    /// Base type name, e.g. `varchar`, `int4`, `timestamptz`, `my_enum`.
    pub name: String,
    /// Type modifiers, e.g. `[20]` for `varchar(20)`, `[10, 2]` for `numeric(10,2)`.
    pub mods: Vec<i64>,
    /// Whether it is an array type.
    pub array: bool,
}

impl ColType {
    /// Reads a `TypeName` node.
    pub(crate) fn of(tn: &TypeName) -> ColType {
        let name = tn
            .names
            .iter()
            .filter_map(str_of)
            .next_back()
            .unwrap_or("")
            .to_string();
        ColType {
            name: canonical_type(&name).to_string(),
            mods: tn.typmods.iter().filter_map(int_of).collect(),
            array: !tn.array_bounds.is_empty(),
        }
    }

    /// Parses a type as `format_type()` prints it (used by `--schema-from`).
    pub fn parse(text: &str) -> ColType {
        let text = text.trim();
        let (text, array) = match text.strip_suffix("[]") {
            Some(t) => (t, true),
            None => (text, false),
        };
        let (base, mods) = match text.find('(') {
            Some(i) => {
                let close = text.rfind(')').unwrap_or(text.len());
                let mods = text[i + 1..close]
                    .split(',')
                    .filter_map(|m| m.trim().parse().ok())
                    .collect();
                let rest = text[close.min(text.len())..].trim_start_matches(')').trim();
                let base = if rest.is_empty() {
                    text[..i].trim().to_string()
                } else {
                    format!("{} {}", text[..i].trim(), rest)
                };
                (base, mods)
            }
            None => (text.to_string(), Vec::new()),
        };
        let base = base
            .rsplit('.')
            .next()
            .unwrap_or(&base)
            .trim_matches('"')
            .to_string();
        ColType {
            name: canonical_type(&base).to_string(),
            mods,
            array,
        }
    }

    /// Human form, e.g. `varchar(20)`.
    pub fn display(&self) -> String {
        let mut s = self.name.clone();
        if !self.mods.is_empty() {
            let mods: Vec<String> = self.mods.iter().map(|m| m.to_string()).collect();
            s.push_str(&format!("({})", mods.join(",")));
        }
        if self.array {
            s.push_str("[]");
        }
        s
    }
}

/// Maps SQL spellings to the internal names the parser uses.
pub(crate) fn canonical_type(name: &str) -> &str {
    match name {
        "character varying" => "varchar",
        "character" | "char" => "bpchar",
        "integer" | "int" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" => "float8",
        "boolean" => "bool",
        "decimal" => "numeric",
        "timestamp with time zone" => "timestamptz",
        "timestamp without time zone" => "timestamp",
        "time with time zone" => "timetz",
        "time without time zone" => "time",
        "bit varying" => "varbit",
        "serial4" => "serial",
        "serial8" => "bigserial",
        "serial2" => "smallserial",
        other => other,
    }
}

/// Whether an expression tree contains a node satisfying `pred` (shallow enough for
/// defaults and CHECK expressions).
pub(crate) fn any_node(node: &Node, pred: &mut dyn FnMut(pg_query::NodeRef<'_>) -> bool) -> bool {
    let Some(n) = node.node.as_ref() else {
        return false;
    };
    n.nodes().into_iter().any(|(r, _, _, _)| pred(r))
}
