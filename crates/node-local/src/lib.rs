//! Everything below the kubelet for the `local` provider: containerd (CRI) from Debian
//! packages as our own process, locally built `nginx` and `pause` images served by a
//! loopback registry that `docker.io` resolves to, and a bridge + CNI config for pods.
//!
//! ```no_run
//! let node = node_local::NodeRuntime::start(node_local::RuntimeSpec::new("/tmp/run/node"))?;
//! println!("kubelet --container-runtime-endpoint={}", node.cri_endpoint());
//! # Ok::<(), node_local::Error>(())
//! ```
//!
//! **Invariants:** nothing listens outside 127.0.0.1 (registry, CRI streaming server) or the
//! run's own bridge; FORWARD rules drop anything routed between that bridge and any other
//! interface; `stop`, `Drop` and [`cleanup_leftovers`] (for a run that was SIGKILLed) leave
//! no process, mount, namespace, link, rule or cgroup behind.

pub mod config;
mod error;
pub mod images;
pub mod net;
pub mod oci;
pub mod packages;
pub mod process;
pub mod registry;
mod teardown;
pub mod tools;

use std::{
    fs,
    io::Write,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub use error::Error;
pub use teardown::{cleanup_leftovers, RunRecord};

use config::Layout;
use net::Subnet24;

/// Where the CNI plugins are (Debian's `containernetworking-plugins`).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// What to start.
#[derive(Debug, Clone)]
pub struct RuntimeSpec {
    /// Everything of the run lives here (config, containerd root and state, logs).
    pub state_dir: PathBuf,
    /// `$SA_REPLAY_CACHE`: built images and tools.
    pub cache_root: PathBuf,
    /// How long containerd and the registry may take to answer.
    pub ready_timeout: Duration,
}

impl RuntimeSpec {
    pub fn new(state_dir: impl Into<PathBuf>) -> RuntimeSpec {
        RuntimeSpec {
            state_dir: state_dir.into(),
            cache_root: k8s_binaries::cache_root(),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// A running node runtime. Dropping it tears everything down.
#[derive(Debug)]
pub struct NodeRuntime {
    layout: Layout,
    record: RunRecord,
    subnet: Subnet24,
    registry_addr: String,
    nginx: images::BuiltImage,
    pause: images::BuiltImage,
    notes: Vec<String>,
    stopped: bool,
}

impl NodeRuntime {
    /// Installs missing packages, builds (or finds cached) images, claims a bridge and pod
    /// subnet, starts the registry and containerd, pushes the images, and waits until
    /// containerd's CRI plugin is serving. On failure everything started is torn down.
    pub fn start(spec: RuntimeSpec) -> Result<NodeRuntime, Error> {
        if !process::is_root() {
            return Err(Error::NotRoot {
                what: "a local node (containerd, network namespaces, iptables)",
            });
        }
        let mut notes = Vec::new();
        let installed = packages::ensure_installed()?;
        if !installed.is_empty() {
            notes.push(format!(
                "installed Debian packages: {}",
                installed.join(" ")
            ));
        }
        // Whatever a SIGKILLed earlier run left behind goes first.
        for problem in cleanup_leftovers() {
            notes.push(format!("cleanup of an earlier run: {problem}"));
        }
        let (nginx, pause) = images::ensure_images(&spec.cache_root)?;
        notes.push(nginx.note.clone());
        notes.push(pause.note.clone());
        notes.extend(
            packages::versions([
                "containerd",
                "runc",
                "containernetworking-plugins",
                "docker-registry",
            ])?
            .into_iter()
            .map(|v| format!("node runtime package {v}")),
        );

        let state_dir = absolute(&spec.state_dir)?;
        let layout = Layout {
            state_dir: state_dir.clone(),
        };
        // A state dir reused after a crash: its old record was handled by cleanup above.
        for dir in [
            layout.state_dir.join("containerd"),
            layout.state_dir.join("cni"),
            layout.state_dir.join("registry"),
        ] {
            let _ = fs::remove_dir_all(&dir);
        }
        fs::create_dir_all(layout.logs()).map_err(Error::io("create", layout.logs()))?;

        let (record, subnet) = teardown::claim_network(&layout)?;
        let mut node = NodeRuntime {
            layout,
            record,
            subnet,
            registry_addr: String::new(),
            nginx,
            pause,
            notes,
            stopped: false,
        };
        // From here on, Drop cleans up whatever a failure leaves.
        node.start_inner(&spec)?;
        Ok(node)
    }

    fn start_inner(&mut self, spec: &RuntimeSpec) -> Result<(), Error> {
        let l = self.layout.clone();
        net::create_bridge(&self.record.bridge, self.subnet)?;
        net::isolate(&self.record.bridge)?;
        self.notes.push(format!(
            "pod network: bridge {} with {} (gateway {}), no masquerade, FORWARD to/from other interfaces dropped",
            self.record.bridge,
            self.subnet,
            self.subnet.gateway()
        ));

        // Registry.
        let port = registry::free_port()?;
        self.registry_addr = format!("127.0.0.1:{port}");
        write(
            &l.registry_config(),
            &config::registry_yaml(&self.registry_addr, &l.registry_storage()),
        )?;
        let log = l.logs().join("registry.log");
        let pid = process::spawn(process::Launch {
            program: "/usr/bin/docker-registry".into(),
            args: vec!["serve".into(), l.registry_config().display().to_string()],
            log: log.clone(),
            cwd: l.state_dir.clone(),
        })?;
        self.record.pids.push(pid);
        self.record.save()?;
        wait_until("docker-registry", pid, &log, spec.ready_timeout, || {
            registry::answers(&self.registry_addr)
        })?;
        registry::push(&self.registry_addr, &self.nginx)?;
        registry::push(&self.registry_addr, &self.pause)?;

        // containerd.
        let hosts = l.registry_hosts_dir().join("docker.io/hosts.toml");
        write(&hosts, &config::hosts_toml(&self.registry_addr))?;
        write(
            &l.cni_conf_dir().join("10-sa-replay.conflist"),
            &net::cni_conflist(&self.record.bridge, self.subnet, &l.cni_ipam_dir()),
        )?;
        let sandbox = self.pause.reference();
        write(
            &l.containerd_config(),
            &config::containerd_toml(&config::ContainerdConfig {
                layout: &l,
                sandbox_image: &sandbox,
                cni_bin_dir: Path::new(CNI_BIN_DIR),
            }),
        )?;
        let log = l.logs().join("containerd.log");
        let pid = process::spawn(process::Launch {
            program: "/usr/bin/containerd".into(),
            args: vec![
                "--config".into(),
                l.containerd_config().display().to_string(),
            ],
            log: log.clone(),
            cwd: l.state_dir.clone(),
        })?;
        self.record.pids.push(pid);
        self.record.save()?;
        let sock = l.containerd_socket().display().to_string();
        wait_until("containerd", pid, &log, spec.ready_timeout, || {
            cri_serving(&sock)
        })?;
        Ok(())
    }

    /// For the kubelet's `--container-runtime-endpoint`: `unix:///.../containerd.sock`.
    pub fn cri_endpoint(&self) -> String {
        format!("unix://{}", self.layout.containerd_socket().display())
    }

    /// The containerd socket path (for `ctr --address`).
    pub fn containerd_socket(&self) -> PathBuf {
        self.layout.containerd_socket()
    }

    /// The pod CIDR of this node, e.g. `10.244.0.0/24` (kubelet `--pod-cidr`, and the Node's
    /// `spec.podCIDR` if the controller-manager allocates).
    pub fn pod_cidr(&self) -> String {
        self.subnet.to_string()
    }

    /// The bridge's address: how pods reach the host (and a host service bound to it).
    pub fn bridge_gateway(&self) -> Ipv4Addr {
        self.subnet.gateway()
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.record.bridge
    }

    /// The CNI config folder containerd reads.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.layout.cni_conf_dir()
    }

    /// The cgroup parent to give the kubelet (`--cgroup-root`), so two nodes on one host do
    /// not share `/kubepods`, and teardown removes exactly this tree.
    pub fn cgroup_root(&self) -> String {
        self.record.cgroup_root.clone()
    }

    /// `127.0.0.1:PORT` of the registry `docker.io` resolves to.
    pub fn registry_addr(&self) -> &str {
        &self.registry_addr
    }

    /// The image the page's pod runs, as pushed: (`docker.io/library/nginx:latest`, digest).
    pub fn nginx_image(&self) -> (String, String) {
        (self.nginx.reference(), self.nginx.digest.clone())
    }

    /// The sandbox image (also the kubelet's `--pod-infra-container-image`), and its digest.
    pub fn pause_image(&self) -> (String, String) {
        (self.pause.reference(), self.pause.digest.clone())
    }

    /// Where the registry's and containerd's logs are.
    pub fn logs_dir(&self) -> PathBuf {
        self.layout.logs()
    }

    /// What was installed and built, from which package versions, and how the network is
    /// set up: for the report.
    pub fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    /// The record that [`cleanup_leftovers`] would use for this run.
    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    /// Tears everything down; returns what could not be removed (empty when all is gone).
    pub fn stop(mut self) -> Vec<String> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Vec<String> {
        if self.stopped {
            return Vec::new();
        }
        self.stopped = true;
        teardown::teardown(&self.record)
    }
}

impl Drop for NodeRuntime {
    fn drop(&mut self) {
        for problem in self.stop_inner() {
            eprintln!("node-local teardown: {problem}");
        }
    }
}

/// Whether containerd serves the CRI: `ctr plugins ls` lists the `cri` plugin as `ok`.
/// (A failed CRI plugin leaves containerd running without it, so the socket alone says
/// little.)
fn cri_serving(sock: &str) -> bool {
    process::run("ctr", ["--address", sock, "plugins", "ls"]).is_ok_and(|out| {
        out.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() >= 4 && w[0] == "io.containerd.grpc.v1" && w[1] == "cri" && w[3] == "ok"
        })
    })
}

fn wait_until(
    component: &'static str,
    pid: u32,
    log: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if !process::running(pid) {
            return Err(Error::Exited {
                component,
                log: log.into(),
                tail: process::log_tail(log, 20),
            });
        }
        if Instant::now() >= deadline {
            return Err(Error::NotReady {
                component,
                secs: timeout.as_secs(),
                log: log.into(),
                tail: process::log_tail(log, 20),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes a file, creating its folder.
fn write(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    }
    let mut f = fs::File::create(path).map_err(Error::io("create", path))?;
    f.write_all(text.as_bytes())
        .map_err(Error::io("write", path))
}

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    fs::create_dir_all(path).map_err(Error::io("create", path))?;
    fs::canonicalize(path).map_err(Error::io("resolve", path))
}
