//! Identity's PostgreSQL store. Every function takes a connection so callers compose them in one
//! transaction with the outbox.

use coursebus_contracts::identity::Profile;
use coursebus_contracts::validate::Role;
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::SigningKey;

pub type Result<T> = std::result::Result<T, sqlx::Error>;

/// True when `err` is a unique-constraint violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error().and_then(|e| e.code()).is_some_and(|code| code == "23505")
}

#[derive(Debug, sqlx::FromRow)]
pub struct Credentials {
    pub id: Uuid,
    pub password_hash: String,
}

#[derive(Debug, sqlx::FromRow)]
struct ProfileRow {
    id: Uuid,
    email: String,
    display_name: String,
    bio: String,
    roles: Vec<String>,
    email_verified: bool,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ProfileRow> for Profile {
    fn from(row: ProfileRow) -> Self {
        let mut roles: Vec<Role> = row.roles.iter().filter_map(|r| Role::parse(r).ok()).collect();
        roles.sort();
        Profile {
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            bio: row.bio,
            roles,
            email_verified: row.email_verified,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

pub async fn insert_user(
    conn: &mut PgConnection,
    id: Uuid,
    email: &str,
    password_hash: &str,
    display_name: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO users (id, email, password_hash, display_name) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .bind(display_name)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn email_taken(pool: &PgPool, email: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = $1)").bind(email).fetch_one(pool).await
}

pub async fn credentials(pool: &PgPool, email: &str) -> Result<Option<Credentials>> {
    sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1").bind(email).fetch_optional(pool).await
}

pub async fn user_id_by_email(conn: &mut PgConnection, email: &str) -> Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT id FROM users WHERE email = $1").bind(email).fetch_optional(conn).await
}

pub async fn profile(conn: &mut PgConnection, user: Uuid) -> Result<Option<Profile>> {
    let row: Option<ProfileRow> = sqlx::query_as(
        "SELECT u.id, u.email, u.display_name, u.bio, u.created_at, u.updated_at, \
                u.email_verified_at IS NOT NULL AS email_verified, \
                COALESCE(array_agg(r.role) FILTER (WHERE r.role IS NOT NULL), '{}') AS roles \
         FROM users u LEFT JOIN user_roles r ON r.user_id = u.id \
         WHERE u.id = $1 GROUP BY u.id",
    )
    .bind(user)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(Profile::from))
}

pub async fn roles(conn: &mut PgConnection, user: Uuid) -> Result<Vec<Role>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
        .bind(user)
        .fetch_all(conn)
        .await?;
    let mut roles: Vec<Role> = names.iter().filter_map(|r| Role::parse(r).ok()).collect();
    roles.sort();
    Ok(roles)
}

/// Returns true if the role was not held before.
pub async fn grant_role(conn: &mut PgConnection, user: Uuid, role: Role, by: Option<Uuid>) -> Result<bool> {
    let inserted =
        sqlx::query("INSERT INTO user_roles (user_id, role, granted_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(user)
            .bind(role.as_str())
            .bind(by)
            .execute(conn)
            .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Returns true if the role was held.
pub async fn revoke_role(conn: &mut PgConnection, user: Uuid, role: Role) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
        .bind(user)
        .bind(role.as_str())
        .execute(conn)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Serialise role changes that involve admins (so two revocations cannot remove the last two).
pub async fn lock_admins(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('identity_admins'))").execute(conn).await?;
    Ok(())
}

pub async fn count_admins(conn: &mut PgConnection) -> Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM user_roles WHERE role = 'admin'").fetch_one(conn).await
}

pub async fn update_profile(
    conn: &mut PgConnection,
    user: Uuid,
    display_name: Option<&str>,
    bio: Option<&str>,
) -> Result<bool> {
    let updated = sqlx::query(
        "UPDATE users SET display_name = COALESCE($2, display_name), bio = COALESCE($3, bio), updated_at = now() \
         WHERE id = $1",
    )
    .bind(user)
    .bind(display_name)
    .bind(bio)
    .execute(conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

#[derive(Debug, sqlx::FromRow)]
pub struct RefreshRow {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

pub async fn insert_refresh(
    conn: &mut PgConnection,
    family: Uuid,
    user: Uuid,
    token_hash: &[u8],
    expires_at: OffsetDateTime,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(family)
    .bind(user)
    .bind(token_hash)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The token row, locked for the rest of the transaction.
pub async fn refresh_for_update(conn: &mut PgConnection, token_hash: &[u8]) -> Result<Option<RefreshRow>> {
    sqlx::query_as(
        "SELECT id, family_id, user_id, expires_at, used_at, revoked_at FROM refresh_tokens \
         WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}

pub async fn mark_refresh_used(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// Revoke every token of a family; returns how many were still live.
pub async fn revoke_family(conn: &mut PgConnection, family: Uuid) -> Result<u64> {
    let done = sqlx::query("UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL")
        .bind(family)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

#[derive(Debug, sqlx::FromRow)]
struct KeyRow {
    kid: String,
    private_der: Vec<u8>,
    created_at: OffsetDateTime,
}

/// Keys created within `window`, newest first.
pub async fn recent_keys(conn: &mut PgConnection, window: std::time::Duration) -> Result<Vec<SigningKey>> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT kid, private_der, created_at FROM signing_keys \
         WHERE created_at > now() - make_interval(secs => $1) ORDER BY created_at DESC",
    )
    .bind(window.as_secs_f64())
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| SigningKey::from_der(r.kid, &r.private_der, r.created_at)).collect())
}

pub async fn lock_keys(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('identity_signing_keys'))").execute(conn).await?;
    Ok(())
}

pub async fn insert_key(conn: &mut PgConnection, kid: &str, der: &[u8]) -> Result<()> {
    sqlx::query("INSERT INTO signing_keys (kid, private_der) VALUES ($1, $2)")
        .bind(kid)
        .bind(der)
        .execute(conn)
        .await?;
    Ok(())
}

/// The address of `user` and when it was confirmed (`None`: no such user).
pub async fn email_status(conn: &mut PgConnection, user: Uuid) -> Result<Option<(String, Option<OffsetDateTime>)>> {
    sqlx::query_as("SELECT email, email_verified_at FROM users WHERE id = $1").bind(user).fetch_optional(conn).await
}

/// Store a verification token (its hash) for `user`'s current `email`.
pub async fn insert_verification(
    conn: &mut PgConnection,
    token_hash: &[u8],
    user: Uuid,
    email: &str,
    expires_at: OffsetDateTime,
) -> Result<()> {
    sqlx::query("INSERT INTO email_verifications (token_hash, user_id, email, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(token_hash)
        .bind(user)
        .bind(email)
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// A verification token's row, locked for the rest of the transaction.
#[derive(Debug, sqlx::FromRow)]
pub struct VerificationRow {
    pub user_id: Uuid,
    pub email: String,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    /// The user's address now and when it was confirmed.
    pub current_email: String,
    pub email_verified_at: Option<OffsetDateTime>,
}

pub async fn verification_for_update(conn: &mut PgConnection, token_hash: &[u8]) -> Result<Option<VerificationRow>> {
    sqlx::query_as(
        "SELECT v.user_id, v.email, v.expires_at, v.used_at, u.email AS current_email, u.email_verified_at \
         FROM email_verifications v JOIN users u ON u.id = v.user_id \
         WHERE v.token_hash = $1 FOR UPDATE",
    )
    .bind(token_hash)
    .fetch_optional(conn)
    .await
}

/// Use a token and confirm the address; returns when it was confirmed.
pub async fn confirm_email(conn: &mut PgConnection, token_hash: &[u8], user: Uuid) -> Result<OffsetDateTime> {
    sqlx::query("UPDATE email_verifications SET used_at = now() WHERE token_hash = $1")
        .bind(token_hash)
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, now()) WHERE id = $1 RETURNING email_verified_at",
    )
    .bind(user)
    .fetch_one(conn)
    .await
}

/// Forget verification tokens that expired a day ago or more.
pub async fn purge_verifications(pool: &PgPool) -> Result<u64> {
    let done = sqlx::query("DELETE FROM email_verifications WHERE expires_at < now() - interval '1 day'")
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
