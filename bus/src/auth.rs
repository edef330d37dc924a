//! Access-token verification, for the gateway and for every worker (which re-check authorisation
//! themselves). Keys come from the identity JWKS, cached by `kid`; an unknown `kid` triggers a
//! refetch (at most one per [`JwtVerifier::MIN_REFETCH`]), so key rotation needs no restart.

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
        Box::pin(async move {
            self.0
                .request::<GetJwks>(&CallContext::new_root(), &Empty {})
                .await
        })
    }
}

struct Cache {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

/// Verifies EdDSA access tokens: signature, `alg`, `kid`, `iss`, `aud`, `exp`.
pub struct JwtVerifier {
    source: Box<dyn JwksSource>,
    cache: RwLock<Cache>,
    refetch: Mutex<()>,
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

    pub fn new(source: impl JwksSource) -> Arc<Self> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        validation.leeway = 5;
        Arc::new(Self {
            source: Box::new(source),
            cache: RwLock::new(Cache {
                keys: HashMap::new(),
                fetched: None,
            }),
            refetch: Mutex::new(()),
            validation,
        })
    }

    /// Verify the bearer token of a call; no token is `unauthenticated`.
    pub async fn verify_ctx(&self, ctx: &CallContext) -> Result<AccessClaims, ErrorBody> {
        let token = ctx
            .bearer()
            .ok_or_else(|| ErrorBody::unauthenticated("a bearer token is required"))?;
        self.verify(token).await
    }

    pub async fn verify(&self, token: &str) -> Result<AccessClaims, ErrorBody> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ErrorBody::unauthenticated("malformed token"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(ErrorBody::unauthenticated("unsupported token algorithm"));
        }
        let kid = header
            .kid
            .ok_or_else(|| ErrorBody::unauthenticated("token has no key id"))?;
        let key = self
            .key(&kid)
            .await?
            .ok_or_else(|| ErrorBody::unauthenticated("token signed by an unknown key"))?;
        jsonwebtoken::decode::<AccessClaims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| {
                let message = match err.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::InvalidSignature => "token signature is invalid",
                    ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer => {
                        "token was not issued for coursebus"
                    }
                    _ => "invalid token",
                };
                ErrorBody::unauthenticated(message)
            })
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
            let recent = cache
                .fetched
                .is_some_and(|t| t.elapsed() < Self::MIN_REFETCH);
            if recent
                || (cache.keys.contains_key(kid)
                    && cache.fetched.is_some_and(|t| t.elapsed() < Self::MAX_AGE))
            {
                return Ok(cache.keys.get(kid).cloned());
            }
        }
        match self.source.fetch().await {
            Ok(jwks) => {
                let keys = parse_jwks(&jwks);
                let mut cache = self.cache.write().await;
                cache.keys = keys;
                cache.fetched = Some(Instant::now());
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
