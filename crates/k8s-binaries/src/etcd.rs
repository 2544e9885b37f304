//! Finding an etcd for the local control plane.
//!
//! Choice: Debian's `etcd-server` (3.4.23 in bookworm) rather than a Go build of etcd. Both
//! pinned minors support etcd 3.4 (kubeadm's minimum etcd for 1.24 and 1.29 is 3.4; see the
//! "etcd" section of each release's CHANGELOG dependencies), and it costs seconds instead of
//! another multi-minute Go build on a 2-core machine.
//!
//! We do not `apt-get install` it: the package's postinst runs `invoke-rc.d etcd start`, which
//! on a machine without a policy-rc.d would leave a system etcd listening on 127.0.0.1:2379
//! with /var/lib/etcd. Instead `apt-get download` fetches the .deb and `dpkg-deb -x` unpacks
//! only its files into the cache: no maintainer script runs, no root is needed (except for
//! `apt-get update` when the package lists are missing), and no daemon can be left behind.
//!
//! Order of preference: `$SA_REPLAY_ETCD`, an `etcd` on PATH, the cached unpacked copy, then
//! a fresh download.

use std::{
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{go::find_on_path, Error};

/// Environment variable naming an etcd binary to use.
pub const ETCD_ENV: &str = "SA_REPLAY_ETCD";

/// Debian's package holding `/usr/bin/etcd`.
pub const DEBIAN_PACKAGE: &str = "etcd-server";

/// Oldest etcd both pinned Kubernetes minors support.
pub const MIN_ETCD: (u32, u32) = (3, 4);

/// Where the etcd came from, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdSource {
    /// `$SA_REPLAY_ETCD`.
    Env,
    /// Found on PATH.
    Path,
    /// Unpacked earlier from Debian's package into the cache.
    Cache,
    /// Just downloaded from Debian's archive and unpacked.
    Downloaded,
}

/// A usable etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etcd {
    pub path: PathBuf,
    /// `3.4.23`.
    pub version: String,
    pub source: EtcdSource,
}

/// `<cache root>/etcd/bin/etcd`.
pub fn cached_path(cache_root: &Path) -> PathBuf {
    cache_root.join("etcd/bin/etcd")
}

/// Finds or fetches etcd (see the module docs for the order).
pub fn ensure_etcd(cache_root: &Path, progress: &mut dyn FnMut(&str)) -> Result<Etcd, Error> {
    if let Some(path) = std::env::var_os(ETCD_ENV).filter(|p| !p.is_empty()) {
        return checked(PathBuf::from(path), EtcdSource::Env);
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    if let Some(path) = find_on_path("etcd", &search) {
        return checked(path, EtcdSource::Path);
    }
    let cached = cached_path(cache_root);
    if cached.is_file() {
        return checked(cached, EtcdSource::Cache);
    }
    progress(&format!(
        "etcd: not found; unpacking Debian's {DEBIAN_PACKAGE} into {}",
        cached.display()
    ));
    download(cache_root, &search)?;
    checked(cached, EtcdSource::Downloaded)
}

/// Runs `etcd --version` and checks it against [`MIN_ETCD`].
fn checked(path: PathBuf, source: EtcdSource) -> Result<Etcd, Error> {
    // The cache entry is the `etcd` folder above `bin/etcd`.
    let entry = path.parent().and_then(Path::parent).unwrap_or(&path);
    let what_to_do = match source {
        EtcdSource::Cache | EtcdSource::Downloaded => format!(
            "the cached copy is cut short or corrupt: delete {} and run again to unpack it anew",
            entry.display()
        ),
        EtcdSource::Env => format!("fix it, or unset {ETCD_ENV}"),
        EtcdSource::Path => "fix it, or take it off PATH".into(),
    };
    let unusable = |printed: String| Error::EtcdUnusable {
        path: path.clone(),
        printed: printed.chars().take(200).collect(),
        what_to_do: what_to_do.clone(),
    };
    let output = match Command::new(&path).arg("--version").output() {
        Ok(output) => output,
        // A cached file that cannot even be executed is a broken cache entry, not a missing tool.
        Err(e) if matches!(source, EtcdSource::Cache | EtcdSource::Downloaded) => {
            return Err(unusable(format!("nothing: it cannot be run ({e})")))
        }
        Err(e) => {
            return Err(Error::Spawn {
                program: path.display().to_string(),
                source: e,
            })
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_version(&text).ok_or_else(|| {
        unusable(format!(
            "{}{}",
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    })?;
    let numbers: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    if numbers.len() < 2 || (numbers[0], numbers[1]) < MIN_ETCD {
        return Err(Error::EtcdTooOld {
            path,
            found: version,
        });
    }
    Ok(Etcd {
        path,
        version,
        source,
    })
}

/// `etcd Version: 3.4.23\nGit SHA: ...` -> `3.4.23`.
pub fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
}

fn download(cache_root: &Path, search: &OsStr) -> Result<(), Error> {
    let missing = |detail: String| Error::EtcdMissing { detail };
    let apt_get = find_on_path("apt-get", search)
        .ok_or_else(|| missing("no etcd on PATH, and no apt-get to fetch one".into()))?;
    let dpkg_deb = find_on_path("dpkg-deb", search)
        .ok_or_else(|| missing("no etcd on PATH, and no dpkg-deb to unpack one".into()))?;

    let work = cache_root.join(format!("etcd/.download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).map_err(Error::io(&work))?;
    let result = (|| {
        let fetch = || {
            run(
                Command::new(&apt_get)
                    .args(["download", DEBIAN_PACKAGE])
                    .current_dir(&work),
                &apt_get,
            )
        };
        if let Err(first) = fetch() {
            // Fresh machines have no package lists; `apt-get update` needs root.
            if !is_root() {
                return Err(missing(format!(
                    "`apt-get download {DEBIAN_PACKAGE}` failed (run `apt-get update` as root \
                     first?):\n{first}"
                )));
            }
            run(Command::new(&apt_get).arg("update"), &apt_get)
                .map_err(|e| missing(format!("`apt-get update` failed:\n{e}")))?;
            fetch().map_err(|e| {
                missing(format!("`apt-get download {DEBIAN_PACKAGE}` failed:\n{e}"))
            })?;
        }
        let deb = fs::read_dir(&work)
            .map_err(Error::io(&work))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension() == Some(OsStr::new("deb")))
            .ok_or_else(|| missing("apt-get download left no .deb".into()))?;
        let root = work.join("root");
        run(
            Command::new(&dpkg_deb).arg("-x").arg(&deb).arg(&root),
            &dpkg_deb,
        )
        .map_err(|e| missing(format!("dpkg-deb -x failed:\n{e}")))?;
        let target = cached_path(cache_root);
        let bin = target.parent().expect("cached path has a parent");
        fs::create_dir_all(bin).map_err(Error::io(bin))?;
        let unpacked = root.join("usr/bin/etcd");
        fs::rename(&unpacked, &target).map_err(Error::io(&unpacked))?;
        let name = deb.file_name().unwrap_or_default().to_string_lossy();
        let note = bin.join("FROM");
        fs::write(&note, format!("unpacked from {name}\n")).map_err(Error::io(&note))
    })();
    let _ = fs::remove_dir_all(&work);
    result
}

/// Runs a command; `Err(stderr)` when it fails.
fn run(command: &mut Command, program: &Path) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_etcd_that_is_not_etcd_says_to_delete_the_cache_entry() {
        use std::os::unix::fs::PermissionsExt;
        let cache = tempfile::tempdir().unwrap();
        let etcd = cached_path(cache.path());
        fs::create_dir_all(etcd.parent().unwrap()).unwrap();
        fs::write(&etcd, "#!/bin/sh\necho half an etcd\n").unwrap();
        fs::set_permissions(&etcd, fs::Permissions::from_mode(0o755)).unwrap();
        let err = checked(etcd, EtcdSource::Cache).unwrap_err().to_string();
        let entry = cache.path().join("etcd");
        assert!(
            err.contains("half an etcd") && err.contains(&format!("delete {}", entry.display())),
            "{err}"
        );
    }

    #[test]
    fn parses_etcd_version_output() {
        let text = "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8\n";
        assert_eq!(parse_version(text).as_deref(), Some("3.4.23"));
        assert_eq!(parse_version("nonsense"), None);
    }
}
