//! The kind provider and its lifecycle against fake `kind` and `docker` programs that record
//! every call, so the exact commands are checked without Docker.
//!
//! The fakes are `/bin/sh` scripts using shell builtins only, and each test hands its own `PATH`
//! (a folder holding only its fakes) to the child processes through `Tools`: tests run in parallel
//! without touching this process's environment, and the real `docker` on this machine is never
//! reached.
#![cfg(unix)]

use std::{
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    thread,
};

use cluster::{ClusterInfo, FeatureGates, Provider};
use cluster_kind::{
    lifecycle::{self, BoxError},
    preflight, run_e2e, Cluster, Error, Failure, Interrupt, KindCluster, KindSpec, Phase,
    RunOptions, Tools,
};
use pins::KubePin;

const GATE: &str = "LegacyServiceAccountTokenNoAutoGeneration";
const KIND_V0_22: &str = "kind v0.22.0 go1.21.7 linux/amd64";

/// How the fake programs behave.
struct Behaviour {
    docker: bool,
    docker_info_exit: i32,
    kind: bool,
    kind_version: &'static str,
    existing_clusters: &'static [&'static str],
    /// `kind create cluster --name <name>` exits 3 for this name.
    create_fails_for: Option<&'static str>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            docker: true,
            docker_info_exit: 0,
            kind: true,
            kind_version: KIND_V0_22,
            existing_clusters: &[],
            create_fails_for: None,
        }
    }
}

struct Fakes {
    root: tempfile::TempDir,
}

/// The fake `docker`: records the call, then answers `info` as told by `behaviour.sh`.
const FAKE_DOCKER: &str = r#"#!/bin/sh
. "${0%/*}/../behaviour.sh"
printf '%s\n' "docker $*" >> "$LOG"
case "$*" in
  info)
    if [ "$DOCKER_INFO_EXIT" -ne 0 ]; then
      printf '%s\n' 'Client:' ' Version: 28.2.2' >&2
      printf '%s\n' 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2
    fi
    exit "$DOCKER_INFO_EXIT" ;;
esac
exit 64
"#;

/// The fake `kind`: records the call and `$KUBECONFIG`, then acts as kind v0.22.0 would for
/// the subcommands this crate uses (`create cluster` writes the kubeconfig it is given).
const FAKE_KIND: &str = r#"#!/bin/sh
. "${0%/*}/../behaviour.sh"
printf '%s\n' "kind $*" >> "$LOG"
printf '%s\n' "${KUBECONFIG:-unset}" >> "$ENV_LOG"
case "$*" in
  version) printf '%s\n' "$KIND_VERSION" ;;
  "get clusters")
    if [ -z "$EXISTING" ]; then printf '%s\n' 'No kind clusters found.' >&2; fi
    printf "$EXISTING" ;;
  "create cluster --name $FAIL_NAME "*) printf '%s\n' 'ERROR: failed to create cluster' >&2; exit 3 ;;
  "create cluster "*)
    previous=
    for arg in "$@"; do
      if [ "$previous" = --kubeconfig ]; then printf 'apiVersion: v1\nkind: Config\n' > "$arg"; fi
      previous=$arg
    done ;;
  "export logs "*|"delete cluster "*) ;;
  *) printf '%s\n' "fake kind: unexpected call" >&2; exit 64 ;;
esac
"#;

/// The fake programs, written once per test process before any test spawns a child: a script
/// written while another thread forks can fail to start with "Text file busy". Each test links
/// them into its own `bin/` and describes its behaviour in a sourced `behaviour.sh`.
fn fake_programs() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        write_script(&dir.path().join("docker"), FAKE_DOCKER);
        write_script(&dir.path().join("kind"), FAKE_KIND);
        dir
    })
    .path()
}

impl Fakes {
    fn new(behaviour: Behaviour) -> Self {
        let programs = fake_programs();
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("bin");
        fs::create_dir(&bin).unwrap();
        for (program, present) in [("docker", behaviour.docker), ("kind", behaviour.kind)] {
            if present {
                std::os::unix::fs::symlink(programs.join(program), bin.join(program)).unwrap();
            }
        }
        let existing: String = behaviour
            .existing_clusters
            .iter()
            .map(|name| format!("{name}\\n"))
            .collect();
        fs::write(
            root.path().join("behaviour.sh"),
            format!(
                "LOG='{log}'\nENV_LOG='{env_log}'\nDOCKER_INFO_EXIT={exit}\nKIND_VERSION='{version}'\nEXISTING='{existing}'\nFAIL_NAME='{fail}'\n",
                log = root.path().join("calls.log").display(),
                env_log = root.path().join("kubeconfig-env.log").display(),
                exit = behaviour.docker_info_exit,
                version = behaviour.kind_version,
                fail = behaviour.create_fails_for.unwrap_or("no-such-cluster"),
            ),
        )
        .unwrap();
        Self { root }
    }

    fn tools(&self) -> Tools {
        Tools::with_path(self.root.path().join("bin"))
    }

    fn calls(&self) -> Vec<String> {
        read_lines(&self.root.path().join("calls.log"))
    }

    fn kubeconfig_env(&self) -> Vec<String> {
        read_lines(&self.root.path().join("kubeconfig-env.log"))
    }

    fn work(&self) -> PathBuf {
        self.root.path().join("work")
    }

    fn logs(&self) -> PathBuf {
        self.root.path().join("report/cluster-logs")
    }

    fn options(&self, keep: bool) -> RunOptions {
        RunOptions::new(&self.root.path().join("report"), keep)
    }

    fn spec(&self, minor: &str, gates: &[(&str, bool)]) -> KindSpec {
        KindSpec {
            pin: KubePin::find(minor).unwrap(),
            feature_gates: gates.iter().map(|(n, on)| (n.to_string(), *on)).collect(),
            work_dir: self.work(),
            kubectl: self.root.path().join(format!("kubectl-{minor}")),
        }
    }

    /// The two specs `cargo xtask e2e --provider kind` makes by default, v1.24 with the gate users want.
    fn both_specs(&self) -> Vec<KindSpec> {
        vec![self.spec("1.24", &[(GATE, false)]), self.spec("1.29", &[])]
    }

    fn cluster_dir(&self, name: &str) -> PathBuf {
        self.work().join(name)
    }

    fn create_call(&self, minor: &str) -> String {
        let name = name_of(minor);
        let dir = self.cluster_dir(&name);
        format!(
            "kind create cluster --name {name} --config {} --image {} --kubeconfig {} --wait 5m",
            dir.join("kind-config.yaml").display(),
            KubePin::find(minor).unwrap().kind_node_image,
            dir.join("kubeconfig").display(),
        )
    }

    fn export_call(&self, minor: &str) -> String {
        let name = name_of(minor);
        format!(
            "kind export logs {} --name {name}",
            self.logs().join(&name).display()
        )
    }

    fn delete_call(&self, minor: &str) -> String {
        let name = name_of(minor);
        format!(
            "kind delete cluster --name {name} --kubeconfig {}",
            self.cluster_dir(&name).join("kubeconfig").display()
        )
    }
}

const PREFLIGHT: [&str; 3] = ["docker info", "kind version", "kind get clusters"];

fn name_of(minor: &str) -> String {
    format!("sa-replay-{}", minor.replace('.', "-"))
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn pins() -> Vec<&'static KubePin> {
    vec![
        KubePin::find("1.24").unwrap(),
        KubePin::find("1.29").unwrap(),
    ]
}

fn expected(parts: &[&[String]]) -> Vec<String> {
    parts.iter().flat_map(|part| part.iter().cloned()).collect()
}

fn preflight_calls() -> Vec<String> {
    PREFLIGHT.iter().map(|s| s.to_string()).collect()
}

// ---- preflight ---------------------------------------------------------------------------

#[test]
fn preflight_passes_with_docker_up_the_pinned_kind_and_no_clashing_cluster() {
    let fakes = Fakes::new(Behaviour {
        existing_clusters: &["kind", "sa-replay-1-23"],
        ..Behaviour::default()
    });
    preflight(&fakes.tools(), &pins()).unwrap();
    assert_eq!(fakes.calls(), PREFLIGHT);
}

#[test]
fn preflight_without_docker_says_to_install_it_or_use_local() {
    let fakes = Fakes::new(Behaviour {
        docker: false,
        ..Behaviour::default()
    });
    let err = preflight(&fakes.tools(), &pins()).unwrap_err();
    assert!(matches!(err, Error::DockerMissing), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("Docker is not installed") && text.contains("--provider local"),
        "{text}"
    );
    assert_eq!(fakes.calls(), Vec::<String>::new(), "nothing else is tried");
}

#[test]
fn preflight_with_the_docker_daemon_down_says_so() {
    let fakes = Fakes::new(Behaviour {
        docker_info_exit: 1,
        ..Behaviour::default()
    });
    let err = preflight(&fakes.tools(), &pins()).unwrap_err();
    let Error::DockerDaemonDown { detail } = &err else {
        panic!("{err:?}")
    };
    assert!(
        detail.contains("Cannot connect to the Docker daemon"),
        "{detail}"
    );
    assert!(
        err.to_string().contains("Docker daemon is not running"),
        "{err}"
    );
    assert_eq!(fakes.calls(), ["docker info"]);
}

#[test]
fn preflight_with_another_kind_version_says_how_to_install_the_pinned_one() {
    let fakes = Fakes::new(Behaviour {
        kind_version: "kind v0.20.0 go1.20.4 linux/amd64",
        ..Behaviour::default()
    });
    let err = preflight(&fakes.tools(), &pins()).unwrap_err();
    assert!(matches!(err, Error::KindVersion { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("kind v0.20.0 go1.20.4")
            && text.contains("go install sigs.k8s.io/kind@v0.22.0"),
        "{text}"
    );
    assert_eq!(fakes.calls(), ["docker info", "kind version"]);
}

#[test]
fn preflight_without_kind_says_how_to_install_the_pinned_one() {
    let fakes = Fakes::new(Behaviour {
        kind: false,
        ..Behaviour::default()
    });
    let err = preflight(&fakes.tools(), &pins()).unwrap_err();
    assert!(matches!(err, Error::KindMissing), "{err:?}");
    assert!(
        err.to_string()
            .contains("go install sigs.k8s.io/kind@v0.22.0"),
        "{err}"
    );
}

#[test]
fn preflight_refuses_a_cluster_name_already_taken() {
    let fakes = Fakes::new(Behaviour {
        existing_clusters: &["kind", "sa-replay-1-29"],
        ..Behaviour::default()
    });
    let err = preflight(&fakes.tools(), &pins()).unwrap_err();
    let Error::ClusterExists { name } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(name, "sa-replay-1-29");
    assert!(
        err.to_string()
            .contains("kind delete cluster --name sa-replay-1-29"),
        "{err}"
    );
}

#[test]
fn a_run_that_fails_preflight_creates_nothing() {
    let fakes = Fakes::new(Behaviour {
        existing_clusters: &["sa-replay-1-24"],
        ..Behaviour::default()
    });
    let err = run_e2e(
        &fakes.tools(),
        fakes.both_specs(),
        &fakes.options(false),
        |_| panic!("no suites without clusters"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::ClusterExists { .. }), "{err:?}");
    assert_eq!(fakes.calls(), PREFLIGHT);
}

// ---- the lifecycle -----------------------------------------------------------------------

#[test]
fn a_passing_run_creates_each_version_runs_the_suites_exports_logs_and_deletes() {
    let fakes = Fakes::new(Behaviour::default());
    let seen: Arc<Mutex<Vec<ClusterInfo>>> = Arc::default();
    let outcome = run_e2e(
        &fakes.tools(),
        fakes.both_specs(),
        &fakes.options(false),
        |infos| {
            *seen.lock().unwrap() = infos.to_vec();
            Ok(())
        },
    )
    .unwrap();

    assert_eq!(outcome.exit_code(), 0, "{outcome:?}");
    assert!(
        outcome.failures.is_empty() && outcome.warnings.is_empty(),
        "{outcome:?}"
    );
    assert_eq!(
        fakes.calls(),
        expected(&[
            &preflight_calls(),
            &[fakes.create_call("1.24"), fakes.create_call("1.29")],
            &[fakes.export_call("1.24"), fakes.delete_call("1.24")],
            &[fakes.export_call("1.29"), fakes.delete_call("1.29")],
        ])
    );

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, outcome.clusters);
    let v124 = &seen[0];
    assert_eq!(v124.provider, Provider::Kind);
    assert_eq!(
        (v124.minor.as_str(), v124.kubernetes.as_str()),
        ("1.24", "v1.24.17")
    );
    assert!(v124.has_node);
    assert_eq!(
        v124.kubeconfig,
        fakes.cluster_dir("sa-replay-1-24").join("kubeconfig")
    );
    assert!(
        v124.kubeconfig.is_file(),
        "kind wrote the dedicated kubeconfig"
    );
    assert_eq!(v124.kubectl, fakes.root.path().join("kubectl-1.24"));
    assert_eq!(
        v124.feature_gates,
        FeatureGates::from([(GATE.into(), false)])
    );
    assert_eq!(seen[1].kubernetes, "v1.29.2");
    assert_eq!(seen[1].feature_gates, FeatureGates::new());
}

#[test]
fn kind_never_falls_back_to_the_users_kubeconfig() {
    let fakes = Fakes::new(Behaviour::default());
    run_e2e(
        &fakes.tools(),
        fakes.both_specs(),
        &fakes.options(false),
        |_| Ok(()),
    )
    .unwrap();
    let env = fakes.kubeconfig_env();
    // Preflight's `kind version` and `kind get clusters` read no kubeconfig; every call on a
    // cluster has KUBECONFIG pointing at that cluster's own file.
    let per_cluster = &env[2..];
    assert_eq!(per_cluster.len(), 6, "{env:?}");
    for line in per_cluster {
        assert!(
            line.starts_with(&fakes.work().display().to_string()) && line.ends_with("/kubeconfig"),
            "{line}"
        );
    }
}

#[test]
fn each_version_gets_a_config_rendered_with_its_image_and_gates() {
    let fakes = Fakes::new(Behaviour::default());
    run_e2e(
        &fakes.tools(),
        fakes.both_specs(),
        &fakes.options(false),
        |_| Ok(()),
    )
    .unwrap();
    for (minor, gates) in [("1.24", Some(false)), ("1.29", None)] {
        let path = fakes.cluster_dir(&name_of(minor)).join("kind-config.yaml");
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            doc["nodes"][0]["image"],
            KubePin::find(minor).unwrap().kind_node_image
        );
        assert_eq!(doc["networking"]["apiServerAddress"], "127.0.0.1");
        assert_eq!(
            doc["featureGates"].get(GATE).and_then(|v| v.as_bool()),
            gates
        );
    }
}

#[test]
fn failing_suites_still_export_logs_and_delete_and_give_their_exit_code() {
    let fakes = Fakes::new(Behaviour::default());
    let outcome = run_e2e(
        &fakes.tools(),
        fakes.both_specs(),
        &fakes.options(false),
        |_| Err(Failure::suites(2, "3 steps failed")),
    )
    .unwrap();

    assert_eq!(outcome.exit_code(), 2);
    assert_eq!(outcome.failures.len(), 1, "{outcome:?}");
    assert_eq!(outcome.failures[0].phase, Phase::Suites);
    assert_eq!(
        fakes.calls(),
        expected(&[
            &preflight_calls(),
            &[fakes.create_call("1.24"), fakes.create_call("1.29")],
            &[fakes.export_call("1.24"), fakes.delete_call("1.24")],
            &[fakes.export_call("1.29"), fakes.delete_call("1.29")],
        ])
    );
}

#[test]
fn panicking_suites_still_delete_and_exit_like_a_panic() {
    let fakes = Fakes::new(Behaviour::default());
    let outcome = run_e2e(
        &fakes.tools(),
        vec![fakes.spec("1.29", &[])],
        &fakes.options(false),
        |_| panic!("a suite bug"),
    )
    .unwrap();
    assert_eq!(outcome.exit_code(), 101);
    assert!(fakes
        .calls()
        .ends_with(&[fakes.export_call("1.29"), fakes.delete_call("1.29")]));
}

#[test]
fn a_failed_create_deletes_what_was_made_and_skips_the_suites() {
    let fakes = Fakes::new(Behaviour {
        create_fails_for: Some("sa-replay-1-29"),
        ..Behaviour::default()
    });
    let outcome = run_e2e(
        &fakes.tools(),
        fakes.both_specs(),
        &fakes.options(false),
        |_| panic!("no suites when a cluster is missing"),
    )
    .unwrap();

    assert_eq!(outcome.exit_code(), 1);
    assert_eq!(outcome.failures[0].phase, Phase::Create);
    assert!(
        outcome.failures[0].message.contains("sa-replay-1-29")
            && outcome.failures[0].message.contains("exit status: 3"),
        "{outcome:?}"
    );
    // The half-made 1.29 cluster has no logs worth exporting but may have containers: delete it.
    assert_eq!(
        fakes.calls(),
        expected(&[
            &preflight_calls(),
            &[fakes.create_call("1.24"), fakes.create_call("1.29")],
            &[fakes.export_call("1.24"), fakes.delete_call("1.24")],
            &[fakes.delete_call("1.29")],
        ])
    );
}

#[test]
fn keep_exports_logs_and_leaves_the_clusters_running() {
    let fakes = Fakes::new(Behaviour::default());
    let outcome = run_e2e(
        &fakes.tools(),
        fakes.both_specs(),
        &fakes.options(true),
        |_| Ok(()),
    )
    .unwrap();
    assert_eq!(outcome.exit_code(), 0);
    assert_eq!(
        fakes.calls(),
        expected(&[
            &preflight_calls(),
            &[fakes.create_call("1.24"), fakes.create_call("1.29")],
            &[fakes.export_call("1.24"), fakes.export_call("1.29")],
        ])
    );
}

/// Runs the lifecycle with the interrupt handed to the test instead of a signal handler.
fn run_interruptible(
    fakes: &Fakes,
    clusters: Vec<Box<dyn Cluster>>,
    suites: impl FnOnce(&[ClusterInfo], Interrupt) -> Result<(), Failure>,
) -> cluster_kind::Outcome {
    let slot: Arc<Mutex<Option<Interrupt>>> = Arc::default();
    let stash = slot.clone();
    lifecycle::run_with(
        clusters,
        &fakes.options(false),
        move |interrupt| *stash.lock().unwrap() = Some(interrupt),
        |infos| {
            let interrupt = slot.lock().unwrap().clone().unwrap();
            suites(infos, interrupt)
        },
    )
}

fn prepared(fakes: &Fakes) -> Vec<Box<dyn Cluster>> {
    fakes
        .both_specs()
        .into_iter()
        .map(|spec| {
            Box::new(KindCluster::prepare(spec, fakes.tools()).unwrap()) as Box<dyn Cluster>
        })
        .collect()
}

#[test]
fn an_interrupt_during_the_suites_cleans_up_once_and_exits_130() {
    let fakes = Fakes::new(Behaviour::default());
    let mut after_signal = Vec::new();
    let outcome = run_interruptible(&fakes, prepared(&fakes), |_, interrupt| {
        // What the Ctrl-C handler does, from its own thread, while the suites are running.
        let signal = thread::spawn(move || interrupt.fire());
        signal.join().unwrap();
        // The real handler exits the process right after `fire`, so the cleanup must be done by now.
        after_signal = fakes.calls();
        // The suites then fail, their clusters gone.
        Err(Failure::suites(1, "connection refused"))
    });
    assert_eq!(
        after_signal[2..],
        [
            fakes.export_call("1.24"),
            fakes.delete_call("1.24"),
            fakes.export_call("1.29"),
            fakes.delete_call("1.29"),
        ]
    );

    assert_eq!(outcome.exit_code(), 130);
    assert_eq!(outcome.failures[0].phase, Phase::Interrupted);
    // Logs and delete once per cluster, though both the handler and the run's end cleaned up.
    assert_eq!(
        fakes.calls(),
        [
            fakes.create_call("1.24"),
            fakes.create_call("1.29"),
            fakes.export_call("1.24"),
            fakes.delete_call("1.24"),
            fakes.export_call("1.29"),
            fakes.delete_call("1.29"),
        ]
    );
}

#[test]
fn an_interrupt_stops_the_suites_process_group_before_the_clusters_go() {
    let fakes = Fakes::new(Behaviour::default());
    let scratch = tempfile::tempdir().unwrap();
    let grandchild = scratch.path().join("grandchild.pid");
    let mut calls_when_stopped = Vec::new();
    let outcome = run_interruptible(&fakes, prepared(&fakes), |_, interrupt| {
        // Like `cargo test` and its test binary: a process and the child it waits for.
        let mut suites = std::process::Command::new("/bin/sh");
        suites
            .arg("-c")
            .arg(r#"sleep 60 & echo $! > "$0.tmp" && mv "$0.tmp" "$0"; wait"#)
            .arg(&grandchild);
        let pid_file = grandchild.clone();
        let signal = thread::spawn(move || {
            while !pid_file.exists() {
                thread::sleep(std::time::Duration::from_millis(20));
            }
            interrupt.fire();
        });
        let status = lifecycle::run_suite_process(&mut suites).unwrap();
        signal.join().unwrap();
        calls_when_stopped = fakes.calls();
        assert!(!status.success(), "{status}");
        Err(Failure::suites(1, "stopped"))
    });

    let pid = fs::read_to_string(&grandchild).unwrap();
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    // Gone, or a zombie waiting for whoever adopted it: not running either way.
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    assert!(matches!(state, None | Some("Z")), "{stat}");
    assert_eq!(outcome.exit_code(), 130);
    assert_eq!(outcome.failures[0].phase, Phase::Interrupted);
    // The clusters were deleted by the time the suites' process had ended.
    assert_eq!(
        calls_when_stopped[2..],
        [
            fakes.export_call("1.24"),
            fakes.delete_call("1.24"),
            fakes.export_call("1.29"),
            fakes.delete_call("1.29"),
        ]
    );
}

/// A kind cluster whose `start` is interrupted, like a Ctrl-C while `kind create` runs.
struct InterruptedDuringStart {
    inner: KindCluster,
    interrupt: Arc<Mutex<Option<Interrupt>>>,
    signal: Arc<Mutex<Option<thread::JoinHandle<()>>>>,
}

impl Cluster for InterruptedDuringStart {
    fn name(&self) -> String {
        Cluster::name(&self.inner)
    }
    fn start(&mut self) -> Result<(), BoxError> {
        Cluster::start(&mut self.inner)?;
        let interrupt = self.interrupt.lock().unwrap().clone().unwrap();
        let fired = interrupt.clone();
        // The handler runs on its own thread; it waits for this start to return before cleaning.
        *self.signal.lock().unwrap() = Some(thread::spawn(move || fired.fire()));
        while !interrupt.fired() {
            thread::yield_now();
        }
        Ok(())
    }
    fn info(&self) -> ClusterInfo {
        Cluster::info(&self.inner)
    }
    fn export_logs(&mut self, dir: &Path) -> Result<(), BoxError> {
        Cluster::export_logs(&mut self.inner, dir)
    }
    fn delete(&mut self) -> Result<(), BoxError> {
        Cluster::delete(&mut self.inner)
    }
    fn keep(&mut self) {
        Cluster::keep(&mut self.inner)
    }
    fn how_to_delete(&self) -> String {
        self.inner.how_to_delete()
    }
}

#[test]
fn an_interrupt_during_creation_creates_no_more_and_deletes_what_was_made() {
    let fakes = Fakes::new(Behaviour::default());
    let slot: Arc<Mutex<Option<Interrupt>>> = Arc::default();
    let signal: Arc<Mutex<Option<thread::JoinHandle<()>>>> = Arc::default();
    let first = InterruptedDuringStart {
        inner: KindCluster::prepare(fakes.spec("1.24", &[(GATE, false)]), fakes.tools()).unwrap(),
        interrupt: slot.clone(),
        signal: signal.clone(),
    };
    let second = KindCluster::prepare(fakes.spec("1.29", &[]), fakes.tools()).unwrap();
    let all: Vec<Box<dyn Cluster>> = vec![Box::new(first), Box::new(second)];

    let stash = slot.clone();
    let outcome = lifecycle::run_with(
        all,
        &fakes.options(false),
        move |interrupt| *stash.lock().unwrap() = Some(interrupt),
        |_| panic!("no suites after an interrupt"),
    );
    signal.lock().unwrap().take().unwrap().join().unwrap();

    assert_eq!(outcome.exit_code(), 130);
    assert!(outcome.clusters.len() <= 1);
    assert_eq!(
        fakes.calls(),
        [
            fakes.create_call("1.24"),
            fakes.export_call("1.24"),
            fakes.delete_call("1.24"),
        ]
    );
}

// ---- one cluster by hand -----------------------------------------------------------------

#[test]
fn dropping_a_cluster_deletes_it_unless_kept() {
    let fakes = Fakes::new(Behaviour::default());
    let tools = fakes.tools();
    drop(KindCluster::create(fakes.spec("1.29", &[]), tools.clone()).unwrap());
    assert_eq!(
        fakes.calls(),
        [fakes.create_call("1.29"), fakes.delete_call("1.29")]
    );

    let mut kept = KindCluster::create(fakes.spec("1.24", &[]), tools).unwrap();
    kept.keep();
    drop(kept);
    assert_eq!(fakes.calls().last(), Some(&fakes.create_call("1.24")));
}

#[test]
fn deleting_twice_runs_kind_once() {
    let fakes = Fakes::new(Behaviour::default());
    let mut cluster = KindCluster::create(fakes.spec("1.29", &[]), fakes.tools()).unwrap();
    cluster.delete().unwrap();
    cluster.delete().unwrap();
    drop(cluster);
    assert_eq!(
        fakes.calls(),
        [fakes.create_call("1.29"), fakes.delete_call("1.29")]
    );
}

#[test]
fn a_prepared_but_never_started_cluster_is_not_deleted() {
    let fakes = Fakes::new(Behaviour::default());
    drop(KindCluster::prepare(fakes.spec("1.29", &[]), fakes.tools()).unwrap());
    assert_eq!(fakes.calls(), Vec::<String>::new());
}
