//! The identity worker: registration, login, JWTs, refresh-token families, profiles, roles and
//! email verification, served as the NATS micro service `identity` over its PostgreSQL.
//!
//! It signs access tokens with Ed25519 keys kept in its database (a new one when the newest is
//! older than the rotation period; every replica reloads them every minute), publishes their
//! public halves as the JWKS the other services verify with, and verifies tokens with those same
//! keys itself (no bus round trip to itself). At start it creates (or promotes) the configured
//! bootstrap admin. Expired verification tokens are purged every minute.

pub mod domain;
pub mod handlers;
pub mod store;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::auth::{JwksSource, JwtVerifier};
use coursebus_bus::config::{CommonConfig, ConfigError, Secret, or, secs, var};
use coursebus_bus::{CallContext, ServiceSpec, StartError, Worker, outbox, streams};
use coursebus_contracts::identity::{
    GetJwks, GetProfile, GrantRole, IssueVerificationToken, Jwks, Login, Logout, Refresh, Register, ResendVerification,
    RevokeRole, UpdateProfile, VerifyEmail,
};
use coursebus_contracts::subjects::identity as subj;
use coursebus_contracts::validate::{DisplayName, Email, Password, Role};
use coursebus_contracts::{Actor, ErrorBody};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{HashCost, KeyRing, Passwords, generate_ed25519_pkcs8};
use crate::handlers::{Identity, TokenPolicy};

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Users, credentials, tokens, roles and profiles",
};

/// Identity's schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often every replica reloads the signing keys (and makes a new one when they are due).
const KEY_REFRESH_EVERY: Duration = Duration::from_secs(60);

/// How often expired email verification tokens are purged.
const VERIFICATION_PURGE_EVERY: Duration = Duration::from_secs(60);

/// Failures of identity's own work (signing keys, password hashing, the bootstrap admin), as
/// opposed to refused requests.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] coursebus_bus::BusError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("bootstrap: {0}")]
    Bootstrap(ErrorBody),
}

/// An admin account created (or promoted) at start-up, so a fresh install can be administered.
#[derive(Clone)]
pub struct BootstrapAdmin {
    pub email: String,
    pub password: Secret<String>,
}

impl std::fmt::Debug for BootstrapAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapAdmin").field("email", &self.email).field("password", &self.password).finish()
    }
}

/// Identity's configuration: the common settings (`CB_IDENTITY_DATABASE_URL`, …) and its own.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `CB_IDENTITY_ACCESS_TTL_SECS` | lifetime of an access token | 900 |
/// | `CB_IDENTITY_REFRESH_TTL_SECS` | lifetime of a refresh token | 2592000 (30 days) |
/// | `CB_IDENTITY_VERIFICATION_TTL_SECS` | how long a verification link works | 172800 (48 h) |
/// | `CB_IDENTITY_KEY_ROTATION_SECS` | age at which a new signing key is made | 2592000 (30 days) |
/// | `CB_IDENTITY_HASH_MEMORY_KIB`, `_HASH_ITERATIONS`, `_HASH_LANES` | argon2id cost | 19456, 2, 1 |
/// | `CB_IDENTITY_BOOTSTRAP_ADMIN_EMAIL`, `_PASSWORD` | the admin made at start (both or neither) | none |
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// How long the link in a verification email works.
    pub verification_ttl: Duration,
    /// A new signing key is made when the newest is older than this.
    pub key_rotation: Duration,
    pub hash_cost: HashCost,
    pub bootstrap_admin: Option<BootstrapAdmin>,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>) -> Self {
        Self::with_common(CommonConfig::new(nats_url).with_database(database_url))
    }

    /// The defaults on `common`.
    fn with_common(common: CommonConfig) -> Self {
        Self {
            common,
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            verification_ttl: Duration::from_secs(48 * 3600),
            key_rotation: Duration::from_secs(30 * 24 * 3600),
            hash_cost: HashCost::default(),
            bootstrap_admin: None,
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(subj::SERVICE)?;
        common.require_database(subj::SERVICE)?;
        let defaults = Self::with_common(common);
        let bootstrap_admin = match (
            var::<String>("CB_IDENTITY_BOOTSTRAP_ADMIN_EMAIL")?,
            // Exactly as set: a password may begin or end with a space.
            coursebus_bus::runtime::env("CB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD"),
        ) {
            (Some(email), Some(password)) => Some(BootstrapAdmin { email, password: Secret::new(password) }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing { name: "CB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD".into() });
            }
            (None, Some(_)) => return Err(ConfigError::Missing { name: "CB_IDENTITY_BOOTSTRAP_ADMIN_EMAIL".into() }),
        };
        Ok(Self {
            access_ttl: secs("CB_IDENTITY_ACCESS_TTL_SECS", defaults.access_ttl)?,
            refresh_ttl: secs("CB_IDENTITY_REFRESH_TTL_SECS", defaults.refresh_ttl)?,
            verification_ttl: secs("CB_IDENTITY_VERIFICATION_TTL_SECS", defaults.verification_ttl)?,
            key_rotation: secs("CB_IDENTITY_KEY_ROTATION_SECS", defaults.key_rotation)?,
            hash_cost: HashCost {
                memory_kib: or("CB_IDENTITY_HASH_MEMORY_KIB", defaults.hash_cost.memory_kib)?,
                iterations: or("CB_IDENTITY_HASH_ITERATIONS", defaults.hash_cost.iterations)?,
                lanes: or("CB_IDENTITY_HASH_LANES", defaults.hash_cost.lanes)?,
            },
            bootstrap_admin,
            ..defaults
        })
    }
}

/// Serve until `shutdown`: load (or make) the signing keys, create the bootstrap admin, then the
/// endpoints, with the key refresh and the purge of expired verification tokens as periodic jobs.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let mut worker = Worker::start(SPEC, &config.common, shutdown).await?;
    let db = worker.postgres(&MIGRATOR).await?;
    worker.streams([streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, worker.replicas())]).await?;

    let keys = Arc::new(KeyRing::default());
    refresh_keys(&db.pool, &keys, config.key_rotation, config.access_ttl)
        .await
        .map_err(|err| StartError::worker("signing keys", err))?;
    let identity = Arc::new(Identity {
        outbox: db.outbox,
        pool: db.pool.clone(),
        passwords: Passwords::new(config.hash_cost).map_err(|err| StartError::worker("password hashing", err))?,
        keys: keys.clone(),
        verifier: JwtVerifier::new(LocalJwks(keys.clone())),
        tokens: TokenPolicy {
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            verification_ttl: config.verification_ttl,
        },
    });
    if let Some(admin) = &config.bootstrap_admin {
        bootstrap_admin(&identity, admin).await.map_err(|err| StartError::worker("bootstrap admin", err))?;
    }

    coursebus_bus::endpoints!(
        worker,
        identity,
        Register => register,
        Login => login,
        Refresh => refresh,
        Logout => logout,
        GetProfile => get_profile,
        UpdateProfile => update_profile,
        GrantRole => grant_role,
        RevokeRole => revoke_role,
        GetJwks => jwks,
        VerifyEmail => verify_email,
        ResendVerification => resend_verification,
        IssueVerificationToken => issue_verification_token,
    );

    let (pool, ring) = (db.pool.clone(), keys);
    let (rotation, access_ttl) = (config.key_rotation, config.access_ttl);
    worker.every("signing keys refresh", KEY_REFRESH_EVERY, move || {
        let (pool, ring) = (pool.clone(), ring.clone());
        async move { refresh_keys(&pool, &ring, rotation, access_ttl).await }
    });
    let pool = db.pool;
    worker.every("expired verification tokens purge", VERIFICATION_PURGE_EVERY, move || {
        let pool = pool.clone();
        async move { store::purge_verifications(&pool).await.map(|_| ()) }
    });
    worker.run().await
}

/// Load the signing keys, creating a new one when none is younger than `rotation`. Replicas
/// agree through an advisory lock. Keys stay published for a while after the next one signs
/// (`rotation` + `access_ttl` + 1 h), so the tokens they signed still verify.
async fn refresh_keys(
    pool: &PgPool,
    keys: &KeyRing,
    rotation: Duration,
    access_ttl: Duration,
) -> Result<(), IdentityError> {
    let publish_window = rotation + access_ttl + Duration::from_secs(3600);
    let mut tx = pool.begin().await?;
    let mut loaded = store::recent_keys(&mut tx, publish_window).await?;
    let fresh = |k: &domain::SigningKey| (time::OffsetDateTime::now_utc() - k.created_at) < rotation;
    if !loaded.first().is_some_and(fresh) {
        store::lock_keys(&mut tx).await?;
        loaded = store::recent_keys(&mut tx, publish_window).await?;
        if !loaded.first().is_some_and(fresh) {
            let kid = Uuid::now_v7().simple().to_string();
            store::insert_key(&mut tx, &kid, &generate_ed25519_pkcs8()).await?;
            tracing::info!(kid = %kid, "new signing key created");
            loaded = store::recent_keys(&mut tx, publish_window).await?;
        }
    }
    tx.commit().await?;
    keys.install(loaded).await
}

async fn bootstrap_admin(identity: &Identity, admin: &BootstrapAdmin) -> Result<(), IdentityError> {
    let email = Email::parse(&admin.email).map_err(|e| IdentityError::Bootstrap(e.into()))?;
    let mut conn = identity.pool.acquire().await?;
    let ctx = CallContext::new_root();
    match store::user_id_by_email(&mut conn, email.as_str()).await? {
        Some(id) => {
            drop(conn);
            let mut tx = identity.pool.begin().await?;
            if store::grant_role(&mut tx, id, Role::Admin, None).await? {
                let event = coursebus_contracts::identity::RoleGranted { user_id: id, role: Role::Admin };
                outbox::enqueue(&mut tx, &coursebus_contracts::Event::envelope(event, service_actor()), Some(&ctx))
                    .await?;
            }
            tx.commit().await?;
        }
        None => {
            drop(conn);
            let password = Password::parse(admin.password.expose(), Some(&email))
                .map_err(|e| IdentityError::Bootstrap(e.into()))?;
            let hash = identity.passwords.hash(&password).await.map_err(IdentityError::Bootstrap)?;
            let name = DisplayName::parse("Administrator").map_err(|e| IdentityError::Bootstrap(e.into()))?;
            match identity
                .create_user(&ctx, Uuid::now_v7(), &email, &hash, &name, &[Role::Admin], service_actor(), None)
                .await
            {
                Ok(_) => tracing::info!(email = %email, "bootstrap admin created"),
                // Another replica created it at the same moment.
                Err(err) if err.code == coursebus_contracts::ErrorCode::Conflict => {}
                Err(err) => return Err(IdentityError::Bootstrap(err)),
            }
        }
    }
    Ok(())
}

fn service_actor() -> Actor {
    Actor::Service { name: subj::SERVICE.to_owned() }
}

/// Identity verifies tokens with its own keys (no bus round trip to itself).
struct LocalJwks(Arc<KeyRing>);

impl JwksSource for LocalJwks {
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<Jwks, ErrorBody>> + Send + '_>> {
        Box::pin(async move { Ok(self.0.jwks().await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_the_bootstrap_password_and_urls() {
        let mut config = Config::new("nats://identity:natspw@127.0.0.1:4222", "postgres://u:dbpw@db/identity");
        config.bootstrap_admin =
            Some(BootstrapAdmin { email: "root@example.test".into(), password: "hunter2-bootstrap".into() });
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("natspw") && !shown.contains("dbpw"), "{shown}");
        assert!(shown.contains("root@example.test"), "{shown}");
    }
}
