//! Identity routes: registration, tokens, profile, roles.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use coursebus_contracts::ErrorBody;
use coursebus_contracts::identity::{
    EmailVerification, GetProfile, GrantRole, Login, LoginRequest, Logout, Profile, Refresh, RefreshRequest, Register,
    RegisterRequest, ResendVerification, RevokeRole, RoleChangeRequest, RolesReply, TokenResponse, UpdateProfile,
    UpdateProfileRequest, VerifyEmail, VerifyEmailRequest,
};
use coursebus_contracts::rpc::Empty;
use uuid::Uuid;

use super::ApiResult;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, Ctx};

/// Create an account (role `student`).
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    responses(
        (status = 201, description = "Registered", body = Profile),
        (status = 400, description = "A field breaks a rule (`details.field` names it)", body = ErrorBody),
        (status = 409, description = "The email is taken", body = ErrorBody),
        (status = 429, description = "Too many attempts from this client", body = ErrorBody),
    ))]
pub async fn register(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<Response> {
    let profile = s.bus.request::<Register>(&ctx, &req).await?;
    Ok((StatusCode::CREATED, Json(profile)).into_response())
}

/// Log in with email and password: an OAuth 2.0 token response.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "Wrong email or password (never says which)", body = ErrorBody),
        (status = 429, description = "Too many attempts from this client", body = ErrorBody),
    ))]
pub async fn login(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(s.bus.request::<Login>(&ctx, &req).await?))
}

/// Exchange a refresh token for new tokens. Each refresh token works once; presenting a used
/// one revokes the whole session.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = ErrorBody),
    ))]
pub async fn refresh(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    Ok(Json(s.bus.request::<Refresh>(&ctx, &req).await?))
}

/// Log out: revoke the session the refresh token belongs to.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "Session revoked (also when the token was unknown)")))]
pub async fn logout(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    s.bus.request::<Logout>(&ctx, &req).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// My profile.
#[utoipa::path(get, path = "/v1/me", tag = "profile", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = Profile),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub async fn get_me(State(s): State<AppState>, _caller: Caller, Ctx(ctx): Ctx) -> ApiResult<Json<Profile>> {
    Ok(Json(s.bus.request::<GetProfile>(&ctx, &Empty {}).await?))
}

/// Update my display name or bio.
#[utoipa::path(patch, path = "/v1/me", tag = "profile", security(("bearer" = [])), request_body = UpdateProfileRequest,
    responses(
        (status = 200, description = "The updated profile", body = Profile),
        (status = 400, description = "A field breaks a rule", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
pub async fn update_me(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<UpdateProfileRequest>,
) -> ApiResult<Json<Profile>> {
    Ok(Json(s.bus.request::<UpdateProfile>(&ctx, &req).await?))
}

/// Grant a role (admins only).
#[utoipa::path(put, path = "/v1/users/{user_id}/roles/{role}", tag = "roles", security(("bearer" = [])),
    params(("user_id" = Uuid, Path), ("role" = String, Path, description = "student, instructor or admin")),
    responses(
        (status = 200, description = "The user's roles", body = RolesReply),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub async fn grant_role(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath((user_id, role)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<RolesReply>> {
    Ok(Json(s.bus.request::<GrantRole>(&ctx, &RoleChangeRequest { user_id, role }).await?))
}

/// Revoke a role (admins only; the last admin keeps theirs).
#[utoipa::path(delete, path = "/v1/users/{user_id}/roles/{role}", tag = "roles", security(("bearer" = [])),
    params(("user_id" = Uuid, Path), ("role" = String, Path, description = "student, instructor or admin")),
    responses(
        (status = 200, description = "The user's roles", body = RolesReply),
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "It is the last admin", body = ErrorBody),
    ))]
pub async fn revoke_role(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath((user_id, role)): ApiPath<(Uuid, String)>,
) -> ApiResult<Json<RolesReply>> {
    Ok(Json(s.bus.request::<RevokeRole>(&ctx, &RoleChangeRequest { user_id, role }).await?))
}

/// Confirm an email address: the link in the welcome email, no login needed. Following a used
/// link again answers the same while the address stays confirmed.
#[utoipa::path(get, path = "/v1/auth/verify-email", tag = "auth", params(VerifyEmailRequest),
    responses(
        (status = 200, description = "The address is confirmed", body = EmailVerification),
        (status = 400, description = "An unknown, expired or outdated link (`details.field` = `token`)", body = ErrorBody),
        (status = 429, description = "Too many attempts from this client", body = ErrorBody),
    ))]
pub async fn verify_email(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<VerifyEmailRequest>,
) -> ApiResult<Json<EmailVerification>> {
    Ok(Json(s.bus.request::<VerifyEmail>(&ctx, &req).await?))
}

/// Send me another verification email.
#[utoipa::path(post, path = "/v1/me/verify-email", tag = "profile", security(("bearer" = [])),
    responses(
        (status = 202, description = "An email with a new link is on its way"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 409, description = "The address is verified already", body = ErrorBody),
        (status = 429, description = "Too many attempts from this client", body = ErrorBody),
    ))]
pub async fn resend_verification(State(s): State<AppState>, _caller: Caller, Ctx(ctx): Ctx) -> ApiResult<StatusCode> {
    s.bus.request::<ResendVerification>(&ctx, &Empty {}).await?;
    Ok(StatusCode::ACCEPTED)
}
