//! The cluster's certificates and keys, made in Rust at every start.
//!
//! The layout follows kubeadm's (`/etc/kubernetes/pki`): one CA signs the API server's serving
//! certificate and the client certificates; the ServiceAccount signing key is a separate RSA
//! key pair. Identities follow the RBAC bootstrap policy: the admin is in `system:masters`
//! (bound to `cluster-admin`), the controller manager is the user
//! `system:kube-controller-manager` (bound to `system:kube-controller-manager`)
//! (https://kubernetes.io/docs/reference/access-authn-authz/rbac/#core-component-roles).

use std::{fs, net::IpAddr, path::Path};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

use crate::Error;

/// The DNS names every API server certificate carries: what pods and kubeadm use to reach it.
pub const APISERVER_DNS_NAMES: [&str; 5] = [
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKey {
    // Keys stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey").finish_non_exhaustive()
    }
}

/// Everything the control plane needs, in memory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: CertKey,
    pub apiserver: CertKey,
    pub admin: CertKey,
    pub controller_manager: CertKey,
    /// PKCS#8 PEM of the ServiceAccount signing key.
    pub sa_key_pem: String,
    /// SPKI PEM of its public half.
    pub sa_pub_pem: String,
    /// The node's identities, when the cluster has one.
    pub node: Option<NodePki>,
}

/// Who the node is and where it lives: what its certificates name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The Node's name (`sa-replay-node`).
    pub name: String,
    /// The node's address: the bridge gateway, where the API server and kubelet listen.
    pub ip: IpAddr,
}

/// The certificates of the node's components, all signed by the cluster CA.
///
/// Identities follow what the authorizers expect: the kubelet is `system:node:<name>` in
/// `system:nodes`, which the Node authorizer and the NodeRestriction admission plugin key on
/// (https://kubernetes.io/docs/reference/access-authn-authz/node/); the scheduler and
/// kube-proxy are the users `system:kube-scheduler` and `system:kube-proxy`, bound by the
/// RBAC bootstrap policy (`system:kube-scheduler`, `system:node-proxier`).
#[derive(Debug, Clone)]
pub struct NodePki {
    pub scheduler: CertKey,
    pub kubelet_client: CertKey,
    /// The kubelet's serving certificate, so the API server can verify it
    /// (`--kubelet-certificate-authority`) on `kubectl exec` and `logs`.
    pub kubelet_serving: CertKey,
    pub kube_proxy: CertKey,
    /// The API server's client certificate towards kubelets (`--kubelet-client-certificate`);
    /// in `system:masters`, as kubeadm made it until v1.29, so the kubelet's webhook
    /// authorizer allows exec.
    pub apiserver_kubelet_client: CertKey,
}

/// File names inside `<state>/pki`.
pub mod files {
    pub const CA_CRT: &str = "ca.crt";
    pub const CA_KEY: &str = "ca.key";
    pub const APISERVER_CRT: &str = "apiserver.crt";
    pub const APISERVER_KEY: &str = "apiserver.key";
    pub const SA_KEY: &str = "sa.key";
    pub const SA_PUB: &str = "sa.pub";
    pub const KUBELET_CRT: &str = "kubelet.crt";
    pub const KUBELET_KEY: &str = "kubelet.key";
    pub const APISERVER_KUBELET_CLIENT_CRT: &str = "apiserver-kubelet-client.crt";
    pub const APISERVER_KUBELET_CLIENT_KEY: &str = "apiserver-kubelet-client.key";
}

/// Generates the RSA ServiceAccount key. RSA rather than ECDSA because it is what kubeadm (and
/// so kind) generates for `sa.key`, so tokens carry `alg: RS256` as on the clusters the guide
/// was written against. Slow-ish in debug builds (seconds), so callers run it on a thread
/// while etcd starts.
pub fn generate_sa_key() -> Result<(String, String), Error> {
    let pki = |detail: String| Error::Pki { detail };
    let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
        .map_err(|e| pki(format!("RSA key generation: {e}")))?;
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| pki(format!("RSA private key encoding: {e}")))?
        .to_string();
    let public = key
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| pki(format!("RSA public key encoding: {e}")))?;
    Ok((private, public))
}

/// The SANs of the API server certificate: the names above, loopback, and the first IP of the
/// service range (the `kubernetes` Service's ClusterIP, which in-cluster clients dial), and
/// the node's address when there is a node (the API server then listens there).
pub fn apiserver_sans(service_ip: IpAddr, node_ip: Option<IpAddr>) -> Vec<SanType> {
    let mut sans: Vec<SanType> = APISERVER_DNS_NAMES
        .iter()
        .map(|n| SanType::DnsName((*n).try_into().expect("static DNS names are valid")))
        .collect();
    sans.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    sans.push(SanType::IpAddress(service_ip));
    sans.extend(node_ip.map(SanType::IpAddress));
    sans
}

/// Makes the CA and every certificate of a control plane without a node; `sa` is the pair
/// from [`generate_sa_key`].
pub fn generate(service_ip: IpAddr, sa: (String, String)) -> Result<Pki, Error> {
    generate_for(service_ip, sa, None)
}

/// Makes the CA and every certificate, the node's too when `node` is given.
pub fn generate_for(
    service_ip: IpAddr,
    sa: (String, String),
    node: Option<&NodeIdentity>,
) -> Result<Pki, Error> {
    let rc = |e: rcgen::Error| Error::Pki {
        detail: e.to_string(),
    };

    let ca_key = KeyPair::generate().map_err(rc)?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("kubernetes", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(rc)?;
    let ca = CertKey {
        cert_pem: ca_cert.pem(),
        key_pem: ca_key.serialize_pem(),
    };
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |cn: &str,
                org: Option<&str>,
                sans: Vec<SanType>,
                usage: ExtendedKeyUsagePurpose|
     -> Result<CertKey, Error> {
        let key = KeyPair::generate().map_err(rc)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn, org);
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).map_err(rc)?;
        Ok(CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    };

    let node_pki = match node {
        None => None,
        Some(node) => {
            let node_user = format!("system:node:{}", node.name);
            let client = ExtendedKeyUsagePurpose::ClientAuth;
            Some(NodePki {
                scheduler: leaf("system:kube-scheduler", None, vec![], client.clone())?,
                kubelet_client: leaf(&node_user, Some("system:nodes"), vec![], client.clone())?,
                kubelet_serving: leaf(
                    &node_user,
                    Some("system:nodes"),
                    vec![
                        SanType::DnsName(node.name.as_str().try_into().map_err(
                            |e: rcgen::Error| Error::Pki {
                                detail: format!("node name {}: {e}", node.name),
                            },
                        )?),
                        SanType::IpAddress(node.ip),
                        SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
                    ],
                    ExtendedKeyUsagePurpose::ServerAuth,
                )?,
                kube_proxy: leaf("system:kube-proxy", None, vec![], client.clone())?,
                apiserver_kubelet_client: leaf(
                    "kube-apiserver-kubelet-client",
                    Some("system:masters"),
                    vec![],
                    client,
                )?,
            })
        }
    };

    Ok(Pki {
        apiserver: leaf(
            "kube-apiserver",
            None,
            apiserver_sans(service_ip, node.map(|n| n.ip)),
            ExtendedKeyUsagePurpose::ServerAuth,
        )?,
        admin: leaf(
            "kubernetes-admin",
            Some("system:masters"),
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?,
        controller_manager: leaf(
            "system:kube-controller-manager",
            None,
            vec![],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?,
        ca,
        sa_key_pem: sa.0,
        sa_pub_pem: sa.1,
        node: node_pki,
    })
}

fn name(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(org) = org {
        dn.push(DnType::OrganizationName, org);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

impl Pki {
    /// Writes the files the components read into `dir`, keys readable by the owner only.
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let mut entries = vec![
            (files::CA_CRT, &self.ca.cert_pem, 0o644),
            (files::CA_KEY, &self.ca.key_pem, 0o600),
            (files::APISERVER_CRT, &self.apiserver.cert_pem, 0o644),
            (files::APISERVER_KEY, &self.apiserver.key_pem, 0o600),
            (files::SA_KEY, &self.sa_key_pem, 0o600),
            (files::SA_PUB, &self.sa_pub_pem, 0o644),
        ];
        if let Some(node) = &self.node {
            entries.extend([
                (files::KUBELET_CRT, &node.kubelet_serving.cert_pem, 0o644),
                (files::KUBELET_KEY, &node.kubelet_serving.key_pem, 0o600),
                (
                    files::APISERVER_KUBELET_CLIENT_CRT,
                    &node.apiserver_kubelet_client.cert_pem,
                    0o644,
                ),
                (
                    files::APISERVER_KUBELET_CLIENT_KEY,
                    &node.apiserver_kubelet_client.key_pem,
                    0o600,
                ),
            ]);
        }
        for (file, text, mode) in entries {
            let path = dir.join(file);
            fs::write(&path, text).map_err(Error::io(&path))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(Error::io(&path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apiserver_certificate_names_every_way_to_reach_it() {
        let sans = apiserver_sans("10.96.0.1".parse().unwrap(), None);
        for name in [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ] {
            assert!(
                sans.iter()
                    .any(|s| matches!(s, SanType::DnsName(n) if n.as_str() == name)),
                "{name} missing"
            );
        }
        for ip in ["127.0.0.1", "10.96.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(sans.contains(&SanType::IpAddress(ip)), "{ip} missing");
        }
    }

    #[test]
    fn generates_a_pem_set_signed_by_one_ca() {
        // A throwaway "SA key" keeps this test fast: RSA generation is slow in debug builds.
        let pki = generate(
            "10.96.0.1".parse().unwrap(),
            ("sa-private".into(), "sa-public".into()),
        )
        .unwrap();
        for cert in [&pki.ca, &pki.apiserver, &pki.admin, &pki.controller_manager] {
            assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        }
        assert!(!format!("{pki:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn with_a_node_the_apiserver_certificate_names_the_node_address() {
        let gateway: IpAddr = "10.244.3.1".parse().unwrap();
        let sans = apiserver_sans("10.96.0.1".parse().unwrap(), Some(gateway));
        for ip in ["127.0.0.1", "10.96.0.1", "10.244.3.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(sans.contains(&SanType::IpAddress(ip)), "{ip} missing");
        }
    }

    #[test]
    fn a_node_gets_its_identities_and_files() {
        use std::os::unix::fs::PermissionsExt;
        let node = NodeIdentity {
            name: "sa-replay-node".into(),
            ip: "10.244.3.1".parse().unwrap(),
        };
        let pki = generate_for(
            "10.96.0.1".parse().unwrap(),
            ("k".into(), "p".into()),
            Some(&node),
        )
        .unwrap();
        let n = pki.node.as_ref().unwrap();
        for cert in [
            &n.scheduler,
            &n.kubelet_client,
            &n.kubelet_serving,
            &n.kube_proxy,
            &n.apiserver_kubelet_client,
        ] {
            assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        }
        let dir = tempfile::tempdir().unwrap();
        pki.write(dir.path()).unwrap();
        for key in [files::KUBELET_KEY, files::APISERVER_KUBELET_CLIENT_KEY] {
            let mode = fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let pki = generate("10.96.0.1".parse().unwrap(), ("k".into(), "p".into())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        pki.write(dir.path()).unwrap();
        for key in [files::CA_KEY, files::APISERVER_KEY, files::SA_KEY] {
            let mode = fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }
}
