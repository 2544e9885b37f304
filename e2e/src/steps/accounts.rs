//! "Authentication and Service Accounts" and "Creating a Service Account", step 1.

use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::runtime::wait::await_condition;
use report::Vantage;

use super::{Outcome, Replay};
use crate::{expect, text};

/// Long enough for the tokens controller to add an auto-created Secret when it does
/// (it reacts to the ServiceAccount's creation within a second on an idle cluster).
const AUTO_SECRET_WINDOW: Duration = Duration::from_secs(10);

/// Waits, for at most [`AUTO_SECRET_WINDOW`], for `name` to list a Secret; returns whether
/// it did. When no Secret is expected, the window running out is the expected result.
async fn settle_auto_secret(r: &Replay, name: &str) -> anyhow::Result<bool> {
    let api = r.t.api::<ServiceAccount>();
    let has_secret = |sa: Option<&ServiceAccount>| {
        sa.and_then(|sa| sa.secrets.as_ref())
            .is_some_and(|s| !s.is_empty())
    };
    let waited =
        tokio::time::timeout(AUTO_SECRET_WINDOW, await_condition(api, name, has_secret)).await;
    Ok(matches!(waited, Ok(Ok(Some(_)))))
}

fn secrets_count(auto: bool) -> &'static str {
    if auto {
        "1"
    } else {
        "0"
    }
}

pub async fn default_listed(r: &mut Replay) -> anyhow::Result<Outcome> {
    let auto = expect::legacy_secrets_auto_created(&r.t);
    settle_auto_secret(r, "default").await?;
    let out = r.t.kubectl(&["get", "sa"]).await?.ok()?;
    let listed = text::has_row(&out.stdout, "default");
    let secrets = text::cell(&out.stdout, "default", "SECRETS");
    let shown = secrets
        .clone()
        .unwrap_or_else(|| "(no SECRETS column)".into());
    let expected = secrets_count(auto.value);
    Ok(Outcome::seen(Vantage::Cluster, format!("`kubectl get sa` lists default: {listed}; SECRETS {shown}"))
        .truth(listed, "the serviceaccount controller creates `default` in every namespace")
        .truth(secrets.as_deref() == Some(expected), format!("SECRETS {expected} for default"))
        .claim(
            secrets.as_deref() == Some("1"),
            format!(
                "the page's sample shows SECRETS 1, from a cluster whose default ServiceAccount got an \
                 auto-created token Secret; at this version and with these gates none is created, so SECRETS is {shown}"
            ),
        )
        .source(auto.source))
}

pub async fn default_token_secret(r: &mut Replay) -> anyhow::Result<Outcome> {
    let auto = expect::legacy_secrets_auto_created(&r.t);
    let page_auto = expect::page_says_auto_created(&r.t);
    let out = r.t.kubectl(&["describe", "sa", "default"]).await?.ok()?;
    sa_secrets_outcome(&out.stdout, "default", auto, page_auto)
}

pub async fn create(r: &mut Replay) -> anyhow::Result<Outcome> {
    let auto = expect::legacy_secrets_auto_created(&r.t);
    let page_auto = expect::page_says_auto_created(&r.t);
    let created =
        r.t.kubectl(&["create", "serviceaccount", "sa-example"])
            .await?
            .ok()?;
    let said = created.stdout.trim().to_string();
    settle_auto_secret(r, "sa-example").await?;
    let listing = r.t.kubectl(&["get", "sa"]).await?.ok()?;
    let secrets = text::cell(&listing.stdout, "sa-example", "SECRETS");
    let shown = secrets.clone().unwrap_or_else(|| "(not listed)".into());
    let sa = r.t.api::<ServiceAccount>().get("sa-example").await?;
    r.sa_uid = sa.metadata.uid;
    let expected = secrets_count(auto.value);
    Ok(Outcome::seen(Vantage::Cluster, format!("`{said}`; `kubectl get sa` lists sa-example with SECRETS {shown}"))
        .truth(said == "serviceaccount/sa-example created", "kubectl prints `serviceaccount/sa-example created`")
        .truth(secrets.as_deref() == Some(expected), format!("SECRETS {expected} for sa-example"))
        .claim(
            secrets.as_deref() == Some(secrets_count(page_auto)),
            format!(
                "the page ties auto-created Secrets to versions before v1.25 (so SECRETS {}), but they \
                 follow the LegacyServiceAccountTokenNoAutoGeneration gate, on by default from v1.24: here SECRETS {shown}",
                secrets_count(page_auto)
            ),
        )
        .source(auto.source))
}

pub async fn no_auto_secret(r: &mut Replay) -> anyhow::Result<Outcome> {
    let auto = expect::legacy_secrets_auto_created(&r.t);
    let page_auto = expect::page_says_auto_created(&r.t);
    let out = r.t.kubectl(&["describe", "sa", "sa-example"]).await?.ok()?;
    sa_secrets_outcome(&out.stdout, "sa-example", auto, page_auto)
}

/// `kubectl describe sa NAME`: Mountable secrets and Tokens name an auto-created
/// `NAME-token-*` Secret exactly when the tokens controller creates one.
fn sa_secrets_outcome(
    describe: &str,
    name: &str,
    auto: expect::Truth<bool>,
    page_auto: bool,
) -> anyhow::Result<Outcome> {
    let mountable = text::field(describe, "Mountable secrets").unwrap_or_default();
    let tokens = text::field(describe, "Tokens").unwrap_or_default();
    let prefix = format!("{name}-token-");
    let auto_seen = mountable.iter().any(|s| s.starts_with(&prefix))
        && tokens.iter().any(|s| s.starts_with(&prefix));
    let nothing_seen = mountable.is_empty() && tokens.is_empty();
    let observed = format!(
        "`kubectl describe sa {name}`: Mountable secrets: {}; Tokens: {}",
        text::list(&mountable),
        text::list(&tokens)
    );
    let expected = if auto.value {
        format!("an auto-created {prefix}* Secret in Mountable secrets and Tokens")
    } else {
        "Mountable secrets and Tokens both <none>".to_string()
    };
    let truth_ok = if auto.value { auto_seen } else { nothing_seen };
    let page_ok = if page_auto { auto_seen } else { nothing_seen };
    Ok(Outcome::seen(Vantage::Cluster, observed)
        .truth(truth_ok, expected)
        .claim(
            page_ok,
            if page_auto {
                "the page expects an auto-created token Secret before v1.25, but from v1.24 \
                 LegacyServiceAccountTokenNoAutoGeneration (beta, on by default) stops it unless the gate is set to false"
            } else {
                "the page expects no auto-created Secret from v1.25"
            },
        )
        .source(auto.source))
}
