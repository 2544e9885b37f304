//! The node of a local cluster, when one is asked for: what kube-scheduler, the kubelet and
//! kube-proxy are told, as pure functions of the layout, the ports and the node's network,
//! so they are unit-tested. Starting them is in `lib.rs`; the host state they touch is in
//! `host.rs`; containerd, CNI and images come from `node-local`.
//!
//! Every listener binds 127.0.0.1, except the two that pods or the API server must reach
//! through the run's own bridge: kube-apiserver and the kubelet's server, on the bridge
//! gateway.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use cluster::FeatureGates;
use pins::KubePin;
use serde::{Deserialize, Serialize};

use crate::flags::{feature_gates_flag, Layout, LOOPBACK};

/// The Node's name: fixed, so the page's output and the tests can name it.
pub const NODE_NAME: &str = "sa-replay-node";

/// What to start besides the control plane.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    /// `None`: build or reuse them through `k8s-binaries`, like the control plane's.
    pub binaries: Option<NodeBinaries>,
}

/// The node's programs, when the caller already has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBinaries {
    pub kube_scheduler: PathBuf,
    pub kubelet: PathBuf,
    pub kube_proxy: PathBuf,
}

/// The ports of the node's components; every one is free on 127.0.0.1 when chosen (the
/// kubelet's is then bound on the gateway, where nothing else listens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePorts {
    pub scheduler: u16,
    pub kubelet: u16,
    pub kubelet_healthz: u16,
    pub proxy_metrics: u16,
    pub proxy_healthz: u16,
}

/// The node's network, as node-local set it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNet {
    /// The bridge's address: the node IP, where kube-apiserver and the kubelet listen.
    pub gateway: Ipv4Addr,
    /// The pods' /24, e.g. `10.244.0.0/24`.
    pub pod_cidr: String,
    /// `unix:///…/containerd.sock`.
    pub cri_endpoint: String,
    /// The cgroup the kubelet puts `kubepods` under (`--cgroup-root`).
    pub cgroup_root: String,
    /// The sandbox image, `docker.io/…/pause:…`.
    pub pause_image: String,
}

/// Where the node's files live inside the cluster's state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    pub root: PathBuf,
}

impl NodeLayout {
    pub fn new(cluster: &Layout) -> NodeLayout {
        NodeLayout {
            root: cluster.root.join("node"),
        }
    }
    /// node-local's state dir. The kubelet's root dir is inside it on purpose: node-local's
    /// teardown (and its cleanup after a SIGKILLed run) then also unmounts the kubelet's
    /// volume mounts and kills whatever still names this folder.
    pub fn runtime(&self) -> PathBuf {
        self.root.clone()
    }
    pub fn kubelet_root(&self) -> PathBuf {
        self.root.join("kubelet")
    }
    pub fn kubelet_config(&self) -> PathBuf {
        self.root.join("kubelet-config.yaml")
    }
    /// An empty resolv.conf: pods get no name servers from this host, so no lookup can
    /// leave the machine.
    pub fn resolv_conf(&self) -> PathBuf {
        self.root.join("resolv.conf")
    }
    pub fn kubelet_kubeconfig(&self) -> PathBuf {
        self.root.join("kubelet.kubeconfig")
    }
    pub fn scheduler_kubeconfig(&self) -> PathBuf {
        self.root.join("scheduler.kubeconfig")
    }
    pub fn kube_proxy_kubeconfig(&self) -> PathBuf {
        self.root.join("kube-proxy.kubeconfig")
    }
    /// Self-signed serving certificates kube-scheduler makes for its own port.
    pub fn scheduler_certs(&self) -> PathBuf {
        self.root.join("scheduler-certs")
    }
    /// node-local's logs (containerd, registry).
    pub fn runtime_logs(&self) -> PathBuf {
        self.root.join("logs")
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The minor as a number: 24 for `1.24`.
pub fn minor_number(pin: &KubePin) -> u32 {
    pin.minor
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("pinned minors are 1.N")
}

/// kube-scheduler: loopback only, no leader election (one instance), the scheduler user's
/// kubeconfig for delegated authn/authz too (as kubeadm writes it).
pub fn scheduler_args(cluster: &Layout, ports: &NodePorts, gates: &FeatureGates) -> Vec<String> {
    let node = NodeLayout::new(cluster);
    let kubeconfig = path(&node.scheduler_kubeconfig());
    let mut args = vec![
        format!("--bind-address={LOOPBACK}"),
        format!("--secure-port={}", ports.scheduler),
        format!("--cert-dir={}", path(&node.scheduler_certs())),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--leader-elect=false".into(),
        "--profiling=false".into(),
    ];
    args.extend(feature_gates_flag(gates));
    args
}

/// The kubelet's command line. The rest is in its config file ([`kubelet_config`]).
///
/// - v1.24 talks CRI only through flags: dockershim is gone in v1.24 (CHANGELOG-1.24,
///   "Dockershim removed from kubelet"), so `--container-runtime=remote` and
///   `--container-runtime-endpoint`; `--container-runtime` was removed in v1.27
///   (CHANGELOG-1.27) and `containerRuntimeEndpoint` became a config field then.
/// - `--pod-infra-container-image` on v1.24 keeps image GC from removing our pause image;
///   the sandbox image itself is containerd's `sandbox_image`.
pub fn kubelet_args(pin: &KubePin, cluster: &Layout, net: &NodeNet) -> Vec<String> {
    let node = NodeLayout::new(cluster);
    let mut args = vec![
        format!("--config={}", path(&node.kubelet_config())),
        format!("--kubeconfig={}", path(&node.kubelet_kubeconfig())),
        format!("--root-dir={}", path(&node.kubelet_root())),
        format!("--hostname-override={NODE_NAME}"),
        format!("--node-ip={}", net.gateway),
        "--v=1".into(),
    ];
    if minor_number(pin) < 27 {
        args.extend([
            "--container-runtime=remote".into(),
            format!("--container-runtime-endpoint={}", net.cri_endpoint),
            format!("--pod-infra-container-image={}", net.pause_image),
        ]);
    }
    args
}

/// The KubeletConfiguration (kubelet.config.k8s.io/v1beta1), JSON being YAML.
///
/// - Authentication: x509 against the cluster CA and webhook (TokenReview), no anonymous;
///   authorization: webhook (SubjectAccessReview), as kubeadm configures it, so the API
///   server's `system:masters` client certificate may exec.
/// - `address` is the gateway: the API server reaches the kubelet there for exec/logs;
///   healthz on loopback; the read-only port off.
/// - `cgroupDriver: cgroupfs`, no systemd here; `cgroupsPerQOS` under node-local's
///   cgroup root (cgroups v1), which must exist beforehand (kubelet validates it).
/// - `failSwapOn: false`, `protectKernelDefaults: false` (the kubelet then sets the kernel
///   tunables it wants; `host.rs` puts them back), `makeIPTablesUtilChains: false` (kube-proxy
///   makes the chains it uses; fewer rules on the host).
/// - Eviction thresholds are low so a busy build machine's disk does not taint the node.
pub fn kubelet_config(
    pin: &KubePin,
    cluster: &Layout,
    ports: &NodePorts,
    net: &NodeNet,
    gates: &FeatureGates,
) -> String {
    use crate::pki::files;
    let node = NodeLayout::new(cluster);
    let mut config = serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.gateway.to_string(),
        "port": ports.kubelet,
        "readOnlyPort": 0,
        "healthzBindAddress": LOOPBACK,
        "healthzPort": ports.kubelet_healthz,
        "tlsCertFile": path(&cluster.pki_file(files::KUBELET_CRT)),
        "tlsPrivateKeyFile": path(&cluster.pki_file(files::KUBELET_KEY)),
        "authentication": {
            "anonymous": { "enabled": false },
            "webhook": { "enabled": true },
            "x509": { "clientCAFile": path(&cluster.pki_file(files::CA_CRT)) },
        },
        "authorization": { "mode": "Webhook" },
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": true,
        "cgroupRoot": net.cgroup_root,
        "failSwapOn": false,
        "protectKernelDefaults": false,
        "makeIPTablesUtilChains": false,
        "resolvConf": path(&node.resolv_conf()),
        "clusterDomain": "cluster.local",
        "registerNode": true,
        "serializeImagePulls": false,
        "evictionHard": {
            "memory.available": "50Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    });
    if minor_number(pin) >= 27 {
        config["containerRuntimeEndpoint"] = net.cri_endpoint.clone().into();
    }
    if !gates.is_empty() {
        config["featureGates"] = serde_json::to_value(gates).expect("gates serialise");
    }
    serde_json::to_string_pretty(&config).expect("JSON serialises")
}

/// kube-proxy in iptables mode.
///
/// - `--bind-address` is the node IP (the gateway): in iptables mode kube-proxy binds no
///   socket to it, it only names the node's primary IP (kube-proxy flag reference,
///   "--bind-address"). Metrics and healthz listen on loopback.
/// - `--nodeport-addresses` limits NodePorts to the gateway: v1.24 opens a "port holder"
///   socket per NodePort on every address the flag allows.
/// - `--conntrack-max-per-core=0` and the two TCP timeouts at 0 leave the host's conntrack
///   sysctls as they are ("0 to leave the limit as-is").
/// - `--cluster-cidr` is the pod /24, for which traffic is not masqueraded.
/// - v1.27+: `--iptables-localhost-nodeports=false`, so kube-proxy does not turn on
///   `route_localnet` (CHANGELOG-1.27 added the flag); v1.24 always does, and `host.rs`
///   turns it back off at teardown.
pub fn kube_proxy_args(
    pin: &KubePin,
    cluster: &Layout,
    ports: &NodePorts,
    net: &NodeNet,
    gates: &FeatureGates,
) -> Vec<String> {
    let node = NodeLayout::new(cluster);
    let mut args = vec![
        format!("--kubeconfig={}", path(&node.kube_proxy_kubeconfig())),
        "--proxy-mode=iptables".into(),
        format!("--hostname-override={NODE_NAME}"),
        format!("--bind-address={}", net.gateway),
        format!("--metrics-bind-address={LOOPBACK}:{}", ports.proxy_metrics),
        format!("--healthz-bind-address={LOOPBACK}:{}", ports.proxy_healthz),
        format!("--nodeport-addresses={}/32", net.gateway),
        format!("--cluster-cidr={}", net.pod_cidr),
        "--conntrack-max-per-core=0".into(),
        "--conntrack-tcp-timeout-established=0".into(),
        "--conntrack-tcp-timeout-close-wait=0".into(),
        "--profiling=false".into(),
    ];
    if minor_number(pin) >= 27 {
        args.push("--iptables-localhost-nodeports=false".into());
    }
    args.extend(feature_gates_flag(gates));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(minor: &str) -> &'static KubePin {
        KubePin::find(minor).unwrap()
    }

    fn ports() -> NodePorts {
        NodePorts {
            scheduler: 41001,
            kubelet: 41002,
            kubelet_healthz: 41003,
            proxy_metrics: 41004,
            proxy_healthz: 41005,
        }
    }

    fn net() -> NodeNet {
        NodeNet {
            gateway: Ipv4Addr::new(10, 244, 3, 1),
            pod_cidr: "10.244.3.0/24".into(),
            cri_endpoint: "unix:///s/node/containerd/containerd.sock".into(),
            cgroup_root: "/sa-replay-sa-br3".into(),
            pause_image: "docker.io/sa-replay/pause:1".into(),
        }
    }

    /// Every address a flag or config names is loopback or in the node's own /24.
    fn assert_loopback_or_gateway(text: &str) {
        for word in text.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
            if let Ok(ip) = word.parse::<Ipv4Addr>() {
                assert!(
                    ip.is_loopback() || ip.octets()[..3] == [10, 244, 3],
                    "{ip} in {text}"
                );
            }
        }
        assert!(!text.contains("0.0.0.0"), "{text}");
    }

    #[test]
    fn the_scheduler_listens_on_loopback_alone() {
        let args = scheduler_args(&Layout::new("/s"), &ports(), &FeatureGates::new());
        for want in [
            "--bind-address=127.0.0.1",
            "--secure-port=41001",
            "--leader-elect=false",
            "--kubeconfig=/s/node/scheduler.kubeconfig",
        ] {
            assert!(args.contains(&want.to_string()), "{want} missing: {args:?}");
        }
        assert_loopback_or_gateway(&args.join(" "));
    }

    #[test]
    fn v1_24_kubelet_names_the_runtime_by_flag() {
        let args = kubelet_args(pin("1.24"), &Layout::new("/s"), &net());
        for want in [
            "--container-runtime=remote",
            "--container-runtime-endpoint=unix:///s/node/containerd/containerd.sock",
            "--pod-infra-container-image=docker.io/sa-replay/pause:1",
            "--hostname-override=sa-replay-node",
            "--node-ip=10.244.3.1",
            "--root-dir=/s/node/kubelet",
        ] {
            assert!(args.contains(&want.to_string()), "{want} missing: {args:?}");
        }
        let config = kubelet_config(
            pin("1.24"),
            &Layout::new("/s"),
            &ports(),
            &net(),
            &FeatureGates::new(),
        );
        assert!(!config.contains("containerRuntimeEndpoint"), "{config}");
    }

    #[test]
    fn v1_29_kubelet_names_the_runtime_in_its_config() {
        let args = kubelet_args(pin("1.29"), &Layout::new("/s"), &net());
        assert!(!args.iter().any(|a| a.starts_with("--container-runtime")));
        assert!(!args.iter().any(|a| a.starts_with("--pod-infra")));
        let gates = FeatureGates::from([("A".to_string(), true)]);
        let text = kubelet_config(pin("1.29"), &Layout::new("/s"), &ports(), &net(), &gates);
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            config["containerRuntimeEndpoint"],
            "unix:///s/node/containerd/containerd.sock"
        );
        assert_eq!(config["featureGates"]["A"], true);
    }

    #[test]
    fn the_kubelet_config_is_locked_down_and_off_the_wildcard() {
        let text = kubelet_config(
            pin("1.29"),
            &Layout::new("/s"),
            &ports(),
            &net(),
            &FeatureGates::new(),
        );
        let c: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(c["address"], "10.244.3.1");
        assert_eq!(c["port"], 41002);
        assert_eq!(c["readOnlyPort"], 0);
        assert_eq!(c["healthzBindAddress"], "127.0.0.1");
        assert_eq!(c["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(c["authentication"]["webhook"]["enabled"], true);
        assert_eq!(c["authentication"]["x509"]["clientCAFile"], "/s/pki/ca.crt");
        assert_eq!(c["authorization"]["mode"], "Webhook");
        assert_eq!(c["cgroupDriver"], "cgroupfs");
        assert_eq!(c["cgroupsPerQOS"], true);
        assert_eq!(c["cgroupRoot"], "/sa-replay-sa-br3");
        assert_eq!(c["failSwapOn"], false);
        assert_eq!(c["resolvConf"], "/s/node/resolv.conf");
        assert!(c.get("staticPodPath").is_none());
        assert!(c.get("featureGates").is_none());
        assert_loopback_or_gateway(&text);
    }

    #[test]
    fn kube_proxy_leaves_the_host_conntrack_alone() {
        for minor in ["1.24", "1.29"] {
            let args = kube_proxy_args(
                pin(minor),
                &Layout::new("/s"),
                &ports(),
                &net(),
                &FeatureGates::new(),
            );
            for want in [
                "--proxy-mode=iptables",
                "--conntrack-max-per-core=0",
                "--cluster-cidr=10.244.3.0/24",
                "--metrics-bind-address=127.0.0.1:41004",
                "--healthz-bind-address=127.0.0.1:41005",
                "--nodeport-addresses=10.244.3.1/32",
                "--kubeconfig=/s/node/kube-proxy.kubeconfig",
            ] {
                assert!(args.contains(&want.to_string()), "{want} missing: {args:?}");
            }
            assert_eq!(
                args.contains(&"--iptables-localhost-nodeports=false".to_string()),
                minor == "1.29"
            );
            assert_loopback_or_gateway(&args.join(" "));
        }
    }

    #[test]
    fn minors_are_numbers() {
        assert_eq!(minor_number(pin("1.24")), 24);
        assert_eq!(minor_number(pin("1.29")), 29);
    }
}
