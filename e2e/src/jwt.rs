//! Service-account tokens: kept out of every output, decoded only to read their claims.

use std::fmt;

use anyhow::Context;
use base64::Engine;
use serde_json::Value;

/// A bearer token. Its `Debug` and `Display` show only the page's short form.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(raw: impl Into<String>) -> Token {
        Token(raw.into().trim().to_string())
    }

    /// The full token, for a request header or a file the shell reads. Never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn header(&self) -> anyhow::Result<Value> {
        self.segment(0).context("decoding the token's header")
    }

    pub fn claims(&self) -> anyhow::Result<Value> {
        self.segment(1).context("decoding the token's claims")
    }

    fn segment(&self, index: usize) -> anyhow::Result<Value> {
        let part = self
            .0
            .split('.')
            .nth(index)
            .context("the token is not a JWT (no such part)")?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .context("the part is not base64url")?;
        serde_json::from_slice(&bytes).context("the part is not JSON")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&report::shorten_token(&self.0))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(json: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn sample() -> Token {
        let header = b64(r#"{"alg":"RS256","kid":"abcdefghijkl"}"#);
        let claims = b64(
            r#"{"iss":"kubernetes/serviceaccount","sub":"system:serviceaccount:default:sa-example"}"#,
        );
        Token::new(format!("{header}.{claims}.{}", b64("signature-bytes-here")))
    }

    #[test]
    fn decodes_header_and_claims() {
        let token = sample();
        assert_eq!(token.header().unwrap()["alg"], "RS256");
        assert_eq!(token.claims().unwrap()["iss"], "kubernetes/serviceaccount");
    }

    #[test]
    fn never_formats_in_full() {
        let token = sample();
        for shown in [format!("{token}"), format!("{token:?}")] {
            assert!(!shown.contains(token.expose()), "{shown}");
            assert!(shown.contains("..."), "{shown}");
        }
    }
}
