//! `cross-service-reference`: an object of one service depending on an
//! object another service owns.

use crate::finding::Severity;
use crate::reach::references;
use crate::rule::{Ctx, Hit, Hits, Rule, RuleId, Stmt, POSTGRES_ONLY};
use capstan_service::Owner;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::CrossServiceReference,
    severity: Severity::Warning,
    summary: "a foreign key, view, function or trigger that ties one service's objects to another's",
    lock: "",
    why: "A foreign key into another service's table, a view or materialized view reading it, a function \
whose body names it (a SQL body is parsed; any other language's body is scanned for qualified \
`schema.table` names), or a trigger on it running this service's function: each couples two services \
through the database where neither sees it. The owner can no longer rename, move, drop or rewrite its table \
on its own schedule, and its deploys can break the other service's. Objects are owned as `capstan.toml`'s \
`[[service]] owns` says (an index or trigger by its table). When the depending service declares the \
dependency (`depends_on`), the finding is `info` and says it is declared: the coupling is known and \
deliberate. The rule is silent until `capstan.toml` declares services; it is for Postgres only. \
`capstan migrate up` prints it as a warning and never refuses it. The examples assume services `users` \
(owns schema `users`) and `chirps` (owns schema `chirps`), linting `chirps`.",
    help: "hidden coupling: remove it (read through the owner's API) or declare it (depends_on in capstan.toml)",
    setup: "CREATE SCHEMA users;\nCREATE TABLE users.users (id bigint PRIMARY KEY, email text);\n",
    bad: "CREATE SCHEMA chirps;\nCREATE TABLE chirps.chirps (id bigint PRIMARY KEY, author_id bigint REFERENCES users.users (id));\n",
    safe: "CREATE SCHEMA IF NOT EXISTS chirps;\nCREATE TABLE chirps.chirps (id bigint PRIMARY KEY, author_id bigint NOT NULL);\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    if ctx.services.is_empty() {
        return;
    }
    let acting = ctx.service.and_then(|n| ctx.services.get(n).ok());
    for r in references(stmt.node, ctx.search_schema) {
        let Owner::Service(to) = r.to.owner(ctx.services) else {
            continue;
        };
        let from = match r.from.owner(ctx.services) {
            Owner::Service(s) => s,
            Owner::Nobody => match acting {
                Some(s) => s,
                None => continue,
            },
        };
        if from.name == to.name {
            continue;
        }
        let declared = from.depends_on.iter().any(|d| d.service == to.name);
        let what = format!(
            "{} (service `{}`) {} {} (service `{}`)",
            r.from,
            from.name,
            r.kind.phrase(),
            r.to,
            to.name
        );
        let at = stmt.at(r.location);
        if declared {
            out.add(
                Hit::with_help(
                    &RULE,
                    at,
                    format!(
                        "{what}: declared (`{}` depends_on `{}` in capstan.toml)",
                        from.name, to.name
                    ),
                    "declared coupling: keep it in mind when the owner changes the object",
                )
                .at_severity(Severity::Info),
            );
        } else {
            out.push(
                &RULE,
                at,
                format!("hidden coupling: {what}: remove it or declare it (depends_on)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::finding::Severity;
    use crate::rules::testing::{check_with, run};
    use crate::rules::SERVICES_TOML;
    use crate::Config;

    fn chirps(toml: &str) -> Config {
        let mut c = Config::from_toml(toml, "capstan.toml").unwrap();
        c.service = Some("chirps".into());
        c
    }

    #[test]
    fn cases() {
        insta::assert_snapshot!(check_with(
            &chirps(SERVICES_TOML),
            &RULE,
            &[
                "CREATE TABLE chirps.chirps (id int, author_id bigint REFERENCES users.users (id));",
                "CREATE TABLE chirps.chirps (id int, author_id bigint, FOREIGN KEY (author_id) REFERENCES users.users);",
                "ALTER TABLE chirps.chirps ADD CONSTRAINT a FOREIGN KEY (author_id) REFERENCES users.users (id) NOT VALID;",
                "CREATE VIEW chirps.authors AS SELECT u.id, u.email FROM users.users u JOIN chirps.chirps c ON c.author_id = u.id;",
                "CREATE MATERIALIZED VIEW chirps.counts AS SELECT count(*) FROM users.users;",
                "CREATE FUNCTION chirps.author_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM users.users $$;",
                "CREATE FUNCTION chirps.n() RETURNS bigint LANGUAGE sql BEGIN ATOMIC SELECT count(*) FROM users.users; END;",
                "CREATE FUNCTION chirps.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM 1 FROM Users.Users WHERE id = NEW.id; RETURN NEW; END $$;",
                "CREATE TRIGGER t AFTER INSERT ON users.users FOR EACH ROW EXECUTE FUNCTION chirps.touch();",
            ],
            &[
                "CREATE TABLE chirps.chirps (id int PRIMARY KEY);",
                "CREATE TABLE chirps.replies (id int, chirp_id int REFERENCES chirps.chirps (id));",
                "CREATE VIEW chirps.v AS WITH users AS (SELECT 1 AS id) SELECT * FROM users;",
                "CREATE FUNCTION chirps.f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.at := now(); RAISE NOTICE 'users.users'; RETURN NEW; END $$;",
                "SELECT * FROM users.users;",
            ],
        ));
    }

    /// A dependency the services declare is reported as info, saying so.
    #[test]
    fn a_declared_dependency_is_info() {
        let toml = format!("{SERVICES_TOML}depends_on = [\"users\"]\n");
        let found = run(
            &chirps(&toml),
            "",
            "CREATE TABLE chirps.chirps (id int, author_id bigint REFERENCES users.users (id));",
        );
        let mine: Vec<_> = found.iter().filter(|f| f.rule == RULE.name()).collect();
        assert_eq!(mine.len(), 1, "{found:?}");
        assert_eq!(mine[0].severity, Severity::Info);
        assert!(mine[0].message.contains("declared"), "{}", mine[0].message);
    }

    /// No services declared: silent.
    #[test]
    fn silent_without_services() {
        let found = run(
            &Config::default(),
            "",
            "CREATE TABLE chirps.chirps (id int, author_id bigint REFERENCES users.users (id));",
        );
        assert!(found.iter().all(|f| f.rule != RULE.name()), "{found:?}");
    }
}
