//! The command lines of etcd, kube-apiserver and kube-controller-manager: pure functions of
//! the state-dir layout, the ports and the feature gates, so they are unit-tested.
//!
//! The reference is `hack/local-up-cluster.sh` at both pinned tags, trimmed to what a
//! control plane without nodes needs, plus kubeadm's choices where the guide's output depends
//! on them (issuer, service CIDR). Every listener binds 127.0.0.1 only.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use cluster::FeatureGates;

use crate::pki::files;

/// The service range. kubeadm's default, virtual (no route or interface is ever made for it
/// without a node and kube-proxy), so it cannot collide with the host's networks.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// The `kubernetes` Service's ClusterIP: the first address of [`SERVICE_CIDR`].
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// kubeadm's issuer (`https://kubernetes.default.svc.cluster.local`), so tokens' `iss` reads
/// as on kind. `--service-account-issuer` is required since v1.20 (CHANGELOG-1.20,
/// "ServiceAccountIssuerDiscovery" GA).
pub const SA_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The loopback address every component binds.
pub const LOOPBACK: &str = "127.0.0.1";

/// The ports of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
}

/// Where things live inside a cluster's state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn pki_file(&self, name: &str) -> PathBuf {
        self.pki().join(name)
    }
    pub fn etcd_data(&self) -> PathBuf {
        self.root.join("etcd-data")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs().join(format!("{component}.log"))
    }
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.root.join("admin.kubeconfig")
    }
    pub fn controller_manager_kubeconfig(&self) -> PathBuf {
        self.root.join("controller-manager.kubeconfig")
    }
    /// Self-signed serving certificates kube-controller-manager makes for itself.
    pub fn controller_manager_certs(&self) -> PathBuf {
        self.root.join("controller-manager-certs")
    }
    /// The record `cluster down` reads: ports, pids, the ClusterInfo.
    pub fn record(&self) -> PathBuf {
        self.root.join("cluster.json")
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `--feature-gates=A=true,B=false`, sorted by name; `None` without gates. Parsing the
/// user's text is `cluster::parse_feature_gates`, shared with the kind provider.
pub fn feature_gates_flag(gates: &FeatureGates) -> Option<String> {
    (!gates.is_empty()).then(|| format!("--feature-gates={}", cluster::format_feature_gates(gates)))
}

/// etcd: one member, plain HTTP on loopback (as local-up-cluster.sh runs it), its own data dir.
pub fn etcd_args(layout: &Layout, ports: &Ports) -> Vec<String> {
    let client = format!("http://{LOOPBACK}:{}", ports.etcd_client);
    let peer = format!("http://{LOOPBACK}:{}", ports.etcd_peer);
    vec![
        "--name=sa-replay".into(),
        format!("--data-dir={}", path(&layout.etcd_data())),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        // etcd binds a peer listener even alone; without these it takes localhost:2380.
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=sa-replay={peer}"),
        "--initial-cluster-state=new".into(),
        // The zap logger; 3.4's default capnslog prints a deprecation warning per start.
        "--logger=zap".into(),
        "--log-outputs=stderr".into(),
    ]
}

/// The address kube-apiserver listens on and that kubeconfigs name: loopback without a
/// node; with one, the node's bridge gateway, the only address pods can reach it on.
pub fn apiserver_host(node_ip: Option<Ipv4Addr>) -> String {
    node_ip.map_or_else(|| LOOPBACK.to_string(), |ip| ip.to_string())
}

/// kube-apiserver. Defaults kept on purpose: the admission plugins enabled by default include
/// `ServiceAccount` (pods get the projected `kube-api-access-*` volume, KEP-1205), and
/// `--service-account-lookup` is true.
///
/// `node_ip`: the node's bridge gateway when the cluster has a node. The API server then
/// binds and advertises it, so the `kubernetes` Service gets valid Endpoints (the default
/// `lease` reconciler writes them) and kube-proxy can route 10.96.0.1:443 to it; and it
/// reaches the kubelet there with its own client certificate, verifying the kubelet's.
pub fn apiserver_args(
    layout: &Layout,
    ports: &Ports,
    gates: &FeatureGates,
    node_ip: Option<Ipv4Addr>,
) -> Vec<String> {
    let pki = |f: &str| path(&layout.pki_file(f));
    let host = apiserver_host(node_ip);
    let mut args = vec![
        format!("--bind-address={host}"),
        format!("--secure-port={}", ports.apiserver),
        format!("--advertise-address={host}"),
    ];
    match node_ip {
        // Loopback, and no endpoint reconciler: the `kubernetes` Service is still created
        // (by the bootstrap controller), but its Endpoints would have to name a loopback
        // address, which Endpoints validation rejects; `none` keeps the log clean and the
        // apiserver from picking a host interface instead.
        None => args.push("--endpoint-reconciler-type=none".into()),
        Some(_) => args.extend([
            format!(
                "--kubelet-client-certificate={}",
                pki(files::APISERVER_KUBELET_CLIENT_CRT)
            ),
            format!(
                "--kubelet-client-key={}",
                pki(files::APISERVER_KUBELET_CLIENT_KEY)
            ),
            format!("--kubelet-certificate-authority={}", pki(files::CA_CRT)),
            // The Node's Hostname address (`sa-replay-node`) resolves nowhere; the default
            // order tries it first.
            "--kubelet-preferred-address-types=InternalIP".into(),
        ]),
    }
    args.extend([
        format!("--etcd-servers=http://{LOOPBACK}:{}", ports.etcd_client),
        format!("--cert-dir={}", path(&layout.pki())),
        format!("--tls-cert-file={}", pki(files::APISERVER_CRT)),
        format!("--tls-private-key-file={}", pki(files::APISERVER_KEY)),
        format!("--client-ca-file={}", pki(files::CA_CRT)),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--allow-privileged=true".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        format!("--service-account-issuer={SA_ISSUER}"),
        format!("--service-account-key-file={}", pki(files::SA_PUB)),
        format!("--service-account-signing-key-file={}", pki(files::SA_KEY)),
        // As kubeadm sets it: /debug/pprof is not part of what the guide exercises.
        "--profiling=false".into(),
    ]);
    args.extend(feature_gates_flag(gates));
    args
}

/// kube-controller-manager: the serviceaccount controller (creates `default`), the tokens
/// controller (fills `kubernetes.io/service-account-token` Secrets; it needs
/// `--service-account-private-key-file` and `--root-ca-file`), and the root-ca-cert-publisher
/// (`kube-root-ca.crt`, KEP-1205) all run under the default `--controllers=*`.
pub fn controller_manager_args(
    layout: &Layout,
    ports: &Ports,
    gates: &FeatureGates,
) -> Vec<String> {
    let pki = |f: &str| path(&layout.pki_file(f));
    let kubeconfig = path(&layout.controller_manager_kubeconfig());
    let mut args = vec![
        format!("--bind-address={LOOPBACK}"),
        format!("--secure-port={}", ports.controller_manager),
        format!("--cert-dir={}", path(&layout.controller_manager_certs())),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--service-account-private-key-file={}", pki(files::SA_KEY)),
        format!("--root-ca-file={}", pki(files::CA_CRT)),
        format!("--cluster-signing-cert-file={}", pki(files::CA_CRT)),
        format!("--cluster-signing-key-file={}", pki(files::CA_KEY)),
        "--use-service-account-credentials=true".into(),
        "--leader-elect=false".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--profiling=false".into(),
    ];
    args.extend(feature_gates_flag(gates));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Ports {
        Ports {
            etcd_client: 40001,
            etcd_peer: 40002,
            apiserver: 40003,
            controller_manager: 40004,
        }
    }

    fn gates() -> FeatureGates {
        FeatureGates::from([
            (
                "LegacyServiceAccountTokenNoAutoGeneration".to_string(),
                false,
            ),
            ("A".to_string(), true),
        ])
    }

    /// Every flag that names an address names loopback.
    fn assert_loopback_only(args: &[String]) {
        for arg in args {
            for needle in ["address=", "urls=", "servers=", "initial-cluster="] {
                if let Some((_, value)) = arg.split_once(needle) {
                    for part in value.split(',') {
                        assert!(part.contains("127.0.0.1"), "{arg} leaves loopback");
                    }
                }
            }
        }
    }

    #[test]
    fn etcd_listens_on_loopback_ports_with_its_own_data_dir() {
        let args = etcd_args(&Layout::new("/s"), &ports());
        assert!(args.contains(&"--listen-client-urls=http://127.0.0.1:40001".to_string()));
        assert!(args.contains(&"--listen-peer-urls=http://127.0.0.1:40002".to_string()));
        assert!(args.contains(&"--data-dir=/s/etcd-data".to_string()));
        assert_loopback_only(&args);
    }

    #[test]
    fn apiserver_runs_rbac_and_signs_service_account_tokens() {
        let args = apiserver_args(&Layout::new("/s"), &ports(), &gates(), None);
        for want in [
            "--authorization-mode=Node,RBAC",
            "--secure-port=40003",
            "--bind-address=127.0.0.1",
            "--etcd-servers=http://127.0.0.1:40001",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file=/s/pki/sa.pub",
            "--service-account-signing-key-file=/s/pki/sa.key",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--feature-gates=A=true,LegacyServiceAccountTokenNoAutoGeneration=false",
        ] {
            assert!(args.contains(&want.to_string()), "{want} missing: {args:?}");
        }
        // ServiceAccount admission must stay on.
        assert!(!args
            .iter()
            .any(|a| a.starts_with("--disable-admission-plugins")));
        assert_loopback_only(&args);
    }

    #[test]
    fn with_a_node_the_apiserver_serves_on_the_gateway_and_reaches_the_kubelet() {
        let gateway = Ipv4Addr::new(10, 244, 3, 1);
        let args = apiserver_args(&Layout::new("/s"), &ports(), &gates(), Some(gateway));
        for want in [
            "--bind-address=10.244.3.1",
            "--advertise-address=10.244.3.1",
            "--etcd-servers=http://127.0.0.1:40001",
            "--kubelet-client-certificate=/s/pki/apiserver-kubelet-client.crt",
            "--kubelet-client-key=/s/pki/apiserver-kubelet-client.key",
            "--kubelet-certificate-authority=/s/pki/ca.crt",
            "--kubelet-preferred-address-types=InternalIP",
        ] {
            assert!(args.contains(&want.to_string()), "{want} missing: {args:?}");
        }
        // The lease reconciler (the default) keeps the `kubernetes` Endpoints.
        assert!(!args
            .iter()
            .any(|a| a.starts_with("--endpoint-reconciler-type")));
        assert!(!args.iter().any(|a| a.contains("0.0.0.0")));
    }

    #[test]
    fn controller_manager_runs_the_token_controllers() {
        let args = controller_manager_args(&Layout::new("/s"), &ports(), &FeatureGates::new());
        for want in [
            "--service-account-private-key-file=/s/pki/sa.key",
            "--root-ca-file=/s/pki/ca.crt",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--secure-port=40004",
            "--kubeconfig=/s/controller-manager.kubeconfig",
        ] {
            assert!(args.contains(&want.to_string()), "{want} missing: {args:?}");
        }
        assert!(!args.iter().any(|a| a.starts_with("--feature-gates")));
        assert!(!args.iter().any(|a| a.starts_with("--controllers")));
        assert_loopback_only(&args);
    }

    #[test]
    fn the_service_ip_is_the_first_of_the_range() {
        assert!(SERVICE_CIDR.starts_with("10.96.0.0/"));
        assert_eq!(SERVICE_IP.octets(), [10, 96, 0, 1]);
    }
}
