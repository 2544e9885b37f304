//! The truth for a version: what upstream Kubernetes does, with the source that says so.
//!
//! The page's claims are in `guide`; the harness compares what it saw with both.

use crate::target::Target;

/// An expectation and where it comes from.
pub struct Truth<T> {
    pub value: T,
    pub source: &'static str,
}

/// KEP-2799 and the v1.24 changelog; the gate's default in v1.24.17's feature table.
const NO_AUTO_GENERATION_SOURCE: &str =
    "KEP-2799 (reduction of secret-based service account tokens): \
LegacyServiceAccountTokenNoAutoGeneration is beta and on by default from v1.24 (CHANGELOG-1.24; \
pkg/features/kube_features.go at v1.24.17: {Default: true, PreRelease: Beta}), GA in v1.26, \
and the gate is gone by v1.29 (not in kube_features.go at v1.29.2)";

/// Whether the tokens controller auto-creates a `<sa>-token-*` Secret for every ServiceAccount.
pub fn legacy_secrets_auto_created(target: &Target) -> Truth<bool> {
    let value = if !target.pin.at_least(1, 24) {
        true
    } else if target.pin.at_least(1, 26) {
        // GA and locked to true from v1.26; removed later, so no gate can turn it off.
        false
    } else {
        !target
            .gate("LegacyServiceAccountTokenNoAutoGeneration")
            .unwrap_or(true)
    };
    Truth {
        value,
        source: NO_AUTO_GENERATION_SOURCE,
    }
}

/// The page's own rule: "In Kubernetes clusters earlier than v1.25, a secret was automatically
/// generated for each service account".
pub fn page_says_auto_created(target: &Target) -> bool {
    !target.pin.at_least(1, 25)
}

/// How the API server words a refused resource request.
pub const FORBIDDEN_SOURCE: &str = "k8s.io/apiserver pkg/endpoints/handlers/responsewriters/errors.go \
forbiddenMessage: resource requests read `User %q cannot %s resource %q in API group %q in the namespace %q`; \
`cannot %s path %q` is only for non-resource URLs";

/// Bound tokens carry `exp` and pod claims (KEP-1205); the kubelet asks for 3607 s and the API
/// server extends such tokens to a year while `--service-account-extend-token-expiration` is on
/// (its default), marking the real limit in `kubernetes.io.warnafter`.
pub const BOUND_TOKEN_SOURCE: &str = "KEP-1205 (bound service account tokens); \
pkg/registry/core/serviceaccount/storage/token.go: tokens of 3607 s bound to a pod are extended \
to one year when --service-account-extend-token-expiration=true (the default), with warnafter";

/// Legacy Secret tokens are checked against the Secret on every request.
pub const LEGACY_TOKEN_SOURCE: &str = "pkg/serviceaccount/legacy.go: legacy tokens carry no exp; \
the validator looks up the Secret named in the token and refuses the token once it is gone";

/// The API server caches successful token authentications for 10 s
/// (pkg/kubeapiserver/options/authentication.go: TokenSuccessCacheTTL), so a revoked token can
/// still work that long.
pub const TOKEN_CACHE_TTL_SECS: u64 = 10;

/// POSIX shell grammar for `export`.
pub const EXPORT_SOURCE: &str =
    "POSIX.1-2017 Shell Command Language, 2.14 export: `export name[=word]...`; \
an assignment has no blanks around `=`, so `=` alone is taken as a (bad) variable name";

/// The tokens controller fills a manually created token Secret.
pub const TOKENS_CONTROLLER_SOURCE: &str = "pkg/controller/serviceaccount/tokens_controller.go: \
fills kubernetes.io/service-account-token Secrets with token, ca.crt and namespace and sets the \
kubernetes.io/service-account.uid annotation";

/// ServiceAccount admission adds the projected token volume (BoundServiceAccountTokenVolume GA in v1.22).
pub const ADMISSION_SOURCE: &str = "plugin/pkg/admission/serviceaccount/admission.go: \
adds a projected kube-api-access-<random> volume mounted read-only at \
/var/run/secrets/kubernetes.io/serviceaccount (BoundServiceAccountTokenVolume, GA in v1.22)";
