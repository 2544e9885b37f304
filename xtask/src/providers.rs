//! The two ways to get clusters, behind one lifecycle: kind (Docker) and local processes.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context;
use cluster::lifecycle::{Failure, Outcome, RunOptions};
use cluster::{ClusterInfo, FeatureGates};
use cluster_kind::{KindSpec, Tools};
use cluster_local::LocalProvider;
use k8s_binaries::{Binary, BuildSpec};
use pins::KubePin;

/// kind clusters, one per pin, with kubectl built at each cluster's version.
pub fn run_kind(
    pins: &[&'static KubePin],
    gates: &BTreeMap<&'static str, FeatureGates>,
    report_dir: &Path,
    opts: &RunOptions,
    suites: impl FnOnce(&[ClusterInfo]) -> Result<(), Failure>,
) -> anyhow::Result<Outcome> {
    let tools = Tools::from_env();
    // Preflight before building kubectl: a missing Docker should not cost a build.
    cluster_kind::preflight(&tools, pins)?;
    let mut specs = Vec::new();
    for &pin in pins {
        specs.push(KindSpec {
            pin,
            feature_gates: gates.get(pin.minor).cloned().unwrap_or_default(),
            work_dir: crate::e2e::work_dir(report_dir),
            kubectl: kubectl_for(pin)?,
        });
    }
    Ok(cluster_kind::run_e2e(&tools, specs, opts, suites)?)
}

/// kubectl at the cluster's version, so the page's commands print what that release prints.
fn kubectl_for(pin: &'static KubePin) -> anyhow::Result<std::path::PathBuf> {
    let spec = BuildSpec::new(pin, &[Binary::Kubectl]);
    let built = k8s_binaries::ensure(&spec, &mut |p| eprintln!("[{}] {p}", pin.version))
        .with_context(|| format!("building kubectl {} (needs Go; see README)", pin.version))?;
    Ok(built.path(Binary::Kubectl).to_path_buf())
}

/// Local clusters, one per pin: binaries built (or found cached) and feature gates checked
/// for every version first, so a build failure or a gate unknown to one version starts
/// nothing. Without a node the versions run side by side; with one they run one after the other, because a node owns machine-wide state (kube-proxy's iptables
/// chains, the kubelet's /var/log/pods, the `kubernetes` Service IP 10.96.0.1).
pub fn run_local(
    pins: &[&'static KubePin],
    gates: &BTreeMap<&'static str, FeatureGates>,
    node: bool,
    opts: &RunOptions,
    suites: impl Fn(&[ClusterInfo]) -> Result<(), Failure>,
) -> anyhow::Result<Outcome> {
    if !node {
        ensure_curl()?;
    }
    let cache = k8s_binaries::cache_root();
    let mut prepared = BTreeMap::new();
    for &pin in pins {
        let progress = |line: &str| eprintln!("{line}");
        let control_plane = cluster_local::ensure_binaries(pin, &cache, progress)
            .with_context(|| format!("getting the {} binaries", pin.version))?;
        let node_binaries = if node {
            Some(
                cluster_local::ensure_node_binaries(pin, &cache, progress)
                    .with_context(|| format!("getting the {} node binaries", pin.version))?,
            )
        } else {
            None
        };
        let gates = gates.get(pin.minor).cloned().unwrap_or_default();
        // Every version's gates before any cluster starts (each start checks its own again,
        // for `cluster up`; a check is one `--version` call).
        cluster_local::check_feature_gates(pin, &control_plane, &gates)?;
        prepared.insert(pin.minor, (gates, control_plane, node_binaries));
    }
    let provider = |pin: &'static KubePin| {
        let (gates, control_plane, node_binaries) = prepared[pin.minor].clone();
        let local = LocalProvider::new(pin, gates, opts.keep && !node);
        let local = if node { local.with_node() } else { local };
        local.with_binaries(control_plane, node_binaries)
    };
    if !node {
        return Ok(cluster::lifecycle::run(
            pins.iter().map(|&p| provider(p)),
            opts,
            suites,
        ));
    }
    let mut all = Outcome::default();
    for &pin in pins {
        let outcome = cluster::lifecycle::run([provider(pin)], opts, &suites);
        all.failures.extend(outcome.failures);
        all.warnings.extend(outcome.warnings);
        all.clusters.extend(outcome.clusters);
    }
    Ok(all)
}

/// Without a node the page's in-pod curl lines run on this host, so it needs curl. A fresh
/// machine gets it from Debian's package (no daemon comes with it); elsewhere the error says
/// what to install.
fn ensure_curl() -> anyhow::Result<()> {
    let answers = |program: &str| {
        std::process::Command::new(program)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if answers("curl") {
        return Ok(());
    }
    anyhow::ensure!(
        answers("apt-get"),
        "curl is missing: install it (the page's in-pod requests are replayed with it from this host)"
    );
    eprintln!("e2e: curl is missing; installing Debian's curl package");
    let sh = xshell::Shell::new()?;
    xshell::cmd!(sh, "apt-get update -qq").run()?;
    xshell::cmd!(sh, "apt-get install -y -qq curl")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .context("installing curl with apt-get (run as root, or install curl yourself)")?;
    Ok(())
}
