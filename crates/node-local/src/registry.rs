//! The run's image registry: Debian's `docker-registry` (distribution v2) on 127.0.0.1, and a
//! small push client for the OCI distribution API (blob upload, then the manifest).
//!
//! Pushing is done here in Rust with ureq rather than with a Go tool such as crane: it is
//! four HTTP requests on loopback, ureq is a small, well-kept client built without TLS, and
//! it spares a Go build on a machine that already builds Kubernetes in the background.

use std::{net::TcpListener, time::Duration};

use crate::{images::BuiltImage, oci, Error};

/// A free port on 127.0.0.1 (the OS picks; a race with another binder is possible but the
/// registry then fails at once and says so).
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::io("bind", "127.0.0.1:0"))?;
    let port = listener
        .local_addr()
        .map_err(Error::io("read the address of", "127.0.0.1:0"))?
        .port();
    Ok(port)
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        // Never follow a redirect elsewhere: the registry is the only host we talk to.
        .redirects(0)
        .build()
}

/// Whether the registry answers `GET /v2/`.
pub fn answers(addr: &str) -> bool {
    agent()
        .get(&format!("http://{addr}/v2/"))
        .timeout(Duration::from_secs(2))
        .call()
        .is_ok()
}

/// Pushes an image's blobs and manifest under its repository and tag.
pub fn push(addr: &str, image: &BuiltImage) -> Result<(), Error> {
    let blobs = image.load()?;
    let agent = agent();
    let base = format!("http://{addr}/v2/{}", image.repository);
    let what = |w: &str| format!("{} {w}", image.reference());
    for blob in [&blobs.layer, &blobs.config] {
        let digest = oci::sha256(blob);
        if agent.head(&format!("{base}/blobs/{digest}")).call().is_ok() {
            continue;
        }
        let started = agent
            .post(&format!("{base}/blobs/uploads/"))
            .send_bytes(&[])
            .map_err(|e| Error::Push {
                what: what("blob upload"),
                source: Box::new(e),
            })?;
        let location = started.header("Location").ok_or_else(|| Error::Registry {
            what: what("blob upload"),
            detail: "no Location header".into(),
        })?;
        // The Location may be relative; it must stay on our registry either way.
        let url = if location.starts_with('/') {
            format!("http://{addr}{location}")
        } else if location.starts_with(&format!("http://{addr}/")) {
            location.to_string()
        } else {
            return Err(Error::Registry {
                what: what("blob upload"),
                detail: format!("Location {location} is not on {addr}"),
            });
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        agent
            .put(&format!("{url}{sep}digest={digest}"))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(blob)
            .map_err(|e| Error::Push {
                what: what(&format!("blob {digest}")),
                source: Box::new(e),
            })?;
    }
    agent
        .put(&format!("{base}/manifests/{}", image.tag))
        .set("Content-Type", oci::MANIFEST_TYPE)
        .send_bytes(&blobs.manifest)
        .map_err(|e| Error::Push {
            what: what("manifest"),
            source: Box::new(e),
        })?;
    Ok(())
}
