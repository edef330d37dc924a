//! Identity messages: registration, tokens, profiles, roles, JWKS, and identity events.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event::Event;
use crate::rpc::{Empty, rpc};
use crate::subjects::identity as subj;
use crate::validate::Role;

/// The `iss` claim of every access token.
pub const TOKEN_ISSUER: &str = "coursebus-identity";
/// The `aud` claim of every access token.
pub const TOKEN_AUDIENCE: &str = "coursebus";
/// The only signing algorithm accepted (`alg` header); anything else is rejected.
pub const TOKEN_ALGORITHM: &str = "EdDSA";

/// The claims inside an access token (a JWT signed with EdDSA/Ed25519).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: Uuid,
    pub roles: Vec<Role>,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
}

impl AccessClaims {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// `POST /v1/auth/register`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// At least 10 characters, not a common password, not containing the email.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    #[schema(example = "Ada Lovelace")]
    pub display_name: String,
}

/// A user's profile as its owner (or an admin) sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub bio: String,
    pub roles: Vec<Role>,
    /// Whether the owner confirmed the address with the link in their welcome email.
    pub email_verified: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// `POST /v1/auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// The OAuth 2.0 token response (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (EdDSA) valid for `expires_in` seconds.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: u64,
    /// Single use: each refresh returns a new one; presenting a used one revokes the session.
    pub refresh_token: String,
}

/// `POST /v1/auth/refresh` and `POST /v1/auth/logout`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// `PATCH /v1/me`: only the fields present change.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateProfileRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bio: Option<String>,
}

/// Grant or revoke one role of one user (admins only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleChangeRequest {
    pub user_id: Uuid,
    pub role: String,
}

/// A user's roles after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RolesReply {
    pub user_id: Uuid,
    pub roles: Vec<Role>,
}

/// A JSON Web Key Set (RFC 7517). Keys are kept as JSON objects so this crate needs no JOSE library.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

rpc!(Register, RegisterRequest, Profile, subj::USER_REGISTER);
rpc!(Login, LoginRequest, TokenResponse, subj::AUTH_LOGIN);
rpc!(Refresh, RefreshRequest, TokenResponse, subj::AUTH_REFRESH);
rpc!(Logout, RefreshRequest, Empty, subj::AUTH_LOGOUT);
rpc!(GetProfile, Empty, Profile, subj::PROFILE_GET);
rpc!(UpdateProfile, UpdateProfileRequest, Profile, subj::PROFILE_UPDATE);
rpc!(GrantRole, RoleChangeRequest, RolesReply, subj::ROLE_GRANT);
rpc!(RevokeRole, RoleChangeRequest, RolesReply, subj::ROLE_REVOKE);
rpc!(GetJwks, Empty, Jwks, subj::JWKS_GET);
rpc!(VerifyEmail, VerifyEmailRequest, EmailVerification, subj::EMAIL_VERIFY);
rpc!(ResendVerification, Empty, Empty, subj::EMAIL_RESEND);
rpc!(IssueVerificationToken, VerificationTokenRequest, VerificationToken, subj::INTERNAL_VERIFICATION_TOKEN);

/// `GET /v1/auth/verify-email?token=`: the link in the welcome (or resent) email; works without
/// logging in. Following it again after success answers the same (mail scanners open links too).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyEmailRequest {
    pub token: String,
}

/// The address that is now confirmed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmailVerification {
    pub user_id: Uuid,
    pub email: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub verified_at: OffsetDateTime,
}

/// Internal (notifications → identity): a fresh single-use token for `user_id`'s address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationTokenRequest {
    pub user_id: Uuid,
}

/// `token` is `None` when the address is confirmed already (the email then carries no link).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationToken {
    pub token: Option<String>,
    /// The address the token confirms.
    pub email: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// `cb.evt.identity.user.registered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub roles: Vec<Role>,
}

impl Event for UserRegistered {
    const SUBJECT: &'static str = subj::EVT_USER_REGISTERED;
    const TYPE: &'static str = "identity.user.registered";
}

/// `cb.evt.identity.user.profile_updated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileUpdated {
    pub user_id: Uuid,
    pub display_name: String,
    pub bio: String,
}

impl Event for ProfileUpdated {
    const SUBJECT: &'static str = subj::EVT_PROFILE_UPDATED;
    const TYPE: &'static str = "identity.user.profile_updated";
}

/// `cb.evt.identity.user.role_granted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleGranted {
    pub user_id: Uuid,
    pub role: Role,
}

impl Event for RoleGranted {
    const SUBJECT: &'static str = subj::EVT_ROLE_GRANTED;
    const TYPE: &'static str = "identity.user.role_granted";
}

/// `cb.evt.identity.user.role_revoked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleRevoked {
    pub user_id: Uuid,
    pub role: Role,
}

impl Event for RoleRevoked {
    const SUBJECT: &'static str = subj::EVT_ROLE_REVOKED;
    const TYPE: &'static str = "identity.user.role_revoked";
}

/// `cb.evt.identity.user.email_verified`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailVerified {
    pub user_id: Uuid,
    pub email: String,
}

impl Event for EmailVerified {
    const SUBJECT: &'static str = subj::EVT_EMAIL_VERIFIED;
    const TYPE: &'static str = "identity.user.email_verified";
}

/// `cb.evt.identity.user.verification_requested`: send another verification email.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationRequested {
    pub user_id: Uuid,
    pub email: String,
}

impl Event for VerificationRequested {
    const SUBJECT: &'static str = subj::EVT_VERIFICATION_REQUESTED;
    const TYPE: &'static str = "identity.user.verification_requested";
}
