//! `cargo xtask bench cluster-up`: how long a local cluster takes to be ready, per version,
//! from cached binaries; with `--cold-build`, also how long building the binaries takes with
//! an empty Go build cache (a throwaway GOCACHE, so the shared one is left warm).
//!
//! A benchmark, not a test: it prints numbers and asserts nothing about them. Besides the
//! seconds, each table gives ratios between figures of the same run (each version against
//! the first one asked for, a cold build against a cached start), which stay comparable
//! when the machine is busier or quieter from one run to the next.

use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_local::{LocalCluster, LocalSpec};
use k8s_binaries::{Binary, BuildSpec};
use pins::KubePin;
use xshell::Shell;

use crate::flags::{Bench, BenchTarget};

impl Bench {
    pub fn run(self, _sh: &Shell) -> anyhow::Result<()> {
        if self.target == BenchTarget::PodRunning {
            return self.pod_running();
        }
        let (pins, runtime) = self.pins_and_runtime()?;
        let mut rows = Vec::new();
        for pin in pins {
            let cold = if self.cold_build {
                Some(cold_build(pin)?)
            } else {
                None
            };
            // Warm the binaries (and etcd) outside the measured runs.
            cluster_local::ensure_binaries(pin, &k8s_binaries::cache_root(), |l| eprintln!("{l}"))?;
            let mut ready = Vec::new();
            let mut stop = Vec::new();
            for run in 1..=self.runs {
                let mut spec = LocalSpec::new(pin);
                spec.progress = |_| {};
                let started = Instant::now();
                let cluster = runtime
                    .block_on(LocalCluster::start(spec))
                    .with_context(|| format!("run {run} of local {}", pin.version))?;
                ready.push(started.elapsed());
                let stopping = Instant::now();
                cluster.stop();
                stop.push(stopping.elapsed());
                eprintln!(
                    "{} run {run}: ready in {:.1}s, stopped in {:.1}s",
                    pin.version,
                    ready.last().unwrap().as_secs_f64(),
                    stop.last().unwrap().as_secs_f64()
                );
            }
            rows.push((pin.version, cold, ready, stop));
        }

        println!("| version | cold build (empty GOCACHE) | time to ready (min / median / max) | ready vs {} | cold build ÷ ready | stop (median) |", rows.first().map_or("", |r| r.0));
        println!("|---|---|---|---|---|---|");
        let baseline = rows.first().map(|r| median(&r.2));
        for (version, cold, ready, stop) in &rows {
            let (cold, cold_ratio) = match cold {
                Some(d) => (format!("{:.0}s", d.as_secs_f64()), ratio(*d, median(ready))),
                None => ("not measured (--cold-build)".into(), "-".into()),
            };
            println!(
                "| {version} | {cold} | {} | {} | {cold_ratio} | {:.1}s |",
                spread(ready),
                baseline.map_or("-".into(), |b| ratio(median(ready), b)),
                median(stop).as_secs_f64()
            );
        }
        Ok(())
    }
}

impl Bench {
    /// The versions asked for, and a runtime to drive the clusters with.
    fn pins_and_runtime(&self) -> anyhow::Result<(Vec<&'static KubePin>, tokio::runtime::Runtime)> {
        let pins = self
            .k8s
            .iter()
            .map(|m| KubePin::find(m))
            .collect::<Result<Vec<_>, _>>()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok((pins, runtime))
    }

    /// With a node: time to the Node Ready (the start returns then), and on to the page's pod
    /// Running (its secret volume and image pull included), from cached binaries and images.
    fn pod_running(&self) -> anyhow::Result<()> {
        use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
        use kube::{api::PostParams, runtime::wait::await_condition, Api};

        let (pins, runtime) = self.pins_and_runtime()?;
        let mut rows = Vec::new();
        for pin in pins {
            cluster_local::ensure_node_binaries(pin, &k8s_binaries::cache_root(), |l| {
                eprintln!("{l}")
            })?;
            let (mut ready, mut running) = (Vec::new(), Vec::new());
            for run in 1..=self.runs {
                let mut spec = LocalSpec::new(pin);
                spec.node = Some(cluster_local::NodeSpec::default());
                spec.progress = |_| {};
                let started = Instant::now();
                let cluster = runtime
                    .block_on(LocalCluster::start(spec))
                    .with_context(|| format!("run {run} of local {} with a node", pin.version))?;
                ready.push(started.elapsed());
                let pod_up = runtime.block_on(async {
                    let client = cluster.client().await?;
                    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
                        "metadata": {"name": "sa-example"}}))?;
                    Api::<ServiceAccount>::namespaced(client.clone(), "default")
                        .create(&PostParams::default(), &sa)
                        .await?;
                    let secret: Secret = serde_yaml::from_str(guide::secret_manifest())?;
                    Api::<Secret>::namespaced(client.clone(), "default")
                        .create(&PostParams::default(), &secret)
                        .await?;
                    let pod: Pod = serde_yaml::from_str(guide::pod_manifest())?;
                    let pods = Api::<Pod>::namespaced(client, "default");
                    pods.create(&PostParams::default(), &pod).await?;
                    let running = kube::runtime::conditions::is_pod_running();
                    tokio::time::timeout(
                        Duration::from_secs(180),
                        await_condition(pods, "sa-pod", running),
                    )
                    .await
                    .context("sa-pod not Running within 3 minutes")??;
                    anyhow::Ok(started.elapsed())
                });
                cluster.stop();
                running.push(pod_up?);
                eprintln!(
                    "{} run {run}: node Ready in {:.1}s, sa-pod Running at {:.1}s",
                    pin.version,
                    ready.last().unwrap().as_secs_f64(),
                    running.last().unwrap().as_secs_f64()
                );
            }
            rows.push((pin.version, ready, running));
        }
        println!("| version | up to node Ready (min / median / max) | up to sa-pod Running (min / median / max) | Running ÷ node Ready | Running vs {} |", rows.first().map_or("", |r| r.0));
        println!("|---|---|---|---|---|");
        let baseline = rows.first().map(|r| median(&r.2));
        for (version, ready, running) in &rows {
            println!(
                "| {version} | {} | {} | {} | {} |",
                spread(ready),
                spread(running),
                ratio(median(running), median(ready)),
                baseline.map_or("-".into(), |b| ratio(median(running), b))
            );
        }
        Ok(())
    }
}

/// Builds the control plane into a throwaway cache with a throwaway GOCACHE (the module
/// cache stays: it holds downloads, not compilation).
fn cold_build(pin: &'static KubePin) -> anyhow::Result<Duration> {
    let scratch = tempfile::tempdir()?;
    let spec = BuildSpec {
        cache_root: scratch.path().join("cache"),
        ..BuildSpec::new(pin, Binary::CONTROL_PLANE)
    };
    // Set before any thread of ours runs Go; only the child processes read it.
    std::env::set_var("GOCACHE", scratch.path().join("gocache"));
    let started = Instant::now();
    let built = k8s_binaries::ensure(&spec, &mut |p| eprintln!("[{} cold] {p}", pin.version));
    std::env::remove_var("GOCACHE");
    built?;
    Ok(started.elapsed())
}

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

/// `a` as a multiple of `b`, both from the same run.
fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "-".into();
    }
    format!("×{:.2}", a.as_secs_f64() / b.as_secs_f64())
}

fn spread(values: &[Duration]) -> String {
    let min = values.iter().min().copied().unwrap_or_default();
    let max = values.iter().max().copied().unwrap_or_default();
    format!(
        "{:.1}s / {:.1}s / {:.1}s",
        min.as_secs_f64(),
        median(values).as_secs_f64(),
        max.as_secs_f64()
    )
}
