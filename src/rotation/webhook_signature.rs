//! The signature on every webhook call (pure): `Kmsync-Timestamp: <unix seconds>` and
//! `Kmsync-Signature: v1=<hex HMAC-SHA256(key, "<timestamp>.<body>")>` over the exact body bytes,
//! in the style of common webhook senders. The receiver recomputes it with the shared key, compares
//! in constant time, and refuses timestamps older than its replay window (README: five minutes).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::kms::SecretBytes;

pub const TIMESTAMP_HEADER: &str = "Kmsync-Timestamp";
pub const SIGNATURE_HEADER: &str = "Kmsync-Signature";

/// The `Kmsync-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign(key: &SecretBytes, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(key, timestamp, body).finalize().into_bytes())
    )
}

/// HMAC-SHA256 over `"<timestamp>.<body>"`.
fn mac(key: &SecretBytes, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// What a receiver does: the signature is right for this key and body, and `timestamp` is within
/// `window_secs` of `now`.
pub fn verify(
    key: &SecretBytes,
    timestamp: i64,
    body: &[u8],
    signature: &str,
    now: i64,
    window_secs: i64,
) -> bool {
    let Some(hex_mac) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_mac) else {
        return false;
    };
    (now - timestamp).abs() <= window_secs && mac(key, timestamp, body).verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_vector() {
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac k
        assert_eq!(
            sign(
                &SecretBytes::new(b"k".to_vec()),
                1_700_000_000,
                br#"{"a":1}"#
            ),
            "v1=1b6ad1bc9bf48c52ce01939866d5877c6cc4e87ddad27e16673cb8c4964394a3"
        );
    }

    #[test]
    fn only_the_right_key_body_and_time_verify() {
        let key = SecretBytes::new(b"shared".to_vec());
        let body = br#"{"action":"register"}"#;
        let signature = sign(&key, 1000, body);
        assert!(verify(&key, 1000, body, &signature, 1100, 300));
        assert!(!verify(
            &SecretBytes::new(b"other".to_vec()),
            1000,
            body,
            &signature,
            1100,
            300
        ));
        assert!(!verify(
            &key,
            1000,
            br#"{"action":"verify"}"#,
            &signature,
            1100,
            300
        ));
        assert!(!verify(&key, 1001, body, &signature, 1100, 300));
        assert!(
            !verify(&key, 1000, body, &signature, 1400, 300),
            "replayed too late"
        );
        assert!(!verify(&key, 1000, body, "v0=00", 1100, 300));
    }
}
