//! The page's notes: how long tokens live, and what revokes them.

use std::{io::Write as _, os::unix::fs::OpenOptionsExt, time::Duration};

use anyhow::Context;
use k8s_openapi::api::{
    authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
    core::v1::{Pod, Secret, ServiceAccount},
};
use kube::{
    api::{DeleteParams, PostParams},
    runtime::{conditions, wait::await_condition},
};
use report::Vantage;

use super::{Outcome, Replay};
use crate::{
    expect,
    jwt::Token,
    shell::{shown, Curl, Place},
    target::Target,
};

/// What the kubelet asks for when it fills kube-api-access-* (and what the API server
/// recognises as a kubelet request to extend).
const KUBELET_EXPIRATION_SECONDS: i64 = 3607;
/// Long enough for a deleted object to disappear and the 10 s token cache to expire.
const REVOCATION_TIMEOUT: Duration = Duration::from_secs(expect::TOKEN_CACHE_TTL_SECS + 50);

/// curl of the pod list from the host with `token`, which is read from an owner-only file so
/// it never appears in a command line.
async fn host_curl(r: &Replay, token: &Token) -> anyhow::Result<Curl> {
    let header = r.t.workdir.path().join("authorization");
    // Owner-only from its creation, not chmod-ed after the token is in it.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&header)?
        .write_all(format!("Authorization: Bearer {}", token.expose()).as_bytes())?;
    let place = Place::Host {
        secret_dir: r.host_secret_dir(),
    };
    let script = format!(
        "export CURL_CA_BUNDLE={}/ca.crt\ncurl -sS -w '\\n%{{http_code}}' -H @{} {}",
        place.secret_dir(),
        header.display(),
        place.pods_url(&r.t)
    );
    let raw = place.sh(&r.t, &script).await;
    std::fs::remove_file(&header)?;
    Ok(Curl::parse(&raw?))
}

/// Polls with `token` until the API server answers 401, for at most [`REVOCATION_TIMEOUT`].
async fn await_refusal(r: &Replay, token: &Token) -> anyhow::Result<(Curl, Duration)> {
    let started = tokio::time::Instant::now();
    loop {
        let curl = host_curl(r, token).await?;
        if curl.status == Some(401) || started.elapsed() >= REVOCATION_TIMEOUT {
            return Ok((curl, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn legacy_no_exp(r: &mut Replay) -> anyhow::Result<Outcome> {
    let token = r.legacy_token()?.clone();
    let claims = token.claims()?;
    let has_exp = claims.get("exp").is_some();
    let issuer = claims["iss"].as_str().unwrap_or_default().to_string();
    let curl = host_curl(r, &token).await?;
    let last_used =
        r.t.api::<Secret>()
            .get("sa-example-token")
            .await?
            .metadata
            .labels
            .and_then(|l| l.get("kubernetes.io/legacy-token-last-used").cloned());
    let mut outcome = Outcome::seen(
        Vantage::Host,
        format!(
            "claims: iss `{issuer}`, exp present: {has_exp}; still accepted: HTTP {}",
            shown(curl.status)
        ),
    )
    .truth(!has_exp, "a Secret-based token has no exp claim")
    .truth(
        curl.status == Some(200),
        "the token still works (RBAC allows list pods)",
    )
    .source(expect::LEGACY_TOKEN_SOURCE);
    if let Some(day) = last_used {
        outcome = outcome.note(format!(
            "the API server labelled the Secret kubernetes.io/legacy-token-last-used={day} when the token was used \
             (LegacyServiceAccountTokenTracking, KEP-2799): the prelude to cleaning up unused legacy tokens"
        ));
    }
    Ok(outcome)
}

pub async fn bound_short_lived(r: &mut Replay) -> anyhow::Result<Outcome> {
    let place = r.place()?;
    let (token, vantage, how) = match place {
        Place::Pod { .. } => {
            let raw = place.sh(&r.t, "cat /var/run/secrets/kubernetes.io/serviceaccount/token").await?;
            (Token::new(raw.stdout), Vantage::Pod, "read in the pod from kube-api-access-*".to_string())
        }
        Place::Host { .. } => (
            request_like_kubelet(r).await?,
            Vantage::Host,
            format!(
                "requested from the host with TokenRequest as the kubelet does ({KUBELET_EXPIRATION_SECONDS} s, bound to sa-pod): \
                 no kubelet runs to mount one"
            ),
        ),
    };
    let claims = token.claims()?;
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    let k8s = &claims["kubernetes.io"];
    let pod_name = k8s["pod"]["name"].as_str().unwrap_or_default().to_string();
    let warnafter = k8s["warnafter"].as_i64();
    let lifetime = iat.zip(exp).map(|(i, e)| e - i);
    r.bound_token = Some((token, vantage));
    Ok(Outcome::seen(
        vantage,
        format!(
            "token {how}: exp - iat = {} s, warnafter - iat = {} s, bound to pod `{pod_name}`",
            lifetime.map_or("?".into(), |l| l.to_string()),
            warnafter.zip(iat).map_or("none".into(), |(w, i)| (w - i).to_string()),
        ),
    )
    .truth(lifetime.is_some_and(|l| l > 0), "an exp claim after iat")
    .truth(pod_name == "sa-pod", "the kubernetes.io.pod claim names sa-pod")
    .note("the API server extends kubelet tokens (3607 s) to a year and marks 3607 s in warnafter, when --service-account-extend-token-expiration is on (its default)")
    .source(expect::BOUND_TOKEN_SOURCE))
}

/// Asks the TokenRequest API for a token bound to sa-pod, the way the kubelet fills the
/// projected volume.
async fn request_like_kubelet(r: &Replay) -> anyhow::Result<Token> {
    let uid = r.pod_uid.clone().context("sa-pod was never created")?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(KUBELET_EXPIRATION_SECONDS),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some("sa-pod".into()),
                uid: Some(uid),
            }),
        },
        ..Default::default()
    };
    let answer =
        r.t.api::<ServiceAccount>()
            .create_token_request("sa-example", &PostParams::default(), &request)
            .await
            .context("TokenRequest for sa-example bound to sa-pod")?;
    let token = answer
        .status
        .context("TokenRequest returned no status")?
        .token;
    Ok(Token::new(token))
}

pub async fn bound_pod_deleted(r: &mut Replay) -> anyhow::Result<Outcome> {
    let (token, vantage) = r
        .bound_token
        .clone()
        .context("no bound token (see bound-token-short-lived)")?;
    let before = host_curl(r, &token).await?;
    delete_and_wait::<Pod>(&r.t, "sa-pod").await?;
    let (after, waited) = await_refusal(r, &token).await?;
    Ok(Outcome::seen(
        vantage,
        format!(
            "the pod's token: HTTP {} while sa-pod exists; after it is deleted, HTTP {} (within {} s)",
            shown(before.status),
            shown(after.status),
            waited.as_secs()
        ),
    )
    .truth(after.status == Some(401), "401 once the pod the token is bound to is gone")
    .note("the request is made from the host: the pod is gone; the API server caches a token's success for up to 10 s")
    .source(expect::BOUND_TOKEN_SOURCE))
}

pub async fn legacy_secret_deleted(r: &mut Replay) -> anyhow::Result<Outcome> {
    let token = r.legacy_token()?.clone();
    delete_and_wait::<Secret>(&r.t, "sa-example-token").await?;
    let (after, waited) = await_refusal(r, &token).await?;
    Ok(Outcome::seen(
        Vantage::Host,
        format!(
            "after `sa-example-token` is deleted: HTTP {} (within {} s)",
            shown(after.status),
            waited.as_secs()
        ),
    )
    .truth(after.status == Some(401), "401 once the Secret is gone")
    .source(expect::LEGACY_TOKEN_SOURCE))
}

/// Deletes a namespaced object at once and waits until the API server no longer has it.
pub async fn delete_and_wait<K>(t: &Target, name: &str) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    <K as kube::Resource>::DynamicType: Default,
{
    let api = t.api::<K>();
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(());
    };
    let uid = obj.meta().uid.clone().unwrap_or_default();
    api.delete(
        name,
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    tokio::time::timeout(
        REVOCATION_TIMEOUT,
        await_condition(api, name, conditions::is_deleted(&uid)),
    )
    .await
    .with_context(|| format!("{name} was not deleted within {REVOCATION_TIMEOUT:?}"))??;
    Ok(())
}
