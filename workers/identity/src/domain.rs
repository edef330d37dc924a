//! Identity's domain: password hashing (argon2id), signing keys and access tokens (EdDSA),
//! refresh tokens (random, stored hashed).

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString, rand_core::OsRng};
use argon2::{Algorithm as ArgonAlgorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coursebus_contracts::ErrorBody;
use coursebus_contracts::identity::{AccessClaims, Jwks, TOKEN_AUDIENCE, TOKEN_ISSUER};
use coursebus_contracts::validate::{Password, Role};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::IdentityError;

/// argon2id cost parameters (OWASP's recommendation by default: 19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, lanes: 1 }
    }
}

/// Hashes and verifies passwords off the async threads.
#[derive(Clone)]
pub struct Passwords {
    argon: Argon2<'static>,
    /// A hash of a random password: verified against when the user does not exist, so a login
    /// for an unknown email costs the same time as a wrong password.
    decoy: Arc<str>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").finish_non_exhaustive()
    }
}

impl Passwords {
    pub fn new(cost: HashCost) -> Result<Self, IdentityError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.lanes, None)
            .map_err(|e| IdentityError::Config(format!("argon2 parameters: {e}")))?;
        let argon = Argon2::new(ArgonAlgorithm::Argon2id, Version::V0x13, params);
        let mut random = [0u8; 24];
        OsRng.fill_bytes(&mut random);
        let salt = SaltString::generate(&mut OsRng);
        let decoy = argon
            .hash_password(URL_SAFE_NO_PAD.encode(random).as_bytes(), &salt)
            .map_err(|e| IdentityError::Config(format!("argon2: {e}")))?
            .to_string();
        Ok(Self { argon, decoy: decoy.into() })
    }

    pub async fn hash(&self, password: &Password) -> Result<String, ErrorBody> {
        let argon = self.argon.clone();
        let secret = password.expose().to_owned();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon.hash_password(secret.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await
        .map_err(|_| ErrorBody::internal())?
        .map_err(|err| {
            tracing::error!(error = %err, "password hashing failed");
            ErrorBody::internal()
        })
    }

    /// Verify `password` against `hash`, or against the decoy when there is no user.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let argon = self.argon.clone();
        let known = hash.is_some();
        let hash = hash.map(str::to_owned).unwrap_or_else(|| self.decoy.to_string());
        let secret = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| argon.verify_password(secret.as_bytes(), &parsed).is_ok())
        })
        .await
        .unwrap_or(false);
        known && verified
    }
}

/// One Ed25519 signing key.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub created_at: time::OffsetDateTime,
}

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): a fixed 16-byte header + 32-byte seed.
const ED25519_PKCS8_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// A fresh Ed25519 key as PKCS#8 DER.
pub fn generate_ed25519_pkcs8() -> Vec<u8> {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    der
}

impl SigningKey {
    pub fn from_der(kid: String, der: &[u8], created_at: time::OffsetDateTime) -> Self {
        Self { kid, encoding: EncodingKey::from_ed_der(der), created_at }
    }

    /// The public half as a JWK (`kty: OKP, crv: Ed25519`, with `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> Result<serde_json::Value, IdentityError> {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, Algorithm::EdDSA)
            .map_err(|e| IdentityError::Config(format!("signing key {}: {e}", self.kid)))?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Ok(serde_json::to_value(jwk)?)
    }
}

/// The keys this replica signs with and publishes.
#[derive(Default)]
pub struct KeyRing {
    state: RwLock<KeyState>,
}

#[derive(Default)]
struct KeyState {
    active: Option<SigningKey>,
    jwks: Jwks,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Replace the keys: `keys` newest first; the first one signs.
    pub async fn install(&self, keys: Vec<SigningKey>) -> Result<(), IdentityError> {
        let jwks = Jwks { keys: keys.iter().map(SigningKey::public_jwk).collect::<Result<_, _>>()? };
        let mut state = self.state.write().await;
        state.active = keys.into_iter().next();
        state.jwks = jwks;
        Ok(())
    }

    pub async fn jwks(&self) -> Jwks {
        self.state.read().await.jwks.clone()
    }

    /// Sign an access token for `user` with `roles`, valid for `ttl`.
    pub async fn sign_access(&self, user: Uuid, roles: Vec<Role>, ttl: Duration) -> Result<String, ErrorBody> {
        let state = self.state.read().await;
        let key = state.active.as_ref().ok_or_else(|| {
            tracing::error!("no signing key loaded");
            ErrorBody::internal()
        })?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: user,
            roles,
            iss: TOKEN_ISSUER.to_owned(),
            aud: TOKEN_AUDIENCE.to_owned(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
            jti: Uuid::now_v7(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|err| {
            tracing::error!(error = %err, "token signing failed");
            ErrorBody::internal()
        })
    }
}

/// A new opaque secret token (256 random bits, base64url): refresh and email verification tokens.
pub fn new_secret_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a secret token: its SHA-256.
pub fn secret_token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use coursebus_contracts::validate::Password;

    #[tokio::test]
    async fn passwords_verify_only_with_the_right_secret_and_a_user() {
        let pw = Passwords::new(HashCost { memory_kib: 1024, iterations: 1, lanes: 1 }).unwrap();
        let secret = Password::parse("correct horse battery", None).unwrap();
        let hash = pw.hash(&secret).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(pw.verify("correct horse battery", Some(&hash)).await);
        assert!(!pw.verify("correct horse batterY", Some(&hash)).await);
        assert!(!pw.verify("correct horse battery", None).await);
    }

    #[tokio::test]
    async fn signed_tokens_carry_kid_and_jwks_has_the_public_key() {
        let ring = KeyRing::default();
        let key = SigningKey::from_der("k1".into(), &generate_ed25519_pkcs8(), time::OffsetDateTime::now_utc());
        ring.install(vec![key]).await.unwrap();
        let token = ring.sign_access(Uuid::now_v7(), vec![Role::Student], Duration::from_secs(60)).await.unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let jwks = ring.jwks().await;
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0]["kty"], "OKP");
        assert_eq!(jwks.keys[0]["crv"], "Ed25519");
        assert_eq!(jwks.keys[0]["kid"], "k1");
        assert!(jwks.keys[0].get("d").is_none(), "the private part must never be published");
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, b) = (new_secret_token(), new_secret_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(secret_token_hash(&a).len(), 32);
        assert_ne!(secret_token_hash(&a), secret_token_hash(&b));
    }
}
