//! One replay of the whole page per cluster version, shared by that version's tests.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, LazyLock, Mutex, OnceLock},
};

use anyhow::Context;
use cluster::{ClusterInfo, CLUSTERS_ENV};
use k8s_openapi::api::{
    core::v1::{Pod, Secret, ServiceAccount},
    rbac::v1::{Role, RoleBinding},
};
use report::{Run, Status, StepResult, Vantage};

use crate::{
    steps::{self, Replay, EXECUTION_ORDER, STEP_TIMEOUT},
    target::Target,
};

/// Where each run is saved (`runs/` below it); `cargo xtask e2e` sets it to its report dir.
pub const REPORT_DIR_ENV: &str = "SA_REPLAY_REPORT_DIR";

type Shared = Arc<OnceLock<Result<Run, String>>>;
static RUNS: LazyLock<Mutex<HashMap<String, Shared>>> = LazyLock::new(Default::default);

/// The test of one step on one version: replays the page on that cluster (once per test
/// process) and fails if the step's row is `fail`. A `skip` is printed with its reason.
pub fn assert_step(minor: &str, id: &str) {
    let cell = RUNS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(minor.to_string())
        .or_default()
        .clone();
    let run = match cell.get_or_init(|| replay_on(minor).map_err(|e| format!("{e:#}"))) {
        Ok(run) => run,
        Err(e) => panic!("no replay on {minor}: {}", report::redact(e)),
    };
    let row = run
        .steps
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("{id} missing from the run"));
    // Rows hold only shortened tokens already; redact again before anything is printed.
    let (observed, reason) = (report::redact(&row.observed), report::redact(&row.reason));
    match row.status {
        Status::Fail => panic!(
            "{id} on {}: observed {observed}\n{reason}\nsource: {}",
            run.kubernetes, row.source
        ),
        Status::Skip => eprintln!("SKIP {id} on {}: {reason}", run.kubernetes),
        Status::Drift => eprintln!("DRIFT {id} on {}: {reason}", run.kubernetes),
        Status::Holds => {}
    }
}

fn replay_on(minor: &str) -> anyhow::Result<Run> {
    let file = std::env::var_os(CLUSTERS_ENV).map(PathBuf::from).with_context(|| {
        format!("{CLUSTERS_ENV} is not set: these tests replay on clusters started by `cargo xtask e2e`")
    })?;
    anyhow::ensure!(
        file.is_absolute() || file.exists(),
        "{CLUSTERS_ENV}={} is not found from {}: cargo runs tests in the e2e folder, so give an absolute path",
        file.display(),
        std::env::current_dir().unwrap_or_default().display()
    );
    let clusters = cluster::read_clusters(&file)?;
    let info = clusters
        .iter()
        .find(|c| c.minor == minor)
        .cloned()
        .with_context(|| {
            let have: Vec<_> = clusters.iter().map(|c| c.minor.as_str()).collect();
            format!(
                "no {minor} cluster in {}: it lists {have:?}",
                file.display()
            )
        })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let run = runtime.block_on(replay(info))?;
    let dir = std::env::var_os(REPORT_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/e2e-report"))
        .join("runs");
    run.save(&dir)?;
    Ok(run)
}

/// Replays every step on one cluster, in [`EXECUTION_ORDER`], and returns the run.
async fn replay(info: ClusterInfo) -> anyhow::Result<Run> {
    let mut run = Run::new(info.kubernetes.clone(), info.provider);
    run.feature_gates = info.feature_gates.clone();
    run.notes = info.notes.clone();
    if !info.has_node {
        run.notes.push(
            "no node: pod-running and pod-secret-files are skipped; in-pod requests are replayed from the host \
             with the Secret's CA and token (vantage: host)"
                .into(),
        );
    }
    let target = Target::connect(info).await?;
    let version = target
        .client
        .apiserver_version()
        .await
        .context("GET /version")?;
    anyhow::ensure!(
        version.git_version == target.info.kubernetes,
        "/version reports {}, not the pinned {}",
        version.git_version,
        target.info.kubernetes
    );
    clean_up_earlier_run(&target).await?;
    let mut r = Replay::new(target);
    let tag = r.t.info.kubernetes.clone();
    for id in EXECUTION_ORDER {
        let step = guide::step(id);
        let row = match tokio::time::timeout(STEP_TIMEOUT, steps::run_step(&mut r, id)).await {
            Ok(Ok(outcome)) => outcome.into_result(step),
            Ok(Err(e)) => failed(step, r.t.info.has_node, format!("{e:#}")),
            Err(_) => failed(
                step,
                r.t.info.has_node,
                format!("did not finish within {STEP_TIMEOUT:?}"),
            ),
        };
        eprintln!("[{tag}] {id}: {}", row.status.as_str());
        run.steps.push(row);
    }
    run.sort_steps(&guide::step_ids());
    Ok(run)
}

/// A step that errored: its row says where it was being replayed from.
fn failed(step: &guide::Step, has_node: bool, error: String) -> StepResult {
    let vantage = match (step.in_pod, has_node) {
        (false, _) => Vantage::Cluster,
        (true, true) => Vantage::Pod,
        (true, false) => Vantage::Host,
    };
    StepResult::new(
        step.id,
        Status::Fail,
        vantage,
        step.doc_claim,
        "the step could not be replayed",
    )
    .with_reason(report::redact(&error).into_owned())
}

/// Deletes what an earlier run left on a kept cluster, so the page starts from scratch.
async fn clean_up_earlier_run(t: &Target) -> anyhow::Result<()> {
    steps::delete_and_wait::<Pod>(t, "sa-pod").await?;
    steps::delete_and_wait::<RoleBinding>(t, "sa-example-pod-reader").await?;
    steps::delete_and_wait::<Role>(t, "pod-reader").await?;
    steps::delete_and_wait::<Secret>(t, "sa-example-token").await?;
    steps::delete_and_wait::<ServiceAccount>(t, "sa-example").await?;
    Ok(())
}
