//! One test per step of the guide, run for every version `cargo xtask e2e` started.
//!
//! Each is `#[ignore]`d: it needs a cluster. `cargo xtask e2e` runs them with `--ignored`
//! and a name filter per version (`v1_24`, `v1_29`); without its clusters they fail, never pass.

use rstest::rstest;
use rstest_reuse::{self, apply, template};

/// The versions every step runs on; `cargo xtask e2e --k8s` picks among them by name.
#[template]
#[rstest]
#[case::v1_24("1.24")]
#[case::v1_29("1.29")]
fn versions(#[case] minor: &str) {}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn sa_default_listed(#[case] minor: &str) {
    e2e::assert_step(minor, "sa-default-listed");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn sa_default_token_secret(#[case] minor: &str) {
    e2e::assert_step(minor, "sa-default-token-secret");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn sa_create(#[case] minor: &str) {
    e2e::assert_step(minor, "sa-create");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn sa_no_auto_secret(#[case] minor: &str) {
    e2e::assert_step(minor, "sa-no-auto-secret");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn secret_create(#[case] minor: &str) {
    e2e::assert_step(minor, "secret-create");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn secret_populated(#[case] minor: &str) {
    e2e::assert_step(minor, "secret-populated");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn sa_tokens_listed(#[case] minor: &str) {
    e2e::assert_step(minor, "sa-tokens-listed");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn pod_create(#[case] minor: &str) {
    e2e::assert_step(minor, "pod-create");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn pod_mounts_declared(#[case] minor: &str) {
    e2e::assert_step(minor, "pod-mounts-declared");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn pod_running(#[case] minor: &str) {
    e2e::assert_step(minor, "pod-running");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn pod_secret_files(#[case] minor: &str) {
    e2e::assert_step(minor, "pod-secret-files");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn svc_kubernetes(#[case] minor: &str) {
    e2e::assert_step(minor, "svc-kubernetes");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn api_no_ca(#[case] minor: &str) {
    e2e::assert_step(minor, "api-no-ca");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn doc_export_syntax(#[case] minor: &str) {
    e2e::assert_step(minor, "doc-export-syntax");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn token_shape(#[case] minor: &str) {
    e2e::assert_step(minor, "token-shape");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn api_token_no_rbac(#[case] minor: &str) {
    e2e::assert_step(minor, "api-token-no-rbac");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn api_token_rbac(#[case] minor: &str) {
    e2e::assert_step(minor, "api-token-rbac");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn legacy_token_no_exp(#[case] minor: &str) {
    e2e::assert_step(minor, "legacy-token-no-exp");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn bound_token_short_lived(#[case] minor: &str) {
    e2e::assert_step(minor, "bound-token-short-lived");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn bound_token_pod_deleted(#[case] minor: &str) {
    e2e::assert_step(minor, "bound-token-pod-deleted");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn legacy_token_secret_deleted(#[case] minor: &str) {
    e2e::assert_step(minor, "legacy-token-secret-deleted");
}

#[apply(versions)]
#[ignore = "needs a cluster: run `cargo xtask e2e`"]
fn anonymous_denied(#[case] minor: &str) {
    e2e::assert_step(minor, "anonymous-denied");
}
