//! Sample data for the unit tests: a report touching every status and vantage, and tokens
//! built at run time (a repository hook rejects committed full JWTs, rightly).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use cluster::{FeatureGates, Provider};

use crate::{Report, Run, Status, StepResult, Vantage};

/// The catalogue's order, as `guide` would pass it.
pub const STEP_ORDER: &[&str] = &[
    "sa-default-listed",
    "sa-default-token-secret",
    "sa-create",
    "sa-no-auto-secret",
    "secret-create",
    "secret-populated",
    "sa-tokens-listed",
    "pod-create",
    "pod-mounts-declared",
    "pod-running",
    "pod-secret-files",
    "svc-kubernetes",
    "api-no-ca",
    "doc-export-syntax",
    "token-shape",
    "api-token-no-rbac",
    "api-token-rbac",
];

/// A JWT shaped like a legacy service-account token (RS256 header with a key id).
pub fn jwt() -> String {
    jwt_from("test-key-1")
}

/// A JWT whose header names `kid`, so tests can make several distinct tokens.
pub fn jwt_from(kid: &str) -> String {
    let header = format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#);
    let payload = r#"{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"default","sub":"system:serviceaccount:default:sa-example"}"#;
    let signature: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(31)).collect();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Two runs, in report order (by version, steps in catalogue order), with every status, every vantage, a token in free text, and the
/// characters that Markdown tables and XML must escape.
pub fn sample_report() -> Report {
    let token = jwt();
    let old = Run {
        kubernetes: "v1.24.17".into(),
        provider: Provider::Local,
        feature_gates: FeatureGates::new(),
        notes: vec!["kubelet runs as a local process".into()],
        steps: vec![
            StepResult::new(
                "sa-default-listed",
                Status::Holds,
                Vantage::Cluster,
                "default exists",
                "NAME      SECRETS   AGE\ndefault   1         5s",
            ),
            StepResult::new(
                "sa-default-token-secret",
                Status::Holds,
                Vantage::Cluster,
                "a default-token-* secret",
                "Tokens: default-token-abcde",
            ),
            StepResult::new(
                "pod-running",
                Status::Fail,
                Vantage::Cluster,
                "Running",
                "Pending <none> & waiting",
            )
            .with_reason(format!("pod never scheduled; token {token} was mounted")),
            StepResult::new(
                "token-shape",
                Status::Holds,
                Vantage::Pod,
                "an RS256 JWT",
                format!("$ cat /etc/secret-volume/token\n{token}"),
            ),
        ],
    };
    let new = Run {
        kubernetes: "v1.29.2".into(),
        provider: Provider::Local,
        feature_gates: FeatureGates::from([("LegacyServiceAccountTokenCleanUp".into(), false)]),
        notes: vec!["no node: pod steps run from the host".into()],
        steps: vec![
            StepResult::new(
                "sa-default-listed",
                Status::Holds,
                Vantage::Cluster,
                "default exists",
                "NAME      SECRETS   AGE\ndefault   0         5s",
            ),
            StepResult::new(
                "sa-default-token-secret",
                Status::Drift,
                Vantage::Cluster,
                "Tokens: default-token-* | mountable secrets",
                "Tokens: <none>\n```\nnot a fence end",
            )
            .with_reason("token secrets are no longer auto-generated from v1.24 (LegacyServiceAccountTokenNoAutoGeneration)")
            .with_source("https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/"),
            StepResult::new(
                "pod-running",
                Status::Skip,
                Vantage::Cluster,
                "Running",
                "",
            )
            .with_reason("no node: the local provider runs no kubelet"),
            StepResult::new(
                "api-token-no-rbac",
                Status::Holds,
                Vantage::Host,
                "403 Forbidden",
                format!("curl -H 'Authorization: Bearer {token}' ... 403 \"Forbidden\""),
            ),
        ],
    };
    Report {
        runs: vec![old, new],
    }
}

/// The sample report with a full token in every free-text field, for the writers' redaction
/// tests.
pub fn tokens_everywhere() -> Report {
    let token = jwt();
    let mut report = sample_report();
    for run in &mut report.runs {
        run.notes.push(format!("kubeconfig token {token}"));
        for step in &mut run.steps {
            for field in [
                &mut step.doc_claim,
                &mut step.observed,
                &mut step.reason,
                &mut step.source,
            ] {
                field.push_str(&format!(" Bearer {token}"));
            }
        }
    }
    report
}
