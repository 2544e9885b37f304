//! OCI images from a list of files: one uncompressed layer tarball (deterministic: sorted
//! paths, owner root, mtime 0), the image config and the manifest, each with its digest.

use std::{
    collections::BTreeMap,
    path::{Component, Path, PathBuf},
};

use ring::digest;
use serde_json::json;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Uncompressed: the registry and containerd are on the same machine, so gzip would only
/// cost time; containerd 1.6 unpacks plain tar layers.
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// One entry of an image's file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: PathBuf },
}

/// An image's file system: absolute paths in the image to entries. Parents are added as
/// directories when an entry is inserted, so the tarball always lists a folder first.
#[derive(Debug, Default, Clone)]
pub struct Rootfs {
    entries: BTreeMap<PathBuf, Entry>,
}

impl Rootfs {
    pub fn insert(&mut self, path: impl AsRef<Path>, entry: Entry) {
        let path = normalise(path.as_ref());
        let mut parent = path.parent();
        while let Some(dir) = parent {
            if dir.as_os_str().is_empty() || dir == Path::new("/") {
                break;
            }
            self.entries
                .entry(dir.to_path_buf())
                .or_insert(Entry::Dir { mode: 0o755 });
            parent = dir.parent();
        }
        self.entries.insert(path, entry);
    }

    pub fn file(&mut self, path: impl AsRef<Path>, data: impl Into<Vec<u8>>, mode: u32) {
        self.insert(
            path,
            Entry::File {
                data: data.into(),
                mode,
            },
        );
    }

    pub fn symlink(&mut self, path: impl AsRef<Path>, target: impl Into<PathBuf>) {
        self.insert(
            path,
            Entry::Symlink {
                target: target.into(),
            },
        );
    }

    pub fn dir(&mut self, path: impl AsRef<Path>, mode: u32) {
        self.insert(path, Entry::Dir { mode });
    }

    pub fn get(&self, path: impl AsRef<Path>) -> Option<&Entry> {
        self.entries.get(&normalise(path.as_ref()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The layer: a tar stream of every entry, paths relative (`usr/bin/sh`).
    pub fn to_tar(&self) -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let rel = path.strip_prefix("/").unwrap_or(path);
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, rel, std::io::empty())?;
                }
                Entry::File { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, rel, data.as_slice())?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, rel, target)?;
                }
            }
        }
        builder.into_inner()
    }
}

/// `/a/./b` and `a/b` become `/a/b`.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        if let Component::Normal(part) = c {
            out.push(part);
        }
    }
    out
}

/// `sha256:<hex>` of some bytes.
pub fn sha256(data: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, data);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// What a container of the image runs.
#[derive(Debug, Clone, Default)]
pub struct RunConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub exposed_ports: Vec<String>,
    pub stop_signal: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// A built image: its three blobs, ready to push.
#[derive(Debug, Clone)]
pub struct Image {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl Image {
    pub fn build(rootfs: &Rootfs, run: &RunConfig) -> std::io::Result<Image> {
        let layer = rootfs.to_tar()?;
        let layer_digest = sha256(&layer);
        let ports: serde_json::Map<String, serde_json::Value> = run
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), json!({})))
            .collect();
        let mut conf = json!({
            "Env": run.env,
            "WorkingDir": "/",
            "Labels": run.labels,
        });
        if !run.entrypoint.is_empty() {
            conf["Entrypoint"] = json!(run.entrypoint);
        }
        if !run.cmd.is_empty() {
            conf["Cmd"] = json!(run.cmd);
        }
        if !ports.is_empty() {
            conf["ExposedPorts"] = json!(ports);
        }
        if let Some(sig) = &run.stop_signal {
            conf["StopSignal"] = json!(sig);
        }
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": conf,
            // The uncompressed layer's digest is also its diff id.
            "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
            "history": [{ "created_by": "node-local (crates/node-local/src/images.rs)" }],
        });
        let config = serde_json::to_vec(&config).expect("JSON serialises");
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": { "mediaType": CONFIG_TYPE, "digest": sha256(&config), "size": config.len() },
            "layers": [{ "mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer.len() }],
        });
        let manifest = serde_json::to_vec(&manifest).expect("JSON serialises");
        Ok(Image {
            layer,
            config,
            manifest,
        })
    }

    /// The digest a registry and containerd know the image by.
    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// Whether the config and the layer are the ones the manifest names by digest: a cut
    /// short or edited blob fails this before a registry refuses it with a bare 400.
    pub fn is_intact(&self) -> bool {
        let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&self.manifest) else {
            return false;
        };
        manifest["config"]["digest"] == sha256(&self.config).as_str()
            && manifest["layers"][0]["digest"] == sha256(&self.layer).as_str()
            && manifest["layers"].as_array().is_some_and(|l| l.len() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> Rootfs {
        let mut r = Rootfs::default();
        r.file("/usr/bin/hello", b"#!/bin/sh\necho hi\n".to_vec(), 0o755);
        r.symlink("/bin", "usr/bin");
        r.dir("/tmp", 0o1777);
        r
    }

    #[test]
    fn parents_come_first_and_paths_are_relative() {
        let tar = rootfs().to_tar().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["bin", "tmp", "usr", "usr/bin", "usr/bin/hello"]);
    }

    #[test]
    fn manifest_names_config_and_layer_by_digest() {
        let run = RunConfig {
            cmd: vec!["nginx".into(), "-g".into(), "daemon off;".into()],
            exposed_ports: vec!["80/tcp".into()],
            ..RunConfig::default()
        };
        let image = Image::build(&rootfs(), &run).unwrap();
        let m: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(m["mediaType"], MANIFEST_TYPE);
        assert_eq!(m["config"]["digest"], sha256(&image.config));
        assert_eq!(m["config"]["size"], image.config.len());
        assert_eq!(m["layers"][0]["digest"], sha256(&image.layer));
        assert_eq!(m["layers"][0]["mediaType"], LAYER_TYPE);
        let c: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(c["rootfs"]["diff_ids"][0], sha256(&image.layer));
        assert_eq!(c["config"]["Cmd"][2], "daemon off;");
        assert_eq!(c["config"]["ExposedPorts"]["80/tcp"], json!({}));
        assert!(image.is_intact());
        let mut cut_short = image.clone();
        cut_short.layer.truncate(cut_short.layer.len() / 2);
        assert!(!cut_short.is_intact());
        // Deterministic: the same files give the same digest.
        assert_eq!(
            image.digest(),
            Image::build(&rootfs(), &run).unwrap().digest()
        );
    }

    #[test]
    fn digests_are_sha256_hex() {
        assert_eq!(
            sha256(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
