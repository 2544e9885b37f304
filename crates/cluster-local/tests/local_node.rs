//! A local cluster with a node, on this machine, as root: a pod from the page's
//! `nginx:latest` runs, reaches the API server through the `kubernetes` Service as the page's
//! in-pod curl does, and stopping the cluster leaves the host as it was. Ignored by `cargo
//! test` (root, built binaries, a minute or more); `cargo xtask cluster test --node` runs it.

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use cluster_local::{LocalCluster, LocalSpec, NodeSpec, NODE_NAME};
use k8s_openapi::api::core::v1::{Endpoints, Pod};
use kube::Api;
use pins::KubePin;

/// The host in every respect a node run may change.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    processes: BTreeSet<String>,
    mounts: BTreeSet<String>,
    netns: BTreeSet<String>,
    links: BTreeSet<String>,
    iptables: BTreeSet<String>,
    sysctls: Vec<(String, String)>,
    pod_logs: BTreeSet<String>,
    cgroups: BTreeSet<String>,
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect(program);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_string).collect()
}

/// Chains, non-default policies and rules, per table, without counters. A table that is loaded
/// but holds only built-in chains at ACCEPT is the same as one never loaded: a fresh host has
/// no tables until the first iptables call, and that cannot be undone.
fn iptables_state() -> BTreeSet<String> {
    const BUILT_IN: [&str; 5] = ["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"];
    let mut state = BTreeSet::new();
    for save in ["iptables-save", "ip6tables-save"] {
        let mut table = String::new();
        for line in run(save, &[]).lines() {
            let line = line.split(" [").next().unwrap();
            if let Some(name) = line.strip_prefix('*') {
                table = name.to_string();
                continue;
            }
            if line.starts_with('#') || line == "COMMIT" {
                continue;
            }
            if let Some(decl) = line.strip_prefix(':') {
                let mut words = decl.split_whitespace();
                let (chain, policy) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                if BUILT_IN.contains(&chain) && policy == "ACCEPT" {
                    continue;
                }
            }
            state.insert(format!("{save} {table} {line}"));
        }
    }
    state
}

fn snapshot() -> Snapshot {
    // Only a node's programs: control planes of other local clusters (an e2e run beside
    // this test) come and go; this cluster's own are checked by pid.
    const PROGRAMS: [&str; 9] = [
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "containerd",
        "containerd-shim-runc-v2",
        "docker-registry",
        "nginx",
        "pause",
        "runc",
    ];
    let mut processes = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            let name = exe.file_name().unwrap().to_string_lossy().into_owned();
            if PROGRAMS.contains(&name.as_str()) {
                processes.insert(format!("{} {name}", entry.file_name().to_string_lossy()));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect();
    let links = run("ip", &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_string())
        .collect();
    let iptables = iptables_state();
    let sysctls = cluster_local::host::SYSCTLS
        .iter()
        .chain(&["net/ipv4/ip_forward"])
        .map(|s| {
            let v = std::fs::read_to_string(Path::new("/proc/sys").join(s)).unwrap_or_default();
            (s.to_string(), v.trim().to_string())
        })
        .collect();
    let pod_logs = cluster_local::host::KUBELET_LOG_DIRS
        .iter()
        .flat_map(|d| match std::fs::read_dir(d) {
            Ok(entries) => entries
                .flatten()
                .map(|e| e.path().display().to_string())
                .collect::<Vec<_>>(),
            Err(_) => vec![format!("{d} (absent)")],
        })
        .collect();
    let cgroups = std::fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .flat_map(|h| std::fs::read_dir(h.path()).into_iter().flatten().flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path().display().to_string())
        .collect();
    Snapshot {
        processes,
        mounts,
        netns: lines(&run("ip", &["netns", "list"])),
        links,
        iptables,
        sysctls,
        pod_logs,
        cgroups,
    }
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: sa-pod
spec:
  containers:
  - name: container-0
    image: nginx:latest
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root and built binaries: run cargo xtask cluster test --node"]
async fn v1_29_pod_reaches_the_api_server_through_the_kubernetes_service() {
    // A first run installs the node's Debian packages (iptables among them), by design;
    // the host is compared as it is once they are there.
    node_local::packages::ensure_installed().expect("installing the node's Debian packages");
    let before = snapshot();
    let pin = KubePin::find("1.29").unwrap();
    let mut spec = LocalSpec::new(pin);
    spec.node = Some(NodeSpec::default());
    let cluster = LocalCluster::start(spec).await.unwrap();
    let info = cluster.info();
    assert!(info.has_node);
    assert!(
        info.notes.iter().any(|n| n.contains("containerd")),
        "{:?}",
        info.notes
    );
    let client = cluster.client().await.unwrap();

    // The lease reconciler gave the `kubernetes` Service an endpoint: the gateway.
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = endpoints.get("kubernetes").await.unwrap();
    let address = ep.subsets.unwrap()[0].addresses.as_ref().unwrap()[0]
        .ip
        .clone();
    assert!(address.starts_with("10.244."), "{address}");

    let kubectl = |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut child = Command::new(&info.kubectl)
            .arg("--kubeconfig")
            .arg(&info.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = kubectl(&["apply", "-f", "-"], Some(POD));
    assert!(ok, "{err}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running =
        kube::runtime::wait::await_condition(pods.clone(), "sa-pod", |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Running")
        });
    if tokio::time::timeout(Duration::from_secs(120), running)
        .await
        .is_err()
    {
        let pod = pods.get("sa-pod").await.unwrap();
        panic!("sa-pod not Running within 120s: {:?}", pod.status);
    }
    let pod = pods.get("sa-pod").await.unwrap();
    assert_eq!(
        pod.spec.unwrap().node_name.as_deref(),
        Some(NODE_NAME),
        "scheduled by kube-scheduler"
    );

    let curl = "curl -sS --cacert /var/run/secrets/kubernetes.io/serviceaccount/ca.crt \
                https://10.96.0.1:443/version";
    let (ok, out, err) = kubectl(
        &[
            "exec",
            "sa-pod",
            "-c",
            "container-0",
            "--",
            "sh",
            "-c",
            curl,
        ],
        None,
    );
    assert!(ok, "kubectl exec failed: {err}");
    assert!(out.contains("\"gitVersion\": \"v1.29.2\""), "{out}");

    let pids = cluster.pids();
    assert_eq!(
        pids.len(),
        6,
        "etcd, apiserver, controller-manager, scheduler, kubelet, proxy"
    );
    cluster.stop();
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} left"
        );
    }
    assert_host_unchanged(&before, &snapshot());
}

/// Fails with what differs, set by set, rather than two whole snapshots.
fn assert_host_unchanged(before: &Snapshot, after: &Snapshot) {
    let mut differences = Vec::new();
    let mut sets = |what: &str, b: &BTreeSet<String>, a: &BTreeSet<String>| {
        for gone in b.difference(a) {
            differences.push(format!("{what}: gone: {gone}"));
        }
        for new in a.difference(b) {
            differences.push(format!("{what}: new: {new}"));
        }
    };
    sets("process", &before.processes, &after.processes);
    sets("mount", &before.mounts, &after.mounts);
    sets("netns", &before.netns, &after.netns);
    sets("link", &before.links, &after.links);
    sets("iptables", &before.iptables, &after.iptables);
    sets("pod log", &before.pod_logs, &after.pod_logs);
    sets("cgroup", &before.cgroups, &after.cgroups);
    if before.sysctls != after.sysctls {
        differences.push(format!(
            "sysctls: {:?} -> {:?}",
            before.sysctls, after.sysctls
        ));
    }
    assert!(
        differences.is_empty(),
        "the host differs after stop:\n{}",
        differences.join("\n")
    );
}
