//! Discord signs every interaction it POSTs with the application's Ed25519 key over
//! `X-Signature-Timestamp ‖ raw body`. The signature alone proves only that Discord sent
//! those bytes at some point, so the timestamp's age is checked too; replays of a fresh,
//! correctly signed request are caught by the caller, which remembers interaction ids.

use std::time::Duration;

use serenity::interactions_endpoint::Verifier;

/// Older (or further in the future) than this and a signed request is refused, as Slack's
/// signing rules do for the same reason.
pub const MAX_AGE: Duration = Duration::from_secs(5 * 60);

pub const SIGNATURE_HEADER: &str = "x-signature-ed25519";
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";

/// The configured public key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must be 64 hexadecimal characters (the application's public key), got {0} characters")]
    Length(usize),
    #[error("must be hexadecimal (the application's public key)")]
    NotHex,
    #[error("is not a valid Ed25519 public key")]
    NotAKey,
}

/// Why a request was not accepted as Discord's. Every variant answers 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("missing X-Signature-Ed25519 header")]
    MissingSignature,
    #[error("missing X-Signature-Timestamp header")]
    MissingTimestamp,
    #[error("X-Signature-Timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("X-Signature-Timestamp is {0} s away from now (at most 300 s allowed)")]
    Stale(i64),
    #[error("signature does not verify")]
    BadSignature,
}

/// The application's public key, ready to check requests.
#[derive(Clone)]
pub struct InteractionVerifier {
    inner: Verifier,
}

impl std::fmt::Debug for InteractionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InteractionVerifier")
    }
}

impl InteractionVerifier {
    /// Parses the hex key from the Developer Portal. serenity's own constructor panics on a
    /// malformed key; a typo in the configuration must be an error instead.
    pub fn from_hex(public_key: &str) -> Result<Self, KeyError> {
        let key = public_key.trim();
        if key.len() != 64 {
            return Err(KeyError::Length(key.chars().count()));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(key, &mut bytes).map_err(|_| KeyError::NotHex)?;
        let inner = Verifier::try_new(bytes).map_err(|_| KeyError::NotAKey)?;
        Ok(InteractionVerifier { inner })
    }

    /// Only the signature over `timestamp ‖ body`, as RFC 8032 verification.
    pub fn verify_signature(&self, signature: &str, timestamp: &str, body: &[u8]) -> bool {
        self.inner.verify(signature, timestamp, body).is_ok()
    }

    /// The whole check of an inbound request: both headers present, a timestamp within
    /// [`MAX_AGE`] of `now_unix`, and a signature that verifies.
    pub fn check(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), Rejected> {
        let signature = signature.ok_or(Rejected::MissingSignature)?;
        let timestamp = timestamp.ok_or(Rejected::MissingTimestamp)?;
        let at: i64 = timestamp.parse().map_err(|_| Rejected::BadTimestamp)?;
        let skew = now_unix.saturating_sub(at);
        if skew.unsigned_abs() > MAX_AGE.as_secs() {
            return Err(Rejected::Stale(skew));
        }
        if self.verify_signature(signature, timestamp, body) {
            Ok(())
        } else {
            Err(Rejected::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const RFC8032: &str =
        include_str!("../../../tests/fixtures/discord/ed25519_rfc8032_test1_test2.json");
    const DERIVED: &str =
        include_str!("../../../tests/fixtures/discord/discord_style_DERIVED.json");
    const TEST1_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn rfc_8032_vectors_verify_and_fail_when_altered() {
        let doc: Value = serde_json::from_str(RFC8032).unwrap();
        let vectors = doc["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 2);
        for v in vectors {
            let verifier =
                InteractionVerifier::from_hex(v["public_key"].as_str().unwrap()).unwrap();
            let message = hex::decode(v["message_hex"].as_str().unwrap()).unwrap();
            let signature = v["signature"].as_str().unwrap();
            // The message is the whole of `timestamp ‖ body`: an empty timestamp makes it the
            // RFC's message unchanged.
            assert!(
                verifier.verify_signature(signature, "", &message),
                "{}",
                v["name"]
            );
            let mut altered = message.clone();
            altered.push(0);
            assert!(
                !verifier.verify_signature(signature, "", &altered),
                "{}",
                v["name"]
            );
            let mut flipped = hex::decode(signature).unwrap();
            flipped[0] ^= 1;
            assert!(!verifier.verify_signature(&hex::encode(flipped), "", &message));
        }
    }

    #[test]
    fn discord_style_cases_verify_as_documented() {
        let doc: Value = serde_json::from_str(DERIVED).unwrap();
        for case in doc["cases"].as_array().unwrap() {
            let verifier =
                InteractionVerifier::from_hex(case["public_key_hex"].as_str().unwrap()).unwrap();
            let ts = case["header_X-Signature-Timestamp"].as_str().unwrap();
            let result = verifier.check(
                case["header_X-Signature-Ed25519"].as_str(),
                Some(ts),
                case["body"].as_str().unwrap().as_bytes(),
                1_700_000_000,
            );
            let valid = case["expect"].as_str().unwrap() == "valid";
            assert_eq!(result.is_ok(), valid, "{}: {result:?}", case["name"]);
        }
    }

    #[test]
    fn stale_missing_and_malformed_headers_are_rejected() {
        let doc: Value = serde_json::from_str(DERIVED).unwrap();
        let ping = &doc["cases"][0];
        let sig = ping["header_X-Signature-Ed25519"].as_str();
        let body = ping["body"].as_str().unwrap().as_bytes();
        let v = InteractionVerifier::from_hex(TEST1_PUBLIC).unwrap();
        let at = 1_700_000_000;
        assert_eq!(v.check(sig, Some("1700000000"), body, at + 300), Ok(()));
        assert_eq!(v.check(sig, Some("1700000000"), body, at - 300), Ok(()));
        assert_eq!(
            v.check(sig, Some("1700000000"), body, at + 301),
            Err(Rejected::Stale(301))
        );
        assert_eq!(
            v.check(sig, Some("1700000000"), body, at - 301),
            Err(Rejected::Stale(-301))
        );
        assert_eq!(
            v.check(None, Some("1700000000"), body, at),
            Err(Rejected::MissingSignature)
        );
        assert_eq!(
            v.check(sig, None, body, at),
            Err(Rejected::MissingTimestamp)
        );
        assert_eq!(
            v.check(sig, Some("soon"), body, at),
            Err(Rejected::BadTimestamp)
        );
        for garbage in ["", "zz", "00", &"g".repeat(128)] {
            assert_eq!(
                v.check(Some(garbage), Some("1700000000"), body, at),
                Err(Rejected::BadSignature)
            );
        }
    }

    #[test]
    fn malformed_keys_are_errors_not_panics() {
        assert_eq!(
            InteractionVerifier::from_hex("abc").unwrap_err(),
            KeyError::Length(3)
        );
        assert_eq!(
            InteractionVerifier::from_hex(&"x".repeat(64)).unwrap_err(),
            KeyError::NotHex
        );
        assert!(InteractionVerifier::from_hex(&format!(" {TEST1_PUBLIC}\n")).is_ok());
    }
}
