//! `cargo xtask cluster up|down|test`: one cluster at a time, left running between commands.
//!
//! `up --provider local` starts a detached local control plane whose state (certificates,
//! etcd data, logs, pids) lives in `$SA_REPLAY_CACHE/clusters/local-<minor>/`, and prints the
//! admin kubeconfig path as the last line of stdout. `down` stops it from that record.
//! `test` runs the ignored integration tests of `cluster-local` on real clusters.
//!
//! `up --node` adds a node (kubelet, kube-proxy, containerd from node-local). Its container
//! runtime dies with this process, so such a cluster is not detached: `up` stays in the
//! foreground until Ctrl-C or SIGTERM, which tear it down.

use anyhow::{bail, Context};
use cluster_local::{LocalCluster, LocalSpec, Record, Stopped};
use pins::KubePin;
use xshell::{cmd, Shell};

use crate::flags::{ClusterCmd, ClusterDown, ClusterTest, ClusterUp, ProviderChoice};

impl ClusterCmd {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        match self {
            ClusterCmd::Up(up) => up.run(sh),
            ClusterCmd::Down(down) => down.run(sh),
            ClusterCmd::Test(test) => test.run(sh),
        }
    }
}

/// `cluster up/down` only drive the local provider; kind clusters belong to the e2e run.
fn local_only(provider: ProviderChoice) -> anyhow::Result<()> {
    match provider {
        // Auto means local here: a single long-lived cluster is what the local provider is for.
        ProviderChoice::Local | ProviderChoice::Auto => Ok(()),
        ProviderChoice::Kind => bail!(
            "`cargo xtask cluster up/down --provider kind` is not wired yet: kind clusters are \
             made and removed by `cargo xtask e2e --provider kind` (add --keep to leave them up)"
        ),
    }
}

impl ClusterUp {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        local_only(self.provider)?;
        let pin = KubePin::find(&self.k8s)?;
        let gates = cluster::parse_feature_gates(self.feature_gates.as_deref().unwrap_or(""))?;
        let state_dir = cluster_local::detached_state_dir(pin);

        // Up while up is an error rather than a silent reuse: the running cluster may have
        // other feature gates than the ones asked for now.
        if let Some(record) = Record::load(&state_dir)? {
            if !record.live_processes().is_empty() {
                let kubeconfig = record
                    .info
                    .map(|i| i.kubeconfig.display().to_string())
                    .unwrap_or_else(|| "(still starting)".into());
                bail!(
                    "local {} is already up (kubeconfig {kubeconfig}); run `cargo xtask cluster \
                     down --provider local --k8s {}` first",
                    pin.version,
                    pin.minor
                );
            }
        }
        if state_dir.exists() {
            eprintln!(
                "removing the stale state of a previous local-{} ({})",
                pin.minor,
                state_dir.display()
            );
            cluster_local::stop_recorded(&state_dir)?;
        }

        if self.node {
            return up_with_node(pin, gates);
        }
        let mut spec = LocalSpec::new(pin);
        spec.feature_gates = gates;
        spec.state_dir = Some(state_dir.clone());
        spec.lifetime = cluster_local::Lifetime::Detachable;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let cluster = runtime
            .block_on(LocalCluster::start(spec))
            .with_context(|| format!("starting local {}", pin.version))?;
        let info = cluster.detach()?;
        eprintln!(
            "local {} is up; state and logs in {}\n  kubectl: {}\n  stop it with: cargo xtask \
             cluster down --provider local --k8s {}",
            info.kubernetes,
            state_dir.display(),
            info.kubectl.display(),
            pin.minor
        );
        println!("{}", info.kubeconfig.display());
        Ok(())
    }
}

/// A cluster with a node, in the foreground: LocalSpec's own Ctrl-C/SIGTERM handler tears it
/// down and exits.
fn up_with_node(pin: &'static KubePin, gates: cluster::FeatureGates) -> anyhow::Result<()> {
    let mut spec = LocalSpec::new(pin);
    spec.feature_gates = gates;
    spec.node = Some(cluster_local::NodeSpec::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cluster = runtime
        .block_on(LocalCluster::start(spec))
        .with_context(|| format!("starting local {} with a node", pin.version))?;
    let info = cluster.info();
    eprintln!(
        "local {} is up with node {}; state and logs in {}\n  kubectl: {}\n  it stays up \
         while this command runs: Ctrl-C (or kill -TERM {}) removes it",
        info.kubernetes,
        cluster_local::NODE_NAME,
        cluster.state_dir().display(),
        info.kubectl.display(),
        std::process::id()
    );
    println!("{}", info.kubeconfig.display());
    loop {
        std::thread::park();
    }
}

impl ClusterDown {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        local_only(self.provider)?;
        let pin = KubePin::find(&self.k8s)?;
        let state_dir = cluster_local::detached_state_dir(pin);
        match cluster_local::stop_recorded(&state_dir)? {
            Stopped::NothingThere => eprintln!("local {} was not up", pin.version),
            Stopped::Stopped(components) if components.is_empty() => eprintln!(
                "local {}: no process was running; removed {}",
                pin.version,
                state_dir.display()
            ),
            Stopped::Stopped(components) => eprintln!(
                "local {}: stopped {}; removed {}",
                pin.version,
                components.join(", "),
                state_dir.display()
            ),
        }
        Ok(())
    }
}

impl ClusterTest {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        if self.node {
            // The test builds what it lacks; building first keeps its time limits honest.
            let pin = KubePin::find("1.29")?;
            let cache = k8s_binaries::cache_root();
            cluster_local::ensure_binaries(pin, &cache, |line| eprintln!("{line}"))?;
            cluster_local::ensure_node_binaries(pin, &cache, |line| eprintln!("{line}"))?;
            cmd!(
                sh,
                "{cargo} test -p cluster-local --test local_node -- --ignored --test-threads=1"
            )
            .run()?;
            return Ok(());
        }
        // Build (or check) both versions first, so the tests' time limits measure clusters,
        // not a cold Go build.
        for pin in pins::KUBERNETES {
            cluster_local::ensure_binaries(pin, &k8s_binaries::cache_root(), |line| {
                eprintln!("{line}")
            })
            .with_context(|| format!("providing the binaries for {}", pin.version))?;
        }
        // One test at a time: two cores, and `both_versions_run_at_the_same_time` already
        // runs two clusters.
        cmd!(
            sh,
            "{cargo} test -p cluster-local --test local_cluster -- --ignored --test-threads=1"
        )
        .run()?;
        Ok(())
    }
}
