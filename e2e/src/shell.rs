//! Where the page's in-pod commands run: in the pod (`vantage: pod`) when the cluster has a
//! node, else from the host against the API server with the same CA and token (`vantage: host`).

use std::{path::PathBuf, process::Stdio, time::Duration};

use anyhow::Context;
use report::Vantage;

use crate::{kubectl::Raw, target::Target};

/// The page's secret volume mount path in the pod.
pub const SECRET_VOLUME: &str = "/etc/secret-volume";

const SHELL_TIMEOUT: Duration = Duration::from_secs(60);

/// A place to run the page's shell lines from.
pub enum Place {
    /// `kubectl exec sa-pod -- sh -c ...`; the API server is the `kubernetes` Service.
    Pod { service_ip: String },
    /// `sh -c ...` on this machine; the secret volume is copied to `secret_dir`.
    Host { secret_dir: PathBuf },
}

impl Place {
    pub fn vantage(&self) -> Vantage {
        match self {
            Place::Pod { .. } => Vantage::Pod,
            Place::Host { .. } => Vantage::Host,
        }
    }

    /// Where `ca.crt`, `namespace` and `token` are, seen from this place.
    pub fn secret_dir(&self) -> String {
        match self {
            Place::Pod { .. } => SECRET_VOLUME.into(),
            Place::Host { secret_dir } => secret_dir.display().to_string(),
        }
    }

    /// The page's pod-list URL, with the API server address this place reaches.
    pub fn pods_url(&self, target: &Target) -> String {
        let path = "/api/v1/namespaces/default/pods";
        match self {
            Place::Pod { service_ip } => format!("https://{service_ip}:443{path}"),
            Place::Host { .. } => format!("{}{path}", target.server),
        }
    }

    /// How the report describes where the request went, next to the page's URL.
    pub fn describe(&self, target: &Target) -> String {
        match self {
            Place::Pod { service_ip } => format!(
                "in the pod, via the kubernetes Service {service_ip} (the page's 10.247.0.1 is its provider's service range)"
            ),
            Place::Host { .. } => format!(
                "from the host to {} with the Secret's ca.crt and token: the cluster has no node, so no pod runs",
                target.server
            ),
        }
    }

    /// Runs a POSIX shell script here. The environment is cleared (no stray `CURL_CA_BUNDLE`
    /// or proxy from the caller) except `PATH`.
    pub async fn sh(&self, target: &Target, script: &str) -> anyhow::Result<Raw> {
        match self {
            Place::Pod { .. } => {
                target
                    .kubectl_raw(
                        &[
                            "exec",
                            "sa-pod",
                            "-c",
                            "container-0",
                            "--",
                            "sh",
                            "-c",
                            script,
                        ],
                        None,
                    )
                    .await
            }
            Place::Host { .. } => {
                let child = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(script)
                    .env_clear()
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .current_dir(target.workdir.path())
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .context("running sh on the host (vantage: host needs sh and curl)")?;
                let output = tokio::time::timeout(SHELL_TIMEOUT, child.wait_with_output())
                    .await
                    .context("a shell line did not finish within a minute")??;
                Ok(Raw::from(output))
            }
        }
    }
}

/// An optional exit code or HTTP status as a reader expects it: `403`, or `none`.
pub fn shown<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// A curl of the page's kind, with `-w` appending the HTTP status on a last line.
pub struct Curl {
    pub exit: Option<i32>,
    pub status: Option<u16>,
    /// The response body (or curl's error), tokens shortened.
    pub body: String,
}

impl Curl {
    pub fn parse(raw: &Raw) -> Curl {
        let mut body = raw.stdout.trim_end().to_string();
        let mut status = None;
        if let Some(at) = body.rfind('\n') {
            status = body[at + 1..].trim().parse().ok();
            if status.is_some() {
                body.truncate(at);
            }
        } else if let Ok(code) = body.trim().parse() {
            status = Some(code);
            body.clear();
        }
        if body.trim().is_empty() {
            body = raw.stderr.trim().to_string();
        }
        Curl {
            exit: raw.code,
            status: status.filter(|s| *s != 0),
            body: report::redact(&body).into_owned(),
        }
    }

    /// The `message` of a Kubernetes Status body, if the body is one.
    pub fn status_message(&self) -> Option<String> {
        let json: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        json["message"].as_str().map(str::to_string)
    }

    pub fn kind(&self) -> Option<String> {
        let json: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        json["kind"].as_str().map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(stdout: &str, stderr: &str, code: i32) -> Raw {
        Raw {
            stdout: stdout.into(),
            stderr: stderr.into(),
            code: Some(code),
        }
    }

    #[test]
    fn parses_the_status_line_curl_appends() {
        let c = Curl::parse(&raw("{\"kind\":\"PodList\"}\n200", "", 0));
        assert_eq!(
            (c.exit, c.status, c.kind().as_deref()),
            (Some(0), Some(200), Some("PodList"))
        );
    }

    #[test]
    fn a_tls_failure_keeps_curls_error() {
        let c = Curl::parse(&raw(
            "000",
            "curl: (60) SSL certificate problem: unable to get local issuer certificate",
            60,
        ));
        assert_eq!((c.exit, c.status), (Some(60), None));
        assert!(c.body.contains("(60)"), "{}", c.body);
    }
}
