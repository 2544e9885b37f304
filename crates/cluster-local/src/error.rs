//! Why a local cluster could not be started, waited for or stopped.

use std::{io, path::PathBuf, time::Duration};

/// Errors of the local provider.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes binaries or etcd could not be built, found or verified.
    #[error("cannot provide the binaries for Kubernetes {version}")]
    Binaries {
        /// The pinned release.
        version: String,
        #[source]
        source: Box<k8s_binaries::Error>,
    },
    /// A file or folder of the state dir could not be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Certificate or key generation failed.
    #[error("cannot generate the cluster's certificates: {detail}")]
    Pki {
        /// What failed.
        detail: String,
    },
    /// A port asked for explicitly is in use, or another program took a chosen one before
    /// the component could bind it (then `source` holds the component's log tail).
    #[error(
        "port {port} for {component} is already in use on 127.0.0.1: free it or choose another"
    )]
    PortTaken {
        /// The component that wanted it.
        component: String,
        /// The port.
        port: u16,
        #[source]
        source: io::Error,
    },
    /// The kernel gave no free loopback port.
    #[error("cannot find a free port on 127.0.0.1")]
    NoFreePort {
        #[source]
        source: io::Error,
    },
    /// The state dir already holds something: probably a cluster that is still up.
    #[error(
        "{} is not empty: a cluster may still be running from it (stop it first, or remove \
         the folder if it is stale)",
        dir.display()
    )]
    StateDirInUse {
        /// The state dir.
        dir: PathBuf,
    },
    /// A component could not be started at all.
    #[error("cannot start {component} ({})", program.display())]
    Spawn {
        /// etcd, kube-apiserver or kube-controller-manager.
        component: String,
        /// The binary.
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A component rejected a feature gate this Kubernetes version does not know.
    #[error(
        "feature gate `{gate}` is not known to {component} {version}: remove it, or check the \
         gate's lifecycle in the feature-gates reference \
         (https://kubernetes.io/docs/reference/command-line-tools-reference/feature-gates/)\n\
         {component} said:\n{tail}"
    )]
    UnknownFeatureGate {
        /// The component that refused it.
        component: String,
        /// The pinned release.
        version: String,
        /// The gate's name.
        gate: String,
        /// The end of the component's log (tokens shortened).
        tail: String,
    },
    /// A component exited while the cluster was starting.
    #[error("{component} exited during start ({how}); the end of its log:\n{tail}")]
    ComponentExited {
        /// The component.
        component: String,
        /// Exit code or signal.
        how: String,
        /// The end of its log (tokens shortened).
        tail: String,
    },
    /// A component did not become ready in time.
    #[error(
        "{component} was not ready after {}s ({what}); the end of its log:\n{tail}",
        waited.as_secs()
    )]
    NotReady {
        /// The component waited for.
        component: String,
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
        /// The end of its log (tokens shortened).
        tail: String,
    },
    /// The admin kubeconfig could not be turned into a client.
    #[error("cannot build a Kubernetes client from {}", kubeconfig.display())]
    Client {
        /// The kubeconfig.
        kubeconfig: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The record of a detached cluster cannot be read.
    #[error("{} is not a cluster record ({detail}): remove its folder by hand", path.display())]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The node's runtime (containerd, registry, CNI bridge, images) did not start.
    #[error("cannot start the node's container runtime (node-local)")]
    Node {
        #[source]
        source: node_local::Error,
    },
    /// Another run of this project has a node on this host: kube-proxy's iptables chains and
    /// the kubelet's `/var/log/pods` are host-wide, so there is one node per host at a time.
    #[error(
        "process {owner_pid} already runs a local node (state in {}): one node per machine at a \
         time. Wait for it to end, stop it, or run this one without a node (`cargo xtask e2e \
         --no-node`, or `cargo xtask cluster up` without --node)",
        state_dir.display()
    )]
    NodeBusy {
        /// The run that has it.
        owner_pid: u32,
        /// Its state dir.
        state_dir: PathBuf,
    },
    /// The host has kube-proxy or CNI chains that no run of ours made: a kube-proxy of
    /// another cluster would fight ours over them.
    #[error(
        "this host already has Kubernetes iptables chains that no sa-replay run made ({});          start the cluster without a node, or remove them (iptables-save | grep KUBE-) if          they are stale",
        chains.join(", ")
    )]
    ForeignChains {
        /// `iptables-save: KUBE-SERVICES`, ….
        chains: Vec<String>,
    },
    /// A node's containerd dies with this process, so such a cluster cannot be detached.
    #[error(
        "a cluster with a node cannot be started detachable (its container runtime stops with          this process): use Lifetime::Owned"
    )]
    NodeNotDetachable,
    /// `detach` was called on a cluster whose processes die with this process.
    #[error("this cluster was started with Lifetime::Owned; start it with Lifetime::Detachable to detach it")]
    NotDetachable,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}
