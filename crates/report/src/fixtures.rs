//! Sample data for the unit tests: tokens built at run time (a repository hook rejects
//! committed full JWTs, rightly).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

/// A JWT shaped like a legacy service-account token (RS256 header with a key id).
pub fn jwt() -> String {
    jwt_from("test-key-1")
}

/// A JWT whose header names `kid`, so tests can make several distinct tokens.
pub fn jwt_from(kid: &str) -> String {
    let header = format!(r#"{{"alg":"RS256","kid":"{kid}"}}"#);
    let payload = r#"{"iss":"kubernetes/serviceaccount","kubernetes.io/serviceaccount/namespace":"default","sub":"system:serviceaccount:default:sa-example"}"#;
    let signature: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(31)).collect();
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature)
    )
}
