//! Upstream Kubernetes binaries built from source with Go, cached per version outside the
//! repository, plus the etcd they need (see [`etcd`]).
//!
//! The sources come from the Go modules in `k8s-build/v1.24` and `k8s-build/v1.29`, which
//! require `k8s.io/kubernetes` at the pinned tag. A cache entry is
//! `$SA_REPLAY_CACHE/k8s/v1.29.2/` (default `$HOME/.cache/sa-replay`): `bin/<name>` and a
//! `SHA256SUMS` manifest. Cached binaries are never rebuilt; one that no longer matches its
//! manifest is an error naming the folder to delete.

mod error;
pub mod etcd;
pub mod go;
pub mod ldflags;
pub mod manifest;

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fmt, fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

pub use error::Error;
use ldflags::VersionInfo;
use manifest::Manifest;
use pins::KubePin;

/// Environment variable naming the cache folder.
pub const CACHE_ENV: &str = "SA_REPLAY_CACHE";

/// The module path every binary is built from.
pub const KUBERNETES_MODULE: &str = "k8s.io/kubernetes";

/// A Kubernetes command that can be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Binary {
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubectl,
    Kubelet,
    KubeProxy,
}

impl Binary {
    /// What a control plane without nodes needs: the local provider's default set.
    pub const CONTROL_PLANE: &'static [Binary] = &[
        Binary::KubeApiserver,
        Binary::KubeControllerManager,
        Binary::Kubectl,
    ];

    /// Everything, for a cluster with a node.
    pub const ALL: &'static [Binary] = &[
        Binary::KubeApiserver,
        Binary::KubeControllerManager,
        Binary::KubeScheduler,
        Binary::Kubectl,
        Binary::Kubelet,
        Binary::KubeProxy,
    ];

    /// The file name, `kube-apiserver`.
    pub fn name(self) -> &'static str {
        match self {
            Binary::KubeApiserver => "kube-apiserver",
            Binary::KubeControllerManager => "kube-controller-manager",
            Binary::KubeScheduler => "kube-scheduler",
            Binary::Kubectl => "kubectl",
            Binary::Kubelet => "kubelet",
            Binary::KubeProxy => "kube-proxy",
        }
    }

    /// The Go package, `k8s.io/kubernetes/cmd/kube-apiserver`.
    pub fn package(self) -> String {
        format!("{KUBERNETES_MODULE}/cmd/{}", self.name())
    }
}

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to provide, and from where.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub pin: &'static KubePin,
    pub binaries: Vec<Binary>,
    /// The Go module that pins this version: `k8s-build/v1.29`.
    pub module_dir: PathBuf,
    /// The cache root (`$SA_REPLAY_CACHE`); the entry is `<root>/k8s/<version>`.
    pub cache_root: PathBuf,
    /// The PATH to look for `go` in; `None` means this process's PATH.
    pub path: Option<OsString>,
}

impl BuildSpec {
    /// The usual spec: this repository's module for the pin, the default cache.
    pub fn new(pin: &'static KubePin, binaries: &[Binary]) -> BuildSpec {
        BuildSpec {
            pin,
            binaries: binaries.to_vec(),
            module_dir: module_dir(pin),
            cache_root: cache_root(),
            path: None,
        }
    }

    /// `<root>/k8s/v1.29.2`.
    pub fn entry_dir(&self) -> PathBuf {
        self.cache_root.join("k8s").join(self.pin.version)
    }
}

/// The repository's Go module for a pin: `k8s-build/v<minor>`.
pub fn module_dir(pin: &KubePin) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../k8s-build")
        .join(format!("v{}", pin.minor))
}

/// `$SA_REPLAY_CACHE`, else `$HOME/.cache/sa-replay`, else a folder under the temp dir.
/// A relative `$SA_REPLAY_CACHE` is taken from the current directory: `go build` runs in the
/// module's folder, so a relative path handed to it would land somewhere else.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return std::path::absolute(&dir).unwrap_or(dir);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache/sa-replay"),
        None => std::env::temp_dir().join("sa-replay-cache"),
    }
}

/// Binaries ready to run, all of one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// `v1.29.2`.
    pub version: String,
    /// The cache entry holding them.
    pub dir: PathBuf,
    paths: BTreeMap<Binary, PathBuf>,
}

impl Binaries {
    /// Binaries that are already somewhere (tests, or a caller with its own build).
    pub fn from_paths(
        version: &str,
        dir: PathBuf,
        paths: impl IntoIterator<Item = (Binary, PathBuf)>,
    ) -> Binaries {
        Binaries {
            version: version.to_string(),
            dir,
            paths: paths.into_iter().collect(),
        }
    }

    /// The path of a binary that was asked for; `None` if it was not in the spec.
    pub fn get(&self, binary: Binary) -> Option<&Path> {
        self.paths.get(&binary).map(PathBuf::as_path)
    }

    /// Like [`Binaries::get`], for binaries the caller asked for.
    ///
    /// # Panics
    /// If `binary` was not part of the [`BuildSpec`]: a programming error.
    pub fn path(&self, binary: Binary) -> &Path {
        self.get(binary)
            .unwrap_or_else(|| panic!("{binary} was not in the BuildSpec"))
    }
}

/// What [`ensure`] reports while it works; building takes minutes, so it ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The binary was in the cache and matched its manifest.
    Cached { binary: Binary, path: PathBuf },
    /// `go build` started.
    Building { binary: Binary, version: String },
    /// Still building; `packages` counts the Go packages built so far (`go build -v`).
    StillBuilding {
        binary: Binary,
        elapsed: Duration,
        packages: usize,
    },
    /// The link step failed and the build is retried with `-checklinkname=0`.
    RetryingLink { binary: Binary },
    /// Built and cached.
    Built { binary: Binary, elapsed: Duration },
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Progress::Cached { binary, path } => {
                write!(f, "{binary}: cached at {}", path.display())
            }
            Progress::Building { binary, version } => {
                write!(
                    f,
                    "{binary}: building {version} with go build (minutes when cold)"
                )
            }
            Progress::StillBuilding {
                binary,
                elapsed,
                packages,
            } => write!(
                f,
                "{binary}: still building, {}s, {packages} packages",
                elapsed.as_secs()
            ),
            Progress::RetryingLink { binary } => write!(
                f,
                "{binary}: link failed, retrying with -ldflags=-checklinkname=0"
            ),
            Progress::Built { binary, elapsed } => {
                write!(f, "{binary}: built in {}s", elapsed.as_secs())
            }
        }
    }
}

/// How often [`Progress::StillBuilding`] is reported.
const TICK: Duration = Duration::from_secs(30);

/// Returns the binaries of `spec`, building (and caching) the ones not cached yet.
///
/// Go is only needed when something is missing. Concurrent callers for the same version
/// wait for each other on a lock file rather than building twice.
pub fn ensure(spec: &BuildSpec, progress: &mut dyn FnMut(Progress)) -> Result<Binaries, Error> {
    let dir = spec.entry_dir();
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).map_err(Error::io(&bin))?;
    let lock_path = dir.join(".lock");
    let lock = fs::File::create(&lock_path).map_err(Error::io(&lock_path))?;
    lock.lock().map_err(Error::io(&lock_path))?;

    let mut manifest = Manifest::load(&dir)?;
    let mut paths = BTreeMap::new();
    let mut missing = Vec::new();
    for &binary in &spec.binaries {
        if manifest.digests.contains_key(binary.name()) {
            let path = manifest.verify(&dir, binary.name())?;
            progress(Progress::Cached {
                binary,
                path: path.clone(),
            });
            paths.insert(binary, path);
        } else if !missing.contains(&binary) {
            missing.push(binary);
        }
    }

    if !missing.is_empty() {
        if !spec.module_dir.join("go.mod").is_file() {
            return Err(Error::ModuleDirMissing {
                version: spec.pin.version.to_string(),
                dir: spec.module_dir.clone(),
            });
        }
        let search = go::search_path(spec.path.as_deref());
        let go_bin = go::find_go(&search)?;
        let go_version = go::check_version(&go_bin, &search)?;
        let (commit, time) = go::module_origin(
            &go_bin,
            &search,
            &spec.module_dir,
            KUBERNETES_MODULE,
            spec.pin.version,
        )?;
        // The tag's commit time keeps rebuilds byte-identical; the Unix epoch is only a
        // fallback for proxies that give no time.
        let build_date = time.unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string());
        let info = VersionInfo::for_release(spec.pin.version, commit.clone(), build_date)
            .expect("pins are vMAJOR.MINOR.PATCH");
        manifest.notes = vec![
            format!("{KUBERNETES_MODULE}@{}", spec.pin.version),
            format!("gitCommit: {}", commit.as_deref().unwrap_or("unknown")),
            format!("built with: {go_version}"),
            "check by hand: cd to this folder, then sha256sum -c SHA256SUMS".to_string(),
        ];
        for binary in missing {
            let build = GoBuild {
                go: &go_bin,
                path: &search,
                spec,
                dir: &dir,
                info: &info,
            };
            let path = build.run(binary, progress)?;
            manifest
                .digests
                .insert(binary.name().to_string(), manifest::sha256_file(&path)?);
            // Stored after each binary so that an interrupted run keeps what it finished.
            manifest.store(&dir)?;
            paths.insert(binary, path);
        }
    }

    Ok(Binaries {
        version: spec.pin.version.to_string(),
        dir,
        paths,
    })
}

struct GoBuild<'a> {
    go: &'a Path,
    path: &'a OsString,
    spec: &'a BuildSpec,
    dir: &'a Path,
    info: &'a VersionInfo,
}

impl GoBuild<'_> {
    /// Builds one binary into `bin/` through a temporary name.
    fn run(&self, binary: Binary, progress: &mut dyn FnMut(Progress)) -> Result<PathBuf, Error> {
        let started = Instant::now();
        progress(Progress::Building {
            binary,
            version: self.spec.pin.version.to_string(),
        });
        let log = self.dir.join(format!("build-{}.log", binary.name()));
        let mut outcome = self.attempt(binary, &[], &log, started, progress)?;
        if let Err(stderr) = &outcome {
            if go::is_link_failure(stderr) {
                progress(Progress::RetryingLink { binary });
                outcome = self.attempt(binary, &["-checklinkname=0"], &log, started, progress)?;
                if let Err(stderr) = &outcome {
                    if go::is_link_failure(stderr) {
                        return Err(Error::LinkFailed {
                            binary: binary.name().to_string(),
                            version: self.spec.pin.version.to_string(),
                            log,
                            tail: go::tail(stderr, 15),
                        });
                    }
                }
            }
        }
        let tmp = match outcome {
            Ok(tmp) => tmp,
            Err(stderr) => {
                if let Some((module, version, detail)) = go::module_fetch_failure(&stderr) {
                    return Err(Error::ModuleUnavailable {
                        module,
                        version,
                        detail,
                    });
                }
                return Err(Error::BuildFailed {
                    binary: binary.name().to_string(),
                    version: self.spec.pin.version.to_string(),
                    log,
                    tail: go::tail(&stderr, 15),
                });
            }
        };
        let path = self.dir.join("bin").join(binary.name());
        fs::rename(&tmp, &path).map_err(Error::io(&path))?;
        progress(Progress::Built {
            binary,
            elapsed: started.elapsed(),
        });
        Ok(path)
    }

    /// One `go build`; `Ok(Err(output))` when Go ran and failed.
    fn attempt(
        &self,
        binary: Binary,
        extra_ldflags: &[&str],
        log: &Path,
        started: Instant,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Result<PathBuf, String>, Error> {
        let tmp =
            self.dir
                .join("bin")
                .join(format!(".{}.tmp-{}", binary.name(), std::process::id()));
        let log_file = fs::File::create(log).map_err(Error::io(log))?;
        let log_err = log_file.try_clone().map_err(Error::io(log))?;
        // CGO is left at Go's default (on where a C compiler exists): upstream builds the
        // servers with CGO_ENABLED=0 (hack/lib/golang.sh, KUBE_STATIC_LIBRARIES), but that
        // changes every package's cache key, and on a 2-core machine reusing the shared Go
        // build cache is worth more than static linking for processes that only talk on
        // loopback.
        let mut child = Command::new(self.go)
            .args(["build", "-v", "-trimpath", "-buildvcs=false"])
            .arg(format!(
                "-ldflags={}",
                ldflags::ldflags(self.info, extra_ldflags)
            ))
            .arg("-o")
            .arg(&tmp)
            .arg(binary.package())
            .current_dir(&self.spec.module_dir)
            .env("PATH", self.path)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|source| Error::Spawn {
                program: self.go.display().to_string(),
                source,
            })?;
        let mut next_tick = started.elapsed() + TICK;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|source| Error::Spawn {
                program: self.go.display().to_string(),
                source,
            })? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(500));
            if started.elapsed() >= next_tick {
                next_tick += TICK;
                let packages = fs::read_to_string(log)
                    .map(|t| t.lines().filter(|l| !l.starts_with(' ')).count())
                    .unwrap_or(0);
                progress(Progress::StillBuilding {
                    binary,
                    elapsed: started.elapsed(),
                    packages,
                });
            }
        };
        if status.success() {
            return Ok(Ok(tmp));
        }
        let _ = fs::remove_file(&tmp);
        let output = fs::read_to_string(log).unwrap_or_default();
        // `-v` lists every package built; keep only what explains the failure.
        let output: String = output
            .lines()
            .filter(|l| {
                l.starts_with('#')
                    || l.starts_with("go: ")
                    || l.contains(": ")
                    || l.starts_with('\t')
            })
            .map(|l| format!("{l}\n"))
            .collect();
        Ok(Err(output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> &'static KubePin {
        KubePin::find("1.29").unwrap()
    }

    #[test]
    fn packages_are_kubernetes_commands() {
        assert_eq!(
            Binary::KubeApiserver.package(),
            "k8s.io/kubernetes/cmd/kube-apiserver"
        );
        assert!(Binary::CONTROL_PLANE.contains(&Binary::Kubectl));
    }

    #[test]
    fn every_pin_has_its_module_in_the_repository() {
        for pin in pins::KUBERNETES {
            let go_mod = fs::read_to_string(module_dir(pin).join("go.mod")).unwrap();
            let require = format!("require {KUBERNETES_MODULE} {}", pin.version);
            assert!(go_mod.contains(&require), "{}: {require}", pin.version);
        }
    }

    #[test]
    fn the_cache_entry_is_per_version() {
        let spec = BuildSpec {
            cache_root: "/c".into(),
            ..BuildSpec::new(pin(), Binary::CONTROL_PLANE)
        };
        assert_eq!(spec.entry_dir(), Path::new("/c/k8s/v1.29.2"));
    }

    #[test]
    fn a_cached_entry_is_used_without_go() {
        let cache = tempfile::tempdir().unwrap();
        let spec = BuildSpec {
            cache_root: cache.path().into(),
            path: Some(OsString::new()),
            binaries: vec![Binary::Kubectl],
            ..BuildSpec::new(pin(), &[])
        };
        let bin = spec.entry_dir().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("kubectl"), b"#!/bin/true\n").unwrap();
        let digest = manifest::sha256_file(&bin.join("kubectl")).unwrap();
        fs::write(
            spec.entry_dir().join("SHA256SUMS"),
            format!("{digest}  bin/kubectl\n"),
        )
        .unwrap();
        let mut events = vec![];
        let binaries = ensure(&spec, &mut |p| events.push(p)).unwrap();
        assert_eq!(binaries.path(Binary::Kubectl), bin.join("kubectl"));
        assert!(
            matches!(events[..], [Progress::Cached { .. }]),
            "{events:?}"
        );
    }

    #[test]
    fn a_corrupt_cache_entry_names_the_folder_to_delete() {
        let cache = tempfile::tempdir().unwrap();
        let spec = BuildSpec {
            cache_root: cache.path().into(),
            binaries: vec![Binary::Kubectl],
            ..BuildSpec::new(pin(), &[])
        };
        let bin = spec.entry_dir().join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(
            spec.entry_dir().join("SHA256SUMS"),
            format!("{}  bin/kubectl\n", "0".repeat(64)),
        )
        .unwrap();
        fs::write(bin.join("kubectl"), b"truncated").unwrap();
        let err = ensure(&spec, &mut |_| {}).unwrap_err();
        assert!(matches!(err, Error::CorruptCache { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("delete {}", spec.entry_dir().display())),
            "{message}"
        );
    }

    #[test]
    fn building_without_go_on_path_is_a_clear_error() {
        let cache = tempfile::tempdir().unwrap();
        let empty_path = tempfile::tempdir().unwrap();
        let spec = BuildSpec {
            cache_root: cache.path().into(),
            path: Some(empty_path.path().as_os_str().to_owned()),
            ..BuildSpec::new(pin(), Binary::CONTROL_PLANE)
        };
        let err = ensure(&spec, &mut |_| {}).unwrap_err();
        assert!(matches!(err, Error::GoMissing), "{err:?}");
    }

    #[test]
    fn a_missing_module_folder_is_a_clear_error() {
        let cache = tempfile::tempdir().unwrap();
        let spec = BuildSpec {
            cache_root: cache.path().into(),
            module_dir: cache.path().join("nowhere"),
            ..BuildSpec::new(pin(), Binary::CONTROL_PLANE)
        };
        let err = ensure(&spec, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("nowhere/go.mod"), "{err}");
    }
}
