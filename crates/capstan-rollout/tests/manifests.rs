//! The manifests in docs/kubernetes validate offline: built-in kinds against the
//! Kubernetes OpenAPI schemas (kubernetes-validate, strict), the custom resources
//! (Argo Rollouts, Flagger, Gateway API) against schemas derived from their
//! published CRDs (tests/validate_manifests.py). A misspelt field fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs/kubernetes"))
        .expect("docs/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Runs the validator; (success, stdout + stderr).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate_manifests.py"))
        .args(files)
        .output()
        .expect("python3 (install python3 and `pip install kubernetes-validate`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "kubernetes-validate is missing (scripts/test.sh installs it): {text}"
    );
    (out.status.success(), text)
}

#[test]
fn every_manifest_in_docs_kubernetes_is_valid() {
    let files = manifests();
    let kinds: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for kind in [
        "kind: Deployment",
        "kind: Job",
        "kind: PodDisruptionBudget",
        "kind: Rollout",
        "kind: AnalysisTemplate",
        "kind: Canary",
        "kind: HTTPRoute",
    ] {
        assert!(kinds.contains(kind), "docs/kubernetes has no {kind}");
    }
    let (ok, text) = validate(&files);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!("{} files, 0 problems", files.len())),
        "{text}"
    );
}

#[test]
fn a_misspelt_field_fails_validation() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "deployment.yaml",
            "periodSeconds: 5",
            "periodSecond: 5",
            "periodSecond",
        ),
        (
            "argo-rollout.yaml",
            "successCondition",
            "sucessCondition",
            "sucessCondition",
        ),
        (
            "flagger-canary.yaml",
            "type: rollback",
            "type: rolback",
            "rolback",
        ),
        ("httproute.yaml", "weight: 95", "weigth: 95", "weigth"),
    ];
    for (file, from, to, expect) in cases {
        let text = std::fs::read_to_string(root().join("docs/kubernetes").join(file)).unwrap();
        assert!(text.contains(from), "{file} no longer has {from:?}");
        let broken = dir.path().join(file);
        std::fs::write(&broken, text.replacen(from, to, 1)).unwrap();
        let (ok, out) = validate(&[broken]);
        assert!(!ok, "{file} with {to:?} passed:\n{out}");
        assert!(out.contains(expect), "{file}: {out}");
    }
}

#[test]
fn the_judge_toml_in_the_configmap_parses() {
    let yaml = std::fs::read_to_string(root().join("docs/kubernetes/judge.yaml")).unwrap();
    let start = yaml.find("judge.toml: |\n").expect("a judge.toml key") + "judge.toml: |\n".len();
    let block: String = yaml[start..]
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let config =
        capstan_rollout::JudgeConfig::parse(&block, Path::new("docs/kubernetes/judge.yaml"))
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
    assert_eq!(config.metrics.len(), 2);
    assert_eq!(config.gates.len(), 1);
}
