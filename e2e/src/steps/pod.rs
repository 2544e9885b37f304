//! "Using a Service Account in a Pod", steps 1 to 3: the page's pod and its mounts.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::runtime::{conditions, wait::await_condition};
use report::Vantage;

use super::{Outcome, Replay};
use crate::{expect, shell::Place, text};

/// Time for the node to pull `nginx:latest` and start it.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(180);

fn no_node_reason(r: &Replay) -> String {
    format!(
        "the {} cluster has no node (no kubelet), so sa-pod is never scheduled and stays Pending",
        r.t.info.provider
    )
}

pub async fn create(r: &mut Replay) -> anyhow::Result<Outcome> {
    let manifest = guide::pod_manifest();
    let parsed: Pod = serde_yaml::from_str(manifest).context("parsing the page's sa-pod.yaml")?;
    let file = r.t.workdir.path().join("sa-pod.yaml");
    std::fs::write(&file, manifest)?;
    let out =
        r.t.kubectl(&["create", "-f", &file.display().to_string()])
            .await?
            .ok()?;
    let said = out.stdout.trim().to_string();
    let pod = r.t.api::<Pod>().get("sa-pod").await?;
    r.pod_uid = pod.metadata.uid.clone();
    let wanted = parsed
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone());
    let got = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone());
    let pull_secret_exists =
        r.t.api::<Secret>()
            .get_opt("default-secret")
            .await?
            .is_some();
    let mut outcome = Outcome::seen(
        Vantage::Cluster,
        format!(
            "`{said}` from the page's manifest, unchanged; serviceAccountName {}",
            got.as_deref().unwrap_or("<none>")
        ),
    )
    .truth(
        said == "pod/sa-pod created",
        "kubectl prints `pod/sa-pod created`",
    )
    .truth(got == wanted, "the pod keeps serviceAccountName sa-example");
    if !pull_secret_exists {
        outcome = outcome.note(
            "the manifest's imagePullSecrets names default-secret, which only the page's provider (CCE) creates; \
             it is absent here. The API server does not check it (only the kubelet reads it, to pull), and \
             nginx:latest needs no credentials, so it does not matter",
        );
    }
    Ok(outcome)
}

pub async fn mounts_declared(r: &mut Replay) -> anyhow::Result<Outcome> {
    let out = r.t.kubectl(&["describe", "pod", "sa-pod"]).await?.ok()?;
    let mounts: Vec<String> = out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/') && l.contains(" from "))
        .map(str::to_string)
        .collect();
    let secret_mount = mounts
        .iter()
        .any(|m| m == "/etc/secret-volume from secret-volume (ro)");
    let projected = mounts.iter().any(|m| {
        m.starts_with("/var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-")
            && m.ends_with("(ro)")
    });
    let pod = r.t.api::<Pod>().get("sa-pod").await?;
    let projected_volume = pod
        .spec
        .and_then(|s| s.volumes)
        .unwrap_or_default()
        .into_iter()
        .any(|v| v.name.starts_with("kube-api-access-") && v.projected.is_some());
    Ok(Outcome::seen(Vantage::Cluster, format!("`kubectl describe pod sa-pod` Mounts: {}", mounts.join("; ")))
        .truth(secret_mount, "/etc/secret-volume from secret-volume (ro)")
        .truth(
            projected && projected_volume,
            "/var/run/secrets/kubernetes.io/serviceaccount from a projected kube-api-access-* volume (ro)",
        )
        .source(expect::ADMISSION_SOURCE))
}

pub async fn running(r: &mut Replay) -> anyhow::Result<Outcome> {
    if !r.t.info.has_node {
        r.place = Some(Place::Host {
            secret_dir: r.host_secret_dir(),
        });
        return Ok(Outcome::skipped(no_node_reason(r)));
    }
    let api = r.t.api::<Pod>();
    let waited = tokio::time::timeout(
        RUNNING_TIMEOUT,
        await_condition(api, "sa-pod", conditions::is_pod_running()),
    )
    .await;
    let listing = r.t.kubectl(&["get", "pod", "sa-pod"]).await?.ok()?;
    let status = text::cell(&listing.stdout, "sa-pod", "STATUS").unwrap_or_default();
    let ready = text::cell(&listing.stdout, "sa-pod", "READY").unwrap_or_default();
    let running = matches!(waited, Ok(Ok(_))) && status == "Running";
    if running {
        let svc = r.t.api::<Service>().get("kubernetes").await?;
        let service_ip = svc
            .spec
            .and_then(|s| s.cluster_ip)
            .context("the kubernetes Service has no ClusterIP")?;
        r.place = Some(Place::Pod { service_ip });
    }
    Ok(Outcome::seen(Vantage::Cluster, format!("`kubectl get pod`: sa-pod READY {ready} STATUS {status}"))
        .truth(running, format!("sa-pod Running within {RUNNING_TIMEOUT:?}"))
        .note("the page's `kubectl describe pod` sample shows the same pod Waiting in ImagePullBackOff, contradicting its Running listing"))
}

pub async fn secret_files(r: &mut Replay) -> anyhow::Result<Outcome> {
    if !r.t.info.has_node {
        return Ok(Outcome::skipped(format!(
            "{}: no container to exec into",
            no_node_reason(r)
        )));
    }
    let place = r.place()?;
    let listed = place.sh(&r.t, "cd /etc/secret-volume && ls").await?;
    let names: Vec<&str> = listed.stdout.split_whitespace().collect();
    let secret = r.t.api::<Secret>().get("sa-example-token").await?;
    let data = secret.data.unwrap_or_default();
    let mut same = Vec::new();
    for name in ["ca.crt", "namespace", "token"] {
        let file = place
            .sh(&r.t, &format!("cat /etc/secret-volume/{name}"))
            .await?;
        let equal = data
            .get(name)
            .is_some_and(|v| v.0 == file.stdout.as_bytes());
        same.push((name, equal));
    }
    let all_same = same.iter().all(|(_, eq)| *eq);
    Ok(Outcome::seen(
        Vantage::Pod,
        format!(
            "`ls /etc/secret-volume`: {}; contents equal the Secret's data: {same:?}",
            names.join(" ")
        ),
    )
    .truth(
        names == ["ca.crt", "namespace", "token"],
        "ca.crt namespace token",
    )
    .truth(all_same, "each file equal to the Secret's data"))
}
