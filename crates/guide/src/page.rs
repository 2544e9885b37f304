//! The page text and the artefacts cut out of it (manifests, commands, sample output).

use std::sync::OnceLock;

/// The published guide, verbatim (its navigation menu at the top is noise).
pub const PAGE: &str = include_str!("../page/service-accounts.txt");

/// Step 4.3 of "Using a Service Account in a Pod", exactly as printed (blanks around `=`).
pub const PAGE_EXPORT_LINE: &str = "export CURL_CA_BUNDLE = /etc/secret-volume/ca.crt";

/// The URL the page curls from inside the pod: the `kubernetes` Service of the page's
/// cluster (10.247.0.1 is from its provider's service range, not a Kubernetes default).
pub const PAGE_API_URL: &str = "https://10.247.0.1:443/api/v1/namespaces/default/pods";

/// How the page begins a token when it prints one (`echo $TOKEN`).
pub const PAGE_TOKEN_PREFIX: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6I";

/// The page's words for the API server's answer to a token without RBAC.
pub const PAGE_FORBIDDEN_WORDING: &str = r#"cannot get path \"/api/v1/namespaces/default/pods\""#;

/// The Secret manifest of "Creating a Service Account", step 2 (the heredoc body).
pub fn secret_manifest() -> &'static str {
    static MANIFEST: OnceLock<String> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let start = "kubectl apply -f - <<EOF\n";
        let body = after(PAGE, start).expect("the page has the Secret heredoc");
        let end = body
            .find("\n    EOF")
            .expect("the Secret heredoc ends with EOF");
        dedent(&body[..end])
    })
}

/// The `sa-pod.yaml` of "Using a Service Account in a Pod", step 1.
pub fn pod_manifest() -> &'static str {
    static MANIFEST: OnceLock<String> = OnceLock::new();
    MANIFEST.get_or_init(|| {
        let body = after(PAGE, "The file content is as follows:\n\n")
            .expect("the page introduces sa-pod.yaml");
        let end = body
            .find("\n\n")
            .expect("sa-pod.yaml ends with a blank line");
        dedent(&body[..end])
    })
}

fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.find(marker).map(|at| &text[at + marker.len()..])
}

/// Removes the page's list indentation (the smallest indent of any non-blank line).
fn dedent(block: &str) -> String {
    let indent = block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out: String = block
        .lines()
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_manifest_is_cut_out_as_printed() {
        let m = secret_manifest();
        assert!(m.starts_with("apiVersion: v1 \nkind: Secret \n"), "{m:?}");
        assert!(
            m.ends_with("type: kubernetes.io/service-account-token \n"),
            "{m:?}"
        );
    }

    #[test]
    fn the_secret_manifest_parses_into_a_secret() {
        let secret: k8s_openapi::api::core::v1::Secret =
            serde_yaml::from_str(secret_manifest()).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some("sa-example-token"));
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/service-account-token")
        );
        let annotations = secret.metadata.annotations.unwrap();
        assert_eq!(
            annotations["kubernetes.io/service-account.name"],
            "sa-example"
        );
    }

    #[test]
    fn the_pod_manifest_parses_into_the_pages_pod() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_yaml::from_str(pod_manifest()).unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("sa-example"));
        assert_eq!(spec.containers[0].image.as_deref(), Some("nginx:latest"));
        let mount = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            ("/etc/secret-volume", Some(true))
        );
        assert_eq!(spec.image_pull_secrets.unwrap()[0].name, "default-secret");
    }

    #[test]
    fn the_pod_manifest_keeps_the_pages_comments() {
        assert!(pod_manifest().contains("#  Mount sa-example-token to the defined storage volume."));
    }

    #[test]
    fn printed_commands_are_on_the_page() {
        for text in [
            PAGE_EXPORT_LINE,
            PAGE_API_URL,
            PAGE_TOKEN_PREFIX,
            PAGE_FORBIDDEN_WORDING,
        ] {
            assert!(PAGE.contains(text), "not on the page: {text}");
        }
    }
}
