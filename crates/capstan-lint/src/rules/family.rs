//! The helpers of the rule families: what the rules of one family share, so
//! that each of them states only what it flags.
//!
//! - The drop family (`dropping-column`, `-table`, `-object`, `-constraint`,
//!   `-default`, `-not-null`) flags removing what the running binary may still
//!   use; [`removed`] gives each of them the statement's removals outside a
//!   contract migration, on objects that existed before it.
//! - The prefer-type family (`prefer-bigint`, `-identity`, `-jsonb`, `-text`,
//!   `-timestamptz`) flags a column type chosen now that is costly to change
//!   later; [`prefer_type`] walks the declared columns and reports where the type is.

use crate::ast::{object_name, ColType};
use crate::facts::{alter_table, declared_columns};
use crate::rule::{Ctx, Hits, Rule, Stmt};
use capstan_format::Phase;
use pg_query::protobuf::{AlterTableCmd, AlterTableStmt, ColumnDef, DropStmt, ObjectType};
use pg_query::NodeEnum;

/// What a statement removes, for the drop family.
pub(crate) enum Removal<'a> {
    /// `ALTER TABLE` on a table that existed before this migration: its commands.
    Commands {
        /// The table.
        table: String,
        /// The whole statement (for commands that look at the others).
        alter: &'a AlterTableStmt,
        /// Its commands, in order.
        cmds: Vec<&'a AlterTableCmd>,
    },
    /// `DROP` of objects of one kind.
    Objects {
        /// The statement.
        drop: &'a DropStmt,
        /// The kind of object dropped.
        kind: ObjectType,
        /// The names, qualified as written.
        names: Vec<String>,
    },
}

/// What the statement removes, when it can break the running binary: `None`
/// in a contract migration (which runs only once no binary uses the old
/// shape), for an `ALTER TABLE` of a table this migration created (nobody
/// uses it yet), and for a statement that removes nothing.
pub(crate) fn removed<'a>(stmt: &Stmt<'a>, ctx: &Ctx<'_>) -> Option<Removal<'a>> {
    if ctx.phase == Phase::Contract {
        return None;
    }
    if let NodeEnum::DropStmt(drop) = stmt.node {
        return Some(Removal::Objects {
            drop,
            kind: ObjectType::try_from(drop.remove_type).unwrap_or(ObjectType::Undefined),
            names: drop.objects.iter().map(object_name).collect(),
        });
    }
    let (table, alter, cmds) = alter_table(stmt)?;
    if ctx.is_new(&table) {
        return None;
    }
    Some(Removal::Commands { table, alter, cmds })
}

/// For the prefer-type family: reports every column the statement declares
/// (new tables, added columns, a new type) for which `judge` has something to
/// say about its type, as `TABLE.COLUMN is WHAT`, at the type.
pub(crate) fn prefer_type(
    rule: &'static Rule,
    stmt: &Stmt<'_>,
    ctx: &Ctx<'_>,
    out: &mut Hits,
    judge: impl Fn(&str, &ColType, &ColumnDef) -> Option<String>,
) {
    for (table, colname, def) in declared_columns(stmt, ctx) {
        let Some(tn) = def.type_name.as_ref() else {
            continue;
        };
        if let Some(what) = judge(&colname, &ColType::of(tn), def) {
            out.push(
                rule,
                stmt.at(tn.location),
                format!("{table}.{colname} is {what}"),
            );
        }
    }
}
