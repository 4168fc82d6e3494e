//! Optional OIDC token signature verification for `AssumeRoleWithOIDC`: a JWKS (a file, or the
//! key set inline in the YAML config) is loaded at start, and every token must then carry a
//! valid signature by one of its keys (RS256/384/512, PS256/384/512, ES256/384, EdDSA), looked
//! up by the token header's `kid`. Verification uses the `jsonwebtoken` crate (RustCrypto
//! backend). For a Kubernetes API server's keys: `kubectl get --raw /openid/v1/jwks > jwks.json`.

use std::path::PathBuf;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

use super::error::KmsError;

/// Where the JWKS comes from. YAML: `oidcJwks: /path/jwks.json` or `oidcJwks: {keys: [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JwksSource {
    File(PathBuf),
    Inline(serde_json::Value),
}

/// Error code of a token whose signature does not verify (also: unknown `kid`, algorithm not
/// accepted). Same family as the documented `AuthenticationFail.OIDCToken.*` codes.
pub const INVALID_SIGNATURE: &str = "AuthenticationFail.OIDCToken.InvalidSignature";

/// Signatures accepted; never `none` or a shared-secret HMAC.
const ACCEPTED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

struct Key {
    kid: Option<String>,
    /// The JWK's `alg`, when it names one.
    alg: Option<Algorithm>,
    /// For EC keys, the one algorithm its curve allows.
    curve_alg: Option<Algorithm>,
    key: DecodingKey,
}

/// The public keys tokens are verified against.
pub struct OidcKeys {
    keys: Vec<Key>,
}

impl std::fmt::Debug for OidcKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("OidcKeys").field("kids", &kids).finish()
    }
}

fn invalid_signature(message: &str) -> KmsError {
    KmsError::new(INVALID_SIGNATURE, 400, message)
}

impl OidcKeys {
    pub fn load(source: &JwksSource) -> Result<Self, String> {
        match source {
            JwksSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("OIDC JWKS {}: {e}", path.display()))?;
                Self::from_json(&text).map_err(|e| format!("OIDC JWKS {}: {e}", path.display()))
            }
            JwksSource::Inline(value) => {
                Self::from_json(&value.to_string()).map_err(|e| format!("inline OIDC JWKS: {e}"))
            }
        }
    }

    /// Parses a JWKS document (`{"keys": [...]}`); every key must be a usable public key.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
        let keys = set
            .keys
            .iter()
            .enumerate()
            .map(|(i, jwk)| {
                let name = jwk.common.key_id.as_deref().unwrap_or("");
                key_from_jwk(jwk).map_err(|e| format!("key {i} (kid {name:?}): {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("the JWKS has no keys".into());
        }
        Ok(Self { keys })
    }

    /// Verifies the token's signature. A token with a `kid` is checked against the keys with
    /// that `kid` only; one without is tried against every key of its algorithm's family.
    pub fn verify(&self, token: &str) -> Result<(), KmsError> {
        let token = token.trim();
        // The caller has checked the shape already; a header this fails on names an algorithm
        // jsonwebtoken does not know (`none`, for one).
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            invalid_signature(
                "The header or signature algorithm of the OIDC token is not accepted.",
            )
        })?;
        let alg = header.alg;
        if !ACCEPTED.contains(&alg) {
            return Err(invalid_signature(
                "The signature algorithm of the OIDC token is not accepted.",
            ));
        }
        let (message, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| invalid_signature("The OIDC token has no signature."))?;
        let mut candidates = self
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .peekable();
        if candidates.peek().is_none() {
            return Err(invalid_signature(
                "No key of the OIDC provider matches the token's kid.",
            ));
        }
        let verified = candidates
            .filter(|k| k.key.family() == alg.family())
            .filter(|k| k.alg.is_none_or(|a| a == alg))
            .filter(|k| k.curve_alg.is_none_or(|a| a == alg))
            .any(|k| {
                jsonwebtoken::crypto::verify(signature, message.as_bytes(), &k.key, alg)
                    .unwrap_or(false)
            });
        if verified {
            Ok(())
        } else {
            Err(invalid_signature(
                "The signature of the OIDC token is invalid.",
            ))
        }
    }
}

fn key_from_jwk(jwk: &Jwk) -> Result<Key, String> {
    let curve_alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) | AlgorithmParameters::OctetKeyPair(_) => None,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            ref other => return Err(format!("unsupported curve {other:?}")),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (kty oct) keys are not accepted".into());
        }
        _ => return Err("unsupported key type".into()),
    };
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(a) => {
            let alg = Algorithm::from_str(&a.to_string())
                .ok()
                .filter(|alg| ACCEPTED.contains(alg))
                .ok_or_else(|| format!("algorithm {a} is not accepted"))?;
            Some(alg)
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        curve_alg,
        key,
    })
}

/// Keys made in tests: a signer plus its public JWK.
#[cfg(test)]
pub(crate) mod testing {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};

    pub struct Signer {
        alg: Algorithm,
        kid: Option<String>,
        key: EncodingKey,
        pub jwk: Value,
    }

    impl Signer {
        /// A fresh RSA-2048 key (RS256).
        pub fn rsa(kid: &str) -> Self {
            use rsa::pkcs1::EncodeRsaPrivateKey as _;
            use rsa::traits::PublicKeyParts as _;
            let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            let der = private.to_pkcs1_der().unwrap();
            let b64 = |n: &rsa::BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
            Self {
                alg: Algorithm::RS256,
                kid: Some(kid.into()),
                key: EncodingKey::from_rsa_der(der.as_bytes()),
                jwk: json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": b64(private.n()), "e": b64(private.e())}),
            }
        }

        /// A fresh P-256 key (ES256).
        pub fn ec(kid: &str) -> Self {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let raw = pair.public_key_raw(); // 0x04 || x || y
            assert_eq!(raw.len(), 65);
            Self {
                alg: Algorithm::ES256,
                kid: Some(kid.into()),
                key: EncodingKey::from_ec_der(&pair.serialize_der()),
                jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
                    "x": URL_SAFE_NO_PAD.encode(&raw[1..33]), "y": URL_SAFE_NO_PAD.encode(&raw[33..])}),
            }
        }

        /// The same key, announcing no `kid` in the tokens it signs.
        pub fn without_kid(mut self) -> Self {
            self.kid = None;
            self
        }

        pub fn sign(&self, claims: &Value) -> String {
            let mut header = Header::new(self.alg);
            header.kid = self.kid.clone();
            jsonwebtoken::encode(&header, claims, &self.key).unwrap()
        }
    }

    pub fn jwks(signers: &[&Signer]) -> String {
        json!({"keys": signers.iter().map(|s| s.jwk.clone()).collect::<Vec<_>>()}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Signer, jwks};
    use super::*;
    use serde_json::json;

    fn claims() -> serde_json::Value {
        json!({"aud": "sts.aliyuncs.com", "exp": 4_000_000_000i64, "iss": "https://oidc", "sub": "s"})
    }

    #[test]
    fn refuses_bad_key_sets() {
        assert!(OidcKeys::from_json("{}").is_err());
        assert!(OidcKeys::from_json(r#"{"keys": []}"#).is_err());
        let oct = r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}"#;
        let err = OidcKeys::from_json(oct).unwrap_err();
        assert!(err.contains("symmetric"), "{err}");
        let hs =
            json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "HS256", "x": "AA", "y": "AA"}]});
        assert!(OidcKeys::from_json(&hs.to_string()).is_err());
    }

    #[test]
    fn ec_signatures_by_kid() {
        let a = Signer::ec("a");
        let b = Signer::ec("b");
        let keys = OidcKeys::from_json(&jwks(&[&a])).unwrap();
        keys.verify(&a.sign(&claims())).unwrap();
        // Unknown kid, and a right kid with a signature by another key.
        let e = keys.verify(&b.sign(&claims())).unwrap_err();
        assert_eq!(e.code, INVALID_SIGNATURE);
        let impostor = Signer::ec("a");
        let e = keys.verify(&impostor.sign(&claims())).unwrap_err();
        assert_eq!(e.code, INVALID_SIGNATURE);
        // No kid: any key of the family may verify it.
        let both = OidcKeys::from_json(&jwks(&[&b, &a])).unwrap();
        both.verify(&Signer::without_kid(a).sign(&claims()))
            .unwrap();
    }

    #[test]
    fn unsigned_and_hmac_tokens_are_refused() {
        let a = Signer::ec("a");
        let keys = OidcKeys::from_json(&jwks(&[&a])).unwrap();
        let good = a.sign(&claims());
        let (head_payload, _) = good.rsplit_once('.').unwrap();
        let (_, payload) = head_payload.split_once('.').unwrap();
        use base64::Engine as _;
        let enc = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!("{}.{payload}.", enc(json!({"alg": "none", "kid": "a"})));
        assert_eq!(keys.verify(&none).unwrap_err().code, INVALID_SIGNATURE);
        let hs = format!(
            "{}.{payload}.c2ln",
            enc(json!({"alg": "HS256", "kid": "a"}))
        );
        assert_eq!(keys.verify(&hs).unwrap_err().code, INVALID_SIGNATURE);
    }

    #[test]
    fn jwks_source_yaml_forms() {
        let f: JwksSource = serde_norway::from_str("/etc/jwks.json").unwrap();
        assert_eq!(f, JwksSource::File("/etc/jwks.json".into()));
        let i: JwksSource = serde_norway::from_str("keys: []").unwrap();
        assert!(matches!(i, JwksSource::Inline(_)));
        assert!(OidcKeys::load(&i).is_err());
    }
}
