//! The identity worker: registration, login, JWTs, refresh-token families, profiles and roles,
//! served as the NATS micro service `identity`.

pub mod domain;
pub mod handlers;
pub mod store;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::auth::{JwksSource, JwtVerifier};
use coursebus_bus::{CallContext, MicroService, ServiceSpec, idempotency, outbox, streams};
use coursebus_contracts::identity::{
    GetJwks, GetProfile, GrantRole, IssueVerificationToken, Jwks, Login, Logout, Refresh, Register, ResendVerification,
    RevokeRole, UpdateProfile, VerifyEmail,
};
use coursebus_contracts::subjects::identity as subj;
use coursebus_contracts::validate::{DisplayName, Email, Password, Role};
use coursebus_contracts::{Actor, ErrorBody, Rpc};
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

/// Failures that stop the worker (as opposed to refused requests).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Start(#[from] coursebus_bus::worker::StartError),
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
    pub password: String,
}

impl std::fmt::Debug for BootstrapAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapAdmin").field("email", &self.email).field("password", &"***").finish()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub database_url: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// How long the link in a verification email works.
    pub verification_ttl: Duration,
    /// A new signing key is made when the newest is older than this.
    pub key_rotation: Duration,
    pub hash_cost: HashCost,
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// JetStream replicas for the streams this worker owns (1 on a single node, 3 on a cluster).
    pub stream_replicas: usize,
    pub db_max_connections: u32,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            database_url: database_url.into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            verification_ttl: Duration::from_secs(48 * 3600),
            key_rotation: Duration::from_secs(30 * 24 * 3600),
            hash_cost: HashCost::default(),
            bootstrap_admin: None,
            stream_replicas: 1,
            db_max_connections: 10,
        }
    }
}

/// Connect, migrate, provision, serve until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), IdentityError> {
    let spec = coursebus_bus::worker::Spec {
        service: subj::SERVICE,
        nats_url: &config.nats_url,
        database_url: &config.database_url,
        max_connections: config.db_max_connections,
        streams: vec![streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, config.stream_replicas)],
    };
    let coursebus_bus::worker::Started { pool, client, js } =
        coursebus_bus::worker::start_pg(spec, &sqlx::migrate!("./migrations")).await?;

    let keys = Arc::new(KeyRing::default());
    refresh_keys(&pool, &keys, &config).await?;
    let relay = outbox::Relay::new(pool.clone(), js);
    let identity = Arc::new(Identity {
        outbox: relay.waker(),
        pool: pool.clone(),
        passwords: Passwords::new(config.hash_cost)?,
        keys: keys.clone(),
        verifier: JwtVerifier::new(LocalJwks(keys.clone())),
        tokens: TokenPolicy {
            access_ttl: config.access_ttl,
            refresh_ttl: config.refresh_ttl,
            verification_ttl: config.verification_ttl,
        },
    });
    if let Some(admin) = &config.bootstrap_admin {
        bootstrap_admin(&identity, admin).await?;
    }

    let mut service = MicroService::start(&client, SPEC, shutdown.clone()).await?;
    coursebus_bus::serve!(
        service,
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
    tracing::info!(endpoints = 12, first = %<Register as Rpc>::ENDPOINT.subject(), "identity serving");

    let relay = tokio::spawn(relay.run(shutdown.clone()));
    let housekeeping = {
        let (pool, keys, config, shutdown) = (pool.clone(), keys.clone(), config.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
                if let Err(err) = refresh_keys(&pool, &keys, &config).await {
                    tracing::warn!(error = %err, "signing keys could not be refreshed");
                }
                if let Err(err) = idempotency::purge(&pool).await {
                    tracing::warn!(error = %err, "old idempotency keys could not be purged");
                }
                if let Err(err) = store::purge_verifications(&pool).await {
                    tracing::warn!(error = %err, "expired verification tokens could not be purged");
                }
            }
        })
    };
    service.run().await;
    let _ = tokio::join!(relay, housekeeping);
    pool.close().await;
    client.flush().await.ok();
    tracing::info!("identity stopped");
    Ok(())
}

/// Load the signing keys, creating a new one when none is younger than the rotation period.
/// Replicas agree through an advisory lock; every replica reloads every minute.
async fn refresh_keys(pool: &PgPool, keys: &KeyRing, config: &Config) -> Result<(), IdentityError> {
    let publish_window = config.key_rotation + config.access_ttl + Duration::from_secs(3600);
    let mut tx = pool.begin().await?;
    let mut loaded = store::recent_keys(&mut tx, publish_window).await?;
    let fresh = |k: &domain::SigningKey| (time::OffsetDateTime::now_utc() - k.created_at) < config.key_rotation;
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
            let password =
                Password::parse(&admin.password, Some(&email)).map_err(|e| IdentityError::Bootstrap(e.into()))?;
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
