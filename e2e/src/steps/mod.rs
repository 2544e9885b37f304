//! The steps of the page, one function each, and the order they run in.
//!
//! Each step replays what the page prints, looks at what the cluster did, and returns an
//! [`Outcome`]: what was observed, whether that is what Kubernetes should do at this version
//! (the truth, asserted), and whether it is what the page says (the claim, reported).

mod accounts;
mod api;
mod pod;
mod secret;
mod tokens;

pub use tokens::delete_and_wait;

use std::time::Duration;

use anyhow::Context;
use guide::Step;
use report::{Status, StepResult, Vantage};

use crate::{jwt::Token, shell::Place, target::Target};

/// The order steps run in. It is the catalogue's, except that `anonymous-denied` runs while
/// the pod still exists (the page's pod is deleted by `bound-token-pod-deleted`) and before
/// RBAC is granted. Reports always use the catalogue order.
pub const EXECUTION_ORDER: &[&str] = &[
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
    "anonymous-denied",
    "api-token-rbac",
    "legacy-token-no-exp",
    "bound-token-short-lived",
    "bound-token-pod-deleted",
    "legacy-token-secret-deleted",
];

/// How long one step may take, waits included.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(240);

/// What the steps learn and later steps use.
pub struct Replay {
    pub t: Target,
    /// Where in-pod lines run; set once `pod-running` knows whether the pod runs.
    pub place: Option<Place>,
    pub sa_uid: Option<String>,
    pub legacy_token: Option<Token>,
    pub pod_uid: Option<String>,
    pub bound_token: Option<(Token, Vantage)>,
}

impl Replay {
    pub fn new(t: Target) -> Replay {
        Replay {
            t,
            place: None,
            sa_uid: None,
            legacy_token: None,
            pod_uid: None,
            bound_token: None,
        }
    }

    pub fn place(&self) -> anyhow::Result<&Place> {
        self.place.as_ref().context(
            "sa-pod is not running on this node-backed cluster, so in-pod lines cannot run",
        )
    }

    pub fn legacy_token(&self) -> anyhow::Result<&Token> {
        self.legacy_token
            .as_ref()
            .context("the token Secret was never filled (see secret-populated)")
    }

    /// The host copy of the secret volume, for `vantage: host`.
    pub fn host_secret_dir(&self) -> std::path::PathBuf {
        self.t.workdir.path().join("secret-volume")
    }
}

/// The result of one step, before it becomes a report row.
pub struct Outcome {
    pub vantage: Vantage,
    pub observed: String,
    /// Set when the cluster did not do what Kubernetes should at this version.
    pub violation: Option<String>,
    pub claim_holds: bool,
    pub reason: String,
    pub source: String,
    pub skip: Option<String>,
}

impl Outcome {
    pub fn seen(vantage: Vantage, observed: impl Into<String>) -> Outcome {
        Outcome {
            vantage,
            observed: observed.into(),
            violation: None,
            claim_holds: true,
            reason: String::new(),
            source: String::new(),
            skip: None,
        }
    }

    pub fn skipped(reason: impl Into<String>) -> Outcome {
        Outcome {
            skip: Some(reason.into()),
            ..Outcome::seen(Vantage::Cluster, "not replayed")
        }
    }

    /// Asserts the truth: `ok` or the step fails with `expected`.
    pub fn truth(mut self, ok: bool, expected: impl Into<String>) -> Outcome {
        if !ok && self.violation.is_none() {
            self.violation = Some(expected.into());
        }
        self
    }

    /// Compares with the page: `holds` or a drift explained by `why`.
    pub fn claim(mut self, holds: bool, why: impl Into<String>) -> Outcome {
        if !holds {
            self.claim_holds = false;
            self.reason = join(&self.reason, &why.into());
        }
        self
    }

    /// A note on what differed from the page even though the step holds.
    pub fn note(mut self, note: impl Into<String>) -> Outcome {
        self.reason = join(&self.reason, &note.into());
        self
    }

    pub fn source(mut self, source: impl Into<String>) -> Outcome {
        self.source = join(&self.source, &source.into());
        self
    }

    pub fn into_result(self, step: &Step) -> StepResult {
        let (status, reason) = match (self.skip, self.violation) {
            (Some(why), _) => (Status::Skip, why),
            (None, Some(expected)) => (
                Status::Fail,
                join(
                    &format!("expected at this version: {expected}"),
                    &self.reason,
                ),
            ),
            (None, None) if self.claim_holds => (Status::Holds, self.reason),
            (None, None) => (Status::Drift, self.reason),
        };
        StepResult::new(step.id, status, self.vantage, step.doc_claim, self.observed)
            .with_reason(reason)
            .with_source(self.source)
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}; {b}"),
    }
}

/// Runs one step by id.
pub async fn run_step(r: &mut Replay, id: &str) -> anyhow::Result<Outcome> {
    match id {
        "sa-default-listed" => accounts::default_listed(r).await,
        "sa-default-token-secret" => accounts::default_token_secret(r).await,
        "sa-create" => accounts::create(r).await,
        "sa-no-auto-secret" => accounts::no_auto_secret(r).await,
        "secret-create" => secret::create(r).await,
        "secret-populated" => secret::populated(r).await,
        "sa-tokens-listed" => secret::tokens_listed(r).await,
        "pod-create" => pod::create(r).await,
        "pod-mounts-declared" => pod::mounts_declared(r).await,
        "pod-running" => pod::running(r).await,
        "pod-secret-files" => pod::secret_files(r).await,
        "svc-kubernetes" => api::svc_kubernetes(r).await,
        "api-no-ca" => api::no_ca(r).await,
        "doc-export-syntax" => api::export_syntax(r).await,
        "token-shape" => api::token_shape(r).await,
        "api-token-no-rbac" => api::token_no_rbac(r).await,
        "anonymous-denied" => api::anonymous_denied(r).await,
        "api-token-rbac" => api::token_rbac(r).await,
        "legacy-token-no-exp" => tokens::legacy_no_exp(r).await,
        "bound-token-short-lived" => tokens::bound_short_lived(r).await,
        "bound-token-pod-deleted" => tokens::bound_pod_deleted(r).await,
        "legacy-token-secret-deleted" => tokens::legacy_secret_deleted(r).await,
        other => anyhow::bail!("no replay for step `{other}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_step_runs_exactly_once() {
        let mut run: Vec<_> = EXECUTION_ORDER.to_vec();
        let mut catalogue = guide::step_ids();
        run.sort();
        catalogue.sort();
        assert_eq!(run, catalogue);
    }

    fn outcome() -> Outcome {
        Outcome::seen(Vantage::Cluster, "seen")
    }

    #[test]
    fn status_follows_truth_then_claim() {
        let step = guide::step("sa-create");
        assert_eq!(outcome().into_result(step).status, Status::Holds);
        assert_eq!(
            outcome()
                .claim(false, "page wrong")
                .into_result(step)
                .status,
            Status::Drift
        );
        let failed = outcome()
            .claim(false, "page wrong")
            .truth(false, "SECRETS 0")
            .into_result(step);
        assert_eq!(failed.status, Status::Fail);
        assert!(
            failed
                .reason
                .starts_with("expected at this version: SECRETS 0"),
            "{}",
            failed.reason
        );
        assert_eq!(
            Outcome::skipped("no node").into_result(step).status,
            Status::Skip
        );
    }
}
