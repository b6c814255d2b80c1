//! `service-boundary`: a migration of one service changing what another
//! service owns, or what no service owns.

use crate::finding::Severity;
use crate::reach::writes;
use crate::rule::{Ctx, Hits, Rule, RuleId, Stmt, POSTGRES_ONLY};
use capstan_service::Owner;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::ServiceBoundary,
    severity: Severity::Error,
    summary: "a service's migration changes an object another service (or no service) owns",
    lock: "",
    why: "When several services share one database, each owns its schemas and tables (`[[service]] owns` in \
`capstan.toml`) and only its own migrations may change them: its binaries were tested against its \
schema, its rollout waits for its fleet, its history records what ran. A migration of another service that \
creates, alters, drops, renames, moves or truncates an object there, or writes rows into it (INSERT, UPDATE, \
DELETE, MERGE, COPY FROM), bypasses all of that. An index or a trigger belongs to its table's owner, a \
schema to the service that owns it as a whole; an unqualified name is in `public` unless the migration \
ran `SET search_path` (its first schema). An object no service owns is reported too, so that ownership \
stays complete. The rule is silent until `capstan.toml` declares services and the linted directory's \
service is known (`--service`, the service whose `dir` it is, or the only one declared); it is for \
Postgres only (SQLite has no schemas). `capstan migrate up` refuses it even with `--unsafe-ok`: fix \
ownership in `capstan.toml`, or move the change to the owning service's migrations. The examples assume \
services `users` (owns schema `users`) and `chirps` (owns schema `chirps`), linting `chirps`.",
    help: "move the change to the owning service's migrations, or fix ownership in capstan.toml",
    setup: "CREATE SCHEMA users;\nCREATE TABLE users.users (id bigint PRIMARY KEY, email text);\n",
    bad: "ALTER TABLE users.users ADD COLUMN x int;\n",
    safe: "CREATE SCHEMA IF NOT EXISTS chirps;\nCREATE TABLE chirps.chirps (id bigint PRIMARY KEY, body text);\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let Some(acting) = ctx.service.filter(|_| !ctx.services.is_empty()) else {
        return;
    };
    for w in writes(stmt.node, ctx.search_schema, ctx.schema) {
        let at = stmt.at(w.location);
        match w.obj.owner(ctx.services) {
            Owner::Service(s) if s.name == acting => {}
            Owner::Service(s) => out.push(
                &RULE,
                at,
                format!(
                    "service `{acting}` {} {}, which service `{}` owns: only `{}`'s migrations may change it",
                    w.verb, w.obj, s.name, s.name
                ),
            ),
            Owner::Nobody if w.obj.owner_unknown(ctx.services) => {}
            Owner::Nobody => out.push_help(
                &RULE,
                at,
                format!(
                    "`{}` is owned by no service: add it to a service's `owns` in capstan.toml (service `{acting}` {} {} here)",
                    w.obj.qualified(),
                    w.verb,
                    w.obj
                ),
                "add the object (or its schema) to the `owns` of the service that should own it in capstan.toml",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::{check_with, run};
    use crate::rules::SERVICES_TOML;
    use crate::Config;

    fn chirps() -> Config {
        let mut c = Config::from_toml(SERVICES_TOML, "capstan.toml").unwrap();
        c.service = Some("chirps".into());
        c
    }

    #[test]
    fn cases() {
        insta::assert_snapshot!(check_with(
            &chirps(),
            &RULE,
            &[
                "ALTER TABLE users.users ADD COLUMN x int;",
                "ALTER TABLE \"users\".users ADD COLUMN x int;",
                "CREATE TABLE public.orphans (id int);",
                "CREATE TABLE orphans (id int);",
                "CREATE INDEX users_email ON users.users (email);",
                "DROP INDEX users.users_pkey;",
                "INSERT INTO users.users (id) VALUES (1);",
                "UPDATE users.users SET email = NULL;",
                "DELETE FROM users.users;",
                "COPY users.users FROM STDIN;",
                "TRUNCATE users.users;",
                "DROP TABLE users.users;",
                "ALTER TABLE users.users RENAME TO people;",
                "ALTER TABLE chirps.c SET SCHEMA users;",
                "CREATE SCHEMA users2;",
                "DROP SCHEMA users CASCADE;",
                "CREATE FUNCTION users.f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
                "CREATE TYPE users.mood AS ENUM ('a');",
                "CREATE TRIGGER t BEFORE INSERT ON users.users FOR EACH ROW EXECUTE FUNCTION chirps.f();",
                "CREATE VIEW users.v AS SELECT 1;",
                "CREATE SEQUENCE users.s;",
                "SET search_path TO users;\nCREATE TABLE t (a int);",
            ],
            &[
                "CREATE SCHEMA chirps;",
                "CREATE TABLE chirps.chirps (id int);",
                "SET search_path TO chirps, public;\nCREATE TABLE chirps (id int);",
                "CREATE TEMP TABLE scratch (a int);",
                "SELECT * FROM users.users;",
                "CREATE INDEX chirps_body ON chirps.chirps (id);",
                "DROP INDEX nowhere_idx;",
            ],
        ));
    }

    /// Without services, or without knowing which one acts, the rule is silent.
    #[test]
    fn silent_without_ownership() {
        let sql = "ALTER TABLE users.users ADD COLUMN x int;";
        let none = run(&Config::default(), "", sql);
        assert!(none.iter().all(|f| f.rule != RULE.name()), "{none:?}");
        let mut unknown = chirps();
        unknown.service = None;
        let found = run(&unknown, "", sql);
        assert!(found.iter().all(|f| f.rule != RULE.name()), "{found:?}");
    }

    /// An index the model knows belongs to its table's owner.
    #[test]
    fn an_index_belongs_to_its_table() {
        let toml = "[[service]]\nname = \"users\"\nowns = [\"public.users\"]\n[[service]]\nname = \"chirps\"\nowns = [\"chirps\"]\n";
        let mut c = Config::from_toml(toml, "capstan.toml").unwrap();
        c.service = Some("chirps".into());
        let found = run(
            &c,
            "CREATE TABLE users (id int);\nCREATE INDEX users_id ON users (id);\n",
            "DROP INDEX users_id;",
        );
        let mine: Vec<_> = found.iter().filter(|f| f.rule == RULE.name()).collect();
        assert_eq!(mine.len(), 1, "{found:?}");
        assert!(mine[0].message.contains("service `users`"), "{}", mine[0].message);
    }
}
