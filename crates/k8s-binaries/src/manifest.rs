//! The cache manifest: the sha256 of every binary, recorded when it was built.
//!
//! Same layout as `sha256sum` output (`<hex>  bin/<name>`), so `sha256sum -c SHA256SUMS` in the
//! cache entry checks it by hand too. Lines starting with `#` record how the entry was built.

use std::{
    collections::BTreeMap,
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use crate::Error;

/// The manifest's file name inside a cache entry (`$CACHE/k8s/v1.29.2/`).
pub const MANIFEST_FILE: &str = "SHA256SUMS";

/// Parsed manifest: comments, then binary name to hex digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// `# key: value` lines, kept in order.
    pub notes: Vec<String>,
    /// Binary name (`kube-apiserver`) to lowercase hex sha256.
    pub digests: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses the text; `Err(line)` gives the first malformed line, 1-based.
    pub fn parse(text: &str) -> Result<Manifest, usize> {
        let mut manifest = Manifest::default();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if let Some(note) = line.strip_prefix('#') {
                manifest.notes.push(note.trim().to_string());
                continue;
            }
            let (digest, path) = line.split_once("  ").ok_or(index + 1)?;
            let name = path.strip_prefix("bin/").ok_or(index + 1)?;
            let valid_digest = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid_digest || name.is_empty() || name.contains('/') {
                return Err(index + 1);
            }
            manifest
                .digests
                .insert(name.to_string(), digest.to_ascii_lowercase());
        }
        Ok(manifest)
    }

    /// The text [`Manifest::parse`] reads.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for note in &self.notes {
            text.push_str(&format!("# {note}\n"));
        }
        for (name, digest) in &self.digests {
            text.push_str(&format!("{digest}  bin/{name}\n"));
        }
        text
    }

    /// Reads `dir/SHA256SUMS`; an absent file is an empty manifest (nothing built yet).
    pub fn load(dir: &Path) -> Result<Manifest, Error> {
        let path = dir.join(MANIFEST_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Manifest::parse(&text).map_err(|line| Error::MalformedManifest {
                path,
                line,
                dir: dir.to_path_buf(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Writes `dir/SHA256SUMS` through a temporary file and a rename, so that a crash never
    /// leaves half a manifest.
    pub fn store(&self, dir: &Path) -> Result<(), Error> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!(".{MANIFEST_FILE}.tmp-{}", std::process::id()));
        fs::write(&tmp, self.render()).map_err(Error::io(&tmp))?;
        fs::rename(&tmp, &path).map_err(Error::io(&path))
    }

    /// Checks `dir/bin/<name>` against the recorded digest.
    pub fn verify(&self, dir: &Path, name: &str) -> Result<PathBuf, Error> {
        let path = dir.join("bin").join(name);
        let expected = self
            .digests
            .get(name)
            .expect("verify is only called for binaries in the manifest");
        let actual = match sha256_file(&path) {
            Ok(hex) => hex,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                "missing".to_string()
            }
            Err(e) => return Err(e),
        };
        if &actual != expected {
            return Err(Error::CorruptCache {
                binary: name.to_string(),
                path,
                manifest: dir.join(MANIFEST_FILE),
                expected: expected.clone(),
                actual,
            });
        }
        Ok(path)
    }
}

/// Lowercase hex sha256 of a file. ring's digest is assembly even in debug builds, so hashing
/// the ~150 MB of a control plane on every start costs well under a second.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut file = fs::File::open(path).map_err(Error::io(path))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn round_trips_and_reads_sha256sum_format() {
        let text = format!("# gitCommit: abc\n{EMPTY_SHA}  bin/kubectl\n");
        let manifest = Manifest::parse(&text).unwrap();
        assert_eq!(manifest.digests["kubectl"], EMPTY_SHA);
        assert_eq!(manifest.notes, ["gitCommit: abc"]);
        assert_eq!(manifest.render(), text);
    }

    #[test]
    fn rejects_malformed_lines_with_their_number() {
        assert_eq!(Manifest::parse("# ok\nnot a line\n"), Err(2));
        assert_eq!(Manifest::parse(&format!("{EMPTY_SHA}  kubectl\n")), Err(1));
        assert_eq!(Manifest::parse("abc  bin/kubectl\n"), Err(1));
    }

    #[test]
    fn hashes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        fs::write(&path, b"").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), EMPTY_SHA);
    }

    #[test]
    fn a_truncated_binary_is_reported_with_the_folder_to_delete() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("bin")).unwrap();
        fs::write(dir.path().join("bin/kubectl"), b"half a binary").unwrap();
        let manifest = Manifest {
            notes: vec![],
            digests: BTreeMap::from([("kubectl".to_string(), EMPTY_SHA.to_string())]),
        };
        let err = manifest
            .verify(dir.path(), "kubectl")
            .unwrap_err()
            .to_string();
        assert!(err.contains("corrupt or incomplete"), "{err}");
        assert!(
            err.contains(&format!("delete {}", dir.path().display())),
            "{err}"
        );
    }

    #[test]
    fn a_missing_binary_is_reported_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            notes: vec![],
            digests: BTreeMap::from([("kubectl".to_string(), EMPTY_SHA.to_string())]),
        };
        let err = manifest
            .verify(dir.path(), "kubectl")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sha256 missing"), "{err}");
    }

    #[test]
    fn store_then_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Manifest::default());
        let manifest = Manifest {
            notes: vec!["go: go1.26.8".into()],
            digests: BTreeMap::from([("kubectl".to_string(), EMPTY_SHA.to_string())]),
        };
        manifest.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), manifest);
    }
}
