//! deploy/kubernetes validates offline: `deploy/kubernetes/check.py` runs
//! `kubernetes-validate --strict` against the oldest and newest supported Kubernetes minor
//! and checks that labels, selectors, ports, references and the embedded configs line up.
//! A copy with one broken selector must fail, naming it.

// Tests: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::repo_root;

/// Runs check.py (on `dir`, or on deploy/kubernetes) from the repository root: (success, output).
fn check(dir: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new("python3");
    cmd.arg("deploy/kubernetes/check.py")
        .current_dir(repo_root());
    if let Some(d) = dir {
        cmd.arg("--dir").arg(d);
    }
    let out = cmd
        .output()
        .expect("python3 runs (.ci/run installs pyyaml and kubernetes-validate)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A temporary folder, removed when dropped (also when the test fails).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn kubernetes_manifests_validate_and_line_up() {
    let (ok, out) = check(None);
    assert!(ok, "deploy/kubernetes/check.py failed:\n{out}");
    assert!(
        out.contains("--strict: Kubernetes") && out.contains("passed") && out.ends_with("OK\n"),
        "unexpected check.py output:\n{out}"
    );

    // The same manifests with the viewers' Service selecting no pod must fail, by name.
    let src = repo_root().join("deploy/kubernetes");
    let dir = TempDir(std::env::temp_dir().join(format!("k8s-manifests-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&p, dir.0.join(p.file_name().unwrap())).unwrap();
        }
    }
    let edge = dir.0.join("edge.yaml");
    let text = std::fs::read_to_string(&edge).unwrap();
    let selector = "  selector:\n    app.kubernetes.io/name: edge\n";
    assert!(
        text.contains(selector),
        "edge.yaml has no Service selector to break"
    );
    let broken = text.replacen(
        selector,
        "  selector:\n    app.kubernetes.io/name: edg\n",
        1,
    );
    std::fs::write(&edge, broken).unwrap();
    let (ok, out) = check(Some(&dir.0));
    assert!(
        !ok,
        "check.py accepted a Service selector that matches no pods:\n{out}"
    );
    assert!(
        out.contains("PROBLEM edge.yaml: Service/edge: selector")
            && out.contains("matches no workload's pod template labels"),
        "check.py failed without naming the broken selector:\n{out}"
    );
}
