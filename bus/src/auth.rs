//! Access-token verification, for the gateway and for every worker (which re-check authorisation
//! themselves). Keys come from the identity JWKS, cached by `kid`; an unknown `kid` triggers a
//! refetch (at most one per [`JwtVerifier::MIN_REFETCH`]), so key rotation needs no restart.
//!
//! A token whose signature checked out is remembered (its claims, by the whole token) until it
//! expires, so a client's next calls skip the Ed25519 verification; `exp` is still checked on
//! every use, and the memory is dropped whenever the keys are refetched (a withdrawn key stops
//! vouching for its tokens within [`JwtVerifier::MAX_AGE`]). Bounded by
//! [`JwtVerifier::MAX_VERIFIED`] tokens per process.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coursebus_contracts::identity::{AccessClaims, GetJwks, Jwks, TOKEN_AUDIENCE, TOKEN_ISSUER};
use coursebus_contracts::{ErrorBody, rpc::Empty};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::sync::{Mutex, RwLock};

use crate::{Bus, CallContext};

/// Where public keys come from.
pub trait JwksSource: Send + Sync + 'static {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Jwks, ErrorBody>> + Send + '_>>;
}

/// Fetch the JWKS from the identity service over the bus.
#[derive(Debug, Clone)]
pub struct BusJwks(pub Bus);

impl JwksSource for BusJwks {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Jwks, ErrorBody>> + Send + '_>> {
        Box::pin(async move { self.0.request::<GetJwks>(&CallContext::new_root(), &Empty {}).await })
    }
}

struct Cache {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

/// Tokens whose signature was verified, with their claims.
#[derive(Default)]
struct Verified {
    claims: HashMap<Box<str>, AccessClaims>,
    /// The key set these were verified against (bumped by every JWKS refetch).
    keys_generation: u64,
}

/// Verifies EdDSA access tokens: signature, `alg`, `kid`, `iss`, `aud`, `exp`.
pub struct JwtVerifier {
    source: Box<dyn JwksSource>,
    cache: RwLock<Cache>,
    /// Bumped whenever the keys are refetched.
    keys_generation: std::sync::atomic::AtomicU64,
    verified: std::sync::Mutex<Verified>,
    refetch: Mutex<()>,
    min_refetch: Duration,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Cached keys older than this are refreshed on next use.
    pub const MAX_AGE: Duration = Duration::from_secs(300);
    /// An unknown `kid` refetches at most this often (so junk tokens cannot flood identity).
    pub const MIN_REFETCH: Duration = Duration::from_secs(5);
    /// Verified tokens remembered at most (then the expired ones are dropped, or all).
    pub const MAX_VERIFIED: usize = 50_000;

    pub fn new(source: impl JwksSource) -> Arc<Self> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = 5;
        Arc::new(Self {
            source: Box::new(source),
            cache: RwLock::new(Cache { keys: HashMap::new(), fetched: None }),
            keys_generation: std::sync::atomic::AtomicU64::new(0),
            verified: std::sync::Mutex::new(Verified::default()),
            refetch: Mutex::new(()),
            min_refetch: Self::MIN_REFETCH,
            validation,
        })
    }

    /// Like [`JwtVerifier::new`] with another refetch interval (tests use zero).
    pub fn with_min_refetch(source: impl JwksSource, min_refetch: Duration) -> Arc<Self> {
        let mut verifier = Self::new(source);
        if let Some(v) = Arc::get_mut(&mut verifier) {
            v.min_refetch = min_refetch;
        }
        verifier
    }

    /// Verify the bearer token of a call; no token is `unauthenticated`.
    pub async fn verify_ctx(&self, ctx: &CallContext) -> Result<AccessClaims, ErrorBody> {
        let token = ctx.bearer().ok_or_else(|| ErrorBody::unauthenticated("a bearer token is required"))?;
        self.verify(token).await
    }

    pub async fn verify(&self, token: &str) -> Result<AccessClaims, ErrorBody> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Some(claims) = self.remembered(token, now) {
            return Ok(claims);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| ErrorBody::unauthenticated("malformed token"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(ErrorBody::unauthenticated("unsupported token algorithm"));
        }
        let kid = header.kid.ok_or_else(|| ErrorBody::unauthenticated("token has no key id"))?;
        // Taken before the key: a refetch meanwhile makes this verification too old to remember.
        let generation = self.keys_generation.load(std::sync::atomic::Ordering::Acquire);
        let key = self.key(&kid).await?.ok_or_else(|| ErrorBody::unauthenticated("token signed by an unknown key"))?;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| {
                let message = match err.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::InvalidSignature => "token signature is invalid",
                    ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => "token was not issued for coursebus",
                    _ => "invalid token",
                };
                ErrorBody::unauthenticated(message)
            })?;
        self.remember(token, &claims, generation, now);
        Ok(claims)
    }

    /// The claims of a token verified before, while it has not expired (with the same leeway).
    fn remembered(&self, token: &str, now: i64) -> Option<AccessClaims> {
        let verified = self.verified.lock().ok()?;
        let generation = self.keys_generation.load(std::sync::atomic::Ordering::Acquire);
        if verified.keys_generation != generation {
            return None;
        }
        let claims = verified.claims.get(token)?;
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        (claims.exp.saturating_add(leeway) > now).then(|| claims.clone())
    }

    fn remember(&self, token: &str, claims: &AccessClaims, generation: u64, now: i64) {
        let Ok(mut verified) = self.verified.lock() else { return };
        if verified.keys_generation != generation {
            if generation < verified.keys_generation {
                return;
            }
            // The keys were refetched: what was verified against the old set is forgotten.
            verified.claims.clear();
            verified.keys_generation = generation;
        }
        if verified.claims.len() >= Self::MAX_VERIFIED {
            verified.claims.retain(|_, c| c.exp > now);
            if verified.claims.len() >= Self::MAX_VERIFIED {
                verified.claims.clear();
            }
        }
        verified.claims.insert(token.into(), claims.clone());
    }

    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, ErrorBody> {
        {
            let cache = self.cache.read().await;
            let fresh = cache.fetched.is_some_and(|t| t.elapsed() < Self::MAX_AGE);
            if let Some(key) = cache.keys.get(kid)
                && fresh
            {
                return Ok(Some(key.clone()));
            }
        }
        let _single_flight = self.refetch.lock().await;
        {
            let cache = self.cache.read().await;
            let recent = cache.fetched.is_some_and(|t| t.elapsed() < self.min_refetch);
            if recent || (cache.keys.contains_key(kid) && cache.fetched.is_some_and(|t| t.elapsed() < Self::MAX_AGE)) {
                return Ok(cache.keys.get(kid).cloned());
            }
        }
        match self.source.fetch().await {
            Ok(jwks) => {
                let keys = parse_jwks(&jwks);
                let mut cache = self.cache.write().await;
                cache.keys = keys;
                cache.fetched = Some(Instant::now());
                self.keys_generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                tracing::debug!(keys = cache.keys.len(), "JWKS refreshed");
                Ok(cache.keys.get(kid).cloned())
            }
            Err(err) => {
                // Identity is down: keep using what we know, if anything.
                let cache = self.cache.read().await;
                match cache.keys.get(kid) {
                    Some(key) => Ok(Some(key.clone())),
                    None => Err(err),
                }
            }
        }
    }
}

fn parse_jwks(jwks: &Jwks) -> HashMap<String, DecodingKey> {
    let set: JwkSet = match serde_json::from_value(serde_json::json!({ "keys": jwks.keys })) {
        Ok(set) => set,
        Err(err) => {
            tracing::warn!(error = %err, "JWKS could not be parsed");
            return HashMap::new();
        }
    };
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use coursebus_contracts::identity::AccessClaims;
    use jsonwebtoken::{EncodingKey, Header, jwk::Jwk};
    use uuid::Uuid;

    use super::*;

    /// A key with a fixed seed (PKCS#8 prefix + 32 bytes).
    fn key(seed: u8) -> EncodingKey {
        let mut der =
            vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        der.extend_from_slice(&[seed; 32]);
        EncodingKey::from_ed_der(&der)
    }

    fn jwk(kid: &str, seed: u8) -> serde_json::Value {
        let mut jwk = Jwk::from_encoding_key(&key(seed), Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some(kid.into());
        serde_json::to_value(jwk).unwrap()
    }

    fn token(kid: &str, seed: u8, exp_offset: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = AccessClaims {
            sub: Uuid::now_v7(),
            roles: vec![],
            iss: TOKEN_ISSUER.into(),
            aud: TOKEN_AUDIENCE.into(),
            iat: now,
            exp: now + exp_offset,
            jti: Uuid::now_v7(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &key(seed)).unwrap()
    }

    /// A JWKS that can rotate, counting fetches.
    struct Rotating {
        keys: std::sync::Mutex<Vec<serde_json::Value>>,
        fetches: Arc<AtomicUsize>,
    }

    impl JwksSource for Rotating {
        fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Jwks, ErrorBody>> + Send + '_>> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let keys = self.keys.lock().unwrap().clone();
            Box::pin(async move { Ok(Jwks { keys }) })
        }
    }

    #[tokio::test]
    async fn keys_are_cached_and_an_unknown_kid_refetches_at_most_every_few_seconds() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let source = Rotating { keys: std::sync::Mutex::new(vec![jwk("k1", 1)]), fetches: fetches.clone() };
        let verifier = JwtVerifier::new(source);
        for _ in 0..3 {
            verifier.verify(&token("k1", 1, 60)).await.unwrap();
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "cached after the first fetch");

        // A junk kid right after a fetch does not hammer identity.
        let err = verifier.verify(&token("nope", 9, 60)).await.unwrap_err();
        assert_eq!(err.code, coursebus_contracts::ErrorCode::Unauthenticated);
        assert_eq!(fetches.load(Ordering::SeqCst), 1);

        // Expired and wrongly signed tokens are refused.
        assert_eq!(verifier.verify(&token("k1", 1, -60)).await.unwrap_err().message, "token expired");
        assert_eq!(verifier.verify(&token("k1", 2, 60)).await.unwrap_err().message, "token signature is invalid");
    }

    #[tokio::test]
    async fn a_rotated_key_is_picked_up_without_restart() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let source = Arc::new(Rotating { keys: std::sync::Mutex::new(vec![jwk("k1", 1)]), fetches: fetches.clone() });
        let verifier = JwtVerifier::with_min_refetch(Shared(source.clone()), Duration::ZERO);
        verifier.verify(&token("k1", 1, 60)).await.unwrap();
        // Identity rotates: k2 signs from now on, k1 is still published.
        source.keys.lock().unwrap().push(jwk("k2", 2));
        verifier.verify(&token("k2", 2, 60)).await.unwrap();
        verifier.verify(&token("k1", 1, 60)).await.unwrap();
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "one fetch at start, one for the new kid");
    }

    #[tokio::test]
    async fn a_verified_token_is_remembered_until_it_expires_or_the_keys_are_refetched() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let source = Arc::new(Rotating { keys: std::sync::Mutex::new(vec![jwk("k1", 1)]), fetches: fetches.clone() });
        let verifier = JwtVerifier::with_min_refetch(Shared(source.clone()), Duration::ZERO);
        let good = token("k1", 1, 60);
        let claims = verifier.verify(&good).await.unwrap();
        // The first verification fetched the keys, so it was made against an older key set.
        assert!(verifier.remembered(&good, claims.iat).is_none());
        verifier.verify(&good).await.unwrap();
        let now = claims.iat;
        assert_eq!(verifier.remembered(&good, now).map(|c| c.jti), Some(claims.jti), "remembered");
        // Past its expiry (and the leeway) it is not served from memory.
        assert!(verifier.remembered(&good, claims.exp + 6).is_none());
        // A token that failed is never remembered; a tampered copy of a good one is refused.
        let mut tampered = good.clone();
        tampered.pop();
        tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
        assert!(verifier.verify(&tampered).await.is_err());
        assert!(verifier.remembered(&tampered, now).is_none());

        // Identity withdraws k1 (rotated to k2): once the keys are refetched, the remembered
        // token no longer vouches for itself.
        *source.keys.lock().unwrap() = vec![jwk("k2", 2)];
        verifier.verify(&token("k2", 2, 60)).await.unwrap();
        assert!(verifier.remembered(&good, now).is_none());
        assert_eq!(verifier.verify(&good).await.unwrap_err().message, "token signed by an unknown key");
    }

    struct Shared(Arc<Rotating>);

    impl JwksSource for Shared {
        fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Jwks, ErrorBody>> + Send + '_>> {
            self.0.fetch()
        }
    }
}
