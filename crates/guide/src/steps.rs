//! The step catalogue of `page/STEPS.md`: stable ids, in the page's order, with the page's claim.

/// One documented step (or one claim of the page's notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Stable id, a public contract: every report row carries it.
    pub id: &'static str,
    /// The page section it comes from.
    pub section: &'static str,
    /// What is replayed, as the page prints it.
    pub replayed: &'static str,
    /// What the page says a reader will see.
    pub doc_claim: &'static str,
    /// The page runs it inside the pod; without a node it is replayed from the host.
    pub in_pod: bool,
    /// It cannot be replayed at all without a node (the pod must run).
    pub needs_node: bool,
}

const AUTH: &str = "Authentication and Service Accounts";
const CREATE: &str = "Creating a Service Account";
const USE: &str = "Using a Service Account in a Pod";
const NOTES: &str = "Notes (token lifetime)";

const fn entry(
    id: &'static str,
    section: &'static str,
    replayed: &'static str,
    doc_claim: &'static str,
) -> Step {
    Step {
        id,
        section,
        replayed,
        doc_claim,
        in_pod: false,
        needs_node: false,
    }
}

const fn in_pod(mut s: Step) -> Step {
    s.in_pod = true;
    s
}

const fn needs_node(mut s: Step) -> Step {
    s.needs_node = true;
    s.in_pod = true;
    s
}

/// Every step, in catalogue order.
pub const STEPS: &[Step] = &[
    entry("sa-default-listed", AUTH, "kubectl get sa",
        "`default` is listed with SECRETS 1"),
    entry("sa-default-token-secret", AUTH, "kubectl describe sa default",
        "before v1.25 Mountable secrets and Tokens name an auto-created default-token-* Secret; from v1.25 both are <none>"),
    entry("sa-create", CREATE, "kubectl create serviceaccount sa-example; kubectl get sa",
        "serviceaccount/sa-example created; listed with SECRETS 0 (v1.25+, the page's rule: a secret is auto-created before v1.25)"),
    entry("sa-no-auto-secret", CREATE, "kubectl describe sa sa-example",
        "Mountable secrets and Tokens are <none>: no secret is auto-created from v1.25 (one is before v1.25)"),
    entry("secret-create", CREATE, "kubectl apply -f - (the page's Secret manifest)",
        "the kubernetes.io/service-account-token Secret sa-example-token is created"),
    entry("secret-populated", CREATE, "kubectl get secrets; kubectl describe secret sa-example-token",
        "sa-example-token has DATA 3: ca.crt, namespace (7 bytes, `default`), token; annotated with the SA's uid"),
    entry("sa-tokens-listed", CREATE, "kubectl describe sa sa-example",
        "Tokens: sa-example-token (Mountable secrets: <none>)"),
    entry("pod-create", USE, "kubectl create -f sa-pod.yaml",
        "pod/sa-pod created, using serviceAccountName sa-example"),
    entry("pod-mounts-declared", USE, "kubectl describe pod sa-pod",
        "Mounts: /etc/secret-volume from secret-volume (ro) and /var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-* (ro)"),
    needs_node(entry("pod-running", USE, "kubectl get pod",
        "sa-pod is Running, READY 1/1")),
    needs_node(entry("pod-secret-files", USE, "kubectl exec -it sa-pod -- /bin/sh; cd /etc/secret-volume; ls",
        "ca.crt namespace token")),
    entry("svc-kubernetes", USE, "kubectl get svc",
        "a `kubernetes` Service of type ClusterIP on 443/TCP"),
    in_pod(entry("api-no-ca", USE, "curl https://10.247.0.1:443/api/v1/namespaces/default/pods",
        "curl: (60) SSL certificate problem: unable to get local issuer certificate")),
    in_pod(entry("doc-export-syntax", USE, "export CURL_CA_BUNDLE = /etc/secret-volume/ca.crt",
        "the line sets CURL_CA_BUNDLE to the Secret's ca.crt")),
    in_pod(entry("token-shape", USE, "TOKEN=$(cat /etc/secret-volume/token); echo $TOKEN",
        "a token beginning eyJhbGciOiJSUzI1NiIsImtpZCI6I... (a JWT header: RS256 with a key id)")),
    in_pod(entry("api-token-no-rbac", USE, "curl -H \"Authorization: Bearer $TOKEN\" https://10.247.0.1:443/api/v1/namespaces/default/pods",
        "refused for lack of permission: cannot get path \\\"/api/v1/namespaces/default/pods\\\"")),
    in_pod(entry("api-token-rbac", USE, "the same curl once RBAC allows sa-example to list pods",
        "the API server answers with \"kind\": \"PodList\"")),
    entry("legacy-token-no-exp", NOTES, "decode the token of the manually created Secret",
        "a manually created secret token never expires"),
    in_pod(entry("bound-token-short-lived", NOTES, "decode the projected token of kube-api-access-*",
        "TokenRequest tokens are valid for a fixed period")),
    in_pod(entry("bound-token-pod-deleted", NOTES, "use the projected token after deleting the pod",
        "TokenRequest tokens become invalid once the pod is deleted")),
    entry("legacy-token-secret-deleted", NOTES, "use the secret token after deleting the Secret",
        "(implied) the Secret is what keeps the token alive"),
    in_pod(entry("anonymous-denied", NOTES, "curl the pod list with the CA but no token",
        "without a token the pod cannot read pods"),
    ),
];

/// The step with this id; panics on an id that is not in the catalogue (a programming error).
pub fn step(id: &str) -> &'static Step {
    STEPS
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no step `{id}` in the catalogue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids in the catalogue's tables, in order.
    fn ids_in_steps_md(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_catalogue_matches_steps_md() {
        let md = include_str!("../page/STEPS.md");
        let ours: Vec<_> = STEPS.iter().map(|s| s.id.to_string()).collect();
        assert_eq!(ours, ids_in_steps_md(md));
    }

    /// The copy in this repo must be the one the project was given, when it is beside us.
    #[test]
    fn the_copies_match_shared_when_present() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
        for (ours, theirs) in [
            (include_str!("../page/STEPS.md"), "STEPS.md"),
            (
                include_str!("../page/service-accounts.txt"),
                "seed/000_5b887fa51097ccb3.txt",
            ),
        ] {
            match std::fs::read_to_string(shared.join(theirs)) {
                Ok(text) => assert_eq!(
                    ours, text,
                    "crates/guide/page is stale against shared/{theirs}"
                ),
                Err(_) => eprintln!("shared/{theirs} not beside the repo: copy not compared"),
            }
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<_> = STEPS.iter().map(|s| s.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), STEPS.len());
    }
}
