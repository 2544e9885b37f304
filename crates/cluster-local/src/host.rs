//! The host state a node changes outside its own folders, recorded before the node starts
//! and put back at teardown (or, after a SIGKILLed run, at the next node's start):
//!
//! - iptables chains: kube-proxy's `KUBE-*` (in every table, IPv4 and IPv6) and any `CNI-*`,
//!   with the jumps to them from the built-in chains;
//! - kernel tunables the kubelet sets with `protectKernelDefaults: false`
//!   (`vm.overcommit_memory`, `kernel.panic`, `kernel.panic_on_oops`: setupKernelTunables in
//!   pkg/kubelet/cm/container_manager_linux.go) and `net.ipv4.conf.all.route_localnet`, which
//!   kube-proxy v1.24 turns on unconditionally in iptables mode;
//! - `/var/log/pods` and `/var/log/containers`, which v1.24 and v1.29 kubelets hard-code
//!   (`podLogsDir` only became configurable in v1.31);
//! - the cgroup root the kubelet needs to exist (node-local removes it at teardown).
//!
//! kube-proxy's chains and those paths are shared by the whole host, so there is one node
//! per host at a time: the claim in `/run/sa-replay-local/node.json` says whose it is.

use std::{
    fs,
    io::{self, Write},
    os::unix::io::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde::{Deserialize, Serialize};

use crate::Error;

/// The tunables put back at teardown, under /proc/sys.
pub const SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/conf/all/route_localnet",
    // kube-proxy is told to leave these as they are (`0` flags); kept in case a version
    // writes them anyway.
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
];

/// Folders the kubelet writes into whatever its `--root-dir`.
pub const KUBELET_LOG_DIRS: &[&str] = &["/var/log/pods", "/var/log/containers"];

/// Chain prefixes a node's components create.
pub const CHAIN_PREFIXES: &[&str] = &["KUBE-", "CNI-"];

fn claim_dir() -> PathBuf {
    // tmpfs: a reboot, which removes everything a run made, clears the claim too.
    if Path::new("/run").is_dir() {
        PathBuf::from("/run/sa-replay-local")
    } else {
        std::env::temp_dir().join("sa-replay-local")
    }
}

fn claim_path() -> PathBuf {
    claim_dir().join("node.json")
}

/// What the host looked like before this run's node, and whose node it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostClaim {
    pub owner_pid: u32,
    /// The owner's start time, so a reused pid does not pass for a live owner.
    pub owner_start: u64,
    pub state_dir: PathBuf,
    /// `(path under /proc/sys, value)` before the node started.
    pub sysctls: Vec<(String, String)>,
    /// Each log folder and its entries before the node started (`None`: it did not exist).
    pub log_dirs: Vec<(PathBuf, Option<Vec<String>>)>,
}

/// An exclusive lock on the claim folder, released on drop.
struct Lock(fs::File);

impl Lock {
    fn take() -> Result<Lock, Error> {
        let dir = claim_dir();
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let path = dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io(&path))?;
        // SAFETY: plain syscall on an open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io(&path)(io::Error::last_os_error()));
        }
        Ok(Lock(file))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: plain syscall on an open descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl HostClaim {
    /// Claims the host for a node whose files live in `state_dir`: refuses when another live
    /// run has a node, puts back what a dead one left, refuses foreign `KUBE-*` chains (a
    /// real kube-proxy on this host would fight ours), then records the host as it is.
    /// Also returns what it did about a dead run, for the progress output.
    pub fn take(state_dir: &Path) -> Result<(HostClaim, Vec<String>), Error> {
        let _lock = Lock::take()?;
        let mut notes = Vec::new();
        if let Some(old) = load()? {
            if owner_alive(old.owner_pid, old.owner_start) {
                return Err(Error::NodeBusy {
                    owner_pid: old.owner_pid,
                    state_dir: old.state_dir,
                });
            }
            // A SIGKILLed run: its processes are gone (PDEATHSIG, node-local's cleanup).
            notes.push(format!(
                "put back the host state left by the node of process {} (gone)",
                old.owner_pid
            ));
            notes.extend(restore(&old));
            let _ = fs::remove_file(claim_path());
        }
        let chains = our_chains();
        if !chains.is_empty() {
            return Err(Error::ForeignChains { chains });
        }
        let me = std::process::id();
        let claim = HostClaim {
            owner_pid: me,
            owner_start: node_local::process::start_time(me).unwrap_or(0),
            state_dir: state_dir.to_path_buf(),
            sysctls: SYSCTLS
                .iter()
                .filter_map(|s| {
                    let value = fs::read_to_string(Path::new("/proc/sys").join(s)).ok()?;
                    Some((s.to_string(), value.trim().to_string()))
                })
                .collect(),
            log_dirs: KUBELET_LOG_DIRS
                .iter()
                .map(|d| (PathBuf::from(d), entries(Path::new(d))))
                .collect(),
        };
        let path = claim_path();
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(&claim).expect("claims serialise");
        fs::write(&tmp, json).map_err(Error::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Error::io(&path))?;
        Ok((claim, notes))
    }

    /// Puts the host back and drops the claim; returns what could not be put back. Call it
    /// once the node's processes are gone (else kube-proxy re-creates its chains).
    pub fn release(self) -> Vec<String> {
        let _lock = Lock::take();
        let problems = restore(&self);
        if load().ok().flatten().is_some_and(|c| c == self) {
            let _ = fs::remove_file(claim_path());
        }
        problems
    }
}

fn load() -> Result<Option<HostClaim>, Error> {
    let path = claim_path();
    match fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path, source }),
    }
}

fn owner_alive(pid: u32, start: u64) -> bool {
    node_local::process::running(pid) && node_local::process::start_time(pid) == Some(start)
}

fn entries(dir: &Path) -> Option<Vec<String>> {
    let read = fs::read_dir(dir).ok()?;
    let mut names: Vec<String> = read
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Some(names)
}

/// Puts back what `claim` recorded; returns what failed.
fn restore(claim: &HostClaim) -> Vec<String> {
    let mut problems = remove_chains();
    for (sysctl, value) in &claim.sysctls {
        let path = Path::new("/proc/sys").join(sysctl);
        let now = fs::read_to_string(&path).unwrap_or_default();
        if now.trim() != value {
            if let Err(e) = fs::write(&path, value) {
                problems.push(format!(
                    "cannot put {} back to {value}: {e}",
                    path.display()
                ));
            }
        }
    }
    restore_logs(claim, &mut problems);
    problems
}

/// Removes the log folders that did not exist before, and the entries that did not.
fn restore_logs(claim: &HostClaim, problems: &mut Vec<String>) {
    for (dir, before) in &claim.log_dirs {
        match before {
            None => {
                if dir.exists() {
                    if let Err(e) = fs::remove_dir_all(dir) {
                        problems.push(format!("cannot remove {}: {e}", dir.display()));
                    }
                }
            }
            Some(before) => {
                for name in entries(dir).unwrap_or_default() {
                    if !before.contains(&name) {
                        let path = dir.join(&name);
                        let removed = match fs::symlink_metadata(&path) {
                            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                            _ => fs::remove_file(&path),
                        };
                        if let Err(e) = removed {
                            problems.push(format!("cannot remove {}: {e}", path.display()));
                        }
                    }
                }
            }
        }
    }
}

fn is_ours(chain: &str) -> bool {
    CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// `program: chain` for every chain of ours on the host, IPv4 and IPv6.
fn our_chains() -> Vec<String> {
    let mut found = Vec::new();
    for save in ["iptables-save", "ip6tables-save"] {
        let Ok(text) = output(save, &[], None) else {
            continue;
        };
        for line in text.lines() {
            if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or("");
                if is_ours(name) {
                    found.push(format!("{save}: {name}"));
                }
            }
        }
    }
    found
}

/// Removes every chain of ours, IPv4 and IPv6; returns what failed.
pub fn remove_chains() -> Vec<String> {
    let mut problems = Vec::new();
    for (save, restore) in [
        ("iptables-save", "iptables-restore"),
        ("ip6tables-save", "ip6tables-restore"),
    ] {
        let Ok(text) = output(save, &[], None) else {
            continue;
        };
        if let Some(script) = cleanup_script(&text, is_ours) {
            if let Err(e) = output(restore, &["-w", "--noflush"], Some(&script)) {
                problems.push(format!("{restore}: {e}"));
            }
        }
    }
    problems
}

/// The `iptables-restore --noflush` input that removes the chains `ours` selects from an
/// `iptables-save` dump: per table, declare them (which flushes them), delete the rules of
/// other chains that jump to them, then delete them. `None` when there are none.
pub fn cleanup_script(save: &str, ours: impl Fn(&str) -> bool) -> Option<String> {
    let mut script = String::new();
    let mut table = "";
    let mut chains: Vec<&str> = Vec::new();
    let mut jumps: Vec<&str> = Vec::new();
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name;
            chains.clear();
            jumps.clear();
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            if ours(name) {
                chains.push(name);
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or("");
            if !ours(chain) && target(rule).is_some_and(&ours) {
                jumps.push(rule);
            }
        } else if line == "COMMIT" && !(chains.is_empty() && jumps.is_empty()) {
            script.push_str(&format!("*{table}\n"));
            for chain in &chains {
                script.push_str(&format!(":{chain} - [0:0]\n"));
            }
            for rule in &jumps {
                script.push_str(&format!("-D {rule}\n"));
            }
            for chain in &chains {
                script.push_str(&format!("-X {chain}\n"));
            }
            script.push_str("COMMIT\n");
        }
    }
    (!script.is_empty()).then_some(script)
}

/// The `-j`/`-g` target of a saved rule.
fn target(rule: &str) -> Option<&str> {
    let mut words = rule.split_whitespace();
    while let Some(word) = words.next() {
        if word == "-j" || word == "-g" {
            return words.next();
        }
    }
    None
}

fn output(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| format!("{program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes the kubelet's cgroup root in every cgroup v1 hierarchy (the kubelet refuses a
/// root that does not exist). cpuset children start with no CPUs or memory nodes, so those
/// are copied from the parent. node-local removes the tree at teardown.
pub fn create_cgroup_root(root: &str) -> Result<(), Error> {
    let rel = root.trim_start_matches('/');
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return Ok(());
    };
    for h in hierarchies.flatten().map(|e| e.path()) {
        let is_link = fs::symlink_metadata(&h).is_ok_and(|m| m.file_type().is_symlink());
        if is_link || !h.join("cgroup.procs").exists() {
            continue;
        }
        let dir = h.join(rel);
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let own = dir.join(file);
            if own.exists()
                && fs::read_to_string(&own)
                    .unwrap_or_default()
                    .trim()
                    .is_empty()
            {
                let parent = fs::read_to_string(h.join(file)).map_err(Error::io(h.join(file)))?;
                fs::write(&own, parent.trim()).map_err(Error::io(&own))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = r#"# Generated by iptables-save
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
:DOCKER - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -i sa-br0 ! -o sa-br0 -m comment --comment "sa-replay-node sa-br0" -j DROP
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
COMMIT
"#;

    #[test]
    fn the_cleanup_removes_our_chains_and_the_jumps_to_them_only() {
        let script = cleanup_script(SAVE, is_ours).unwrap();
        assert_eq!(
            script,
            "*filter\n\
             :KUBE-FORWARD - [0:0]\n\
             :KUBE-SERVICES - [0:0]\n\
             -D FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
             -D OUTPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -X KUBE-FORWARD\n\
             -X KUBE-SERVICES\n\
             COMMIT\n"
        );
        assert!(!script.contains("DOCKER") && !script.contains("sa-br0"));
    }

    #[test]
    fn nothing_to_clean_is_no_script() {
        assert_eq!(
            cleanup_script("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", is_ours),
            None
        );
    }

    #[test]
    fn a_claim_round_trips() {
        let claim = HostClaim {
            owner_pid: 1,
            owner_start: 2,
            state_dir: "/s".into(),
            sysctls: vec![("kernel/panic".into(), "0".into())],
            log_dirs: vec![("/var/log/pods".into(), None)],
        };
        let back: HostClaim =
            serde_json::from_str(&serde_json::to_string(&claim).unwrap()).unwrap();
        assert_eq!(back, claim);
    }

    #[test]
    fn new_log_entries_are_removed_and_old_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("pods");
        fs::create_dir(&logs).unwrap();
        fs::write(logs.join("old"), "").unwrap();
        let gone = dir.path().join("containers");
        let claim = HostClaim {
            owner_pid: 1,
            owner_start: 2,
            state_dir: "/s".into(),
            sysctls: vec![],
            log_dirs: vec![(logs.clone(), entries(&logs)), (gone.clone(), None)],
        };
        fs::create_dir(logs.join("default_sa-pod_123")).unwrap();
        fs::create_dir(&gone).unwrap();
        fs::write(gone.join("x.log"), "").unwrap();
        // restore() also removes iptables chains: only the folder half is exercised here.
        let mut problems = Vec::new();
        restore_logs(&claim, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(entries(&logs).unwrap(), ["old"]);
        assert!(!gone.exists());
    }
}
