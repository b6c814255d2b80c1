//! The dependency check on real files: SLO files read by `spec`, services
//! read from a `capstan.toml` by the same `Settings::load` the CLI uses.

use std::path::Path;

use capstan_slo::deps::{self, WarningKind};
use capstan_slo::{spec, Settings};

fn slo(name: &str, service: &str, target: &str, expr: &str) -> String {
    format!(
        r#"apiVersion: openslo/v1
kind: SLO
metadata:
  name: {name}
spec:
  service: {service}
  indicator:
    metadata:
      name: {name}-sli
    spec:
      ratioMetric:
        good:
          metricSource: {{type: capstan, spec: {{query: "{expr}"}}}}
        total:
          metricSource: {{type: capstan, spec: {{query: "status >= 0"}}}}
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: main
      {target}
"#
    )
}

const TOML: &str = r#"[slo]
dir = "slos"

[[service]]
name = "users"
owns = ["users"]

[[service]]
name = "auth"

[[service]]
name = "search"

[[service]]
name = "mail"

[[service]]
name = "chirps"
owns = ["chirps"]
depends_on = ["users", "auth", { service = "search", hard = false }]
"#;

fn write(dir: &Path, file: &str, text: &str) {
    let p = dir.join(file);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn check(dir: &Path) -> Vec<deps::Warning> {
    let settings = Settings::load(&dir.join("capstan.toml")).unwrap();
    let files = spec::collect_files(&[dir.join("slos")]).unwrap();
    let c = spec::load_files(&files).unwrap();
    deps::check(&settings.services, &settings.config, &c.slos)
}

#[test]
fn an_objective_above_its_hard_dependencies_is_named_with_every_number() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "capstan.toml", TOML);
    write(
        d,
        "slos/users.yaml",
        &slo(
            "users-availability",
            "users",
            "target: 0.999",
            "status < 500",
        ),
    );
    // auth publishes its availability SLO's target, not the lower latency one.
    write(
        d,
        "slos/auth.yaml",
        &format!(
            "{}---\n{}",
            slo(
                "auth-availability",
                "auth",
                "targetPercent: 99.95",
                "status < 500"
            ),
            slo("auth-latency", "auth", "target: 0.9", "duration_ms < 100")
        ),
    );
    // search is soft: its poor target never lowers the bound.
    write(
        d,
        "slos/search.yaml",
        &slo(
            "search-availability",
            "search",
            "target: 0.5",
            "status < 500",
        ),
    );
    write(
        d,
        "slos/chirps.yaml",
        &slo("availability", "chirps", "target: 0.9995", "status < 500"),
    );
    let w = check(d);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].kind, WarningKind::ExceedsDependencies);
    assert_eq!(
        w[0].to_string(),
        format!(
            "{}:22: chirps/availability (main) promises 99.95 % but its hard dependencies publish at most 99.85 %: users 99.9 % × auth 99.95 %",
            d.join("slos/chirps.yaml").display()
        )
    );
    assert_eq!(w[0].target, Some(0.9995));
    assert!((w[0].at_most.unwrap() - 0.999 * 0.9995).abs() < 1e-15);
    let json = serde_json::to_value(&w[0]).unwrap();
    assert_eq!(json["kind"], "exceeds-dependencies");
    assert_eq!(json["line"], 22);
    assert_eq!(json["dependencies"][1]["slo"], "auth-availability");

    // At the bound exactly: nothing to say.
    write(
        d,
        "slos/chirps.yaml",
        &slo(
            "availability",
            "chirps",
            "target: 0.9985005",
            "status < 500",
        ),
    );
    assert_eq!(check(d), vec![]);
}

#[test]
fn unpublished_dependencies_and_undeclared_services_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "capstan.toml", TOML);
    write(
        d,
        "slos/users.yaml",
        &slo(
            "users-availability",
            "users",
            "target: 0.999",
            "status < 500",
        ),
    );
    write(
        d,
        "slos/chirps.yaml",
        &slo("availability", "chirps", "target: 0.9995", "status < 500"),
    );
    write(
        d,
        "slos/billing.yaml",
        &slo(
            "billing-availability",
            "billing",
            "target: 0.99",
            "status < 500",
        ),
    );
    let w = check(d);
    let kinds: Vec<WarningKind> = w.iter().map(|w| w.kind).collect();
    assert_eq!(
        kinds,
        vec![
            WarningKind::Unpublished,
            WarningKind::UndeclaredService,
            WarningKind::ExceedsDependencies
        ],
        "{w:#?}"
    );
    // auth publishes nothing: capstan.toml's chirps line.
    assert_eq!(w[0].line, 18);
    assert!(w[0].file.ends_with("capstan.toml"));
    assert!(
        w[0].message
            .starts_with("`chirps` depends on `auth` (hard), which publishes no SLO"),
        "{}",
        w[0].message
    );
    // spec.service of billing's SLO.
    assert_eq!(w[1].line, 6);
    assert!(
        w[1].message.contains(
            "names the service `billing`, which capstan.toml does not declare (it declares `users`, `auth`, `search`, `mail`, `chirps`)"
        ),
        "{}",
        w[1].message
    );
    // users alone still bounds chirps; auth's unknown share is named.
    assert!(
        w[2].message.ends_with(
            "promises 99.95 % but its hard dependencies publish at most 99.9 %: users 99.9 % (and `auth`, which publish no SLO)"
        ),
        "{}",
        w[2].message
    );
}

#[test]
fn without_declared_services_nothing_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "capstan.toml", "[slo]\ndir = \"slos\"\n");
    write(
        d,
        "slos/chirps.yaml",
        &slo("availability", "chirps", "target: 0.9999", "status < 500"),
    );
    assert_eq!(check(d), vec![]);
}
