//! `domain-check-constraint`: a domain with a CHECK constraint, or a constraint added
//! to an existing domain.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{contype};
use crate::finding::Severity;
use pg_query::protobuf::ConstrType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::DomainCheckConstraint,
    severity: Severity::Warning,
    summary: "CREATE DOMAIN ... CHECK, or ALTER DOMAIN ... ADD CONSTRAINT without NOT VALID",
    lock: "ALTER DOMAIN ADD CONSTRAINT: SHARE on every table with a column of the domain while all their rows are checked: blocks writes to all of them",
    why: "A CHECK on a domain is checked for every column of every table that uses the domain. Adding one later \
(ALTER DOMAIN ... ADD CONSTRAINT) scans all those tables while blocking their writes, and changing or dropping \
it is a schema change on all of them at once. Put CHECK constraints on table columns instead, where they can be \
added NOT VALID and validated online; if you must add one to a domain, add it NOT VALID and VALIDATE it in a \
separate transaction.",
    help: "put the CHECK on the table columns instead (NOT VALID, then VALIDATE), or add it to the domain NOT VALID",
    setup: "CREATE TABLE users (id bigint, email text);\n",
    bad: "CREATE DOMAIN email_address AS text CHECK (VALUE LIKE '%@%');\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users ADD CONSTRAINT users_email_at CHECK (email LIKE '%@%') NOT VALID;\nALTER TABLE users VALIDATE CONSTRAINT users_email_at;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, _ctx: &Ctx<'_>, out: &mut Hits) {
    match stmt.node {
        NodeEnum::CreateDomainStmt(d) => {
            let name = crate::ast::list_name(&d.domainname);
            for c in d.constraints.iter().filter_map(|c| match c.node.as_ref() {
                Some(NodeEnum::Constraint(c)) => Some(c),
                _ => None,
            }) {
                if contype(c) == ConstrType::ConstrCheck {
                    out.push(
                        &RULE,
                        stmt.at(c.location),
                        format!("domain {name} has a CHECK constraint: changing it later locks and rescans every table that uses the domain"),
                    );
                }
            }
        }
        NodeEnum::AlterDomainStmt(d) if d.subtype == "C" => {
            let name = crate::ast::list_name(&d.type_name);
            if let Some(NodeEnum::Constraint(c)) = d.def.as_ref().and_then(|n| n.node.as_ref()) {
                if !c.skip_validation {
                    out.push(
                        &RULE,
                        stmt.at(c.location),
                        format!("adding a constraint to domain {name} without NOT VALID checks every column of every table using it while blocking their writes"),
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::check;

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &[
                "ALTER DOMAIN email_address ADD CONSTRAINT has_at CHECK (VALUE LIKE '%@%');",
                "CREATE DOMAIN positive AS int NOT NULL CHECK (VALUE > 0);",
                "ALTER DOMAIN app.code ADD CHECK (length(VALUE) = 3);",
            ],
            &[
                "CREATE DOMAIN email_address AS text;",
                "ALTER DOMAIN email_address ADD CONSTRAINT has_at CHECK (VALUE LIKE '%@%') NOT VALID;",
                "ALTER DOMAIN email_address VALIDATE CONSTRAINT has_at;",
            ],
        ));
    }
}
