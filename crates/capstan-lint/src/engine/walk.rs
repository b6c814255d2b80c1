//! The walk through one section: each statement is shown to every enabled
//! rule with what the walk knows (schema model, transaction state, phase),
//! then the transaction state and the schema model are updated.

use super::parse::{
    error_offset, parse_piece, parse_section, starts_with_ddl_keyword, STREAM_THRESHOLD,
};
use super::text::{clause_end, skip_trivia};
use super::{Linter, Tagged};
use crate::facts::is_ddl;
use crate::phase::{classify, Class};
use crate::rule::{Ctx, Hit, Hits, Rule, RuleId, Stmt};
use crate::rules;
use crate::schema::Schema;
use crate::source::{MigrationSource, Phase, Section};
use pg_query::protobuf::{ParseResult, RawStmt, TransactionStmtKind};
use pg_query::NodeEnum;

/// One section being walked: the file and section it is in, and the state
/// the walk carries from statement to statement.
struct SectionWalk<'s> {
    /// The whole file (byte-order mark blanked).
    text: &'s str,
    src: &'s MigrationSource,
    sec: Section,
    is_up: bool,
    /// The rules that run on this section.
    enabled: Vec<&'static Rule>,
    /// The section contains schema changes (DDL).
    section_has_ddl: bool,
    /// File offset of each statement visited, in order.
    starts: Vec<usize>,
    /// Explicit `BEGIN`s open.
    depth: u32,
    /// Constraints added `NOT VALID` in the current transaction: (table, name).
    not_valid: Vec<(String, String)>,
    /// Enum labels added in the current transaction: (type, label).
    enum_added: Vec<(String, String)>,
    /// File offset of the last `BEGIN`.
    last_begin: usize,
    /// The rules' hits on the statement being visited.
    out: Hits,
    /// A statement of a `contract` migration that makes it one.
    justifies_contract: bool,
    /// Statements Postgres rejected.
    errors: usize,
    /// The first statement of an up section the phase classifier calls contract.
    first_contract: Option<(usize, String)>,
    /// Set by `SET TIME ZONE` in the section.
    time_zone: Option<String>,
    /// Set by `SET search_path` in the section: where unqualified names go.
    search_schema: Option<String>,
    /// Every hit of the section, with the statement it belongs to.
    hits: &'s mut Vec<Tagged>,
}

impl SectionWalk<'_> {
    /// Reports SQL Postgres rejects at `at`.
    fn syntax_error(&mut self, at: usize, msg: &str) {
        self.errors += 1;
        self.hits.push((
            Hit::new(
                rules::get(RuleId::SyntaxError),
                at,
                format!("Postgres rejects this SQL: {msg}"),
            ),
            Some((self.sec.kind, usize::MAX)),
        ));
    }
}

/// One parsed statement and where its parse tree sits in the file.
struct Located<'r> {
    raw: &'r RawStmt,
    /// File offset that the tree's locations are relative to.
    base: usize,
    /// File offset where the parsed text ends.
    chunk_end: usize,
}

impl Linter {
    /// Lints one section; returns the start offsets of its statements.
    ///
    /// Small sections are parsed whole. A section above [`STREAM_THRESHOLD`] is split
    /// with the Postgres scanner and parsed statement by statement on worker threads,
    /// in order, so memory stays bounded by a few batches of statements whatever the
    /// file size.
    pub(super) fn lint_section(
        &mut self,
        text: &str,
        src: &MigrationSource,
        sec: Section,
        is_up: bool,
        hits: &mut Vec<Tagged>,
    ) -> Vec<usize> {
        let sql = &text[sec.start..sec.end];
        let mut walk = SectionWalk {
            text,
            src,
            sec,
            is_up,
            enabled: rules::ALL
                .iter()
                .copied()
                .filter(|r| self.config.enabled(r.name()) && (is_up || !r.up_only))
                .collect(),
            section_has_ddl: false,
            starts: Vec::new(),
            depth: 0,
            not_valid: Vec::new(),
            enum_added: Vec::new(),
            last_begin: sec.start,
            out: Hits::default(),
            justifies_contract: false,
            errors: 0,
            first_contract: None,
            time_zone: None,
            search_schema: None,
            hits,
        };
        if sql.len() < STREAM_THRESHOLD {
            let parsed = parse_section(text, sec, &self.parser);
            for (at, msg) in &parsed.errors {
                walk.syntax_error(*at, msg);
            }
            walk.section_has_ddl = parsed.chunks.iter().any(|(_, tree, _)| {
                tree.stmts.iter().any(|s| {
                    s.stmt
                        .as_ref()
                        .and_then(|n| n.node.as_ref())
                        .is_some_and(is_ddl)
                })
            });
            for (base, tree, chunk_end) in &parsed.chunks {
                for raw in &tree.stmts {
                    let at = Located {
                        raw,
                        base: *base,
                        chunk_end: *chunk_end,
                    };
                    self.visit(&mut walk, at);
                }
            }
        } else {
            self.walk_pieces(&mut walk, sql);
        }
        if src.no_transaction
            && walk.depth > 0
            && self.config.enabled(RuleId::TransactionNesting.name())
        {
            walk.hits.push((
                Hit::with_help(
                    rules::get(RuleId::TransactionNesting),
                    walk.last_begin,
                    "this BEGIN is never committed: the rest of the migration runs in a transaction that is left open (or rolled back when the session ends)",
                    "end the block with COMMIT; before the end of the section",
                ),
                None,
            ));
        }
        if is_up && src.phase == Phase::Contract && !walk.justifies_contract && walk.errors == 0 {
            if let Some(at) = src.phase_offset {
                walk.hits.push((
                    Hit::with_help(
                        rules::get(RuleId::WrongPhase),
                        at,
                        "this migration is declared `contract` but contains no contract statement: it will wait for every running instance to be upgraded for nothing",
                        "declare it `-- capstan:phase expand` (or remove the directive: expand is the default)",
                    ),
                    None,
                ));
            }
        }
        if is_up {
            self.last_contract = walk.first_contract;
        }
        walk.starts
    }

    /// Walks a large section: split with the Postgres scanner, parsed in
    /// batches on worker threads, visited in file order as the batches come in.
    fn walk_pieces(&mut self, walk: &mut SectionWalk<'_>, sql: &str) {
        let sec = walk.sec;
        let pieces = capstan_format::pieces(sql);
        walk.section_has_ddl = pieces.iter().any(|p| starts_with_ddl_keyword(p));
        let offset = |p: &str| sec.start + (p.as_ptr() as usize - sql.as_ptr() as usize);
        let batches: Vec<&[&str]> = pieces.chunks(256).collect();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Result<ParseResult, String>>)>(
                workers * 2,
            );
            for w in 0..workers {
                let tx = tx.clone();
                let batches = &batches;
                scope.spawn(move || {
                    for (i, batch) in batches.iter().enumerate().skip(w).step_by(workers) {
                        let parsed = batch.iter().map(|p| parse_piece(p)).collect();
                        if tx.send((i, parsed)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(tx);
            let mut pending = std::collections::BTreeMap::new();
            let mut next = 0;
            for (i, batch) in rx {
                pending.insert(i, batch);
                while let Some(batch) = pending.remove(&next) {
                    for (piece, result) in batches[next].iter().zip(batch) {
                        let base = offset(piece);
                        match result {
                            Ok(tree) => {
                                for raw in &tree.stmts {
                                    let at = Located {
                                        raw,
                                        base,
                                        chunk_end: base + piece.len(),
                                    };
                                    self.visit(walk, at);
                                }
                            }
                            Err(msg) => walk.syntax_error(base + error_offset(piece, &msg), &msg),
                        }
                    }
                    next += 1;
                }
            }
        });
    }

    /// Checks one statement with every rule, then updates the transaction state and
    /// the schema model.
    fn visit(&mut self, walk: &mut SectionWalk<'_>, at: Located<'_>) {
        let Located {
            raw,
            base,
            chunk_end,
        } = at;
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            return;
        };
        let (text, src, sec, is_up) = (walk.text, walk.src, walk.sec, walk.is_up);
        let loc = base + raw.stmt_location.max(0) as usize;
        let start = skip_trivia(text, loc).min(chunk_end);
        let end = if raw.stmt_len > 0 {
            loc + raw.stmt_len as usize
        } else {
            chunk_end
        };
        let stmt = Stmt {
            node,
            base,
            start,
            end,
            sql: text.get(start..end.max(start)).unwrap_or(""),
        };
        let in_tx = !src.no_transaction || walk.depth > 0;
        let ctx = Ctx {
            schema: &self.schema,
            pg: self.config.pg_version,
            in_transaction: in_tx,
            no_transaction: src.no_transaction,
            explicit_depth: walk.depth,
            section: sec.kind,
            phase: src.phase,
            section_has_ddl: walk.section_has_ddl,
            not_valid_in_tx: &walk.not_valid,
            enum_values_in_tx: &walk.enum_added,
            rest_sql: text.get(end..sec.end).unwrap_or(""),
            time_zone: walk
                .time_zone
                .as_deref()
                .or(self.live.as_ref().and_then(|l| l.time_zone.as_deref()))
                .or(self.config.time_zone.as_deref()),
            services: &self.config.services,
            service: self.config.service.as_deref(),
            search_schema: walk
                .search_schema
                .as_deref()
                .unwrap_or(capstan_service::DEFAULT_SCHEMA),
        };
        let idx = walk.starts.len();
        walk.starts.push(start);
        for rule in &walk.enabled {
            (rule.check)(&stmt, &ctx, &mut walk.out);
        }
        if walk
            .out
            .list
            .iter()
            .any(|h| rules::supersedes_wrong_phase(h.rule.id))
        {
            walk.out.list.retain(|h| h.rule.id != RuleId::WrongPhase);
        }
        if is_up && walk.first_contract.is_none() {
            if let (Class::Contract, why) = classify(&stmt, &ctx) {
                walk.first_contract = Some((stmt.start, why));
            }
        }
        if is_up && src.phase == Phase::Contract && !walk.justifies_contract {
            // A contract migration is "wrong" only when everything in it is plainly
            // expand: a neutral statement (data, maintenance, an index the model does
            // not know) may be why it waits for the fleet.
            match classify(&stmt, &ctx).0 {
                Class::Contract => walk.justifies_contract = true,
                Class::Neutral
                    if !matches!(
                        node,
                        NodeEnum::TransactionStmt(_) | NodeEnum::VariableSetStmt(_)
                    ) =>
                {
                    walk.justifies_contract = true
                }
                _ => {}
            }
        }
        let table = target_table(node, &self.schema);
        walk.hits.extend(walk.out.list.drain(..).map(|mut h| {
            h.table.clone_from(&table);
            h.end = if h.at == stmt.start {
                stmt.end
            } else {
                clause_end(text, h.at, stmt.end)
            };
            (h, Some((sec.kind, idx)))
        }));
        track_transaction(walk, node, start, in_tx);
        self.schema.apply(node);
    }
}

/// Updates the walk's transaction state after a statement: explicit `BEGIN`
/// depth, and what the current transaction added (`NOT VALID` constraints,
/// enum labels), forgotten when it ends; and the session time zone.
fn track_transaction(walk: &mut SectionWalk<'_>, node: &NodeEnum, start: usize, in_tx: bool) {
    let mut tx_ended = !in_tx;
    match node {
        NodeEnum::TransactionStmt(t) => match TransactionStmtKind::try_from(t.kind) {
            Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
                walk.depth += 1;
                walk.last_begin = start;
                tx_ended = false;
            }
            Ok(TransactionStmtKind::TransStmtCommit | TransactionStmtKind::TransStmtRollback) => {
                walk.depth = walk.depth.saturating_sub(1);
                tx_ended = true;
            }
            _ => {}
        },
        NodeEnum::AlterTableStmt(a) => {
            let table = crate::ast::opt_rv_name(a.relation.as_ref());
            for cmd in &a.cmds {
                if let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() {
                    if let Some(NodeEnum::Constraint(c)) =
                        cmd.def.as_ref().and_then(|d| d.node.as_ref())
                    {
                        if c.skip_validation {
                            walk.not_valid.push((table.clone(), c.conname.clone()));
                        }
                    }
                }
            }
        }
        NodeEnum::VariableSetStmt(v) if v.name.eq_ignore_ascii_case("timezone") => {
            walk.time_zone = v.args.first().and_then(|a| match a.node.as_ref() {
                Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                    Some(pg_query::protobuf::a_const::Val::Sval(s)) => Some(s.sval.clone()),
                    Some(pg_query::protobuf::a_const::Val::Ival(i)) => Some(i.ival.to_string()),
                    _ => None,
                },
                _ => None,
            });
        }
        NodeEnum::VariableSetStmt(_) => {
            if let Some(schema) = crate::reach::search_path_set(node) {
                walk.search_schema = Some(schema);
            }
        }
        NodeEnum::AlterEnumStmt(e) if e.old_val.is_empty() => {
            walk.enum_added
                .push((crate::ast::list_name(&e.type_name), e.new_val.clone()));
        }
        _ => {}
    }
    if tx_ended {
        walk.not_valid.clear();
        walk.enum_added.clear();
    }
}

/// The one table a statement locks or rewrites, for sizing it: the relation of
/// an `ALTER TABLE`, `CREATE INDEX`, `UPDATE`, `DELETE`, `CLUSTER`, `REFRESH`,
/// a one-table `VACUUM`, or the table of a dropped or reindexed index.
fn target_table(node: &NodeEnum, schema: &Schema) -> Option<String> {
    use crate::ast::{object_name, rv_name};
    let rv = |r: &Option<pg_query::protobuf::RangeVar>| r.as_ref().map(rv_name);
    let index_table = |name: &str| schema.indexes.get(name).map(|i| i.table.clone());
    match node {
        NodeEnum::AlterTableStmt(a) => rv(&a.relation),
        NodeEnum::IndexStmt(i) => rv(&i.relation),
        NodeEnum::UpdateStmt(u) => rv(&u.relation),
        NodeEnum::DeleteStmt(d) => rv(&d.relation),
        NodeEnum::ClusterStmt(c) => rv(&c.relation),
        NodeEnum::RefreshMatViewStmt(r) => rv(&r.relation),
        NodeEnum::CreateTrigStmt(t) => rv(&t.relation),
        NodeEnum::VacuumStmt(v) if v.rels.len() == 1 => match v.rels[0].node.as_ref() {
            Some(NodeEnum::VacuumRelation(r)) => rv(&r.relation),
            _ => None,
        },
        NodeEnum::DropStmt(d)
            if d.remove_type == pg_query::protobuf::ObjectType::ObjectIndex as i32
                && d.objects.len() == 1 =>
        {
            index_table(&object_name(&d.objects[0]))
        }
        NodeEnum::ReindexStmt(r) => {
            let name = rv(&r.relation)?;
            if r.kind == pg_query::protobuf::ReindexObjectType::ReindexObjectIndex as i32 {
                index_table(&name)
            } else {
                Some(name)
            }
        }
        _ => None,
    }
}
