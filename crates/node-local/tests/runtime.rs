//! The node runtime on this machine, as root: pull the page's `nginx:latest` through the
//! CRI from our loopback registry, run it in a pod on our bridge, exec the page's kind of
//! commands in it, and check that stop (or cleanup after a SIGKILL) leaves the host as it
//! was. Run with:
//!
//! ```text
//! cargo test -p node-local --test runtime -- --ignored --test-threads=1
//! ```

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use node_local::{NodeRuntime, RuntimeSpec};

/// What the host looks like, in every respect a run may change.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    links: Vec<String>,
    netns: Vec<String>,
    iptables: String,
    daemons: Vec<String>,
    cgroups: Vec<String>,
    claims: Vec<String>,
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The node's Debian packages (iptables among them) are the one lasting change a first run
/// makes, by design; the host is compared as it is once they are there.
fn host_with_packages() {
    node_local::packages::ensure_installed().expect("installing the node's Debian packages");
}

fn snapshot() -> Snapshot {
    let mut links = node_local::net::link_names(&sh("ip", &["-o", "link", "show"]));
    links.sort();
    let mut netns: Vec<String> = sh("ip", &["netns", "list"])
        .lines()
        .map(str::to_string)
        .collect();
    netns.sort();
    let iptables = ["filter", "nat", "mangle"]
        .iter()
        .map(|t| sh("iptables", &["-w", "-t", t, "-S"]))
        .collect();
    let mut daemons = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            let name = exe.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("containerd")
                || name == "docker-registry"
                || name == "nginx"
                || name == "pause"
            {
                daemons.push(format!("{} {}", entry.file_name().to_string_lossy(), name));
            }
        }
    }
    daemons.sort();
    let mut cgroups: Vec<String> = std::fs::read_dir("/sys/fs/cgroup/memory")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("sa-replay"))
                .collect()
        })
        .unwrap_or_default();
    cgroups.sort();
    let mut claims: Vec<String> = std::fs::read_dir("/run/sa-replay-node")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    claims.sort();
    Snapshot {
        links,
        netns,
        iptables,
        daemons,
        cgroups,
        claims,
    }
}

struct Crictl {
    bin: PathBuf,
    endpoint: String,
}

impl Crictl {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .args([
                "--runtime-endpoint",
                &self.endpoint,
                "--image-endpoint",
                &self.endpoint,
                "--timeout",
                "60s",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "crictl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Pulls nginx:latest through the CRI, runs it in a pod, checks it; returns the pod IP.
fn run_the_pages_pod(node: &NodeRuntime, dir: &Path) -> String {
    let crictl = Crictl {
        bin: node_local::tools::crictl(&k8s_binaries::cache_root()).unwrap(),
        endpoint: node.cri_endpoint(),
    };
    // The page's image name, as a kubelet would ask for it.
    crictl.run(&["pull", "nginx:latest"]);
    let inspect: serde_json::Value =
        serde_json::from_str(&crictl.run(&["inspecti", "-o", "json", "nginx:latest"])).unwrap();
    let (reference, digest) = node.nginx_image();
    assert_eq!(reference, "docker.io/library/nginx:latest");
    let repo_digests = inspect["status"]["repoDigests"].to_string();
    assert!(
        repo_digests.contains(&format!("docker.io/library/nginx@{digest}")),
        "{repo_digests}"
    );
    // And it came from our registry: its access log has the manifest request.
    let registry_log = std::fs::read_to_string(node.logs_dir().join("registry.log")).unwrap();
    // containerd resolves the tag with HEAD, then GETs by digest; `ns=docker.io` says it
    // came through the docker.io hosts.toml.
    assert!(
        registry_log
            .contains("\"HEAD /v2/library/nginx/manifests/latest?ns=docker.io HTTP/1.1\" 200"),
        "{registry_log}"
    );
    assert!(
        registry_log.contains(&format!(
            "\"GET /v2/library/nginx/manifests/{digest}?ns=docker.io"
        )),
        "{registry_log}"
    );

    let pod = serde_json::json!({
        "metadata": { "name": "sa-pod", "namespace": "default", "uid": "node-local-test-1", "attempt": 0 },
        "log_directory": dir.join("pods").display().to_string(),
        "linux": { "cgroup_parent": format!("{}/pod-test", node.cgroup_root()) },
    });
    let ctr = serde_json::json!({
        "metadata": { "name": "nginx" },
        "image": { "image": "nginx:latest" },
        "log_path": "nginx.log",
        "linux": {},
    });
    let pod_json = dir.join("pod.json");
    let ctr_json = dir.join("ctr.json");
    std::fs::write(&pod_json, pod.to_string()).unwrap();
    std::fs::write(&ctr_json, ctr.to_string()).unwrap();
    let pod_id = crictl.run(&["runp", pod_json.to_str().unwrap()]);
    let ctr_id = crictl.run(&[
        "create",
        &pod_id,
        ctr_json.to_str().unwrap(),
        pod_json.to_str().unwrap(),
    ]);
    crictl.run(&["start", &ctr_id]);
    let out = crictl.run(&[
        "exec",
        &ctr_id,
        "sh",
        "-c",
        "ls /; curl --version; cat /etc/os-release",
    ]);
    println!("exec in the pod:\n{out}");
    assert!(out.contains("usr") && out.contains("etc"), "{out}");
    assert!(out.contains("curl 7."), "{out}");
    assert!(out.contains("Debian GNU/Linux"), "{out}");
    let inspectp: serde_json::Value =
        serde_json::from_str(&crictl.run(&["inspectp", "-o", "json", &pod_id])).unwrap();
    let ip = inspectp["status"]["network"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        node.pod_cidr().starts_with(&ip[..ip.rfind('.').unwrap()]),
        "{ip} not in {}",
        node.pod_cidr()
    );
    // nginx serves, inside the pod and from the host over the bridge.
    let inside = crictl.run(&["exec", &ctr_id, "curl", "-s", "http://127.0.0.1/"]);
    assert!(inside.contains("Welcome to nginx"), "{inside}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = TcpStream::connect((ip.as_str(), 80)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")?;
            let mut body = String::new();
            s.read_to_string(&mut body)?;
            Ok(body)
        });
        match page {
            Ok(body) if body.contains("Welcome to nginx") => break,
            other if Instant::now() > deadline => panic!("no page from {ip}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
    ip
}

#[test]
#[ignore = "needs root, containerd and network namespaces: run via cargo test -p node-local --test runtime -- --ignored --test-threads=1"]
fn runs_the_pages_image_and_leaves_the_host_as_it_was() {
    node_local::cleanup_leftovers();
    host_with_packages();
    let before = snapshot();
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let node = NodeRuntime::start(RuntimeSpec::new(dir.path().join("node"))).unwrap();
    println!(
        "started in {:?}; CRI {}; pod CIDR {}; bridge {} ({})",
        started.elapsed(),
        node.cri_endpoint(),
        node.pod_cidr(),
        node.bridge(),
        node.bridge_gateway()
    );
    for note in node.notes() {
        println!("note: {note}");
    }
    let bridge = node.bridge().to_string();
    let ip = run_the_pages_pod(&node, dir.path());
    println!("pod ran at {ip}");
    // The pod is left running: stop must remove it too.
    let problems = node.stop();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(!Path::new("/sys/class/net").join(&bridge).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&dir.path().display().to_string()),
        "mounts left"
    );
    assert_eq!(snapshot(), before);
}

/// The child half of the SIGKILL test: starts a node, runs the pod, says so, waits.
#[test]
#[ignore = "helper of runs_after_a_sigkilled_run_start_cleanly"]
fn sigkill_child() {
    let Ok(dir) = std::env::var("NODE_LOCAL_CHILD_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let node = NodeRuntime::start(RuntimeSpec::new(dir.join("node"))).unwrap();
    run_the_pages_pod(&node, &dir);
    std::fs::write(dir.join("ready"), node.bridge()).unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
#[ignore = "needs root, containerd and network namespaces: run via cargo test -p node-local --test runtime -- --ignored --test-threads=1"]
fn runs_after_a_sigkilled_run_start_cleanly() {
    node_local::cleanup_leftovers();
    host_with_packages();
    let before = snapshot();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "sigkill_child", "--nocapture"])
        .env("NODE_LOCAL_CHILD_DIR", dir.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !dir.path().join("ready").exists() {
        assert!(child.try_wait().unwrap().is_none(), "the child run failed");
        assert!(Instant::now() < deadline, "the child run never got ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let bridge = std::fs::read_to_string(dir.path().join("ready")).unwrap();
    // containerd died with it (PDEATHSIG), but the shim, the pod and the network are left.
    assert!(Path::new("/sys/class/net").join(&bridge).exists());
    let problems = node_local::cleanup_leftovers();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(snapshot(), before);
}
