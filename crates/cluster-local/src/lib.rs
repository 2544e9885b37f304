//! The `local` provider: a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager at the pinned version) as processes on 127.0.0.1.
//!
//! [`LocalCluster::start`] builds or reuses the binaries (`k8s-binaries`), makes certificates,
//! starts the components on free loopback ports and waits until the API is ready and the
//! `default` ServiceAccount exists. Dropping the [`LocalCluster`] stops the processes and
//! removes the state dir; so do Ctrl-C (a handler is installed if the process has none) and a
//! failed start. A [`Lifetime::Detachable`] cluster can be [`LocalCluster::detach`]ed and
//! stopped later from its record with [`stop_recorded`] (`cargo xtask cluster down`).
//!
//! By default there is no node: `ClusterInfo::has_node` is false, pods are accepted but
//! never run. With [`LocalSpec::node`] set, the cluster also gets kube-scheduler, a kubelet
//! (node `sa-replay-node`) and kube-proxy (iptables), over `node-local`'s containerd, bridge
//! and locally built images; kube-apiserver then listens on the bridge's gateway instead of
//! 127.0.0.1, so pods reach it through the `kubernetes` Service. Such a cluster needs root,
//! is one per host at a time, and cannot be detached.

mod error;
pub mod flags;
pub mod host;
pub mod kubeconfig;
pub mod node;
pub mod pki;
pub mod ports;
pub mod process;
mod provider;

use std::{
    collections::BTreeMap,
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard, OnceLock,
    },
    time::{Duration, Instant},
};

use cluster::{ClusterInfo, FeatureGates, Provider};
use k8s_binaries::{etcd::Etcd, Binaries, Binary, BuildSpec};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use pins::KubePin;
use serde::{Deserialize, Serialize};

pub use error::Error;
pub use flags::{Layout, Ports};
pub use node::{NodeBinaries, NodePorts, NodeSpec, NODE_NAME};
pub use ports::PortRequest;
pub use process::Lifetime;
pub use provider::LocalProvider;

/// How long teardown waits after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// The programs a control plane runs, when the caller already has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneBinaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kubectl: PathBuf,
    /// Which etcd this is, for the report: `etcd 3.4.23 (/path/to/etcd)`.
    pub etcd_note: String,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct LocalSpec {
    pub pin: &'static KubePin,
    /// Passed to kube-apiserver and kube-controller-manager.
    pub feature_gates: FeatureGates,
    /// Where certificates, etcd data, kubeconfigs and logs go. Must be absent or empty; it is
    /// removed at teardown. `None`: a fresh folder under the system temp dir.
    pub state_dir: Option<PathBuf>,
    /// Fixed ports, if any; the rest are picked free.
    pub ports: PortRequest,
    pub lifetime: Lifetime,
    /// `None`: build or reuse them through `k8s-binaries` in [`LocalSpec::cache_root`].
    pub binaries: Option<ControlPlaneBinaries>,
    /// `$SA_REPLAY_CACHE` by default.
    pub cache_root: PathBuf,
    /// Limit for each readiness phase (etcd healthy, `/readyz`, `default` ServiceAccount).
    pub ready_timeout: Duration,
    /// Copy the component logs there at teardown (and after a failed start).
    pub export_logs_to: Option<PathBuf>,
    /// Where progress lines go; stderr by default.
    pub progress: fn(&str),
    /// Install a Ctrl-C/SIGTERM handler that tears the clusters down (when the process has
    /// none yet). Off for callers with their own, such as `cluster::lifecycle`.
    pub signal_handler: bool,
    /// A node (kube-scheduler, kubelet, kube-proxy, containerd) so pods run. `None`, the
    /// default: control plane only. Needs root and [`Lifetime::Owned`].
    pub node: Option<NodeSpec>,
}

fn print_progress(line: &str) {
    eprintln!("{line}");
}

impl LocalSpec {
    /// Defaults: no gates, a temp state dir, free ports, owned processes, cached binaries.
    pub fn new(pin: &'static KubePin) -> LocalSpec {
        LocalSpec {
            pin,
            feature_gates: FeatureGates::new(),
            state_dir: None,
            ports: PortRequest::default(),
            lifetime: Lifetime::Owned,
            binaries: None,
            cache_root: k8s_binaries::cache_root(),
            ready_timeout: Duration::from_secs(120),
            export_logs_to: None,
            progress: print_progress,
            signal_handler: true,
            node: None,
        }
    }

    /// The cluster's name: `local-1.29`.
    pub fn name(&self) -> String {
        format!("local-{}", self.pin.minor)
    }
}

/// Where a detached cluster of this minor keeps its state: `$SA_REPLAY_CACHE/clusters/local-1.29`.
/// One folder per minor, so both versions can be up at once and `cluster down` finds them.
pub fn detached_state_dir(pin: &KubePin) -> PathBuf {
    k8s_binaries::cache_root()
        .join("clusters")
        .join(format!("local-{}", pin.minor))
}

/// Provides the control-plane binaries for a pin (building them on first use) and etcd.
pub fn ensure_binaries(
    pin: &'static KubePin,
    cache_root: &Path,
    progress: fn(&str),
) -> Result<ControlPlaneBinaries, Error> {
    let wrap = |source| Error::Binaries {
        version: pin.version.to_string(),
        source: Box::new(source),
    };
    let spec = BuildSpec {
        cache_root: cache_root.to_path_buf(),
        ..BuildSpec::new(pin, Binary::CONTROL_PLANE)
    };
    let built: Binaries =
        k8s_binaries::ensure(&spec, &mut |p| progress(&format!("[{}] {p}", pin.version)))
            .map_err(wrap)?;
    let etcd: Etcd = k8s_binaries::etcd::ensure_etcd(cache_root, &mut |line| {
        progress(&format!("[{}] {line}", pin.version))
    })
    .map_err(wrap)?;
    Ok(ControlPlaneBinaries {
        etcd_note: format!("etcd {} ({})", etcd.version, etcd.path.display()),
        etcd: etcd.path,
        kube_apiserver: built.path(Binary::KubeApiserver).to_path_buf(),
        kube_controller_manager: built.path(Binary::KubeControllerManager).to_path_buf(),
        kubectl: built.path(Binary::Kubectl).to_path_buf(),
    })
}

/// Refuses, before anything starts, a feature gate this version's control plane does not
/// know: `--feature-gates` is parsed (and an unknown gate refused, by component-base's
/// featuregate.Set) before `--version` prints and exits, so this costs a fraction of a
/// second, where finding out from a starting cluster costs its start and every cluster
/// started before it.
pub fn check_feature_gates(
    pin: &KubePin,
    binaries: &ControlPlaneBinaries,
    gates: &FeatureGates,
) -> Result<(), Error> {
    let Some(flag) = flags::feature_gates_flag(gates) else {
        return Ok(());
    };
    for (component, program) in [
        ("kube-apiserver", &binaries.kube_apiserver),
        ("kube-controller-manager", &binaries.kube_controller_manager),
    ] {
        let output = std::process::Command::new(program)
            .arg(&flag)
            .arg("--version")
            .output()
            .map_err(|source| Error::Spawn {
                component: component.into(),
                program: program.clone(),
                source,
            })?;
        let said = String::from_utf8_lossy(&output.stderr);
        if let Some(gate) = unknown_gate(&said).filter(|_| !output.status.success()) {
            return Err(Error::UnknownFeatureGate {
                component: component.into(),
                version: pin.version.into(),
                gate,
                tail: said.trim().to_string(),
            });
        }
    }
    Ok(())
}

/// Provides kube-scheduler, the kubelet and kube-proxy for a pin, building them on first use.
pub fn ensure_node_binaries(
    pin: &'static KubePin,
    cache_root: &Path,
    progress: fn(&str),
) -> Result<NodeBinaries, Error> {
    let spec = BuildSpec {
        cache_root: cache_root.to_path_buf(),
        ..BuildSpec::new(
            pin,
            &[Binary::KubeScheduler, Binary::Kubelet, Binary::KubeProxy],
        )
    };
    let built: Binaries =
        k8s_binaries::ensure(&spec, &mut |p| progress(&format!("[{}] {p}", pin.version))).map_err(
            |source| Error::Binaries {
                version: pin.version.to_string(),
                source: Box::new(source),
            },
        )?;
    Ok(NodeBinaries {
        kube_scheduler: built.path(Binary::KubeScheduler).to_path_buf(),
        kubelet: built.path(Binary::Kubelet).to_path_buf(),
        kube_proxy: built.path(Binary::KubeProxy).to_path_buf(),
    })
}

/// One started component, as recorded for `cluster down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedProcess {
    pub component: String,
    pub pid: u32,
    pub program: PathBuf,
}

/// `<state>/cluster.json`: enough to stop a detached cluster from another process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub state_dir: PathBuf,
    pub ports: Ports,
    pub processes: Vec<RecordedProcess>,
    /// Set once the cluster is ready.
    pub info: Option<ClusterInfo>,
    /// The node's ports, when it has one.
    #[serde(default)]
    pub node_ports: Option<NodePorts>,
}

impl Record {
    /// Reads a record; `Ok(None)` when there is none.
    pub fn load(state_dir: &Path) -> Result<Option<Record>, Error> {
        let path = Layout::new(state_dir).record();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::BadRecord {
                path,
                detail: e.to_string(),
            })
    }

    fn store(&self) -> Result<(), Error> {
        let path = Layout::new(&self.state_dir).record();
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(self).expect("records always serialize");
        fs::write(&tmp, json).map_err(Error::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Error::io(&path))
    }

    /// The recorded processes that still run the recorded program (a pid reused by another
    /// program is left alone).
    pub fn live_processes(&self) -> Vec<&RecordedProcess> {
        self.processes
            .iter()
            .filter(|p| process::state(p.pid) == process::State::Running)
            .filter(|p| {
                let program = fs::canonicalize(&p.program).unwrap_or(p.program.clone());
                // A binary replaced while running reads as `<path> (deleted)`.
                let deleted = format!("{} (deleted)", program.display());
                process::executable(p.pid).is_some_and(|exe| {
                    exe == program || exe.as_os_str() == std::ffi::OsStr::new(&deleted)
                })
            })
            .collect()
    }
}

/// What [`stop_recorded`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Nothing was there.
    NothingThere,
    /// These components were stopped (possibly none, if they had already died) and the
    /// state dir removed.
    Stopped(Vec<String>),
}

/// Stops a cluster from its record in `state_dir` and removes the folder.
pub fn stop_recorded(state_dir: &Path) -> Result<Stopped, Error> {
    if !state_dir.exists() {
        return Ok(Stopped::NothingThere);
    }
    let record = Record::load(state_dir)?;
    let mut stopped = Vec::new();
    if let Some(record) = &record {
        let live = record.live_processes();
        let pids: Vec<u32> = live.iter().rev().map(|p| p.pid).collect();
        stopped = live.iter().map(|p| p.component.clone()).collect();
        process::terminate(&pids, GRACE);
    }
    fs::remove_dir_all(state_dir).map_err(Error::io(state_dir))?;
    Ok(Stopped::Stopped(stopped))
}

/// What must happen to a cluster however it ends: kept in a process-wide registry so the
/// Ctrl-C handler can reach clusters owned by any thread.
#[derive(Debug)]
struct Teardown {
    /// Start order; stopped in reverse.
    pids: Vec<u32>,
    layout: Layout,
    export_logs_to: Option<PathBuf>,
    /// The node's containerd, registry, bridge and cgroups (node-local tears them down).
    node: Option<node_local::NodeRuntime>,
    /// The host state the node changed, put back last.
    host: Option<host::HostClaim>,
}

impl Teardown {
    /// Order matters: the kubelet and kube-proxy go first (with the control plane), so
    /// nothing restarts pods or re-creates chains; then the runtime (pods, containerd,
    /// mounts, bridge); then the host's chains, tunables and log folders.
    fn run(self) {
        let pids: Vec<u32> = self.pids.iter().rev().copied().collect();
        process::terminate(&pids, GRACE);
        let mut problems = Vec::new();
        if let Some(node) = self.node {
            problems.extend(node.stop());
        }
        if let Some(claim) = self.host {
            problems.extend(claim.release());
        }
        for problem in problems {
            eprintln!("cluster-local teardown: {problem}");
        }
        if let Some(dest) = &self.export_logs_to {
            let _ = copy_logs(&self.layout, dest);
        }
        let _ = fs::remove_dir_all(&self.layout.root);
    }
}

/// Copies the components' logs, and the node runtime's when there is one.
pub(crate) fn copy_logs(layout: &Layout, to: &Path) -> std::io::Result<()> {
    copy_dir(&layout.logs(), to)?;
    let runtime_logs = node::NodeLayout::new(layout).runtime_logs();
    if runtime_logs.is_dir() {
        copy_dir(&runtime_logs, to)?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn registry() -> MutexGuard<'static, BTreeMap<u64, Teardown>> {
    static REGISTRY: Mutex<BTreeMap<u64, Teardown>> = Mutex::new(BTreeMap::new());
    // A poisoned lock only means a thread panicked mid-update; tearing down is still right.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// Tears down every cluster of this process that is starting or running. For programs that
/// install their own Ctrl-C handler (only one per process is possible): call this from it.
pub fn cleanup_all() {
    let all: Vec<Teardown> = std::mem::take(&mut *registry()).into_values().collect();
    for teardown in all {
        teardown.run();
    }
}

/// Installs a Ctrl-C/SIGTERM handler that tears down the clusters, unless the program
/// already has one (then it should call [`cleanup_all`]; the processes die with us anyway
/// thanks to PDEATHSIG, only the state dirs would stay).
fn install_signal_handler(progress: fn(&str)) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let installed = ctrlc::try_set_handler(|| {
            cleanup_all();
            // 128 + SIGINT, what a shell reports for an interrupted command.
            std::process::exit(130);
        });
        if installed.is_err() {
            progress(
                "cluster-local: Ctrl-C is already handled (or ignored) in this process; its handler should call \
                 cluster_local::cleanup_all() so state dirs are removed on Ctrl-C",
            );
        }
    });
}

/// Tears the cluster down if start does not complete (error, panic or a dropped future).
struct StartGuard {
    id: u64,
    armed: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Some(teardown) = registry().remove(&self.id) {
                teardown.run();
            }
        }
    }
}

/// A running local cluster; dropping it stops it.
#[derive(Debug)]
pub struct LocalCluster {
    id: u64,
    info: ClusterInfo,
    layout: Layout,
    ports: Ports,
    lifetime: Lifetime,
    binaries: ControlPlaneBinaries,
    stopped: bool,
}

impl LocalCluster {
    /// Starts a cluster and waits until it is ready (see the crate docs).
    pub async fn start(spec: LocalSpec) -> Result<LocalCluster, Error> {
        let started = Instant::now();
        let progress = spec.progress;
        let tag = format!("[{}]", spec.name());
        if spec.node.is_some() && spec.lifetime == Lifetime::Detachable {
            return Err(Error::NodeNotDetachable);
        }

        let binaries = match spec.binaries.clone() {
            Some(b) => b,
            None => {
                let (pin, cache, progress) = (spec.pin, spec.cache_root.clone(), spec.progress);
                tokio::task::spawn_blocking(move || ensure_binaries(pin, &cache, progress))
                    .await
                    .expect("the binaries task does not panic")?
            }
        };
        check_feature_gates(spec.pin, &binaries, &spec.feature_gates)?;
        let node_binaries = match &spec.node {
            None => None,
            Some(NodeSpec {
                binaries: Some(b), ..
            }) => Some(b.clone()),
            Some(NodeSpec { binaries: None }) => {
                let (pin, cache, progress) = (spec.pin, spec.cache_root.clone(), spec.progress);
                Some(
                    tokio::task::spawn_blocking(move || {
                        ensure_node_binaries(pin, &cache, progress)
                    })
                    .await
                    .expect("the binaries task does not panic")?,
                )
            }
        };
        if spec.node.is_some() {
            // A SIGKILLed run's node first: its mounts live in its state dir, which the
            // temp-dir sweep below would otherwise try to delete under them.
            for problem in node_local::cleanup_leftovers() {
                progress(&format!("{tag} cleanup of an earlier node: {problem}"));
            }
        }

        let root = match &spec.state_dir {
            Some(dir) => {
                let non_empty = fs::read_dir(dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false);
                if non_empty {
                    return Err(Error::StateDirInUse { dir: dir.clone() });
                }
                dir.clone()
            }
            None => fresh_temp_dir(spec.pin),
        };
        let layout = Layout::new(&root);
        fs::create_dir_all(layout.logs()).map_err(Error::io(layout.logs()))?;

        if spec.signal_handler {
            install_signal_handler(progress);
        }
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        registry().insert(
            id,
            Teardown {
                pids: vec![],
                layout: layout.clone(),
                export_logs_to: spec.export_logs_to.clone(),
                node: None,
                host: None,
            },
        );
        let mut guard = StartGuard { id, armed: true };

        let ports = ports::choose(&spec.ports)?;
        let mut record = Record {
            state_dir: root.clone(),
            ports,
            processes: vec![],
            info: None,
            node_ports: None,
        };
        record.store()?;

        // RSA generation takes seconds in debug builds: overlap it with etcd's start (and
        // the node runtime's).
        let sa_key = std::thread::spawn(pki::generate_sa_key);
        let service_ip = IpAddr::V4(flags::SERVICE_IP);

        // The node's network comes first: the API server binds its gateway.
        let mut node_notes = Vec::new();
        let node_net = match &spec.node {
            None => None,
            Some(_) => {
                let (net, notes) = start_node_runtime(id, &spec, &layout, &tag).await?;
                node_notes = notes;
                Some(net)
            }
        };
        let node_ip = node_net.as_ref().map(|n| n.gateway);

        let mut starter = Starter {
            id,
            spec: &spec,
            layout: &layout,
            record: &mut record,
        };
        let etcd = starter.launch("etcd", &binaries.etcd, flags::etcd_args(&layout, &ports))?;
        wait_etcd(
            ports.etcd_client,
            etcd,
            &layout,
            spec.pin,
            spec.ready_timeout,
        )
        .await?;
        progress(&format!(
            "{tag} etcd ready on 127.0.0.1:{}",
            ports.etcd_client
        ));

        let sa = sa_key.join().map_err(|_| Error::Pki {
            detail: "the key generation thread panicked".into(),
        })??;
        let identity = node_ip.map(|ip| pki::NodeIdentity {
            name: NODE_NAME.to_string(),
            ip: IpAddr::V4(ip),
        });
        let pki = pki::generate_for(service_ip, sa, identity.as_ref())?;
        pki.write(&layout.pki())?;
        let server = format!(
            "https://{}:{}",
            flags::apiserver_host(node_ip),
            ports.apiserver
        );
        let name = spec.name();
        kubeconfig::write(
            &layout.admin_kubeconfig(),
            &kubeconfig::render(
                &name,
                &server,
                &pki.ca.cert_pem,
                "kubernetes-admin",
                &pki.admin,
            ),
        )?;
        kubeconfig::write(
            &layout.controller_manager_kubeconfig(),
            &kubeconfig::render(
                &name,
                &server,
                &pki.ca.cert_pem,
                "system:kube-controller-manager",
                &pki.controller_manager,
            ),
        )?;
        if let Some(node_pki) = &pki.node {
            let node_layout = node::NodeLayout::new(&layout);
            for (path, user, cert) in [
                (
                    node_layout.scheduler_kubeconfig(),
                    "system:kube-scheduler".to_string(),
                    &node_pki.scheduler,
                ),
                (
                    node_layout.kubelet_kubeconfig(),
                    format!("system:node:{NODE_NAME}"),
                    &node_pki.kubelet_client,
                ),
                (
                    node_layout.kube_proxy_kubeconfig(),
                    "system:kube-proxy".to_string(),
                    &node_pki.kube_proxy,
                ),
            ] {
                kubeconfig::write(
                    &path,
                    &kubeconfig::render(&name, &server, &pki.ca.cert_pem, &user, cert),
                )?;
            }
        }

        let apiserver = starter.launch(
            "kube-apiserver",
            &binaries.kube_apiserver,
            flags::apiserver_args(&layout, &ports, &spec.feature_gates, node_ip),
        )?;
        let client = client(&layout.admin_kubeconfig()).await?;
        let watched = [("etcd", etcd), ("kube-apiserver", apiserver)];
        wait_readyz(&client, &watched, &layout, spec.pin, spec.ready_timeout).await?;
        progress(&format!(
            "{tag} kube-apiserver {} ready on {server}",
            spec.pin.version
        ));

        let controller_manager = starter.launch(
            "kube-controller-manager",
            &binaries.kube_controller_manager,
            flags::controller_manager_args(&layout, &ports, &spec.feature_gates),
        )?;
        let watched = [
            ("etcd", etcd),
            ("kube-apiserver", apiserver),
            ("kube-controller-manager", controller_manager),
        ];
        let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), "default");
        wait_object(
            accounts,
            "default",
            |sa: Option<&ServiceAccount>| sa.is_some(),
            &watched,
            (
                "kube-controller-manager",
                "ServiceAccount default/default to be created",
            ),
            &layout,
            spec.pin,
            spec.ready_timeout,
        )
        .await?;

        if let (Some(net), Some(node_binaries)) = (&node_net, &node_binaries) {
            let node_ports = ports::choose_node()?;
            record.node_ports = Some(node_ports);
            record.store()?;
            let node_layout = node::NodeLayout::new(&layout);
            host::create_cgroup_root(&net.cgroup_root)?;
            let resolv = node_layout.resolv_conf();
            fs::write(&resolv, "").map_err(Error::io(&resolv))?;
            let config = node_layout.kubelet_config();
            let text =
                node::kubelet_config(spec.pin, &layout, &node_ports, net, &spec.feature_gates);
            fs::write(&config, text).map_err(Error::io(&config))?;
            let mut starter = Starter {
                id,
                spec: &spec,
                layout: &layout,
                record: &mut record,
            };
            let scheduler = starter.launch(
                "kube-scheduler",
                &node_binaries.kube_scheduler,
                node::scheduler_args(&layout, &node_ports, &spec.feature_gates),
            )?;
            let kubelet = starter.launch(
                "kubelet",
                &node_binaries.kubelet,
                node::kubelet_args(spec.pin, &layout, net),
            )?;
            let kube_proxy = starter.launch(
                "kube-proxy",
                &node_binaries.kube_proxy,
                node::kube_proxy_args(spec.pin, &layout, &node_ports, net, &spec.feature_gates),
            )?;
            let watched = [
                ("etcd", etcd),
                ("kube-apiserver", apiserver),
                ("kube-controller-manager", controller_manager),
                ("kube-scheduler", scheduler),
                ("kubelet", kubelet),
                ("kube-proxy", kube_proxy),
            ];
            let nodes: kube::Api<Node> = kube::Api::all(client.clone());
            wait_object(
                nodes,
                NODE_NAME,
                |node: Option<&Node>| node.is_some_and(node_ready),
                &watched,
                ("kubelet", "Node sa-replay-node to be Ready"),
                &layout,
                spec.pin,
                spec.ready_timeout,
            )
            .await?;
            wait_service_rules(&watched, &layout, spec.pin, spec.ready_timeout).await?;
            progress(&format!(
                "{tag} node {NODE_NAME} Ready on {} (pods {}); kube-proxy routes {}:443",
                net.gateway,
                net.pod_cidr,
                flags::SERVICE_IP
            ));
        }

        let etcd_note = &binaries.etcd_note;
        let mut notes = vec![
            if node_net.is_some() {
                format!(
                    "local provider: kube-apiserver, kube-controller-manager, kube-scheduler, \
                     kubelet and kube-proxy {} built from source, {etcd_note}; one node \
                     ({NODE_NAME}) whose container runtime is containerd with runc from \
                     Debian's packages, images built locally (see below)",
                    spec.pin.version
                )
            } else {
                format!(
                    "local provider: kube-apiserver and kube-controller-manager {} built from \
                     source, {etcd_note}; control plane only (no node, no scheduler)",
                    spec.pin.version
                )
            },
            format!(
                "service CIDR {}, ServiceAccount issuer {}",
                flags::SERVICE_CIDR,
                flags::SA_ISSUER
            ),
        ];
        notes.extend(node_notes);

        let info = ClusterInfo {
            provider: Provider::Local,
            minor: spec.pin.minor.to_string(),
            kubernetes: spec.pin.version.to_string(),
            kubeconfig: layout.admin_kubeconfig(),
            kubectl: binaries.kubectl.clone(),
            feature_gates: spec.feature_gates.clone(),
            has_node: node_net.is_some(),
            notes,
        };
        record.info = Some(info.clone());
        record.store()?;
        progress(&format!(
            "{tag} ready in {:.1}s: default ServiceAccount exists",
            started.elapsed().as_secs_f64()
        ));

        guard.armed = false;
        Ok(LocalCluster {
            id,
            info,
            layout,
            ports,
            lifetime: spec.lifetime,
            binaries,
            stopped: false,
        })
    }

    /// What the e2e suites need to know.
    pub fn info(&self) -> ClusterInfo {
        self.info.clone()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.info.kubeconfig
    }

    /// The ports in use.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// The state dir (certificates, etcd data, logs).
    pub fn state_dir(&self) -> &Path {
        &self.layout.root
    }

    /// The folder holding `etcd.log`, `kube-apiserver.log`, `kube-controller-manager.log`.
    pub fn logs_dir(&self) -> PathBuf {
        self.layout.logs()
    }

    /// The programs it runs.
    pub fn binaries(&self) -> &ControlPlaneBinaries {
        &self.binaries
    }

    /// A client with the admin kubeconfig.
    pub async fn client(&self) -> Result<kube::Client, Error> {
        client(&self.info.kubeconfig).await
    }

    /// The pids of etcd, kube-apiserver and kube-controller-manager, in start order.
    pub fn pids(&self) -> Vec<u32> {
        registry()
            .get(&self.id)
            .map(|t| t.pids.clone())
            .unwrap_or_default()
    }

    /// Stops the processes, waits for them, and removes the state dir.
    pub fn stop(mut self) {
        self.teardown();
    }

    /// Leaves the cluster running after this process exits; stop it with [`stop_recorded`]
    /// on [`LocalCluster::state_dir`].
    pub fn detach(mut self) -> Result<ClusterInfo, Error> {
        if self.lifetime != Lifetime::Detachable {
            return Err(Error::NotDetachable);
        }
        registry().remove(&self.id);
        self.stopped = true;
        Ok(self.info.clone())
    }

    fn teardown(&mut self) {
        if std::mem::replace(&mut self.stopped, true) {
            return;
        }
        let teardown = registry().remove(&self.id);
        if let Some(teardown) = teardown {
            teardown.run();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The prefix of temp state dirs: `sa-replay-local-<minor>-<owner pid>-<n>`.
const TEMP_PREFIX: &str = "sa-replay-local-";

fn fresh_temp_dir(pin: &KubePin) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    sweep_orphaned_temp_dirs(&std::env::temp_dir());
    std::env::temp_dir().join(format!(
        "{TEMP_PREFIX}{}-{}-{}",
        pin.minor,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes temp state dirs whose owner process is gone: only a SIGKILL (which no handler
/// sees) leaves one, and its components died with it (PDEATHSIG), so the next start tidies.
fn sweep_orphaned_temp_dirs(temp: &Path) {
    let Ok(entries) = fs::read_dir(temp) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix(TEMP_PREFIX)
            .and_then(|rest| rest.split('-').nth(1))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Spawns components and records their pids as soon as they exist.
struct Starter<'a> {
    id: u64,
    spec: &'a LocalSpec,
    layout: &'a Layout,
    record: &'a mut Record,
}

impl Starter<'_> {
    fn launch(&mut self, component: &str, program: &Path, args: Vec<String>) -> Result<u32, Error> {
        let pid = process::spawn(process::Launch {
            program: program.to_path_buf(),
            args,
            log: self.layout.log(component),
            cwd: self.layout.root.clone(),
            lifetime: self.spec.lifetime,
        })
        .map_err(|source| Error::Spawn {
            component: component.to_string(),
            program: program.to_path_buf(),
            source,
        })?;
        if let Some(teardown) = registry().get_mut(&self.id) {
            teardown.pids.push(pid);
        }
        self.record.processes.push(RecordedProcess {
            component: component.to_string(),
            pid,
            program: program.to_path_buf(),
        });
        self.record.store()?;
        Ok(pid)
    }
}

/// The error for a component that exited during start, recognising refused feature gates
/// and taken ports from its log.
fn exited(component: &str, how: Option<String>, layout: &Layout, pin: &KubePin) -> Error {
    let tail = process::log_tail(&layout.log(component), 20);
    if let Some(gate) = unknown_gate(&tail) {
        return Error::UnknownFeatureGate {
            component: component.to_string(),
            version: pin.version.to_string(),
            gate,
            tail: process::log_tail(&layout.log(component), 5),
        };
    }
    if let Some(port) = port_in_use(&tail) {
        return Error::PortTaken {
            component: component.to_string(),
            port,
            source: std::io::Error::other(tail),
        };
    }
    Error::ComponentExited {
        component: component.to_string(),
        how: how.unwrap_or_else(|| "exited".into()),
        tail,
    }
}

/// The port of a `listen tcp 127.0.0.1:PORT: bind: address already in use` line: another
/// program took a chosen port between our check and the component's bind.
pub fn port_in_use(log: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains("address already in use"))?;
    let after = &line[line.find("127.0.0.1:")? + "127.0.0.1:".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `unrecognized feature gate: Foo` (component-base's featuregate.Set) -> `Foo`.
pub fn unknown_gate(log: &str) -> Option<String> {
    const MARK: &str = "unrecognized feature gate: ";
    let start = log.find(MARK)? + MARK.len();
    let gate: String = log[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!gate.is_empty()).then_some(gate)
}

/// Fails with the first watched component that exited.
fn check_alive(watched: &[(&str, u32)], layout: &Layout, pin: &KubePin) -> Result<(), Error> {
    for &(component, pid) in watched {
        if let process::State::Exited(how) = process::state(pid) {
            return Err(exited(component, how, layout, pin));
        }
    }
    Ok(())
}

fn not_ready(component: &str, what: &str, waited: Duration, layout: &Layout) -> Error {
    Error::NotReady {
        component: component.to_string(),
        what: what.to_string(),
        waited,
        tail: process::log_tail(&layout.log(component), 20),
    }
}

/// etcd answers `{"health":"true"}` on `/health` of its client URL.
async fn wait_etcd(
    port: u16,
    pid: u32,
    layout: &Layout,
    pin: &KubePin,
    limit: Duration,
) -> Result<(), Error> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    loop {
        check_alive(&[("etcd", pid)], layout, pin)?;
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let request = b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
            let mut response = String::new();
            if stream.write_all(request).await.is_ok()
                && stream.read_to_string(&mut response).await.is_ok()
                && response.contains("\"health\":\"true\"")
            {
                return Ok(());
            }
        }
        if started.elapsed() > limit {
            return Err(not_ready("etcd", "GET /health", limit, layout));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn client(kubeconfig: &Path) -> Result<kube::Client, Error> {
    let wrap = |e: Box<dyn std::error::Error + Send + Sync>| Error::Client {
        kubeconfig: kubeconfig.to_path_buf(),
        source: e,
    };
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| wrap(e.into()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .map_err(|e| wrap(e.into()))?;
    kube::Client::try_from(config).map_err(|e| wrap(e.into()))
}

/// Polls `/readyz` until it says `ok` (all post-start hooks done, RBAC bootstrapped).
async fn wait_readyz(
    client: &kube::Client,
    watched: &[(&str, u32)],
    layout: &Layout,
    pin: &KubePin,
    limit: Duration,
) -> Result<(), Error> {
    let started = Instant::now();
    loop {
        check_alive(watched, layout, pin)?;
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .expect("a static request is valid");
        if let Ok(Ok(body)) =
            tokio::time::timeout(Duration::from_secs(5), client.request_text(request)).await
        {
            if body.trim() == "ok" {
                return Ok(());
            }
        }
        if started.elapsed() > limit {
            return Err(not_ready("kube-apiserver", "GET /readyz", limit, layout));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until `condition` holds for the object `name` (kube-rs `await_condition`), failing
/// early with the first watched component that exits. `waiting_on`: the component to blame
/// and what was waited for.
#[allow(clippy::too_many_arguments)]
async fn wait_object<K>(
    api: kube::Api<K>,
    name: &str,
    condition: impl kube::runtime::wait::Condition<K>,
    watched: &[(&str, u32)],
    waiting_on: (&str, &str),
    layout: &Layout,
    pin: &KubePin,
    limit: Duration,
) -> Result<(), Error>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let (component, what) = waiting_on;
    let exists = kube::runtime::wait::await_condition(api, name, condition);
    let watch_processes = async {
        loop {
            if let Err(e) = check_alive(watched, layout, pin) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let waited = tokio::time::timeout(limit, async {
        tokio::select! {
            result = exists => result.map(|_| ()).map_err(|e| Error::NotReady {
                component: component.into(),
                what: format!("watching for {what}: {e}"),
                waited: limit,
                tail: process::log_tail(&layout.log(component), 20),
            }),
            error = watch_processes => Err(error),
        }
    })
    .await;
    match waited {
        Ok(result) => result,
        Err(_) => Err(not_ready(component, what, limit, layout)),
    }
}

/// The Node's `Ready` condition is `True`.
fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Waits until kube-proxy has written the `kubernetes` Service's rule (its ClusterIP in
/// `KUBE-SERVICES`): from then on a pod's request to 10.96.0.1:443 reaches the API server.
/// Its healthz says little here: v1.24's answers 200 before the first sync.
async fn wait_service_rules(
    watched: &[(&str, u32)],
    layout: &Layout,
    pin: &KubePin,
    limit: Duration,
) -> Result<(), Error> {
    let started = Instant::now();
    let want = format!("-d {}/32", flags::SERVICE_IP);
    loop {
        check_alive(watched, layout, pin)?;
        let out = tokio::process::Command::new("iptables")
            .args(["-w", "-t", "nat", "-S", "KUBE-SERVICES"])
            .output()
            .await;
        if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&want)) {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(not_ready(
                "kube-proxy",
                "the rule for the kubernetes Service in iptables' nat KUBE-SERVICES",
                limit,
                layout,
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Claims the host for a node and starts node-local's runtime in `<state>/node`; both are
/// handed to the cluster's teardown at once, so any later failure removes them.
async fn start_node_runtime(
    id: u64,
    spec: &LocalSpec,
    layout: &Layout,
    tag: &str,
) -> Result<(node::NodeNet, Vec<String>), Error> {
    let node_layout = node::NodeLayout::new(layout);
    let root = node_layout.root.clone();
    let claim = tokio::task::spawn_blocking(move || host::HostClaim::take(&root))
        .await
        .expect("the host claim task does not panic")?;
    let (claim, cleaned) = claim;
    if let Some(teardown) = registry().get_mut(&id) {
        teardown.host = Some(claim);
    }
    for line in cleaned {
        (spec.progress)(&format!("{tag} {line}"));
    }
    (spec.progress)(&format!(
        "{tag} starting the node's container runtime (node-local: containerd, registry, \
         bridge; the first run builds the images)"
    ));
    let runtime_spec = node_local::RuntimeSpec {
        state_dir: node_layout.runtime(),
        cache_root: spec.cache_root.clone(),
        ready_timeout: spec.ready_timeout,
    };
    let runtime = tokio::task::spawn_blocking(move || node_local::NodeRuntime::start(runtime_spec))
        .await
        .expect("the node runtime task does not panic")
        .map_err(|source| Error::Node { source })?;
    let net = node::NodeNet {
        gateway: runtime.bridge_gateway(),
        pod_cidr: runtime.pod_cidr(),
        cri_endpoint: runtime.cri_endpoint(),
        cgroup_root: runtime.cgroup_root(),
        pause_image: runtime.pause_image().0,
    };
    let notes = runtime.notes();
    (spec.progress)(&format!(
        "{tag} node runtime ready: bridge {} ({}), {}",
        runtime.bridge(),
        net.gateway,
        net.cri_endpoint
    ));
    match registry().get_mut(&id) {
        Some(teardown) => teardown.node = Some(runtime),
        // Torn down meanwhile (Ctrl-C): dropping the runtime stops it.
        None => drop(runtime),
    }
    Ok((net, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_refused_gate_in_the_log() {
        let log = "Error: invalid argument \"NoSuchGate=true\" for \"--feature-gates\" flag: \
                   unrecognized feature gate: NoSuchGate\n";
        assert_eq!(unknown_gate(log).as_deref(), Some("NoSuchGate"));
        assert_eq!(unknown_gate("all fine"), None);
    }

    #[test]
    fn finds_the_port_another_program_took() {
        let log = "E1203 run.go:74] \"command failed\" err=\"failed to create listener: failed \
                   to listen on 127.0.0.1:41487: listen tcp 127.0.0.1:41487: bind: address \
                   already in use\"";
        assert_eq!(port_in_use(log), Some(41487));
        assert_eq!(port_in_use("listening on 127.0.0.1:1"), None);
    }

    #[test]
    fn a_non_empty_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cluster.json"), "{}").unwrap();
        let spec = LocalSpec {
            state_dir: Some(dir.path().into()),
            binaries: Some(ControlPlaneBinaries {
                etcd: "/bin/false".into(),
                kube_apiserver: "/bin/false".into(),
                kube_controller_manager: "/bin/false".into(),
                kubectl: "/bin/false".into(),
                etcd_note: "etcd given by the test".into(),
            }),
            ..LocalSpec::new(KubePin::find("1.29").unwrap())
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(LocalCluster::start(spec)).unwrap_err();
        assert!(matches!(err, Error::StateDirInUse { .. }), "{err:?}");
    }

    #[test]
    fn sweeps_only_temp_dirs_whose_owner_is_gone() {
        let temp = tempfile::tempdir().unwrap();
        // pid_max on Linux is at most 2^22, so this pid cannot exist.
        let orphan = temp.path().join("sa-replay-local-1.29-99999999-0");
        let ours = temp
            .path()
            .join(format!("sa-replay-local-1.29-{}-0", std::process::id()));
        let unrelated = temp.path().join("something-else-1-2");
        for dir in [&orphan, &ours, &unrelated] {
            fs::create_dir(dir).unwrap();
        }
        sweep_orphaned_temp_dirs(temp.path());
        assert!(!orphan.exists());
        assert!(ours.exists() && unrelated.exists());
    }

    #[test]
    fn stopping_what_is_not_there_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("never-started");
        assert_eq!(stop_recorded(&gone).unwrap(), Stopped::NothingThere);
    }
}
