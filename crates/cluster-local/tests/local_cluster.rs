//! Real local clusters at both pinned versions. Ignored by `cargo test` (they need the built
//! Kubernetes binaries and take tens of seconds each); `cargo xtask cluster test` runs them.
//! The hermetic tests at the end run everywhere.

use std::{collections::BTreeMap, net::TcpListener, path::Path, process::Command, time::Duration};

use cluster_local::{ControlPlaneBinaries, Error, LocalCluster, LocalSpec, PortRequest};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Secret, Service, ServiceAccount},
    ByteString,
};
use kube::{
    api::{ObjectMeta, PostParams},
    Api,
};
use pins::KubePin;

fn pin(minor: &str) -> &'static KubePin {
    KubePin::find(minor).unwrap()
}

/// Shortens a token for output: the project never prints a whole one.
fn short(token: &str) -> String {
    format!("{}...", &token[..token.len().min(13)])
}

/// What the guide's first steps need from any cluster, checked on one version.
async fn serves_the_guide_basics(minor: &str, gates: &[(&str, bool)]) {
    let mut spec = LocalSpec::new(pin(minor));
    spec.feature_gates = gates.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let cluster = LocalCluster::start(spec).await.unwrap();
    let info = cluster.info();
    assert_eq!(info.kubernetes, pin(minor).version);
    assert!(!info.has_node);
    let client = cluster.client().await.unwrap();

    // /version reports the pinned release: the ldflags reached the binary.
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, pin(minor).version, "{version:?}");

    // The kubeconfig works for the built kubectl too, which is at the same version.
    let out = Command::new(&info.kubectl)
        .arg("--kubeconfig")
        .arg(&info.kubeconfig)
        .args(["get", "serviceaccount", "default", "-o", "name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "serviceaccount/default"
    );

    // The `kubernetes` Service (svc-kubernetes).
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = services.get("kubernetes").await.unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    assert_eq!(spec.ports.unwrap()[0].port, 443);

    // The root-ca publisher (KEP-1205, on by default since v1.20).
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let root_ca = kube::runtime::wait::await_condition(
        config_maps,
        "kube-root-ca.crt",
        |cm: Option<&ConfigMap>| cm.is_some(),
    );
    tokio::time::timeout(Duration::from_secs(60), root_ca)
        .await
        .expect("kube-root-ca.crt within 60s")
        .unwrap();

    // secret-create / secret-populated: the tokens controller fills a manual token Secret.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa = accounts
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("sa-example".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("sa-example-token".into()),
                    annotations: Some(BTreeMap::from([(
                        "kubernetes.io/service-account.name".to_string(),
                        "sa-example".to_string(),
                    )])),
                    ..Default::default()
                },
                type_: Some("kubernetes.io/service-account-token".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let filled =
        kube::runtime::wait::await_condition(secrets, "sa-example-token", |s: Option<&Secret>| {
            s.and_then(|s| s.data.as_ref())
                .is_some_and(|d| d.contains_key("token"))
        });
    let secret = tokio::time::timeout(Duration::from_secs(60), filled)
        .await
        .expect("token Secret filled within 60s")
        .unwrap()
        .unwrap();
    let data = secret.data.unwrap();
    let keys: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(keys, ["ca.crt", "namespace", "token"]);
    assert_eq!(data["namespace"], ByteString(b"default".to_vec()));
    let token = String::from_utf8(data["token"].0.clone()).unwrap();
    assert!(token.starts_with("eyJ"), "token {}", short(&token));
    let uid = secret.metadata.annotations.unwrap()["kubernetes.io/service-account.uid"].clone();
    assert_eq!(Some(uid), sa.metadata.uid);

    // Down leaves nothing behind.
    let pids = cluster.pids();
    let ports = cluster.ports();
    let state_dir = cluster.state_dir().to_path_buf();
    assert_eq!(pids.len(), 3);
    cluster.stop();
    assert_nothing_left(&pids, &[ports.apiserver, ports.etcd_client], &state_dir);
}

fn assert_nothing_left(pids: &[u32], ports: &[u16], state_dir: &Path) {
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} still exists"
        );
    }
    for port in ports {
        TcpListener::bind(("127.0.0.1", *port))
            .unwrap_or_else(|e| panic!("port {port} still taken: {e}"));
    }
    assert!(!state_dir.exists(), "{} left behind", state_dir.display());
}

#[tokio::test]
#[ignore = "needs built Kubernetes binaries: run cargo xtask cluster test"]
async fn v1_29_serves_the_guide_basics() {
    serves_the_guide_basics("1.29", &[]).await;
}

#[tokio::test]
#[ignore = "needs built Kubernetes binaries: run cargo xtask cluster test"]
async fn v1_24_serves_the_guide_basics() {
    serves_the_guide_basics("1.24", &[]).await;
}

/// v1.24 with the legacy auto-generation back on, as users replaying the pre-1.24 guide
/// want: the tokens controller then makes `default-token-*` for `default` (KEP-2799; the
/// gate is beta and on by default in v1.24, CHANGELOG-1.24 "LegacyServiceAccountTokenNoAutoGeneration").
#[tokio::test]
#[ignore = "needs built Kubernetes binaries: run cargo xtask cluster test"]
async fn v1_24_with_auto_generation_makes_default_token_secret() {
    let mut spec = LocalSpec::new(pin("1.24"));
    spec.feature_gates = BTreeMap::from([(
        "LegacyServiceAccountTokenNoAutoGeneration".to_string(),
        false,
    )]);
    let cluster = LocalCluster::start(spec).await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client().await.unwrap(), "default");
    let has_secret =
        kube::runtime::wait::await_condition(accounts, "default", |sa: Option<&ServiceAccount>| {
            sa.and_then(|sa| sa.secrets.as_ref())
                .is_some_and(|s| !s.is_empty())
        });
    let sa = tokio::time::timeout(Duration::from_secs(60), has_secret)
        .await
        .expect("default SA gets a token secret within 60s")
        .unwrap()
        .unwrap();
    let name = sa.secrets.unwrap()[0].name.clone().unwrap();
    assert!(name.starts_with("default-token-"), "{name}");
}

#[tokio::test]
#[ignore = "needs built Kubernetes binaries: run cargo xtask cluster test"]
async fn both_versions_run_at_the_same_time() {
    let (a, b) = tokio::join!(
        LocalCluster::start(LocalSpec::new(pin("1.24"))),
        LocalCluster::start(LocalSpec::new(pin("1.29"))),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    for cluster in [&a, &b] {
        let version = cluster
            .client()
            .await
            .unwrap()
            .apiserver_version()
            .await
            .unwrap();
        assert_eq!(version.git_version, cluster.info().kubernetes);
    }
}

#[tokio::test]
#[ignore = "needs built Kubernetes binaries: run cargo xtask cluster test"]
async fn an_unknown_feature_gate_is_a_clear_error_and_leaves_nothing() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("cluster");
    let mut spec = LocalSpec::new(pin("1.29"));
    spec.state_dir = Some(state_dir.clone());
    spec.feature_gates = BTreeMap::from([("NoSuchGateAnywhere".to_string(), true)]);
    let err = LocalCluster::start(spec).await.unwrap_err();
    match &err {
        Error::UnknownFeatureGate {
            gate, component, ..
        } => {
            assert_eq!(gate, "NoSuchGateAnywhere");
            assert_eq!(component, "kube-apiserver");
        }
        other => panic!("expected UnknownFeatureGate, got {other}"),
    }
    assert!(!state_dir.exists(), "state dir left behind");
}

// Hermetic: no binaries are run.

fn fake_binaries() -> ControlPlaneBinaries {
    ControlPlaneBinaries {
        etcd: "/bin/false".into(),
        kube_apiserver: "/bin/false".into(),
        kube_controller_manager: "/bin/false".into(),
        kubectl: "/bin/false".into(),
        etcd_note: "etcd given by the test".into(),
    }
}

#[tokio::test]
async fn an_explicit_port_in_use_is_a_clear_error_and_leaves_nothing() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("cluster");
    let mut spec = LocalSpec::new(pin("1.29"));
    spec.binaries = Some(fake_binaries());
    spec.state_dir = Some(state_dir.clone());
    spec.ports = PortRequest {
        apiserver: Some(port),
        ..PortRequest::default()
    };
    let err = LocalCluster::start(spec).await.unwrap_err();
    assert!(
        matches!(err, Error::PortTaken { port: p, .. } if p == port),
        "{err}"
    );
    assert!(!state_dir.exists(), "state dir left behind");
}

#[tokio::test]
async fn a_component_that_dies_at_start_is_reported_with_its_log_and_cleaned_up() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("cluster");
    let mut spec = LocalSpec::new(pin("1.29"));
    spec.binaries = Some(fake_binaries());
    spec.state_dir = Some(state_dir.clone());
    let err = LocalCluster::start(spec).await.unwrap_err();
    assert!(
        matches!(&err, Error::ComponentExited { component, .. } if component == "etcd"),
        "{err}"
    );
    assert!(err.to_string().contains("exit code 1"), "{err}");
    assert!(!state_dir.exists(), "state dir left behind");
}

/// The path `cargo xtask e2e --provider local` takes: the shared lifecycle creates the cluster,
/// hands its info to the suites, exports its logs and deletes it.
#[test]
#[ignore = "needs built Kubernetes binaries: run cargo xtask cluster test"]
fn the_lifecycle_runs_suites_exports_logs_and_deletes() {
    use cluster::lifecycle::{run_with, RunOptions};
    let report = tempfile::tempdir().unwrap();
    let opts = RunOptions::new(report.path(), false);
    let provider = cluster_local::LocalProvider::new(pin("1.29"), BTreeMap::new(), false);
    let mut seen = Vec::new();
    let outcome = run_with(
        vec![provider],
        &opts,
        |_| {},
        |infos| {
            seen = infos.to_vec();
            Ok(())
        },
    );
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].kubernetes, "v1.29.2");
    let logs = opts.logs_dir.join("local-1.29");
    for log in [
        "etcd.log",
        "kube-apiserver.log",
        "kube-controller-manager.log",
    ] {
        assert!(logs.join(log).is_file(), "{log} not exported");
    }
    assert!(!seen[0].kubeconfig.exists(), "state dir left behind");
}
