//! Kubeconfig files with the certificates embedded, so each file stands alone (it can be copied
//! or handed to kubectl without the pki folder).

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use base64::{engine::general_purpose::STANDARD, Engine};

use crate::{pki::CertKey, Error};

/// The kubeconfig text for one user of the cluster named `cluster`.
pub fn render(cluster: &str, server: &str, ca_pem: &str, user: &str, cert: &CertKey) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
    client-certificate-data: {crt}
    client-key-data: {key}
contexts:
- name: {user}@{cluster}
  context:
    cluster: {cluster}
    user: {user}
    namespace: default
current-context: {user}@{cluster}
",
        ca = STANDARD.encode(ca_pem),
        crt = STANDARD.encode(&cert.cert_pem),
        key = STANDARD.encode(&cert.key_pem),
    )
}

/// Writes a kubeconfig readable by its owner only: it holds a private key.
pub fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(Error::io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reads_what_we_write() {
        let cert = CertKey {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let text = render(
            "local-1.29",
            "https://127.0.0.1:6443",
            "CA",
            "kubernetes-admin",
            &cert,
        );
        let config = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        assert_eq!(
            config.current_context.as_deref(),
            Some("kubernetes-admin@local-1.29")
        );
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
    }
}
