//! Claims and teardown. Each run records what it made (bridge, subnet, cgroup root, state
//! dir, daemon pids, owner) in `/run/sa-replay-node/<bridge>.json` *before* making it, so
//! that a later run can remove everything even when this one was SIGKILLed, and two runs
//! side by side never pick the same bridge or subnet (the choice is made under a lock).

use std::{
    fs, io,
    os::unix::io::AsRawFd,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{config::Layout, net, net::Subnet24, process, Error};

/// Where claims live: tmpfs, so a reboot (which removes everything a run made) clears them.
fn claims_dir() -> PathBuf {
    if Path::new("/run").is_dir() {
        PathBuf::from("/run/sa-replay-node")
    } else {
        std::env::temp_dir().join("sa-replay-node")
    }
}

/// What one run made, and who owns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    pub owner_pid: u32,
    /// The owner's start time, so a reused pid is not taken for a live owner.
    pub owner_start: u64,
    pub state_dir: PathBuf,
    pub bridge: String,
    pub subnet: String,
    /// The cgroup (in every v1 hierarchy) under which pods run: `/sa-replay-<bridge>`.
    pub cgroup_root: String,
    /// Daemons we started (each leads its own process group).
    pub pids: Vec<u32>,
}

impl RunRecord {
    fn path(&self) -> PathBuf {
        claims_dir().join(format!("{}.json", self.bridge))
    }

    /// Writes the record (atomically: a crash never leaves half a claim).
    pub fn save(&self) -> Result<(), Error> {
        let path = self.path();
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(self).expect("JSON serialises");
        fs::write(&tmp, text).map_err(Error::io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(Error::io("write", &path))
    }

    /// Whether the process that made the run still runs.
    pub fn owner_alive(&self) -> bool {
        process::running(self.owner_pid)
            && process::start_time(self.owner_pid) == Some(self.owner_start)
    }
}

/// An exclusive lock on the claims folder, released on drop.
struct Lock(fs::File);

impl Lock {
    fn take() -> Result<Lock, Error> {
        let dir = claims_dir();
        fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        let path = dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("open", &path))?;
        // SAFETY: plain syscall on an open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(Error::io("lock", path)(io::Error::last_os_error()));
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

fn records() -> Vec<(PathBuf, Option<RunRecord>)> {
    let Ok(entries) = fs::read_dir(claims_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let rec = fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<RunRecord>(&b).ok());
            (p, rec)
        })
        .collect()
}

/// Picks a free bridge and subnet and records the claim before anything is created.
pub(crate) fn claim_network(layout: &Layout) -> Result<(RunRecord, Subnet24), Error> {
    let _lock = Lock::take()?;
    let claimed: Vec<String> = records()
        .into_iter()
        .filter_map(|(_, r)| r.map(|r| r.bridge))
        .collect();
    let routes = process::run("ip", ["-4", "route", "show", "table", "all"])?;
    let links = net::link_names(&process::run("ip", ["-o", "link", "show"])?);
    let (n, subnet) =
        net::choose_subnet(&routes, &links, |n| claimed.contains(&net::bridge_name(n)))
            .ok_or_else(|| Error::NoFreeSubnet {
                tried: "10.244.0.0/24 .. 10.244.255.0/24".into(),
            })?;
    let bridge = net::bridge_name(n);
    // The bridge plugin turns on ip_forward (isGateway); the first claim remembers the
    // host's value so the last teardown can put it back.
    if claimed.is_empty() {
        if let Ok(v) = fs::read_to_string("/proc/sys/net/ipv4/ip_forward") {
            let _ = fs::write(claims_dir().join("ip_forward.orig"), v.trim());
        }
    }
    let me = std::process::id();
    let record = RunRecord {
        owner_pid: me,
        owner_start: process::start_time(me).unwrap_or(0),
        state_dir: layout.state_dir.clone(),
        cgroup_root: format!("/sa-replay-{bridge}"),
        bridge,
        subnet: subnet.to_string(),
        pids: Vec::new(),
    };
    record.save()?;
    Ok((record, subnet))
}

/// Tears down every run whose owner is gone (SIGKILLed, crashed): processes, mounts,
/// network, cgroups, claim. Runs of live owners (another run side by side) are left alone.
/// Returns what could not be removed.
pub fn cleanup_leftovers() -> Vec<String> {
    let Ok(_lock) = Lock::take() else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for (path, record) in records() {
        match record {
            Some(r) if r.owner_alive() => {}
            Some(r) => problems.extend(teardown_locked(&r)),
            None => {
                let _ = fs::remove_file(&path);
            }
        }
    }
    problems
}

/// Tears down one run (ours, on stop or drop).
pub(crate) fn teardown(record: &RunRecord) -> Vec<String> {
    match Lock::take() {
        Ok(_lock) => teardown_locked(record),
        Err(e) => vec![e.to_string()],
    }
}

fn teardown_locked(r: &RunRecord) -> Vec<String> {
    let mut problems = Vec::new();
    let state = r.state_dir.display().to_string();
    // 1. Processes: pods' (in our cgroup tree), then the daemons and containerd's shims
    //    (which name our socket and outlive containerd by design). SIGKILL: the state is
    //    thrown away anyway, and a shim must not get a chance to restart anything.
    for _ in 0..3 {
        let mut pids = cgroup_pids(&r.cgroup_root);
        pids.extend(
            r.pids
                .iter()
                .copied()
                .filter(|&p| process::running(p) && mentions(p, &state)),
        );
        pids.extend(process::pids_mentioning(&state));
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            break;
        }
        for &pid in &pids {
            process::signal(pid, libc::SIGKILL);
        }
        for &pid in &pids {
            for _ in 0..100 {
                if !process::running(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // 2. Mounts under the state dir (overlay rootfs, sandbox shm), deepest first.
    problems.extend(unmount_under(&r.state_dir));
    // 3. Network: pods' namespaces, veths, the bridge, our FORWARD rules, libcni's cache.
    problems.extend(net::teardown(&r.bridge));
    // 4. cgroups, deepest first (a cgroup is removed with rmdir once it has no process).
    problems.extend(remove_cgroups(&r.cgroup_root));
    // 5. The bulky parts of the state dir; logs stay for whoever reads them.
    for sub in ["containerd", "registry", "cni"] {
        let dir = r.state_dir.join(sub);
        if dir.exists() {
            if let Err(e) = fs::remove_dir_all(&dir) {
                problems.push(format!("cannot remove {}: {e}", dir.display()));
            }
        }
    }
    // 6. The claim, and ip_forward once no run is left.
    let _ = fs::remove_file(r.path());
    let others = records().into_iter().any(|(_, rec)| rec.is_some());
    let orig = claims_dir().join("ip_forward.orig");
    if !others {
        if let Ok(v) = fs::read_to_string(&orig) {
            let _ = fs::write("/proc/sys/net/ipv4/ip_forward", v.trim());
            let _ = fs::remove_file(&orig);
        }
    }
    problems
}

fn mentions(pid: u32, needle: &str) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
}

/// Mount points under `dir` from /proc/self/mountinfo (octal escapes decoded).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| m.starts_with(dir))
        .collect()
}

fn unescape_mount(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unmount_under(dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for _ in 0..3 {
        let mut mounts = mounts_under(dir);
        if mounts.is_empty() {
            return problems;
        }
        // Deepest first.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
        for m in mounts {
            let c =
                std::ffi::CString::new(m.as_os_str().as_encoded_bytes()).expect("no NUL in a path");
            // SAFETY: plain syscall with a valid C string. MNT_DETACH: a busy mount is
            // detached now and freed when its last user goes.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    let left = mounts_under(dir);
    if !left.is_empty() {
        problems.push(format!("mounts left under {}: {left:?}", dir.display()));
    }
    problems
}

/// Every cgroup v1 hierarchy mounted under /sys/fs/cgroup.
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.join("cgroup.procs").exists()
                && !fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
        })
        .collect()
}

fn cgroup_dirs(root: &str) -> Vec<PathBuf> {
    let rel = root.trim_start_matches('/');
    let mut dirs = Vec::new();
    for h in cgroup_hierarchies() {
        let top = h.join(rel);
        if top.is_dir() {
            collect_dirs(&top, &mut dirs);
        }
    }
    dirs
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

fn cgroup_pids(root: &str) -> Vec<u32> {
    cgroup_dirs(root)
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn remove_cgroups(root: &str) -> Vec<String> {
    let mut dirs = cgroup_dirs(root);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let mut problems = Vec::new();
    for d in dirs {
        if let Err(e) = fs::remove_dir(&d) {
            problems.push(format!("cannot remove cgroup {}: {e}", d.display()));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn a_record_round_trips() {
        let r = RunRecord {
            owner_pid: 1,
            owner_start: 2,
            state_dir: "/s".into(),
            bridge: "sa-br0".into(),
            subnet: "10.244.0.0/24".into(),
            cgroup_root: "/sa-replay-sa-br0".into(),
            pids: vec![3],
        };
        let back: RunRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = std::process::id();
        let mut r = RunRecord {
            owner_pid: me,
            owner_start: process::start_time(me).unwrap(),
            state_dir: "/s".into(),
            bridge: "b".into(),
            subnet: String::new(),
            cgroup_root: String::new(),
            pids: vec![],
        };
        assert!(r.owner_alive());
        r.owner_start += 1;
        assert!(!r.owner_alive());
    }
}
