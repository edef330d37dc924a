//! One method per endpoint. Every method validates its input, checks authorisation itself (the
//! gateway's checks are a courtesy, not a guarantee), and writes events through the outbox in the
//! same transaction as the data.

use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::auth::JwtVerifier;
use coursebus_bus::idempotency::Idempotency;
use coursebus_bus::{CallContext, outbox};
use coursebus_contracts::identity::Register;
use coursebus_contracts::identity::{
    AccessClaims, EmailVerification, EmailVerified, Jwks, LoginRequest, Profile, ProfileUpdated, RefreshRequest,
    RegisterRequest, RoleChangeRequest, RoleGranted, RoleRevoked, RolesReply, TokenResponse, UpdateProfileRequest,
    UserRegistered, VerificationRequested, VerificationToken, VerificationTokenRequest, VerifyEmailRequest,
};
use coursebus_contracts::rpc::Empty;
use coursebus_contracts::validate::{Bio, DisplayName, Email, Password, Role};
use coursebus_contracts::{Actor, ErrorBody, ErrorCode, Event, Rpc};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{KeyRing, Passwords, new_secret_token, secret_token_hash};
use crate::store;

/// Token lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// How long the link in a verification email works.
    pub verification_ttl: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Grant,
    Revoke,
}

/// The identity service's state, shared by all endpoint handlers of one replica.
#[derive(Debug)]
pub struct Identity {
    pub pool: PgPool,
    pub passwords: Passwords,
    pub keys: Arc<KeyRing>,
    pub verifier: Arc<JwtVerifier>,
    pub tokens: TokenPolicy,
    /// Wakes this replica's outbox relay after a commit with events.
    pub outbox: outbox::Waker,
}

/// Log a database error and answer `internal` (the client never sees database details).
use coursebus_bus::db;

fn bus(err: coursebus_bus::BusError) -> ErrorBody {
    tracing::error!(error = %err, "outbox error");
    ErrorBody::internal()
}

const BAD_CREDENTIALS: &str = "invalid email or password";

fn email_taken() -> ErrorBody {
    ErrorBody::conflict("an account with this email already exists")
        .with_details(serde_json::json!({ "field": "email" }))
}

impl Identity {
    pub async fn register(&self, ctx: CallContext, req: RegisterRequest) -> Result<Profile, ErrorBody> {
        let email = Email::parse(&req.email)?;
        let password = Password::parse(&req.password, Some(&email))?;
        let name = DisplayName::parse(&req.display_name)?;
        // A retried registration (same key, same email and name) gets the first answer back.
        // The password stays out of the fingerprint: it is never stored unhashed, not even there.
        let idem = ctx
            .idempotency_key
            .as_deref()
            .map(|key| Idempotency::new(<Register as Rpc>::ENDPOINT.subject(), key, &(email.as_str(), name.as_str())))
            .transpose()?;
        if let Some(idem) = &idem
            && let Some(profile) = idem.replay::<Profile>(&self.pool).await?
        {
            return Ok(profile);
        }
        if store::email_taken(&self.pool, email.as_str()).await.map_err(db)? {
            return Err(email_taken());
        }
        let hash = self.passwords.hash(&password).await?;
        let id = Uuid::now_v7();
        let created =
            self.create_user(&ctx, id, &email, &hash, &name, &[Role::Student], Actor::Anonymous, idem.as_ref()).await;
        match (created, &idem) {
            // Two concurrent retries with the same key: the loser answers with the winner's reply.
            (Err(err), Some(idem)) if err.code == ErrorCode::Conflict => idem.replay(&self.pool).await?.ok_or(err),
            (result, _) => result,
        }
    }

    /// Insert a user with roles and its `registered` event, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn create_user(
        &self,
        ctx: &CallContext,
        id: Uuid,
        email: &Email,
        hash: &str,
        name: &DisplayName,
        roles: &[Role],
        actor: Actor,
        idem: Option<&Idempotency>,
    ) -> Result<Profile, ErrorBody> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        store::insert_user(&mut tx, id, email.as_str(), hash, name.as_str())
            .await
            .map_err(|err| if store::is_unique_violation(&err) { email_taken() } else { db(err) })?;
        for role in roles {
            store::grant_role(&mut tx, id, *role, None).await.map_err(db)?;
        }
        let event = UserRegistered {
            user_id: id,
            email: email.to_string(),
            display_name: name.as_str().to_owned(),
            roles: roles.to_vec(),
        }
        .envelope(actor);
        outbox::enqueue(&mut tx, &event, Some(ctx)).await.map_err(bus)?;
        let profile = store::profile(&mut tx, id).await.map_err(db)?.ok_or_else(ErrorBody::internal)?;
        if let Some(idem) = idem {
            idem.record(&mut tx, &profile).await?;
        }
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::info!(user_id = %id, "user registered");
        Ok(profile)
    }

    pub async fn login(&self, _ctx: CallContext, req: LoginRequest) -> Result<TokenResponse, ErrorBody> {
        let email = Email::parse(&req.email).ok();
        let credentials = match &email {
            Some(email) => store::credentials(&self.pool, email.as_str()).await.map_err(db)?,
            None => None,
        };
        let verified =
            self.passwords.verify(&req.password, credentials.as_ref().map(|c| c.password_hash.as_str())).await;
        let Some(user) = credentials.filter(|_| verified).map(|c| c.id) else {
            tracing::info!("login refused");
            return Err(ErrorBody::unauthenticated(BAD_CREDENTIALS));
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        let tokens = self.issue(&mut tx, user, Uuid::now_v7()).await?;
        tx.commit().await.map_err(db)?;
        tracing::info!(user_id = %user, "logged in");
        Ok(tokens)
    }

    /// A new access token and the next refresh token of `family`.
    async fn issue(&self, tx: &mut sqlx::PgConnection, user: Uuid, family: Uuid) -> Result<TokenResponse, ErrorBody> {
        let roles = store::roles(tx, user).await.map_err(db)?;
        let access_token = self.keys.sign_access(user, roles, self.tokens.access_ttl).await?;
        let refresh_token = new_secret_token();
        let expires_at = OffsetDateTime::now_utc() + self.tokens.refresh_ttl;
        store::insert_refresh(tx, family, user, &secret_token_hash(&refresh_token), expires_at).await.map_err(db)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: self.tokens.access_ttl.as_secs(),
            refresh_token,
        })
    }

    pub async fn refresh(&self, _ctx: CallContext, req: RefreshRequest) -> Result<TokenResponse, ErrorBody> {
        let hash = secret_token_hash(req.refresh_token.trim());
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some(row) = store::refresh_for_update(&mut tx, &hash).await.map_err(db)? else {
            return Err(ErrorBody::unauthenticated("invalid refresh token"));
        };
        if row.revoked_at.is_some() {
            return Err(ErrorBody::unauthenticated("refresh token revoked"));
        }
        if row.used_at.is_some() {
            // Someone replayed a rotated token: the family is compromised, end every session of it.
            let revoked = store::revoke_family(&mut tx, row.family_id).await.map_err(db)?;
            tx.commit().await.map_err(db)?;
            tracing::warn!(user_id = %row.user_id, family_id = %row.family_id, revoked, "refresh token reuse detected");
            return Err(ErrorBody::unauthenticated("refresh token reuse detected; the session was revoked"));
        }
        if row.expires_at <= OffsetDateTime::now_utc() {
            return Err(ErrorBody::unauthenticated("refresh token expired"));
        }
        store::mark_refresh_used(&mut tx, row.id).await.map_err(db)?;
        let tokens = self.issue(&mut tx, row.user_id, row.family_id).await?;
        tx.commit().await.map_err(db)?;
        Ok(tokens)
    }

    pub async fn logout(&self, _ctx: CallContext, req: RefreshRequest) -> Result<Empty, ErrorBody> {
        let hash = secret_token_hash(req.refresh_token.trim());
        let mut tx = self.pool.begin().await.map_err(db)?;
        if let Some(row) = store::refresh_for_update(&mut tx, &hash).await.map_err(db)? {
            store::revoke_family(&mut tx, row.family_id).await.map_err(db)?;
            tracing::info!(user_id = %row.user_id, "logged out");
        }
        tx.commit().await.map_err(db)?;
        // Like RFC 7009: an unknown token is not an error (the outcome the client wants holds).
        Ok(Empty {})
    }

    async fn caller(&self, ctx: &CallContext) -> Result<AccessClaims, ErrorBody> {
        self.verifier.verify_ctx(ctx).await
    }

    pub async fn get_profile(&self, ctx: CallContext, _req: Empty) -> Result<Profile, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        store::profile(&mut conn, me.sub).await.map_err(db)?.ok_or_else(|| ErrorBody::not_found("user not found"))
    }

    pub async fn update_profile(&self, ctx: CallContext, req: UpdateProfileRequest) -> Result<Profile, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let name = req.display_name.as_deref().map(DisplayName::parse).transpose()?;
        let bio = req.bio.as_deref().map(Bio::parse).transpose()?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        if name.is_some() || bio.is_some() {
            let found = store::update_profile(
                &mut tx,
                me.sub,
                name.as_ref().map(DisplayName::as_str),
                bio.as_ref().map(Bio::as_str),
            )
            .await
            .map_err(db)?;
            if !found {
                return Err(ErrorBody::not_found("user not found"));
            }
        }
        let profile =
            store::profile(&mut tx, me.sub).await.map_err(db)?.ok_or_else(|| ErrorBody::not_found("user not found"))?;
        if name.is_some() || bio.is_some() {
            let event = ProfileUpdated {
                user_id: me.sub,
                display_name: profile.display_name.clone(),
                bio: profile.bio.clone(),
            }
            .envelope(Actor::User { id: me.sub });
            outbox::enqueue(&mut tx, &event, Some(&ctx)).await.map_err(bus)?;
        }
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        Ok(profile)
    }

    /// The caller must be an admin by token *and* still be one in the database.
    async fn admin(&self, ctx: &CallContext, tx: &mut sqlx::PgConnection) -> Result<Uuid, ErrorBody> {
        let me = self.caller(ctx).await?;
        let still_admin = store::roles(tx, me.sub).await.map_err(db)?.contains(&Role::Admin);
        if !me.has_role(Role::Admin) || !still_admin {
            return Err(ErrorBody::forbidden("only admins can change roles"));
        }
        Ok(me.sub)
    }

    pub async fn grant_role(&self, ctx: CallContext, req: RoleChangeRequest) -> Result<RolesReply, ErrorBody> {
        self.change_role(ctx, req, Change::Grant).await
    }

    pub async fn revoke_role(&self, ctx: CallContext, req: RoleChangeRequest) -> Result<RolesReply, ErrorBody> {
        self.change_role(ctx, req, Change::Revoke).await
    }

    /// Grant or revoke one role, with its event, in one transaction. Idempotent: granting a held
    /// role or revoking a missing one changes nothing and emits nothing.
    async fn change_role(
        &self,
        ctx: CallContext,
        req: RoleChangeRequest,
        change: Change,
    ) -> Result<RolesReply, ErrorBody> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let admin = self.admin(&ctx, &mut tx).await?;
        let role = Role::parse(&req.role)?;
        let user = req.user_id;
        if store::profile(&mut tx, user).await.map_err(db)?.is_none() {
            return Err(ErrorBody::not_found("user not found"));
        }
        let actor = Actor::User { id: admin };
        let changed = match change {
            Change::Grant => {
                let granted = store::grant_role(&mut tx, user, role, Some(admin)).await.map_err(db)?;
                if granted {
                    let event = RoleGranted { user_id: user, role }.envelope(actor);
                    outbox::enqueue(&mut tx, &event, Some(&ctx)).await.map_err(bus)?;
                }
                granted
            }
            Change::Revoke => {
                if role == Role::Admin {
                    store::lock_admins(&mut tx).await.map_err(db)?;
                    let holds = store::roles(&mut tx, user).await.map_err(db)?.contains(&Role::Admin);
                    if holds && store::count_admins(&mut tx).await.map_err(db)? <= 1 {
                        return Err(ErrorBody::conflict("the last admin cannot lose the admin role"));
                    }
                }
                let revoked = store::revoke_role(&mut tx, user, role).await.map_err(db)?;
                if revoked {
                    let event = RoleRevoked { user_id: user, role }.envelope(actor);
                    outbox::enqueue(&mut tx, &event, Some(&ctx)).await.map_err(bus)?;
                }
                revoked
            }
        };
        let roles = store::roles(&mut tx, user).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        if changed {
            tracing::info!(user_id = %user, role = %role, change = ?change, by = %admin, "role changed");
        }
        Ok(RolesReply { user_id: user, roles })
    }

    pub async fn jwks(&self, _ctx: CallContext, _req: Empty) -> Result<Jwks, ErrorBody> {
        Ok(self.keys.jwks().await)
    }

    /// Public: the link from a verification email confirms the address it was minted for. A used
    /// link answers the same again while the address stays confirmed; an unknown, expired or
    /// outdated one is `invalid_input` on `token`.
    pub async fn verify_email(
        &self,
        ctx: CallContext,
        req: VerifyEmailRequest,
    ) -> Result<EmailVerification, ErrorBody> {
        let invalid = |why: &str| ErrorBody::invalid_field("token", why);
        let hash = secret_token_hash(req.token.trim());
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some(row) = store::verification_for_update(&mut tx, &hash).await.map_err(db)? else {
            return Err(invalid("this verification link is not valid"));
        };
        if row.email != row.current_email {
            return Err(invalid("this link was sent to an address that is no longer on the account"));
        }
        if let (Some(_), Some(verified_at)) = (row.used_at, row.email_verified_at) {
            return Ok(EmailVerification { user_id: row.user_id, email: row.email, verified_at });
        }
        if row.expires_at <= OffsetDateTime::now_utc() {
            return Err(invalid("this verification link has expired; ask for a new one"));
        }
        let verified_at = store::confirm_email(&mut tx, &hash, row.user_id).await.map_err(db)?;
        if row.email_verified_at.is_none() {
            let event = EmailVerified { user_id: row.user_id, email: row.email.clone() }
                .envelope(Actor::User { id: row.user_id });
            outbox::enqueue(&mut tx, &event, Some(&ctx)).await.map_err(bus)?;
        }
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        tracing::info!(user_id = %row.user_id, "email verified");
        Ok(EmailVerification { user_id: row.user_id, email: row.email, verified_at })
    }

    /// Ask for another verification email (an event the notifications service turns into one).
    pub async fn resend_verification(&self, ctx: CallContext, _req: Empty) -> Result<Empty, ErrorBody> {
        let me = self.caller(&ctx).await?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some((email, verified_at)) = store::email_status(&mut tx, me.sub).await.map_err(db)? else {
            return Err(ErrorBody::not_found("user not found"));
        };
        if verified_at.is_some() {
            return Err(ErrorBody::conflict("the email address is verified already"));
        }
        let event = VerificationRequested { user_id: me.sub, email }.envelope(Actor::User { id: me.sub });
        outbox::enqueue(&mut tx, &event, Some(&ctx)).await.map_err(bus)?;
        tx.commit().await.map_err(db)?;
        self.outbox.wake();
        Ok(Empty {})
    }

    /// Internal (NATS permissions let only the notifications service call it): a fresh
    /// single-use token for the user's current address, or none when it is confirmed already.
    pub async fn issue_verification_token(
        &self,
        _ctx: CallContext,
        req: VerificationTokenRequest,
    ) -> Result<VerificationToken, ErrorBody> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let Some((email, verified_at)) = store::email_status(&mut tx, req.user_id).await.map_err(db)? else {
            return Err(ErrorBody::not_found("user not found"));
        };
        if verified_at.is_some() {
            return Ok(VerificationToken { token: None, email, expires_at: None });
        }
        let token = new_secret_token();
        let expires_at = OffsetDateTime::now_utc() + self.tokens.verification_ttl;
        store::insert_verification(&mut tx, &secret_token_hash(&token), req.user_id, &email, expires_at)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(VerificationToken { token: Some(token), email, expires_at: Some(expires_at) })
    }
}
