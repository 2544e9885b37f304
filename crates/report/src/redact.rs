//! Shortens service-account tokens in free text to the page's own form, `eyJhbGciOiJSU...`.
//!
//! The replay prints real tokens (the page's `cat token`, `kubectl describe secret`), and the
//! report is uploaded as a CI artifact, so no full token may reach it. A hand-written scanner
//! stands in for a regex: the pattern has no backtracking (segments cannot contain dots), and
//! it saves the crate a dependency that would cost every build more than this file does.

use std::borrow::Cow;

/// How many characters of a token the report keeps: the page shows 13 (`eyJhbGciOiJSU`), all of
/// them from the JWT header, which is not secret.
const KEPT: usize = 13;

/// The shortest run of base64url characters accepted after `eyJ` (header and payload) and as
/// the signature: `eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`.
const MIN_SEGMENT: usize = 10;

/// `kubectl get secret -o yaml` shows the token base64-encoded once more, and the base64 of
/// `eyJ` is `ZXlK`. A real token encoded this way is hundreds of characters long; 60 keeps
/// ordinary base64 (a `ca.crt` starts with `LS0t`, a namespace is short) out of the net.
const ENCODED_PREFIX: &str = "ZXlK";
const MIN_ENCODED: usize = 60;

/// Replaces every JWT in `text` with [`shorten_token`] of it. Also catches a JWT that was
/// base64-encoded once more (a Secret's `data.token`). Borrows when there is nothing to hide.
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    // `copied` is where the text not yet copied to `out` starts.
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let end = if bytes[at..].starts_with(b"eyJ") {
            jwt_end(bytes, at)
        } else if bytes[at..].starts_with(ENCODED_PREFIX.as_bytes())
            // Only at the start of a base64 run, never in the middle of unrelated data.
            && !at.checked_sub(1).is_some_and(|before| is_base64(bytes, before))
        {
            encoded_jwt_end(bytes, at)
        } else {
            None
        };
        match end {
            Some(end) => {
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                // Both ends are ASCII bytes of the token, so they are char boundaries.
                out.push_str(&text[copied..at]);
                out.push_str(&shorten_token(&text[at..end]));
                copied = end;
                at = end;
            }
            None => at += 1,
        }
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The page's shortened form of one token: its first 13 characters and `...`.
pub fn shorten_token(token: &str) -> String {
    let kept: String = token.chars().take(KEPT).collect();
    format!("{kept}...")
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Whether `bytes[at]` is a standard base64 character; false before the start.
fn is_base64(bytes: &[u8], at: usize) -> bool {
    bytes
        .get(at)
        .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The end of a run of base64url characters starting at `from`.
fn segment_end(bytes: &[u8], from: usize) -> usize {
    from + bytes[from..]
        .iter()
        .take_while(|&&b| is_base64url(b))
        .count()
}

/// Where the JWT starting at `start` (on `eyJ`) ends, or `None` if it is not a JWT.
fn jwt_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    for segment in 0..3 {
        // Header and payload are JSON objects, so their base64url starts with `eyJ`.
        let body = if segment < 2 {
            if !bytes[at..].starts_with(b"eyJ") {
                return None;
            }
            at + 3
        } else {
            at
        };
        let end = segment_end(bytes, body);
        if end - body < MIN_SEGMENT {
            return None;
        }
        if segment < 2 {
            if bytes.get(end) != Some(&b'.') {
                return None;
            }
            at = end + 1;
        } else {
            at = end;
        }
    }
    Some(at)
}

/// Where a base64-encoded JWT starting at `start` (on `ZXlK`) ends, padding included.
fn encoded_jwt_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut end = start;
    while is_base64(bytes, end) {
        end += 1;
    }
    if end - start < MIN_ENCODED {
        return None;
    }
    while bytes.get(end) == Some(&b'=') {
        end += 1;
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::jwt;
    use base64::Engine;

    #[test]
    fn a_token_is_shortened_to_the_pages_form() {
        let token = jwt();
        assert_eq!(shorten_token(&token), "eyJhbGciOiJSU...");
        assert_eq!(redact(&token), "eyJhbGciOiJSU...");
    }

    #[test]
    fn a_token_inside_curl_output_is_shortened_and_the_rest_kept() {
        let token = jwt();
        let output = format!(
            "$ curl -H \"Authorization: Bearer {token}\" https://kubernetes/api/v1/pods\n\
             {{\"kind\":\"Status\",\"code\":403}}\n"
        );
        let redacted = redact(&output);
        assert_eq!(
            redacted,
            "$ curl -H \"Authorization: Bearer eyJhbGciOiJSU...\" https://kubernetes/api/v1/pods\n\
             {\"kind\":\"Status\",\"code\":403}\n"
        );
    }

    #[test]
    fn a_token_in_kubectl_describe_output_is_shortened() {
        let token = jwt();
        let output = format!(
            "Data\n====\nca.crt:     1099 bytes\nnamespace:  7 bytes\ntoken:      {token}\n"
        );
        let redacted = redact(&output);
        assert!(!redacted.contains(&token));
        assert!(
            redacted.ends_with("token:      eyJhbGciOiJSU...\n"),
            "{redacted}"
        );
    }

    #[test]
    fn every_token_is_shortened() {
        let (a, b) = (jwt(), jwt_with_kid("other-key"));
        assert_ne!(a, b);
        let text = format!("{a}\n{b} and again {a}, done");
        let redacted = redact(&text);
        assert_eq!(
            redacted,
            "eyJhbGciOiJSU...\neyJhbGciOiJSU... and again eyJhbGciOiJSU..., done"
        );
    }

    #[test]
    fn a_base64_encoded_token_is_shortened() {
        let token = jwt();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&token);
        let yaml = format!("data:\n  namespace: ZGVmYXVsdA==\n  token: {encoded}\n");
        let redacted = redact(&yaml);
        assert!(!redacted.contains(&encoded));
        assert!(redacted.contains("namespace: ZGVmYXVsdA==\n"), "{redacted}");
        assert!(redacted.contains("token: ZXlKaGJHY2lPa...\n"), "{redacted}");
    }

    #[test]
    fn dotted_text_that_is_not_a_token_survives() {
        for text in [
            "v1.29.2",
            "kubernetes.io/service-account.name",
            "system:serviceaccount:default:sa-example",
            "export CURL_CA_BUNDLE = /var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            "eyJhbGciOiJSU...",
            "eyJshort.eyJshort.sig",
            // Two segments only: not a JWT.
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhYmMifQ",
            "ZXlK is short base64",
            "",
            "ünïcödé eyJ ✅",
        ] {
            assert!(matches!(redact(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn redaction_is_idempotent() {
        let text = format!("Bearer {}", jwt());
        let once = redact(&text).into_owned();
        assert_eq!(redact(&once), once);
    }

    fn jwt_with_kid(kid: &str) -> String {
        crate::fixtures::jwt_from(kid)
    }
}
