//! "Using a Service Account in a Pod", step 4: the API server from inside the pod.

use std::time::Duration;

use report::Vantage;

use super::{Outcome, Replay};
use crate::{
    expect,
    jwt::Token,
    shell::{shown, Curl, Place},
    text,
};

/// RBAC changes reach the authorizer through an informer: allow it a moment.
const RBAC_PROPAGATION: Duration = Duration::from_secs(20);

/// curl as the page runs it, with the HTTP status appended on a last line.
fn curl_line(url: &str, with_token: bool) -> String {
    let auth = if with_token {
        r#"-H "Authorization: Bearer $TOKEN" "#
    } else {
        ""
    };
    format!("curl -sS -w '\\n%{{http_code}}' {auth}{url}")
}

/// The page's lines 4.3 to 4.5, with `export` written so that it works.
fn with_ca_and_token(place: &Place, url: &str, with_token: bool) -> String {
    let dir = place.secret_dir();
    format!(
        "export CURL_CA_BUNDLE={dir}/ca.crt\nTOKEN=$(cat {dir}/token)\n{}",
        curl_line(url, with_token)
    )
}

pub async fn svc_kubernetes(r: &mut Replay) -> anyhow::Result<Outcome> {
    let out = r.t.kubectl(&["get", "svc"]).await?.ok()?;
    let kind = text::cell(&out.stdout, "kubernetes", "TYPE");
    let ip = text::cell(&out.stdout, "kubernetes", "CLUSTER-IP");
    let ports = text::cell(&out.stdout, "kubernetes", "PORT(S)");
    Ok(Outcome::seen(
        Vantage::Cluster,
        format!(
            "`kubectl get svc`: kubernetes {} {} {}",
            kind.as_deref().unwrap_or("?"),
            ip.as_deref().unwrap_or("?"),
            ports.as_deref().unwrap_or("?")
        ),
    )
    .truth(kind.as_deref() == Some("ClusterIP"), "a ClusterIP Service named kubernetes")
    .truth(ports.as_deref() == Some("443/TCP"), "port 443/TCP")
    .note("its ClusterIP is the first address of this cluster's service range; the page's 10.247.0.1 is its provider's"))
}

pub async fn no_ca(r: &mut Replay) -> anyhow::Result<Outcome> {
    let place = r.place()?;
    let url = place.pods_url(&r.t);
    let raw = place.sh(&r.t, &curl_line(&url, false)).await?;
    let curl = Curl::parse(&raw);
    Ok(Outcome::seen(
        place.vantage(),
        format!(
            "curl exit {}: {} ({})",
            shown(curl.exit),
            first_line(&curl.body),
            place.describe(&r.t)
        ),
    )
    .truth(
        curl.exit == Some(60),
        "curl exit 60: the cluster CA is in no default trust store",
    ))
}

pub async fn export_syntax(r: &mut Replay) -> anyhow::Result<Outcome> {
    let place = r.place()?;
    let dir = place.secret_dir();
    let printed = guide::PAGE_EXPORT_LINE.replace("/etc/secret-volume", &dir);
    let script = format!("{printed}\necho \"CURL_CA_BUNDLE=[$CURL_CA_BUNDLE]\"");
    let as_printed = place.sh(&r.t, &script).await?;
    let worked =
        as_printed.code == Some(0) && as_printed.stdout.contains(&format!("[{dir}/ca.crt]"));
    let fixed = format!(
        "export CURL_CA_BUNDLE={dir}/ca.crt\n{}",
        curl_line(&place.pods_url(&r.t), false)
    );
    let fixed_curl = Curl::parse(&place.sh(&r.t, &fixed).await?);
    Ok(Outcome::seen(
        place.vantage(),
        format!(
            "as printed, sh exits {}: {}; written `export CURL_CA_BUNDLE={dir}/ca.crt`, the next curl \
             trusts the API server (exit {}, HTTP {})",
            shown(as_printed.code),
            first_line(&as_printed.shown()),
            shown(fixed_curl.exit),
            shown(fixed_curl.status)
        ),
    )
    .truth(!worked, "POSIX sh rejects `export NAME = VALUE`")
    .truth(fixed_curl.exit == Some(0), "with CURL_CA_BUNDLE set, curl verifies the API server's certificate")
    .claim(
        worked,
        "the blanks around `=` make `=` an argument of export: the shell fails (a non-interactive sh exits) \
         and CURL_CA_BUNDLE stays unset, so the page's next curl fails as in 4.2; the line must read \
         `export CURL_CA_BUNDLE=/etc/secret-volume/ca.crt`",
    )
    .source(expect::EXPORT_SOURCE))
}

pub async fn token_shape(r: &mut Replay) -> anyhow::Result<Outcome> {
    let place = r.place()?;
    let token = match place {
        Place::Pod { .. } => {
            Token::new(place.sh(&r.t, "cat /etc/secret-volume/token").await?.stdout)
        }
        Place::Host { .. } => r.legacy_token()?.clone(),
    };
    let header = token.header()?;
    let alg = header["alg"].as_str().unwrap_or_default().to_string();
    let has_kid = header["kid"].as_str().is_some_and(|k| !k.is_empty());
    let page_prefix = token.expose().starts_with(guide::PAGE_TOKEN_PREFIX);
    Ok(Outcome::seen(
        place.vantage(),
        format!("`echo $TOKEN`: {token}; header alg {alg}, key id present: {has_kid}"),
    )
    .truth(
        alg == "RS256" && has_kid,
        "a JWT signed RS256 with a key id (the cluster's RSA signing key)",
    )
    .claim(
        page_prefix,
        format!(
            "the token does not begin like the page's {}",
            guide::PAGE_TOKEN_PREFIX
        ),
    ))
}

pub async fn token_no_rbac(r: &mut Replay) -> anyhow::Result<Outcome> {
    let place = r.place()?;
    let script = with_ca_and_token(place, &place.pods_url(&r.t), true);
    let curl = Curl::parse(&place.sh(&r.t, &script).await?);
    let message = curl.status_message().unwrap_or_default();
    let names_account = message.contains("\"system:serviceaccount:default:sa-example\"");
    let page_wording = message.contains("cannot get path");
    Ok(Outcome::seen(place.vantage(), format!("HTTP {}: {message}", shown(curl.status)))
        .truth(curl.status == Some(403), "403 Forbidden: the token authenticates but RBAC grants nothing")
        .truth(names_account, "the message names system:serviceaccount:default:sa-example")
        .claim(
            page_wording,
            format!(
                "the page quotes `{}`, the wording for non-resource URLs; a pod list is a resource request, \
                 refused as `cannot list resource \"pods\"`",
                guide::PAGE_FORBIDDEN_WORDING
            ),
        )
        .source(expect::FORBIDDEN_SOURCE))
}

pub async fn anonymous_denied(r: &mut Replay) -> anyhow::Result<Outcome> {
    let place = r.place()?;
    let script = with_ca_and_token(place, &place.pods_url(&r.t), false);
    let curl = Curl::parse(&place.sh(&r.t, &script).await?);
    let message = curl.status_message().unwrap_or_default();
    Ok(Outcome::seen(
        place.vantage(),
        format!("no token: HTTP {}: {message}", shown(curl.status)),
    )
    .truth(
        matches!(curl.status, Some(401 | 403)),
        "401 (anonymous auth off) or 403 for system:anonymous",
    ))
}

pub async fn token_rbac(r: &mut Replay) -> anyhow::Result<Outcome> {
    r.t.kubectl(&[
        "create",
        "role",
        "pod-reader",
        "--verb=list",
        "--resource=pods",
    ])
    .await?
    .ok()?;
    r.t.kubectl(&[
        "create",
        "rolebinding",
        "sa-example-pod-reader",
        "--role=pod-reader",
        "--serviceaccount=default:sa-example",
    ])
    .await?
    .ok()?;
    let place = r.place()?;
    let script = with_ca_and_token(place, &place.pods_url(&r.t), true);
    let deadline = tokio::time::Instant::now() + RBAC_PROPAGATION;
    let curl = loop {
        let curl = Curl::parse(&place.sh(&r.t, &script).await?);
        if curl.status == Some(200) || tokio::time::Instant::now() >= deadline {
            break curl;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let kind = curl.kind();
    Ok(Outcome::seen(
        place.vantage(),
        format!(
            "after Role pod-reader (list pods) bound to sa-example: HTTP {}, kind {}",
            shown(curl.status),
            kind.as_deref().unwrap_or("?")
        ),
    )
    .truth(
        curl.status == Some(200) && kind.as_deref() == Some("PodList"),
        "200 with kind PodList",
    )
    .note("the page gives no Role; this one grants exactly `list pods` in default"))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("").trim()
}
