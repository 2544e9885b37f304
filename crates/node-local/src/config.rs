//! The configuration files we hand our daemons: containerd's `config.toml` and its registry
//! `hosts.toml`, and the registry's `config.yml`. Pure rendering, tested without root.

use std::path::{Path, PathBuf};

/// Where one runtime keeps its files; all of it under the run's state dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub state_dir: PathBuf,
}

impl Layout {
    pub fn containerd_config(&self) -> PathBuf {
        self.state_dir.join("containerd/config.toml")
    }
    /// containerd's persistent root (content store, snapshots, metadata).
    pub fn containerd_root(&self) -> PathBuf {
        self.state_dir.join("containerd/root")
    }
    /// containerd's state dir (task bundles, rootfs mounts, sandbox shm).
    pub fn containerd_state(&self) -> PathBuf {
        self.state_dir.join("containerd/state")
    }
    /// The gRPC socket: never /run/containerd/containerd.sock, so a system containerd (or
    /// another run's) never clashes with ours.
    pub fn containerd_socket(&self) -> PathBuf {
        self.state_dir.join("containerd/containerd.sock")
    }
    /// runc's state for CRI containers; runc's default (/run/containerd/runc) is shared.
    pub fn runc_root(&self) -> PathBuf {
        self.state_dir.join("containerd/runc")
    }
    /// `certs.d`: one `hosts.toml` per registry host name.
    pub fn registry_hosts_dir(&self) -> PathBuf {
        self.state_dir.join("containerd/certs.d")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.state_dir.join("cni/net.d")
    }
    /// host-local IPAM's leases (by default /var/lib/cni/networks, shared by everyone).
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.state_dir.join("cni/ipam")
    }
    pub fn registry_config(&self) -> PathBuf {
        self.state_dir.join("registry/config.yml")
    }
    pub fn registry_storage(&self) -> PathBuf {
        self.state_dir.join("registry/storage")
    }
    pub fn logs(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
}

/// The inputs of containerd's configuration.
#[derive(Debug, Clone)]
pub struct ContainerdConfig<'a> {
    pub layout: &'a Layout,
    /// e.g. `docker.io/sa-replay/pause:0123abcd`.
    pub sandbox_image: &'a str,
    pub cni_bin_dir: &'a Path,
}

/// containerd 1.6's `config.toml` (version 2 schema).
///
/// The registry is configured with `config_path` (a `certs.d` folder of `hosts.toml`
/// files) rather than the deprecated `registry.mirrors` table: with `mirrors`, containerd's
/// CRI plugin appends the upstream endpoint (`https://registry-1.docker.io`) after the
/// mirror as a fallback, so a miss would go out to the internet; a `hosts.toml` whose
/// `server` is the loopback registry has no such fallback.
pub fn containerd_toml(c: &ContainerdConfig<'_>) -> String {
    let l = c.layout;
    let q = |p: &Path| toml_string(&p.display().to_string());
    format!(
        r#"# Written by node-local for one run; see crates/node-local/src/config.rs.
version = 2
root = {root}
state = {state}
# "opt" would install into /opt/containerd; the snapshotters below cannot work here.
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = {sock}

[ttrpc]
  address = {ttrpc}

# No debug or metrics listener: nothing of ours listens on TCP but the registry and the
# CRI streaming server, both on 127.0.0.1.
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {sandbox}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # The sandbox's oom_score_adj is -998, which needs CAP_SYS_RESOURCE; this machine's root
  # lacks it, and runc init then dies ("can't get final child's PID from pipe: EOF").
  # Restricted, no container gets a lower score than containerd's own.
  restrict_oom_score_adj = true
  # Pods' network namespaces are pinned under our state dir, not /var/run/netns: they are
  # ours alone (`ip netns` never lists them) and teardown's unmount covers them.
  netns_mounts_under_state_dir = true
  # No systemd here, and cgroups v1: the kubelet must use --cgroup-driver=cgroupfs too.
  systemd_cgroup = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
        Root = {runc_root}

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = {hosts}
"#,
        root = q(&l.containerd_root()),
        state = q(&l.containerd_state()),
        sock = q(&l.containerd_socket()),
        ttrpc = toml_string(&format!("{}.ttrpc", l.containerd_socket().display())),
        sandbox = toml_string(c.sandbox_image),
        runc_root = q(&l.runc_root()),
        cni_bin = q(c.cni_bin_dir),
        cni_conf = q(&l.cni_conf_dir()),
        hosts = q(&l.registry_hosts_dir()),
    )
}

/// `certs.d/docker.io/hosts.toml`: every pull of `docker.io/...` goes to the loopback
/// registry, and only there (`server` is ours too, so there is no upstream fallback).
pub fn hosts_toml(registry: &str) -> String {
    let url = format!("http://{registry}");
    format!(
        r#"# Written by node-local: docker.io is served by the run's loopback registry only.
server = {url}

[host.{url}]
  capabilities = ["pull", "resolve"]
"#,
        url = toml_string(&url),
    )
}

/// docker-registry (distribution v2) configuration: loopback only, storage in the run.
pub fn registry_yaml(addr: &str, storage: &Path) -> String {
    format!(
        r#"# Written by node-local for one run.
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
health:
  storagedriver:
    enabled: false
"#,
        storage = serde_json::to_string(&storage.display().to_string()).expect("a string"),
        addr = serde_json::to_string(addr).expect("a string"),
    )
}

/// A TOML basic string (JSON's escaping is a subset TOML accepts for these characters).
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            state_dir: "/tmp/run \"1\"".into(),
        }
    }

    #[test]
    fn containerd_config_keeps_everything_in_the_state_dir() {
        let l = layout();
        let toml = containerd_toml(&ContainerdConfig {
            layout: &l,
            sandbox_image: "docker.io/sa-replay/pause:abc",
            cni_bin_dir: Path::new("/usr/lib/cni"),
        });
        assert!(toml.contains(r#"address = "/tmp/run \"1\"/containerd/containerd.sock""#));
        assert!(toml.contains(r#"root = "/tmp/run \"1\"/containerd/root""#));
        assert!(toml.contains(r#"sandbox_image = "docker.io/sa-replay/pause:abc""#));
        assert!(toml.contains("SystemdCgroup = false"));
        assert!(toml.contains("restrict_oom_score_adj = true"));
        assert!(toml.contains("netns_mounts_under_state_dir = true"));
        assert!(toml.contains(r#"snapshotter = "overlayfs""#));
        assert!(toml.contains(r#"bin_dir = "/usr/lib/cni""#));
        assert!(toml.contains(r#"conf_dir = "/tmp/run \"1\"/cni/net.d""#));
        assert!(toml.contains(r#"config_path = "/tmp/run \"1\"/containerd/certs.d""#));
        assert!(toml.contains(r#"stream_server_address = "127.0.0.1""#));
        assert!(!toml.contains("/run/containerd/containerd.sock"));
        // The deprecated table would add registry-1.docker.io as a fallback.
        assert!(!toml.contains("mirrors"));
    }

    #[test]
    fn hosts_toml_has_no_upstream_server() {
        let h = hosts_toml("127.0.0.1:5123");
        assert!(h.contains(r#"server = "http://127.0.0.1:5123""#));
        assert!(h.contains(r#"[host."http://127.0.0.1:5123"]"#));
        assert!(!h.contains("docker.io\""));
        assert!(!h.contains("https"));
    }

    #[test]
    fn registry_binds_loopback() {
        let y = registry_yaml("127.0.0.1:5123", Path::new("/s/registry"));
        assert!(y.contains("addr: \"127.0.0.1:5123\""));
        assert!(y.contains("rootdirectory: \"/s/registry\""));
        assert!(
            !y.contains("debug"),
            "a debug listener would be another port"
        );
    }
}
