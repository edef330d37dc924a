//! Notification routes: the caller's in-app inbox, delivery preferences, and the WebSocket that
//! pushes new notifications in real time.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::StatusCode;
use axum::response::Response;
use coursebus_contracts::ErrorBody;
use coursebus_contracts::notifications::{
    Announcement, AnnouncementIdRequest, CreateAnnouncement, CreateAnnouncementRequest, DeliveryPage, DeliverySchedule,
    GetAnnouncement, GetPreferences, GetSchedule, GetUnreadCount, ListDeliveries, ListDeliveriesRequest,
    ListNotifications, ListNotificationsRequest, MarkAllRead, MarkRead, MarkedRead, Notification,
    NotificationIdRequest, NotificationPage, PhoneReply, PhoneRequest, Preferences, SetPhone, UnreadCount, Unsubscribe,
    UnsubscribeRequest, Unsubscribed, UpdatePreferences, UpdateSchedule,
};
use coursebus_contracts::rpc::Empty;
use coursebus_contracts::subjects::notifications as subj;
use futures::StreamExt;
use uuid::Uuid;

use super::ApiResult;
use crate::AppState;
use crate::extract::{ApiJson, ApiPath, ApiQuery, Caller, Ctx};

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(ListNotificationsRequest),
    responses((status = 200, description = "A page of notifications", body = NotificationPage), (status = 400, description = "Bad cursor or limit", body = ErrorBody)))]
pub async fn list_notifications(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<ListNotificationsRequest>,
) -> ApiResult<Json<NotificationPage>> {
    Ok(Json(s.bus.request::<ListNotifications>(&ctx, &req).await?))
}

/// How many of the caller's notifications are unread.
#[utoipa::path(get, path = "/v1/notifications/unread-count", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, description = "The unread count", body = UnreadCount)))]
pub async fn unread_count(State(s): State<AppState>, _caller: Caller, Ctx(ctx): Ctx) -> ApiResult<Json<UnreadCount>> {
    Ok(Json(s.bus.request::<GetUnreadCount>(&ctx, &Empty {}).await?))
}

/// Mark one of the caller's notifications read (marking it again changes nothing).
#[utoipa::path(post, path = "/v1/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "The notification, read", body = Notification), (status = 404, description = "No such notification of yours", body = ErrorBody)))]
pub async fn mark_read(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Notification>> {
    Ok(Json(s.bus.request::<MarkRead>(&ctx, &NotificationIdRequest { id }).await?))
}

/// Mark every notification of the caller read.
#[utoipa::path(post, path = "/v1/notifications/read-all", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, description = "How many were marked read", body = MarkedRead)))]
pub async fn mark_all_read(State(s): State<AppState>, _caller: Caller, Ctx(ctx): Ctx) -> ApiResult<Json<MarkedRead>> {
    Ok(Json(s.bus.request::<MarkAllRead>(&ctx, &Empty {}).await?))
}

/// The caller's delivery preferences: every (kind, channel) pair, on or off.
#[utoipa::path(get, path = "/v1/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, description = "Every pair", body = Preferences)))]
pub async fn get_preferences(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<Preferences>> {
    Ok(Json(s.bus.request::<GetPreferences>(&ctx, &Empty {}).await?))
}

/// Turn pairs on or off (send only those that change); answers the whole set. Account emails
/// cannot be turned off.
#[utoipa::path(put, path = "/v1/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    request_body = Preferences,
    responses((status = 200, description = "Every pair after the change", body = Preferences), (status = 400, description = "A pair that does not exist or cannot be turned off", body = ErrorBody)))]
pub async fn update_preferences(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<Preferences>,
) -> ApiResult<Json<Preferences>> {
    Ok(Json(s.bus.request::<UpdatePreferences>(&ctx, &req).await?))
}

/// Turn off one kind of email from the link at the bottom of it: no login; each link works once.
#[utoipa::path(get, path = "/v1/notifications/unsubscribe", tag = "notifications", params(UnsubscribeRequest),
    responses(
        (status = 200, description = "That kind of email is off", body = Unsubscribed),
        (status = 400, description = "A forged, altered or malformed link", body = ErrorBody),
        (status = 409, description = "The link was already used", body = ErrorBody),
    ))]
pub async fn unsubscribe(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<UnsubscribeRequest>,
) -> ApiResult<Json<Unsubscribed>> {
    Ok(Json(s.bus.request::<Unsubscribe>(&ctx, &req).await?))
}

/// `?access_token=` for WebSocket clients that cannot set headers (browsers).
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// The access token, when no `Authorization` header can be sent.
    #[serde(default)]
    pub access_token: Option<String>,
}

/// Real-time pushes for the caller over a WebSocket: one JSON text frame per event
/// (`{"type": "notification", "notification": {...}}`). Only the caller's own pushes arrive; the
/// socket closes when the access token expires (reconnect with a fresh one).
#[utoipa::path(get, path = "/v1/ws", tag = "notifications", security(("bearer" = [])),
    params(WsQuery),
    responses(
        (status = 101, description = "Switched to WebSocket"),
        (status = 400, description = "Not a WebSocket upgrade", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    ))]
pub async fn websocket(
    State(s): State<AppState>,
    Ctx(ctx): Ctx,
    ApiQuery(query): ApiQuery<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ctx = match query.access_token {
        Some(token) if ctx.bearer().is_none() => ctx.with_bearer(&token),
        _ => ctx,
    };
    let claims = s.verifier.verify_ctx(&ctx).await?;
    let upgrade = upgrade.map_err(|e| ErrorBody::invalid_input(format!("a WebSocket upgrade is required: {e}")))?;
    let client = s.bus.client().clone();
    // Subscribed (and the server told) before the client hears 101, so no push is missed.
    let subscriber = client.subscribe(subj::user_push(&claims.sub)).await.map_err(|err| {
        tracing::warn!(error = %err, "could not subscribe for pushes");
        ErrorBody::unavailable("real-time pushes are unavailable")
    })?;
    if let Err(err) = client.flush().await {
        tracing::warn!(error = %err, "could not flush a push subscription");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let expires_in = u64::try_from(claims.exp).unwrap_or(0).saturating_sub(now);
    Ok(upgrade.on_upgrade(move |socket| pushes(socket, subscriber, Duration::from_secs(expires_in))))
}

/// Forward pushes until the client leaves, the NATS subscription ends or the token expires.
async fn pushes(mut socket: WebSocket, mut subscriber: async_nats::Subscriber, valid_for: Duration) {
    let expired = tokio::time::sleep(valid_for);
    tokio::pin!(expired);
    loop {
        tokio::select! {
            push = subscriber.next() => {
                let Some(push) = push else { break };
                let text = String::from_utf8_lossy(&push.payload).into_owned();
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                // Pings are answered by the library; anything else from the client is ignored.
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = &mut expired => {
                let close = CloseFrame { code: close_code::POLICY, reason: "token expired".into() };
                let _ = socket.send(Message::Close(Some(close))).await;
                break;
            }
        }
    }
    let _ = subscriber.unsubscribe().await;
}

/// Set or remove (`null`) my phone number for text messages (SMS stays off per kind until its
/// `sms` preference is turned on).
#[utoipa::path(put, path = "/v1/notifications/phone", tag = "notifications", security(("bearer" = [])),
    request_body = PhoneRequest,
    responses(
        (status = 200, description = "The number now on file (E.164)", body = PhoneReply),
        (status = 400, description = "Not a number in international form", body = ErrorBody),
    ))]
pub async fn set_phone(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<PhoneRequest>,
) -> ApiResult<Json<PhoneReply>> {
    Ok(Json(s.bus.request::<SetPhone>(&ctx, &req).await?))
}

/// Post an announcement to everyone enrolled in the course (its instructor or an admin). The
/// fan-out runs as a job: follow it with the `GET` below.
#[utoipa::path(post, path = "/v1/courses/{course}/announcements", tag = "notifications", security(("bearer" = [])),
    params(("course" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key")),
    request_body = CreateAnnouncementRequest,
    responses(
        (status = 202, description = "Accepted; learners get it in-app, by email and (if they opted in) by text", body = Announcement),
        (status = 400, description = "Empty or too long title or body", body = ErrorBody),
        (status = 403, description = "Not the course's instructor", body = ErrorBody),
        (status = 404, description = "No published course with this id", body = ErrorBody),
    ))]
pub async fn create_announcement(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath(course_id): ApiPath<Uuid>,
    ApiJson(mut req): ApiJson<CreateAnnouncementRequest>,
) -> ApiResult<(StatusCode, Json<Announcement>)> {
    req.course_id = course_id;
    Ok((StatusCode::ACCEPTED, Json(s.bus.request::<CreateAnnouncement>(&ctx, &req).await?)))
}

/// An announcement and how far its fan-out got (its author and admins).
#[utoipa::path(get, path = "/v1/courses/{course}/announcements/{id}", tag = "notifications", security(("bearer" = [])),
    params(("course" = Uuid, Path), ("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Status and recipients so far", body = Announcement),
        (status = 404, description = "No such announcement of the caller's", body = ErrorBody),
    ))]
pub async fn get_announcement(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiPath((course_id, id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Announcement>> {
    Ok(Json(s.bus.request::<GetAnnouncement>(&ctx, &AnnouncementIdRequest { course_id, id }).await?))
}

/// My digest frequency and quiet hours.
#[utoipa::path(get, path = "/v1/notifications/schedule", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, description = "Digest `off` and no quiet hours unless changed", body = DeliverySchedule)))]
pub async fn get_schedule(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
) -> ApiResult<Json<DeliverySchedule>> {
    Ok(Json(s.bus.request::<GetSchedule>(&ctx, &Empty {}).await?))
}

/// Replace my digest frequency (`off`, `daily`, `weekly`: emails about enrolments and
/// announcements gathered into one at 07:00 UTC) and quiet hours (emails and texts wait for
/// their end; in-app arrives at once).
#[utoipa::path(put, path = "/v1/notifications/schedule", tag = "notifications", security(("bearer" = [])),
    request_body = DeliverySchedule,
    responses(
        (status = 200, description = "The schedule now", body = DeliverySchedule),
        (status = 400, description = "A time not HH:MM, an empty window, an unknown time zone", body = ErrorBody),
    ))]
pub async fn update_schedule(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiJson(req): ApiJson<DeliverySchedule>,
) -> ApiResult<Json<DeliverySchedule>> {
    Ok(Json(s.bus.request::<UpdateSchedule>(&ctx, &req).await?))
}

/// My delivery log, newest first: each notification's channels with status, attempts and the
/// reason of the last failure (or why it waits).
#[utoipa::path(get, path = "/v1/notifications/deliveries", tag = "notifications", security(("bearer" = [])),
    params(ListDeliveriesRequest),
    responses((status = 200, description = "The caller's deliveries", body = DeliveryPage)))]
pub async fn list_deliveries(
    State(s): State<AppState>,
    _caller: Caller,
    Ctx(ctx): Ctx,
    ApiQuery(req): ApiQuery<ListDeliveriesRequest>,
) -> ApiResult<Json<DeliveryPage>> {
    Ok(Json(s.bus.request::<ListDeliveries>(&ctx, &req).await?))
}
