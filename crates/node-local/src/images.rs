//! The two images a node needs, built here because no outside registry can be reached:
//!
//! - `nginx`: nginx from Debian's `nginx` and `nginx-common` .debs (downloaded with
//!   `apt-get download`, unpacked with `dpkg-deb -x`, never installed, so no postinst runs
//!   and nothing starts on the host), plus `sh` (dash), coreutils, curl and CA certificates
//!   taken from the host's installed packages with every shared library `ldd` names.
//! - `pause`: a 20-line C program compiled statically, the pod sandbox's init.
//!
//! Both are cached under `$SA_REPLAY_CACHE/node-images/<key>/` where the key hashes the
//! recipe and every package version used, so an image is rebuilt only when one changes.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use crate::{
    oci::{sha256, Entry, Image, Rootfs, RunConfig},
    packages, process, Error,
};

/// Bump when the recipe changes, so cached images are rebuilt.
const RECIPE: &str = "node-local images v1";

/// Host programs copied into the nginx image (with their libraries).
const HOST_PROGRAMS: &[&str] = &[
    "/usr/bin/dash",
    "/usr/bin/curl",
    "/usr/bin/ls",
    "/usr/bin/cat",
    "/usr/bin/echo",
    "/usr/bin/env",
    "/usr/bin/id",
    "/usr/bin/sleep",
    "/usr/bin/mkdir",
    "/usr/bin/head",
    "/usr/bin/tail",
    "/usr/bin/wc",
    "/usr/bin/pwd",
    "/usr/bin/uname",
    "/usr/bin/date",
    "/usr/bin/rm",
    "/usr/bin/cp",
    "/usr/bin/touch",
    "/usr/bin/printf",
    "/usr/bin/test",
    "/usr/bin/true",
    "/usr/bin/false",
    "/usr/bin/base64",
];

/// The Debian packages downloaded (not installed) for nginx.
const NGINX_DEBS: &[&str] = &["nginx", "nginx-common"];

/// The pause program: PID 1 of every pod sandbox. It holds the namespaces, reaps orphans
/// (containers sharing the PID namespace re-parent to it) and exits on SIGINT/SIGTERM.
const PAUSE_C: &str = r#"/* pause: PID 1 of a pod sandbox (node-local). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void down(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = down;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = reap;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  for (;;) pause();
  return 0;
}
"#;

/// A built image on disk and what it was made from.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// `library/nginx`, `sa-replay/pause`.
    pub repository: String,
    pub tag: String,
    pub dir: PathBuf,
    /// Manifest digest, `sha256:...`.
    pub digest: String,
    /// Package names and versions it was built from, and how.
    pub note: String,
}

impl BuiltImage {
    /// The name containerd and the kubelet use, under `docker.io`.
    pub fn reference(&self) -> String {
        format!("docker.io/{}:{}", self.repository, self.tag)
    }

    /// The three blobs, read back from the cache.
    pub fn load(&self) -> Result<Image, Error> {
        let read = |name: &str| {
            let path = self.dir.join(name);
            fs::read(&path).map_err(|_| Error::BrokenCache {
                dir: self.dir.clone(),
            })
        };
        let image = Image {
            layer: read("layer.tar")?,
            config: read("config.json")?,
            manifest: read("manifest.json")?,
        };
        if image.digest() != self.digest || !image.is_intact() {
            return Err(Error::BrokenCache {
                dir: self.dir.clone(),
            });
        }
        Ok(image)
    }
}

/// Builds (or finds in the cache) the nginx and pause images.
pub fn ensure_images(cache_root: &Path) -> Result<(BuiltImage, BuiltImage), Error> {
    let root = cache_root.join("node-images");
    let debs = fetch_nginx_debs(&root.join("debs"))?;
    let nginx = ensure_nginx(&root, &debs)?;
    let pause = ensure_pause(&root)?;
    Ok((nginx, pause))
}

/// Downloads nginx's .debs once into `dir`; later runs reuse them (no network needed).
fn fetch_nginx_debs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
    let find = |name: &str| -> Option<PathBuf> {
        let prefix = format!("{name}_");
        fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
    };
    let missing: Vec<&str> = NGINX_DEBS
        .iter()
        .copied()
        .filter(|n| find(n).is_none())
        .collect();
    if !missing.is_empty() {
        // Download into a scratch folder first: a half-finished download is never cached.
        let scratch = dir.join(format!(".download-{}", std::process::id()));
        let _ = fs::remove_dir_all(&scratch);
        fs::create_dir_all(&scratch).map_err(Error::io("create", &scratch))?;
        let mut cmd = std::process::Command::new("apt-get");
        cmd.arg("download").args(&missing).current_dir(&scratch);
        let out = cmd.output().map_err(|source| Error::Spawn {
            program: "apt-get".into(),
            source,
        })?;
        if !out.status.success() {
            let _ = fs::remove_dir_all(&scratch);
            return Err(Error::Command {
                command: format!("apt-get download {}", missing.join(" ")),
                status: out.status.to_string(),
                stderr: format!(
                    "{} (run `apt-get update` first if the package lists are missing)",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        for entry in fs::read_dir(&scratch)
            .map_err(Error::io("read", &scratch))?
            .flatten()
        {
            let to = dir.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(Error::io("move into", &to))?;
        }
        let _ = fs::remove_dir_all(&scratch);
    }
    NGINX_DEBS
        .iter()
        .map(|n| {
            find(n).ok_or_else(|| Error::BrokenCache {
                dir: dir.to_path_buf(),
            })
        })
        .collect()
}

/// `Package=Version` of a .deb file.
fn deb_version(deb: &Path) -> Result<String, Error> {
    let out = process::run(
        "dpkg-deb",
        [
            Path::new("-W"),
            Path::new("--showformat=${Package}=${Version}"),
            deb,
        ],
    )?;
    Ok(out.trim().to_string())
}

/// The shared libraries `ldd` names for a program, as host paths (the loader included).
pub fn parse_ldd(program: &str, ldd: &str) -> Result<Vec<PathBuf>, Error> {
    let mut libs = Vec::new();
    for line in ldd.lines().map(str::trim) {
        if let Some((name, rest)) = line.split_once(" => ") {
            let path = rest.split(" (").next().unwrap_or("").trim();
            if path == "not found" || path.is_empty() {
                return Err(Error::MissingLibrary {
                    program: program.into(),
                    library: name.trim().into(),
                });
            }
            libs.push(PathBuf::from(path));
        } else if line.starts_with('/') {
            // The loader: `/lib64/ld-linux-x86-64.so.2 (0x...)`.
            libs.push(PathBuf::from(line.split(" (").next().unwrap_or(line)));
        }
        // `linux-vdso.so.1 (0x...)` is the kernel's, not a file.
    }
    Ok(libs)
}

/// Where a host file goes in the image: its folder with symlinks resolved (so merged-/usr
/// hosts put libraries under /usr/lib), under the name the loader asks for.
fn image_path(host: &Path) -> PathBuf {
    let dir = host
        .parent()
        .and_then(|d| fs::canonicalize(d).ok())
        .unwrap_or_else(|| host.parent().unwrap_or(Path::new("/")).to_path_buf());
    dir.join(host.file_name().unwrap_or_default())
}

/// Adds a host file's content (symlinks followed) to the image at `at`.
fn add_host_file(rootfs: &mut Rootfs, host: &Path, at: &Path) -> Result<(), Error> {
    let data = fs::read(host).map_err(Error::io("read", host))?;
    let mode = fs::metadata(host)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
        .unwrap_or(0o644);
    rootfs.file(at, data, mode);
    Ok(())
}

/// The Debian packages that own host files, `dpkg -S` (asked for the path as given and for
/// its resolved form, since merged-/usr files are known to dpkg under either).
fn owners(paths: &BTreeSet<PathBuf>) -> Result<BTreeSet<String>, Error> {
    let mut queries: BTreeSet<String> = BTreeSet::new();
    for p in paths {
        queries.insert(p.display().to_string());
        if let Ok(real) = fs::canonicalize(p) {
            queries.insert(real.display().to_string());
        }
    }
    // dpkg -S exits 1 when any path is unknown; the others are still printed.
    let out = std::process::Command::new("dpkg")
        .arg("-S")
        .args(&queries)
        .output()
        .map_err(|source| Error::Spawn {
            program: "dpkg".into(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("diversion by"))
        .filter_map(|l| l.split_once(": "))
        .flat_map(|(pkgs, _)| {
            pkgs.split(", ")
                .map(|p| p.split(':').next().unwrap_or(p).to_string())
        })
        .collect())
}

/// Mirrors the host's top-level symlinks (`/bin -> usr/bin` on merged-/usr Debian), so
/// paths like /bin/sh and /lib64/ld-linux-x86-64.so.2 resolve in the image as on the host.
fn add_top_level_links(rootfs: &mut Rootfs) {
    for top in ["bin", "sbin", "lib", "lib64"] {
        if let Ok(target) = fs::read_link(Path::new("/").join(top)) {
            rootfs.symlink(format!("/{top}"), target);
        }
    }
}

fn ensure_nginx(root: &Path, debs: &[PathBuf]) -> Result<BuiltImage, Error> {
    let unpacked = root.join(format!("nginx-unpacked-{}", std::process::id()));
    let _ = fs::remove_dir_all(&unpacked);
    for deb in debs {
        process::run("dpkg-deb", [Path::new("-x"), deb, &unpacked])?;
    }
    let result = (|| {
        let nginx_bin = unpacked.join("usr/sbin/nginx");
        // Every program and library, host path -> image path.
        let mut files: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
        let mut host_files: BTreeSet<PathBuf> = BTreeSet::new();
        let mut programs: Vec<PathBuf> = HOST_PROGRAMS.iter().map(PathBuf::from).collect();
        programs.push(nginx_bin.clone());
        for program in &programs {
            let name = program.display().to_string();
            let ldd = process::run("ldd", [program])?;
            for lib in parse_ldd(&name, &ldd)? {
                files.insert(lib.clone(), image_path(&lib));
                host_files.insert(lib);
            }
            if program != &nginx_bin {
                files.insert(program.clone(), program.clone());
                host_files.insert(program.clone());
            }
        }
        for extra in ["/etc/ssl/certs/ca-certificates.crt", "/usr/lib/os-release"] {
            files.insert(extra.into(), extra.into());
            host_files.insert(extra.into());
        }
        let mut host_packages = owners(&host_files)?;
        host_packages.insert("base-files".into());
        let mut used = packages::versions(host_packages.iter().map(String::as_str))?;
        let mut downloaded = Vec::new();
        for deb in debs {
            downloaded.push(deb_version(deb)?);
        }
        used.extend(downloaded.iter().cloned());
        used.sort();
        let key = cache_key(&used);
        let dir = root.join(format!("nginx-{}", &key[..16]));
        let note = format!(
            "nginx image (docker.io/library/nginx:latest) built locally: nginx from the Debian \
             .debs {} (unpacked, not installed); sh, coreutils, curl, CA certificates and \
             their libraries from this host's packages {}",
            downloaded.join(", "),
            used.iter()
                .filter(|p| !downloaded.contains(p))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        if let Some(found) = cached(&dir, "library/nginx", "latest", &note)? {
            return Ok(found);
        }
        let mut rootfs = Rootfs::default();
        add_top_level_links(&mut rootfs);
        for (host, at) in &files {
            add_host_file(&mut rootfs, host, at)?;
        }
        add_host_file(&mut rootfs, &nginx_bin, Path::new("/usr/sbin/nginx"))?;
        add_tree(
            &mut rootfs,
            &unpacked.join("etc/nginx"),
            Path::new("/etc/nginx"),
        )?;
        add_tree(
            &mut rootfs,
            &unpacked.join("usr/share/nginx"),
            Path::new("/usr/share/nginx"),
        )?;
        nginx_skeleton(&mut rootfs);
        let run = RunConfig {
            cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            exposed_ports: vec!["80/tcp".into()],
            stop_signal: Some("SIGQUIT".into()),
            labels: BTreeMap::from([("org.opencontainers.image.description".into(), note.clone())]),
            ..RunConfig::default()
        };
        store(&dir, "library/nginx", "latest", &note, &rootfs, &run)
    })();
    let _ = fs::remove_dir_all(&unpacked);
    result
}

/// What nginx and a shell expect besides the programs: users, folders, an own default
/// site (Debian's listens on [::]:80 too, which fails where a pod has no IPv6), and logs on
/// the container's stdout/stderr as in the upstream image.
fn nginx_skeleton(rootfs: &mut Rootfs) {
    rootfs.file(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        0o644,
    );
    rootfs.file(
        "/etc/group",
        "root:x:0:\nwww-data:x:33:\nnogroup:x:65534:\n",
        0o644,
    );
    rootfs.file(
        "/etc/nsswitch.conf",
        "passwd: files\ngroup: files\nhosts: files dns\n",
        0o644,
    );
    rootfs.symlink("/etc/os-release", "../usr/lib/os-release");
    rootfs.symlink("/usr/bin/sh", "dash");
    rootfs.file(
        "/etc/nginx/sites-enabled/default",
        "server {\n\tlisten 80 default_server;\n\troot /usr/share/nginx/html;\n\tindex index.html;\n\tserver_name _;\n\tlocation / {\n\t\ttry_files $uri $uri/ =404;\n\t}\n}\n",
        0o644,
    );
    rootfs.dir("/etc/nginx/modules-enabled", 0o755);
    rootfs.dir("/etc/nginx/conf.d", 0o755);
    rootfs.dir("/var/lib/nginx", 0o755);
    rootfs.symlink("/var/log/nginx/access.log", "/dev/stdout");
    rootfs.symlink("/var/log/nginx/error.log", "/dev/stderr");
    for dir in [
        "/run",
        "/root",
        "/var/www",
        "/proc",
        "/sys",
        "/dev",
        "/etc/ssl/certs",
    ] {
        rootfs.dir(dir, 0o755);
    }
    rootfs.dir("/tmp", 0o1777);
}

/// Adds a host folder tree (files, folders, symlinks) at `at`.
fn add_tree(rootfs: &mut Rootfs, host: &Path, at: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(host).map_err(Error::io("read", host))?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(host).map_err(Error::io("read", host))?;
        rootfs.insert(at, Entry::Symlink { target });
    } else if meta.is_dir() {
        rootfs.dir(at, 0o755);
        for entry in fs::read_dir(host)
            .map_err(Error::io("read", host))?
            .flatten()
        {
            add_tree(rootfs, &entry.path(), &at.join(entry.file_name()))?;
        }
    } else {
        add_host_file(rootfs, host, at)?;
    }
    Ok(())
}

fn ensure_pause(root: &Path) -> Result<BuiltImage, Error> {
    let cc = process::run("cc", ["--version"])?;
    let mut used = packages::versions(["gcc", "libc6-dev"])?;
    used.push(format!("cc={}", cc.lines().next().unwrap_or("")));
    used.push(sha256(PAUSE_C.as_bytes()));
    let key = cache_key(&used);
    let tag = format!("3.9-{}", &key[..12]);
    let dir = root.join(format!("pause-{}", &key[..16]));
    let note = format!(
        "pause image (docker.io/sa-replay/pause:{tag}) built locally: a static C program \
         (crates/node-local/src/images.rs) compiled with {}",
        used[..used.len() - 1].join(", ")
    );
    if let Some(found) = cached(&dir, "sa-replay/pause", &tag, &note)? {
        return Ok(found);
    }
    let scratch = root.join(format!("pause-build-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(Error::io("create", &scratch))?;
    let result = (|| {
        let src = scratch.join("pause.c");
        fs::write(&src, PAUSE_C).map_err(Error::io("write", &src))?;
        let bin = scratch.join("pause");
        process::run(
            "cc",
            [
                Path::new("-static"),
                Path::new("-Os"),
                Path::new("-s"),
                Path::new("-o"),
                &bin,
                &src,
            ],
        )?;
        let mut rootfs = Rootfs::default();
        add_host_file(&mut rootfs, &bin, Path::new("/pause"))?;
        let run = RunConfig {
            entrypoint: vec!["/pause".into()],
            labels: BTreeMap::from([("org.opencontainers.image.description".into(), note.clone())]),
            ..RunConfig::default()
        };
        store(&dir, "sa-replay/pause", &tag, &note, &rootfs, &run)
    })();
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn cache_key(used: &[String]) -> String {
    let text = format!("{RECIPE}\n{}", used.join("\n"));
    sha256(text.as_bytes())
        .trim_start_matches("sha256:")
        .to_string()
}

/// The image in `dir`, if a complete one is there.
fn cached(
    dir: &Path,
    repository: &str,
    tag: &str,
    note: &str,
) -> Result<Option<BuiltImage>, Error> {
    let Ok(manifest) = fs::read(dir.join("manifest.json")) else {
        return Ok(None);
    };
    let image = BuiltImage {
        repository: repository.into(),
        tag: tag.into(),
        dir: dir.into(),
        digest: sha256(&manifest),
        note: note.into(),
    };
    // Checks every blob against the manifest's digest.
    image.load()?;
    Ok(Some(image))
}

/// Writes the blobs into a scratch folder and renames it into place, so a crash never
/// leaves a half-written cache entry and two runs building at once both succeed.
fn store(
    dir: &Path,
    repository: &str,
    tag: &str,
    note: &str,
    rootfs: &Rootfs,
    run: &RunConfig,
) -> Result<BuiltImage, Error> {
    let image = Image::build(rootfs, run).map_err(Error::io("build the layer of", dir))?;
    let scratch = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&scratch);
    fs::create_dir_all(&scratch).map_err(Error::io("create", &scratch))?;
    for (name, data) in [
        ("layer.tar", &image.layer),
        ("config.json", &image.config),
        ("manifest.json", &image.manifest),
    ] {
        let path = scratch.join(name);
        fs::write(&path, data).map_err(Error::io("write", &path))?;
    }
    let note_path = scratch.join("NOTE");
    fs::write(&note_path, note).map_err(Error::io("write", &note_path))?;
    if fs::rename(&scratch, dir).is_err() {
        // Another run stored the same key first; theirs is as good.
        let _ = fs::remove_dir_all(&scratch);
    }
    Ok(BuiltImage {
        repository: repository.into(),
        tag: tag.into(),
        dir: dir.into(),
        digest: image.digest(),
        note: note.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ldd_output() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f94)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f94)\n";
        assert_eq!(
            parse_ldd("curl", out).unwrap(),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }

    #[test]
    fn a_missing_library_is_named() {
        let out = "\tlibpcre2-8.so.0 => not found\n";
        let err = parse_ldd("nginx", out).unwrap_err();
        assert!(err.to_string().contains("libpcre2-8.so.0"), "{err}");
    }

    #[test]
    fn a_cut_short_cached_layer_is_a_broken_cache_not_a_registry_error() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("entry");
        let mut rootfs = Rootfs::default();
        nginx_skeleton(&mut rootfs);
        store(
            &dir,
            "library/nginx",
            "latest",
            "",
            &rootfs,
            &RunConfig::default(),
        )
        .unwrap();
        assert!(cached(&dir, "library/nginx", "latest", "")
            .unwrap()
            .is_some());

        let layer = dir.join("layer.tar");
        let len = fs::metadata(&layer).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&layer)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let err = cached(&dir, "library/nginx", "latest", "").unwrap_err();
        assert!(matches!(err, Error::BrokenCache { .. }), "{err}");
        assert!(err.to_string().contains("delete that folder"), "{err}");
    }

    #[test]
    fn the_key_changes_with_any_version() {
        let a = cache_key(&["curl=7.88.1-10".into()]);
        let b = cache_key(&["curl=7.88.1-11".into()]);
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn nginx_skeleton_has_what_the_page_runs() {
        let mut r = Rootfs::default();
        nginx_skeleton(&mut r);
        assert!(matches!(r.get("/usr/bin/sh"), Some(Entry::Symlink { .. })));
        assert!(matches!(r.get("/tmp"), Some(Entry::Dir { mode: 0o1777 })));
        assert!(r.get("/etc/nginx/sites-enabled/default").is_some());
    }
}
