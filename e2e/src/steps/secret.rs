//! "Creating a Service Account", steps 2 to 4: the manually created token Secret.

use std::{os::unix::fs::PermissionsExt, time::Duration};

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::wait::await_condition;
use report::Vantage;

use super::{Outcome, Replay};
use crate::{expect, jwt::Token, text};

/// The tokens controller fills the Secret within seconds; a minute means it is not running.
const FILL_TIMEOUT: Duration = Duration::from_secs(60);
const DATA_KEYS: [&str; 3] = ["ca.crt", "namespace", "token"];

pub async fn create(r: &mut Replay) -> anyhow::Result<Outcome> {
    let manifest = guide::secret_manifest();
    let parsed: Secret =
        serde_yaml::from_str(manifest).context("parsing the page's Secret manifest")?;
    let out =
        r.t.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest))
            .await?
            .ok()?;
    let said = out.stdout.trim().to_string();
    let stored = r.t.api::<Secret>().get("sa-example-token").await?;
    let same_type = stored.type_ == parsed.type_;
    Ok(Outcome::seen(
        Vantage::Cluster,
        format!(
            "`kubectl apply -f -` with the page's manifest: `{said}`; type {}",
            stored.type_.unwrap_or_default()
        ),
    )
    .truth(
        said == "secret/sa-example-token created",
        "kubectl prints `secret/sa-example-token created`",
    )
    .truth(
        same_type,
        "the Secret keeps the manifest's type kubernetes.io/service-account-token",
    ))
}

pub async fn populated(r: &mut Replay) -> anyhow::Result<Outcome> {
    let api = r.t.api::<Secret>();
    let filled = |s: Option<&Secret>| {
        s.and_then(|s| s.data.as_ref())
            .is_some_and(|d| DATA_KEYS.iter().all(|k| d.contains_key(*k)))
    };
    tokio::time::timeout(
        FILL_TIMEOUT,
        await_condition(api.clone(), "sa-example-token", filled),
    )
    .await
    .context("the tokens controller did not fill sa-example-token within a minute")??;
    let secret = api.get("sa-example-token").await?;
    let data = secret.data.clone().unwrap_or_default();
    let bytes = |k: &str| data.get(k).map(|v| v.0.clone()).unwrap_or_default();
    let namespace = String::from_utf8_lossy(&bytes("namespace")).into_owned();
    let token = Token::new(String::from_utf8(bytes("token")).context("the token is not UTF-8")?);
    let annotated_uid = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubernetes.io/service-account.uid"))
        .cloned();
    write_host_secret_volume(r, &bytes("ca.crt"), &namespace, &token)?;
    r.legacy_token = Some(token.clone());

    let listing = r.t.kubectl(&["get", "secrets"]).await?.ok()?;
    let data_column = text::cell(&listing.stdout, "sa-example-token", "DATA");
    let describe =
        r.t.kubectl(&["describe", "secret", "sa-example-token"])
            .await?
            .ok()?;
    let described: Vec<_> = DATA_KEYS
        .iter()
        .filter(|k| {
            describe
                .stdout
                .lines()
                .any(|l| l.starts_with(&format!("{k}:")))
        })
        .collect();
    let page_only: Vec<_> = ["default-secret", "paas.elb"]
        .into_iter()
        .filter(|n| !text::has_row(&listing.stdout, n))
        .collect();

    let uid_matches = annotated_uid.is_some() && annotated_uid == r.sa_uid;
    let observed = format!(
        "`kubectl get secrets`: sa-example-token DATA {}; `kubectl describe secret` shows {:?}; \
         ca.crt {} bytes, namespace `{namespace}` ({} bytes), token {token}; service-account.uid {} the SA's uid",
        data_column.as_deref().unwrap_or("?"),
        described,
        bytes("ca.crt").len(),
        namespace.len(),
        if uid_matches { "equals" } else { "differs from" },
    );
    let mut outcome = Outcome::seen(Vantage::Cluster, observed)
        .truth(data_column.as_deref() == Some("3"), "DATA 3")
        .truth(
            described.len() == 3,
            "describe lists ca.crt, namespace and token",
        )
        .truth(namespace == "default", "namespace `default`")
        .truth(
            uid_matches,
            "the kubernetes.io/service-account.uid annotation equals sa-example's uid",
        )
        .source(expect::TOKENS_CONTROLLER_SOURCE);
    if !page_only.is_empty() {
        outcome = outcome.note(format!(
            "the page's listing also shows {page_only:?}, Secrets of its provider (CCE), absent here; they play no part in the procedure"
        ));
    }
    Ok(outcome)
}

/// Copies the Secret's files where host-side lines read them, as the pod would see them
/// in `/etc/secret-volume` (owner-only: it holds a token).
fn write_host_secret_volume(
    r: &Replay,
    ca: &[u8],
    namespace: &str,
    token: &Token,
) -> anyhow::Result<()> {
    let dir = r.host_secret_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::write(dir.join("ca.crt"), ca)?;
    std::fs::write(dir.join("namespace"), namespace)?;
    std::fs::write(dir.join("token"), token.expose())?;
    Ok(())
}

pub async fn tokens_listed(r: &mut Replay) -> anyhow::Result<Outcome> {
    let out = r.t.kubectl(&["describe", "sa", "sa-example"]).await?.ok()?;
    let tokens = text::field(&out.stdout, "Tokens").unwrap_or_default();
    let mountable = text::field(&out.stdout, "Mountable secrets").unwrap_or_default();
    let listed = tokens.iter().any(|t| t == "sa-example-token");
    let observed = format!(
        "`kubectl describe sa sa-example`: Mountable secrets: {}; Tokens: {}",
        text::list(&mountable),
        text::list(&tokens)
    );
    let auto = expect::legacy_secrets_auto_created(&r.t);
    let mut outcome = Outcome::seen(Vantage::Cluster, observed).truth(
        listed,
        "Tokens lists sa-example-token: kubectl shows every token Secret annotated for the account",
    );
    if auto.value {
        outcome = outcome
            .claim(mountable.is_empty(), "an auto-created sa-example-token-* Secret is also listed, since this cluster still auto-creates them")
            .source(auto.source);
    }
    Ok(outcome)
}
