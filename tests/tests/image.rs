//! The OCI images (`deploy/image`): `deploy/image/test.sh` builds the static binaries and the
//! three images with buildah (kept when up to date), then runs them with podman as Kubernetes
//! would (read-only root, no capabilities, the image's user) in a network namespace of its
//! own: the origin's and the edge's `/healthz`, the edge's `/readyz` through a name in
//! `/etc/hosts`, a playlist and a segment through the edge, `player-sim --help` and a short
//! run with the player-sim Job's arguments, and `--check` of every workload of
//! deploy/kubernetes with its args and ConfigMap. The script removes what it started, also on
//! failure and on its own timeout.
//!
//! From a clean target/image the release build takes several minutes, so nextest runs this
//! test alone (.config/nextest.toml).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Instant;

use e2e::repo_root;

#[test]
fn image_builds_and_serves_healthz() {
    let start = Instant::now();
    let out = Command::new("bash")
        .arg("deploy/image/test.sh")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        // The script bounds itself (build included); a test run may ask for less.
        .env(
            "IMAGE_TEST_TIMEOUT",
            std::env::var("IMAGE_TEST_TIMEOUT").unwrap_or_else(|_| "1200".into()),
        )
        .output()
        .expect("run deploy/image/test.sh (.ci/run installs buildah, podman, runc)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("== image test passed"),
        "deploy/image/test.sh failed ({}) after {:.0} s:\n{text}",
        out.status,
        start.elapsed().as_secs_f64()
    );
    for want in [
        "http://127.0.0.1:8080/healthz: 200 ok",
        "http://127.0.0.1:9081/healthz: 200 ok",
        "http://127.0.0.1:9081/readyz: 200 ready",
        "http://127.0.0.1:19081/readyz: 200 ready",
        "bytes of MPEG-TS",
        "report-0.json: 3 players, none failed",
        "shield: live-stack/edge:",
    ] {
        assert!(text.contains(want), "no `{want}` in the output:\n{text}");
    }
    println!("{text}");
}
