//! The Debian packages a node needs: checked with dpkg, installed with apt-get when missing
//! (as root), and any daemon a package's postinst started is stopped again, since only
//! processes that we start with our own configuration may run.

use std::{collections::BTreeSet, fs, sync::Mutex};

use crate::{process, Error};

/// Packages the runtime and the image builder use, with a file each ships (to say why).
pub const REQUIRED: &[(&str, &str)] = &[
    ("containerd", "/usr/bin/containerd"),
    ("runc", "/usr/sbin/runc"),
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("iptables", "/usr/sbin/iptables"),
    ("iproute2", "/usr/sbin/ip"),
    ("docker-registry", "/usr/bin/docker-registry"),
    // What the nginx image is assembled from, besides the nginx .debs downloaded for it.
    ("curl", "/usr/bin/curl"),
    ("ca-certificates", "/etc/ssl/certs/ca-certificates.crt"),
    ("dash", "/usr/bin/dash"),
    ("coreutils", "/usr/bin/ls"),
    ("libpcre2-8-0", "libpcre2-8.so.0"),
    ("libssl3", "libssl.so.3"),
    ("libcrypt1", "libcrypt.so.1"),
    ("zlib1g", "libz.so.1"),
    // The pause program is compiled statically.
    ("gcc", "/usr/bin/gcc"),
    ("libc6-dev", "/usr/lib/x86_64-linux-gnu/libc.a"),
];

/// Daemons that Debian packages in [`REQUIRED`] may start from their postinst scripts.
const DAEMONS: &[&str] = &["containerd", "docker-registry", "registry"];

/// Whether dpkg has `package` installed.
pub fn installed(package: &str) -> bool {
    process::run("dpkg-query", ["-W", "-f", "${Status}", package])
        .is_ok_and(|status| status.trim_end().ends_with("install ok installed"))
}

/// The installed version of each package, `name=version`, for notes and cache keys.
pub fn versions<'a>(packages: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, Error> {
    let names: BTreeSet<&str> = packages.into_iter().collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec!["-W", "-f", "${Package}=${Version}\\n"];
    args.extend(names.iter().copied());
    let out = process::run("dpkg-query", args)?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Installs what [`REQUIRED`] lists and the machine lacks: `apt-get update` once, then
/// `apt-get install -y`. Returns the packages it installed.
pub fn ensure_installed() -> Result<Vec<String>, Error> {
    // Two runtimes starting side by side must not run apt-get at the same time.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let missing: Vec<String> = REQUIRED
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !installed(p))
        .map(str::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    if !process::is_root() {
        return Err(Error::MissingPackages { missing });
    }
    let before = daemon_pids();
    apt(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(missing.iter().map(String::as_str));
    apt(&install)?;
    stop_new_daemons(&before);
    let still: Vec<String> = missing.iter().filter(|p| !installed(p)).cloned().collect();
    if !still.is_empty() {
        return Err(Error::MissingPackages { missing: still });
    }
    Ok(missing)
}

fn apt(args: &[&str]) -> Result<String, Error> {
    let output = std::process::Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            program: "apt-get".into(),
            source,
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(Error::Command {
        command: format!("apt-get {}", args.join(" ")),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Pids of processes whose executable is one of [`DAEMONS`].
fn daemon_pids() -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if DAEMONS.contains(&name) {
            pids.insert(pid);
        }
    }
    pids
}

/// Stops daemons that appeared during an install: a postinst may start one (with the system
/// configuration, on the system socket), and those must not run beside ours. Daemons that
/// ran before (for instance another run's containerd) are left alone.
fn stop_new_daemons(before: &BTreeSet<u32>) {
    let new: Vec<u32> = daemon_pids().difference(before).copied().collect();
    if !new.is_empty() {
        process::terminate(&new, std::time::Duration::from_secs(5));
    }
}
