//! What a statement makes depend on another object ([`references`]): a
//! foreign key, a view's query, a function's body, a trigger; and the
//! readers they share with `capstan deps` (function bodies, qualified names
//! in plpgsql text, `SET search_path`).

use super::{names, parts_obj, rv_obj, Obj, ObjKind, RefKind, Reference};
use crate::ast::str_of;
use pg_query::protobuf::{ConstrType, Node, ObjectType, RangeVar};
use pg_query::{NodeEnum, NodeRef};

/// Every relation a parsed SQL text names (a SQL function's body).
fn sql_tables(sql: &str, search: &str) -> Vec<Obj> {
    let Ok(parsed) = pg_query::parse(sql, 0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for raw in &parsed.protobuf.stmts {
        if let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
            out.extend(tables_in(node, search));
        }
    }
    out
}

/// Every relation named anywhere under `node` (a statement, or a list of
/// them: a `BEGIN ATOMIC` body) but CTE names.
fn tables_in(node: &NodeEnum, search: &str) -> Vec<Obj> {
    if let NodeEnum::List(l) = node {
        let mut out: Vec<Obj> = l
            .items
            .iter()
            .filter_map(|n| n.node.as_ref())
            .flat_map(|n| tables_in(n, search))
            .collect();
        out.sort();
        out.dedup();
        return out;
    }
    let all: Vec<NodeRef<'_>> = node.nodes().into_iter().map(|(n, ..)| n).collect();
    let ctes: Vec<&str> = all
        .iter()
        .filter_map(|n| match n {
            NodeRef::CommonTableExpr(c) => Some(c.ctename.as_str()),
            _ => None,
        })
        .collect();
    let mut out: Vec<Obj> = all
        .iter()
        .filter_map(|n| match n {
            NodeRef::RangeVar(r)
                if !(r.schemaname.is_empty() && ctes.contains(&r.relname.as_str())) =>
            {
                Some(rv_obj(ObjKind::Relation, r, search))
            }
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The qualified names (`schema.name`, folded as Postgres folds them, quoted
/// parts kept) a text mentions outside its string literals and comments: how
/// a PL/pgSQL (or any non-SQL) function body is read, here and in `capstan
/// deps` over `pg_proc.prosrc`. An unqualified name is not found this way.
pub fn qualified_names(text: &str) -> Vec<(String, String)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // An identifier at `i`: (folded, end).
    let ident = |i: usize| -> Option<(String, usize)> {
        if i >= b.len() {
            return None;
        }
        if b[i] == b'"' {
            let mut s = String::new();
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == b'"' {
                    if b.get(j + 1) == Some(&b'"') {
                        s.push('"');
                        j += 2;
                        continue;
                    }
                    return Some((s, j + 1));
                }
                let ch = text[j..].chars().next()?;
                s.push(ch);
                j += ch.len_utf8();
            }
            None
        } else if b[i].is_ascii_alphabetic() || b[i] == b'_' {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'$') {
                j += 1;
            }
            Some((text[i..j].to_ascii_lowercase(), j))
        } else {
            None
        }
    };
    while i < b.len() {
        match b[i] {
            b'\'' => {
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            c if (c == b'"' || c.is_ascii_alphabetic() || c == b'_')
                && (i == 0
                    || !(b[i - 1].is_ascii_alphanumeric()
                        || b[i - 1] == b'_'
                        || b[i - 1] == b'.'
                        || b[i - 1] == b'$')) =>
            {
                let Some((first, end)) = ident(i) else {
                    i += 1;
                    continue;
                };
                if b.get(end) == Some(&b'.') {
                    if let Some((second, end2)) = ident(end + 1) {
                        if b.get(end2) != Some(&b'.') {
                            out.push((first, second));
                        }
                        i = end2;
                        continue;
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The string value of a `DefElem` option of a function.
fn option<'a>(options: &'a [Node], name: &str) -> Option<&'a Node> {
    options.iter().find_map(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) if d.defname == name => d.arg.as_deref(),
        _ => None,
    })
}

/// What a function body names: a SQL body through the parser, any other
/// language's by [`qualified_names`].
pub fn body_tables(language: &str, body: &str, search: &str) -> Vec<Obj> {
    if language.eq_ignore_ascii_case("sql") {
        sql_tables(body, search)
    } else {
        qualified_names(body)
            .into_iter()
            .map(|(s, n)| Obj::new(ObjKind::Relation, &s, &n))
            .collect()
    }
}

/// The references `node` makes from one object to another: foreign keys, a
/// view's or materialized view's query, a function's body, a trigger's table.
/// `search` is the schema unqualified names resolve to.
pub fn references(node: &NodeEnum, search: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    let rv = |kind, r: &RangeVar| rv_obj(kind, r, search);
    // Constraints are table elements, column constraints, or the
    // definitions of `ALTER TABLE` commands.
    let fks = |from: &Obj, elements: &[Node], out: &mut Vec<Reference>| {
        let mut constraints = Vec::new();
        for e in elements {
            match e.node.as_ref() {
                Some(NodeEnum::AlterTableCmd(cmd)) => {
                    match cmd.def.as_deref().and_then(|d| d.node.as_ref()) {
                        Some(NodeEnum::Constraint(c)) => constraints.push(&**c),
                        Some(NodeEnum::ColumnDef(col)) => {
                            constraints.extend(col.constraints.iter().filter_map(|n| {
                                match n.node.as_ref() {
                                    Some(NodeEnum::Constraint(c)) => Some(&**c),
                                    _ => None,
                                }
                            }))
                        }
                        _ => {}
                    }
                }
                Some(NodeEnum::Constraint(c)) => constraints.push(&**c),
                Some(NodeEnum::ColumnDef(col)) => {
                    constraints.extend(col.constraints.iter().filter_map(
                        |n| match n.node.as_ref() {
                            Some(NodeEnum::Constraint(c)) => Some(&**c),
                            _ => None,
                        },
                    ))
                }
                _ => {}
            }
        }
        for c in constraints {
            if c.contype == ConstrType::ConstrForeign as i32 {
                if let Some(pk) = &c.pktable {
                    out.push(Reference {
                        from: from.clone(),
                        to: rv(ObjKind::Table, pk),
                        kind: RefKind::ForeignKey,
                        location: c.location,
                    });
                }
            }
        }
    };
    match node {
        NodeEnum::CreateStmt(c) => {
            if let Some(r) = &c.relation {
                fks(&rv(ObjKind::Table, r), &c.table_elts, &mut out);
            }
        }
        NodeEnum::AlterTableStmt(a) => {
            if let Some(r) = &a.relation {
                fks(&rv(ObjKind::Table, r), &a.cmds, &mut out);
            }
        }
        NodeEnum::ViewStmt(v) => {
            if let (Some(view), Some(q)) =
                (&v.view, v.query.as_deref().and_then(|q| q.node.as_ref()))
            {
                let from = rv(ObjKind::View, view);
                for to in tables_in(q, search) {
                    out.push(Reference {
                        from: from.clone(),
                        to,
                        kind: RefKind::View,
                        location: -1,
                    });
                }
            }
        }
        NodeEnum::CreateTableAsStmt(c) if c.objtype == ObjectType::ObjectMatview as i32 => {
            if let (Some(r), Some(q)) = (
                c.into.as_ref().and_then(|i| i.rel.as_ref()),
                c.query.as_deref().and_then(|q| q.node.as_ref()),
            ) {
                let from = rv(ObjKind::MatView, r);
                for to in tables_in(q, search) {
                    out.push(Reference {
                        from: from.clone(),
                        to,
                        kind: RefKind::View,
                        location: -1,
                    });
                }
            }
        }
        NodeEnum::CreateFunctionStmt(f) => {
            let Some(from) = parts_obj(ObjKind::Function, &names(&f.funcname), search) else {
                return out;
            };
            let language = option(&f.options, "language")
                .and_then(str_of)
                .unwrap_or("sql");
            let mut to = Vec::new();
            if let Some(body) = f.sql_body.as_deref().and_then(|b| b.node.as_ref()) {
                to.extend(tables_in(body, search));
            } else if let Some(Some(NodeEnum::List(l))) =
                option(&f.options, "as").map(|n| n.node.as_ref())
            {
                if let [body] = l.items.as_slice() {
                    if let Some(body) = str_of(body) {
                        to.extend(body_tables(language, body, search));
                    }
                }
            }
            for to in to {
                out.push(Reference {
                    from: from.clone(),
                    to,
                    kind: RefKind::Function,
                    location: -1,
                });
            }
        }
        NodeEnum::CreateTrigStmt(t) => {
            if let (Some(r), Some(from)) = (
                &t.relation,
                parts_obj(ObjKind::Function, &names(&t.funcname), search),
            ) {
                out.push(Reference {
                    from,
                    to: rv(ObjKind::Table, r),
                    kind: RefKind::Trigger,
                    location: r.location,
                });
            }
        }
        _ => {}
    }
    out
}

/// The schema a `SET [LOCAL] search_path` (or `RESET`) makes unqualified
/// names resolve to: its first entry; `None` when `node` is no such statement.
pub fn search_path_set(node: &NodeEnum) -> Option<String> {
    let NodeEnum::VariableSetStmt(v) = node else {
        return None;
    };
    if !v.name.eq_ignore_ascii_case("search_path") {
        return None;
    }
    let first = v
        .args
        .iter()
        .filter_map(|a| match a.node.as_ref() {
            Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                Some(pg_query::protobuf::a_const::Val::Sval(s)) => Some(s.sval.clone()),
                _ => None,
            },
            _ => None,
        })
        .find(|s| s != "$user");
    Some(first.unwrap_or_else(|| capstan_service::DEFAULT_SCHEMA.to_string()))
}
