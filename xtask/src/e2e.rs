//! `cargo xtask e2e`: the main job. One cluster per version, every step replayed, a report.
//!
//! The clusters are brought up side by side through the provider's lifecycle (which tears them
//! down on failure and Ctrl-C too), the `e2e` suites run against them with `cargo test`, and
//! the runs they save are assembled into `report.json`, `report.md` and `junit.xml`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context;
use cluster::lifecycle::{Failure, Outcome, RunOptions};
use cluster::{ClusterInfo, FeatureGates, Provider};
use pins::KubePin;
use report::{Report, Run, Status, StepResult, Vantage};
use xshell::Shell;

use crate::{
    flags::{E2e, ProviderChoice},
    providers,
};

impl E2e {
    pub fn run(self, sh: &Shell) -> anyhow::Result<()> {
        let pins = unique_pins(&self.k8s)?;
        let gates = gates_per_minor(&self.feature_gates, &pins)?;
        let provider = choose_provider(self.provider);
        let node = provider == Provider::Local && self.wants_node();
        anyhow::ensure!(
            !(node && self.keep),
            "--keep cannot keep a local cluster with a node: its containerd, bridge and \
             iptables rules are machine-wide and end with the run. Add --no-node to keep the \
             control planes, or leave --keep out"
        );
        let report_dir = crate::project_root().join(&self.report_dir);
        prepare_report_dir(&report_dir)?;

        // Compile the suites before any cluster exists: a build error should not hold clusters.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        xshell::cmd!(sh, "{cargo} test -p e2e --test steps --no-run")
            .run()
            .context("building the e2e suites")?;

        let opts = RunOptions {
            logs_dir: report_dir.join("cluster-logs"),
            keep: self.keep,
        };
        let suites = |infos: &[ClusterInfo]| run_suites(&cargo, &report_dir, infos);
        eprintln!(
            "e2e: provider {provider}, Kubernetes {}",
            pins.iter()
                .map(|p| p.version)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let started = std::time::Instant::now();
        let outcome = match provider {
            Provider::Kind => providers::run_kind(&pins, &gates, &report_dir, &opts, suites)?,
            Provider::Local => providers::run_local(&pins, &gates, node, &opts, suites)?,
        };

        let report = assemble_report(&report_dir, &pins, provider, &gates, &outcome)?;
        report
            .write(&report_dir, self.strict)
            .context("writing the report")?;
        println!("{}", report::summary(&report, &report_dir));
        eprintln!("e2e: finished in {:.0} s", started.elapsed().as_secs_f64());
        for warning in &outcome.warnings {
            eprintln!("warning: {warning}");
        }
        let code = first_nonzero(
            outcome.exit_code(),
            if report.passes(self.strict) { 0 } else { 1 },
        );
        if code != 0 {
            for failure in &outcome.failures {
                eprintln!("error: {failure}");
            }
            if !report.passes(self.strict) {
                eprintln!(
                    "error: {} (see {})",
                    if self.strict {
                        "a step failed or drifted (--strict)"
                    } else {
                        "a step failed"
                    },
                    report_dir.join(report::MARKDOWN_FILE).display()
                );
            }
            std::process::exit(code);
        }
        Ok(())
    }
}

impl E2e {
    /// A node runs the page's pod for real (vantage: pod); it needs root for containerd,
    /// network namespaces and iptables. Without root the replay goes on without one, and the
    /// report says so on every in-pod row.
    fn wants_node(&self) -> bool {
        if self.no_node {
            return false;
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            eprintln!("e2e: not root, so the local clusters get no node: pods cannot run (pass --no-node to silence this)");
        }
        root
    }
}

/// The pins for `--k8s`, each once and in the order given (`1.29,v1.29.2` is one cluster).
fn unique_pins(minors: &[String]) -> anyhow::Result<Vec<&'static KubePin>> {
    let mut pins: Vec<&'static KubePin> = Vec::new();
    for minor in minors {
        let pin = KubePin::find(minor)?;
        if !pins.contains(&pin) {
            pins.push(pin);
        }
    }
    Ok(pins)
}

fn first_nonzero(a: i32, b: i32) -> i32 {
    if a != 0 {
        a
    } else {
        b
    }
}

/// `auto` takes kind where a Docker engine answers, else local.
fn choose_provider(choice: ProviderChoice) -> Provider {
    match choice {
        ProviderChoice::Kind => Provider::Kind,
        ProviderChoice::Local => Provider::Local,
        ProviderChoice::Auto => {
            let docker_answers = Command::new("docker")
                .arg("info")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let chosen = if docker_answers {
                Provider::Kind
            } else {
                Provider::Local
            };
            eprintln!(
                "e2e: --provider auto chose {chosen} ({})",
                if docker_answers {
                    "a Docker engine answers"
                } else {
                    "no Docker engine answers"
                }
            );
            chosen
        }
    }
}

/// `--feature-gates [MINOR:]Name=bool,...`, repeatable; gates without a minor apply to all.
pub fn gates_per_minor(
    given: &[String],
    pins: &[&'static KubePin],
) -> anyhow::Result<BTreeMap<&'static str, FeatureGates>> {
    let mut out: BTreeMap<&'static str, FeatureGates> = pins
        .iter()
        .map(|p| (p.minor, FeatureGates::new()))
        .collect();
    for value in given {
        let (only, gates) = match value.split_once(':') {
            Some((minor, gates)) => (Some(KubePin::find(minor)?.minor), gates),
            None => (None, value.as_str()),
        };
        let parsed = cluster::parse_feature_gates(gates)?;
        match only {
            Some(minor) => out
                .get_mut(minor)
                .with_context(|| format!("--feature-gates names {minor}, which is not in --k8s"))?
                .extend(parsed),
            None => out.values_mut().for_each(|g| g.extend(parsed.clone())),
        }
    }
    Ok(out)
}

/// Removes the previous run's report, so nothing stale is read, uploaded or taken for this
/// run's when this one stops before writing its own (an interrupt, a build error).
fn prepare_report_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for stale in ["runs", cluster::lifecycle::LOGS_DIR] {
        let path = dir.join(stale);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    for stale in [
        report::JSON_FILE,
        report::MARKDOWN_FILE,
        report::JUNIT_FILE,
        CLUSTERS_FILE,
    ] {
        match std::fs::remove_file(dir.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", dir.join(stale).display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// What the suites read the clusters from, in the report dir.
const CLUSTERS_FILE: &str = "clusters.json";

/// Runs the step tests for these clusters: `cargo test -p e2e --test steps -- --ignored v1_29 ...`.
fn run_suites(cargo: &str, report_dir: &Path, infos: &[ClusterInfo]) -> Result<(), Failure> {
    let clusters_file = report_dir.join(CLUSTERS_FILE);
    cluster::write_clusters(&clusters_file, infos)
        .map_err(|e| Failure::suites(1, format!("writing {}: {e}", clusters_file.display())))?;
    let filters: Vec<String> = infos
        .iter()
        .map(|i| format!("v{}", i.minor.replace('.', "_")))
        .collect();
    // One thread per cluster: each version's replay runs side by side with the others.
    let threads = infos.len().max(1).to_string();
    let mut cargo_test = Command::new(cargo);
    cargo_test
        .args([
            "test",
            "-p",
            "e2e",
            "--test",
            "steps",
            "--",
            "--ignored",
            "--test-threads",
            &threads,
        ])
        .args(&filters)
        .env(cluster::CLUSTERS_ENV, &clusters_file)
        .env(e2e_report_dir_env(), report_dir)
        .current_dir(crate::project_root());
    // In a process group of its own, which an interrupt stops before the clusters go.
    let status = cluster::lifecycle::run_suite_process(&mut cargo_test)
        .map_err(|e| Failure::suites(1, format!("running cargo test: {e}")))?;
    match status.code() {
        Some(0) => Ok(()),
        code => Err(Failure::suites(
            code.unwrap_or(1),
            "a step test failed (see the report)",
        )),
    }
}

/// The environment variable the suites read their report dir from (e2e::REPORT_DIR_ENV),
/// spelled here so the xtask does not depend on the e2e crate.
fn e2e_report_dir_env() -> &'static str {
    "SA_REPLAY_REPORT_DIR"
}

/// The runs the suites saved, plus a failed run for each version whose replay never ran,
/// so the report always has a row for every step on every version asked for.
fn assemble_report(
    report_dir: &Path,
    pins: &[&'static KubePin],
    provider: Provider,
    gates: &BTreeMap<&'static str, FeatureGates>,
    outcome: &Outcome,
) -> anyhow::Result<Report> {
    let order = guide::step_ids();
    let runs_dir = report_dir.join("runs");
    let mut runs: Vec<Run> = match Report::from_run_dir(&runs_dir, &order) {
        Ok(report) => report.runs,
        Err(report::ReportError::NoRuns { .. }) | Err(report::ReportError::ListRuns { .. }) => {
            Vec::new()
        }
        Err(e) => return Err(e).context("reading the suites' runs"),
    };
    let why = outcome
        .failures
        .first()
        .map(|f| f.message.clone())
        .unwrap_or_else(|| "the suites saved no run for this version".into());
    for pin in pins {
        if !runs.iter().any(|r| r.kubernetes == pin.version) {
            let mut run = Run::new(pin.version, provider);
            run.feature_gates = gates.get(pin.minor).cloned().unwrap_or_default();
            run.notes.push(format!("the replay did not run: {why}"));
            run.steps = guide::STEPS
                .iter()
                .map(|s| {
                    StepResult::new(
                        s.id,
                        Status::Fail,
                        Vantage::Cluster,
                        s.doc_claim,
                        "not replayed",
                    )
                    .with_reason(format!("the replay did not run: {why}"))
                })
                .collect();
            runs.push(run);
        }
    }
    Ok(Report::from_runs(runs, &order))
}

/// Where a local cluster's or a kind cluster's own files go in the report dir.
pub fn work_dir(report_dir: &Path) -> PathBuf {
    report_dir.join("clusters")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_apply_to_every_version_or_to_one() {
        let pins = vec![
            KubePin::find("1.24").unwrap(),
            KubePin::find("1.29").unwrap(),
        ];
        let given = vec![
            "1.24:LegacyServiceAccountTokenNoAutoGeneration=false".to_string(),
            "A=true".to_string(),
        ];
        let gates = gates_per_minor(&given, &pins).unwrap();
        assert_eq!(
            gates["1.24"].get("LegacyServiceAccountTokenNoAutoGeneration"),
            Some(&false)
        );
        assert_eq!(
            gates["1.29"].get("LegacyServiceAccountTokenNoAutoGeneration"),
            None
        );
        assert_eq!((gates["1.24"]["A"], gates["1.29"]["A"]), (true, true));
    }

    #[test]
    fn gates_for_a_version_not_run_are_an_error() {
        let pins = vec![KubePin::find("1.29").unwrap()];
        let err = gates_per_minor(&["1.24:A=true".to_string()], &pins)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in --k8s"), "{err}");
    }

    #[test]
    fn a_missing_run_becomes_failed_rows_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let pins = vec![KubePin::find("1.29").unwrap()];
        let outcome = Outcome {
            failures: vec![Failure::suites(1, "creating local-1.29 failed: port busy")],
            ..Outcome::default()
        };
        let report = assemble_report(
            dir.path(),
            &pins,
            Provider::Local,
            &BTreeMap::new(),
            &outcome,
        )
        .unwrap();
        let run = &report.runs[0];
        assert_eq!(run.steps.len(), guide::STEPS.len());
        assert!(run
            .steps
            .iter()
            .all(|s| s.status == Status::Fail && s.reason.contains("port busy")));
    }
}
