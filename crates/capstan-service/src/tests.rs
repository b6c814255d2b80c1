//! Unit tests of the `capstan.toml` service model.

use super::*;

fn parse(text: &str) -> Result<Services, ServiceError> {
    Services::parse(text, Path::new("capstan.toml"))
}

#[test]
fn reads_one_table_and_an_array() {
    let one = parse("database_url = \"x\"\n[service]\nname = \"billing\"\nowns = [\"billing\", \"public.invoices\"]\n").unwrap();
    let billing = one.get("billing").unwrap();
    assert_eq!(billing.line, 3);
    assert_eq!(
        billing.owns,
        vec![
            Owned::Schema("billing".into()),
            Owned::Table {
                schema: "public".into(),
                table: "invoices".into()
            }
        ]
    );
    assert_eq!(one.select(None).unwrap().unwrap().name, "billing");
    let many = parse(
        "[[service]]\nname = \"users\"\nowns = [\"users\"]\n[[service]]\nname = \"chirps\"\nowns = [\"chirps\"]\ndepends_on = [\"users\", { service = \"users2\", hard = false }]\n[[service]]\nname = \"users2\"\n",
    )
    .unwrap();
    assert_eq!(many.names(), vec!["users", "chirps", "users2"]);
    let chirps = many.get("chirps").unwrap();
    assert_eq!(
        chirps.hard_dependencies().collect::<Vec<_>>(),
        vec!["users"]
    );
    assert_eq!(many.select(None).unwrap(), None);
    assert!(parse("database_url = \"x\"\n").unwrap().is_empty());
}

#[test]
fn owners_fold_identifiers_and_prefer_nobody_to_guessing() {
    let s = parse(
        "[[service]]\nname = \"users\"\nowns = [\"Users\", '\"Odd\".\"T\"', \"public.accounts\"]\n",
    )
    .unwrap();
    assert_eq!(s.owner_of(Some("users"), "x").name(), Some("users"));
    assert_eq!(s.owner_of(Some("Odd"), "T").name(), Some("users"));
    assert_eq!(s.owner_of(Some("odd"), "t"), Owner::Nobody);
    assert_eq!(s.owner_of(None, "accounts").name(), Some("users"));
    assert_eq!(s.owner_of(None, "other"), Owner::Nobody);
    assert_eq!(s.owner_of_schema("users").name(), Some("users"));
    assert_eq!(s.owner_of_schema("public"), Owner::Nobody);
    assert_eq!(s.get("users").unwrap().owns[1].to_string(), "\"Odd\".\"T\"");
}

#[test]
fn overlapping_ownership_names_both_entries_and_lines() {
    let err = parse("[[service]]\nname = \"mono\"\nowns = [\"public\"]\n[[service]]\nname = \"billing\"\nowns = [\"billing\",\n \"public.invoices\"]\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ServiceError::Overlap {
                line: 7,
                other_line: 3,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("`billing` owns `public.invoices`") && msg.contains("`mono` owns `public`"),
        "{msg}"
    );
    let twice = parse("[[service]]\nname = \"a\"\nowns = [\"x.t\"]\n[[service]]\nname = \"b\"\nowns = [\"X.T\"]\n").unwrap_err();
    assert!(matches!(twice, ServiceError::Overlap { .. }), "{twice}");
    let own = parse("[service]\nname = \"a\"\nowns = [\"x\", \"x\"]\n").unwrap_err();
    assert!(matches!(own, ServiceError::Overlap { .. }), "{own}");
    // A service may name its own table inside its own schema.
    parse("[service]\nname = \"a\"\nowns = [\"x\", \"x.t\"]\n").unwrap();
}

#[test]
fn bad_input_is_named_with_its_line() {
    let cases = [
        ("[service]\nname = \"Billing\"\n", "line 2", "not valid"),
        (
            "[[service]]\nname = \"a\"\n[[service]]\nname = \"a\"\n",
            "line 4",
            "declared twice (first at line 2)",
        ),
        (
            "[service]\nname = \"a\"\nowns = [\"a.b.c\"]\n",
            "line 3",
            "`schema` or `schema.table`",
        ),
        (
            "[service]\nname = \"a\"\nowns = [\"a b\"]\n",
            "line 3",
            "not allowed",
        ),
        (
            "[service]\nname = \"a\"\nowns = [\"\"]\n",
            "line 3",
            "empty identifier",
        ),
        (
            "[[service]]\nname = \"a\"\ndepends_on = [\"nope\"]\n",
            "line 3",
            "not declared (capstan.toml declares `a`)",
        ),
        (
            "[[service]]\nname = \"a\"\ndepends_on = [\"a\"]\n",
            "line 3",
            "itself",
        ),
        (
            "[service]\nname = \"a\"\nowner = [\"x\"]\n",
            "line 3",
            "unknown field `owner`",
        ),
    ];
    for (text, line, what) in cases {
        let msg = parse(text).unwrap_err().to_string();
        assert!(msg.starts_with("capstan.toml: "), "{msg}");
        assert!(msg.contains(line) && msg.contains(what), "{text:?}: {msg}");
    }
    let s = parse("[service]\nname = \"a\"\n").unwrap();
    let unknown = s.get("b").unwrap_err().to_string();
    assert_eq!(unknown, "no service named `b`: capstan.toml declares `a`");
    assert!(Services::default().select(Some("b")).is_err());
}

#[test]
fn services_built_in_code_are_validated_too() {
    let mut a = Service::new("a");
    a.owns.push(Owned::parse("s").unwrap());
    let mut b = Service::new("b");
    b.owns.push(Owned::parse("s.t").unwrap());
    assert!(Services::from_list(vec![a.clone()]).is_ok());
    assert!(matches!(
        Services::from_list(vec![a, b]),
        Err(ServiceError::Overlap { .. })
    ));
}

#[test]
fn a_directory_names_its_service() {
    let s = parse("[[service]]\nname = \"users\"\ndir = \"svc/users/\"\n[[service]]\nname = \"chirps\"\ndir = \"./svc/chirps\"\n[[service]]\nname = \"bare\"\n").unwrap();
    let base = Path::new("/p");
    let name = |dir: &str| s.for_dir(base, Path::new(dir)).map(|s| s.name.as_str());
    assert_eq!(name("/p/svc/users"), Some("users"));
    assert_eq!(name("/p/svc/x/../chirps/"), Some("chirps"));
    assert_eq!(name("/p/svc"), None);
    assert_eq!(name("/q/svc/users"), None);
}
