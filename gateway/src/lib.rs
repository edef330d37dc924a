//! The coursebus HTTP gateway. Thin by design: authenticate, rate-limit, check the JSON shape,
//! turn a route into one NATS request, turn the reply or error code into HTTP. It owns no
//! database and no business rule.

pub mod error;
pub mod extract;
pub mod observe;
pub mod ops;
pub mod routes;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use coursebus_bus::Bus;
use coursebus_bus::auth::{BusJwks, JwtVerifier};
use coursebus_contracts::ErrorBody;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{PeerIpKeyExtractor, SmartIpKeyExtractor};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_scalar::{Scalar, Servable};

use crate::error::ApiError;
use crate::observe::Metrics;

/// Failures that stop the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Bus(#[from] coursebus_bus::BusError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
}

/// Per-client rate limit on the authentication endpoints (register, login, refresh).
#[derive(Debug, Clone, Copy)]
pub struct AuthRateLimit {
    /// One request is replenished every `replenish`.
    pub replenish: Duration,
    /// Requests allowed in a burst.
    pub burst: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub nats_url: String,
    /// Deadline of each bus request; shorter than `http_timeout`.
    pub bus_deadline: Duration,
    pub http_timeout: Duration,
    /// Largest accepted request body.
    pub body_limit: usize,
    pub auth_rate_limit: AuthRateLimit,
    /// Key the rate limit by `X-Forwarded-For`/`X-Real-IP` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// The `whsec_...` secret of Stripe's webhook endpoint; without it the webhook route is off.
    pub stripe_webhook_secret: Option<webhook::WebhookSecret>,
}

impl Config {
    pub fn new(nats_url: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            nats_url: nats_url.into(),
            bus_deadline: Duration::from_secs(5),
            http_timeout: Duration::from_secs(10),
            body_limit: 1024 * 1024,
            auth_rate_limit: AuthRateLimit { replenish: Duration::from_millis(500), burst: 10 },
            trust_forwarded_for: false,
            stripe_webhook_secret: None,
        }
    }
}

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub bus: Bus,
    pub verifier: Arc<JwtVerifier>,
    pub metrics: Metrics,
    pub stripe_webhook: Option<webhook::WebhookSecret>,
}

impl axum::extract::FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Metrics {
        state.metrics.clone()
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "coursebus", description = "The coursebus REST API. Errors are `{code, message, details}` with a stable `code`."),
    // Served with a wildcard route (`{*file}`), so listed here rather than through `routes!`.
    paths(routes::content::fetch_playback),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration, login, tokens"),
        (name = "profile", description = "The caller's profile"),
        (name = "roles", description = "Role administration"),
        (name = "catalog", description = "Courses, outlines, publishing"),
        (name = "search", description = "Full-text course search with facets"),
        (name = "enrollment", description = "Enrolments, progress, certificates"),
        (name = "notifications", description = "The in-app inbox"),
        (name = "content", description = "Lesson assets: presigned uploads, downloads, HLS/DASH playback, captions"),
        (name = "assessment", description = "Question banks, quizzes, attempts, grading"),
        (name = "payments", description = "Checkout, orders, refunds, receipts, coupons, reports, Stripe webhooks"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The router and its OpenAPI document.
pub fn router(state: AppState, config: &Config) -> Result<Router, GatewayError> {
    let auth = OpenApiRouter::new()
        .routes(routes!(routes::identity::register))
        .routes(routes!(routes::identity::login))
        .routes(routes!(routes::identity::refresh))
        .routes(routes!(routes::identity::verify_email))
        .routes(routes!(routes::identity::resend_verification));
    let auth = if config.trust_forwarded_for {
        rate_limited(auth, config.auth_rate_limit, SmartIpKeyExtractor)?
    } else {
        rate_limited(auth, config.auth_rate_limit, PeerIpKeyExtractor)?
    };

    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth)
        .routes(routes!(routes::identity::logout))
        .routes(routes!(routes::identity::get_me, routes::identity::update_me))
        .routes(routes!(routes::identity::grant_role, routes::identity::revoke_role))
        .routes(routes!(routes::catalog::create_course, routes::catalog::list_courses))
        .routes(routes!(routes::catalog::get_course, routes::catalog::update_course))
        .routes(routes!(routes::catalog::put_outline))
        .routes(routes!(routes::catalog::publish_course))
        .routes(routes!(routes::catalog::archive_course))
        .routes(routes!(routes::search::search_courses))
        .routes(routes!(routes::enrollment::enroll, routes::enrollment::list_my_enrollments))
        .routes(routes!(routes::enrollment::get_enrollment, routes::enrollment::cancel_enrollment))
        .routes(routes!(routes::enrollment::update_progress))
        .routes(routes!(routes::enrollment::course_roster))
        .routes(routes!(routes::enrollment::set_completion_rules, routes::enrollment::get_completion_rules))
        .routes(routes!(routes::enrollment::verify_certificate))
        .routes(routes!(routes::notifications::list_notifications))
        .routes(routes!(routes::notifications::unread_count))
        .routes(routes!(routes::notifications::mark_read))
        .routes(routes!(routes::notifications::mark_all_read))
        .routes(routes!(routes::notifications::get_preferences, routes::notifications::update_preferences))
        .routes(routes!(routes::notifications::websocket))
        .routes(routes!(routes::notifications::unsubscribe))
        .routes(routes!(routes::notifications::set_phone))
        .routes(routes!(routes::notifications::list_deliveries))
        .routes(routes!(routes::notifications::get_schedule, routes::notifications::update_schedule))
        .routes(routes!(routes::notifications::create_announcement))
        .routes(routes!(routes::notifications::get_announcement))
        .routes(routes!(routes::content::create_asset, routes::content::list_assets))
        .routes(routes!(routes::content::get_asset))
        .routes(routes!(routes::content::presign_parts))
        .routes(routes!(routes::content::upload_status, routes::content::abort_upload))
        .routes(routes!(routes::content::complete_upload))
        .routes(routes!(routes::content::download_asset))
        .routes(routes!(routes::content::grant_playback))
        .routes(routes!(routes::content::put_caption))
        .routes(routes!(routes::assessment::create_bank))
        .routes(routes!(routes::assessment::create_quiz))
        .routes(routes!(routes::assessment::get_quiz))
        .routes(routes!(routes::assessment::quiz_grade))
        .routes(routes!(routes::assessment::start_attempt))
        .routes(routes!(routes::assessment::get_attempt))
        .routes(routes!(routes::assessment::save_answers))
        .routes(routes!(routes::assessment::submit_attempt))
        .routes(routes!(routes::assessment::grading_queue))
        .routes(routes!(routes::assessment::grade_essay))
        .routes(routes!(routes::assessment::set_gradebook, routes::assessment::course_gradebook))
        .routes(routes!(routes::assessment::my_gradebook))
        .routes(routes!(routes::assignments::create_assignment))
        .routes(routes!(routes::assignments::get_assignment))
        .routes(routes!(routes::assignments::submit, routes::assignments::my_submission))
        .routes(routes!(routes::assignments::list_submissions))
        .routes(routes!(routes::assignments::grade_submission))
        .routes(routes!(routes::assignments::release_grades))
        .routes(routes!(routes::assignments::similarity))
        .routes(routes!(routes::payments::checkout))
        .routes(routes!(routes::payments::list_orders))
        .routes(routes!(routes::payments::get_order))
        .routes(routes!(routes::payments::refund_order))
        .routes(routes!(routes::payments::receipt))
        .routes(routes!(routes::payments::create_coupon))
        .routes(routes!(routes::payments::revenue_report))
        .routes(routes!(routes::payments::ledger))
        .routes(routes!(routes::payments::invoices))
        .routes(routes!(routes::payments::reconcile))
        .routes(routes!(routes::payments::stripe_webhook))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::jwks))
        .split_for_parts();
    let openapi_json = openapi.clone();
    let app = api
        .route("/v1/playback/{grant}/{*file}", axum::routing::get(routes::content::fetch_playback))
        .route("/openapi.json", axum::routing::get(move || async move { axum::Json(openapi_json) }))
        .merge(Router::from(Scalar::with_url("/docs", openapi)))
        .fallback(|| async { ApiError(ErrorBody::not_found("no such route")) })
        .method_not_allowed_fallback(|| async {
            ApiError(ErrorBody::new(coursebus_contracts::ErrorCode::NotFound, "method not allowed on this route"))
        })
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), observe::observe))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError(ErrorBody::internal()).into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(config.http_timeout, timeout))
        .with_state(state);
    Ok(app)
}

/// Limit `routes` per client, as told by `key`.
fn rate_limited<K>(
    routes: OpenApiRouter<AppState>,
    limit: AuthRateLimit,
    key: K,
) -> Result<OpenApiRouter<AppState>, GatewayError>
where
    K: tower_governor::key_extractor::KeyExtractor + Send + Sync + 'static,
    K::Key: Send + Sync + 'static,
{
    let governor = GovernorConfigBuilder::default()
        .period(limit.replenish)
        .burst_size(limit.burst)
        .key_extractor(key)
        .finish()
        .ok_or_else(|| GatewayError::Config("invalid rate limit".into()))?;
    let limiter = governor.limiter().clone();
    spawn_limiter_cleanup(move || {
        limiter.retain_recent();
        Arc::strong_count(&limiter) > 1
    });
    Ok(routes.layer(GovernorLayer::new(governor).error_handler(governor_error)))
}

/// Answer `unavailable` instead of hanging past the HTTP deadline.
async fn timeout(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError(ErrorBody::unavailable("the request took too long")).into_response(),
    }
}

fn governor_error(err: tower_governor::GovernorError) -> Response {
    match err {
        tower_governor::GovernorError::TooManyRequests { wait_time, .. } => error::rate_limited(wait_time),
        other => {
            tracing::warn!(error = %other, "rate limiter could not identify the client");
            ApiError(ErrorBody::invalid_input("could not identify the client")).into_response()
        }
    }
}

/// Every minute, forget clients not seen for a while so the limiter's memory stays bounded;
/// `cleanup` returns false once the router is gone.
fn spawn_limiter_cleanup(cleanup: impl Fn() -> bool + Send + 'static) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if !cleanup() {
                return;
            }
        }
    });
}

/// Connect to NATS and serve on `listener` until `shutdown`.
pub async fn serve(config: Config, listener: TcpListener, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let client = coursebus_bus::connect(&config.nats_url, "gateway", Duration::from_secs(30)).await?;
    let bus = Bus::new(client, config.bus_deadline);
    let metrics = Metrics::new().map_err(|e| GatewayError::Config(e.to_string()))?;
    let state = AppState {
        bus: bus.clone(),
        verifier: JwtVerifier::new(BusJwks(bus)),
        metrics,
        stripe_webhook: config.stripe_webhook_secret.clone(),
    };
    let app = router(state, &config)?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    tracing::info!("gateway stopped");
    Ok(())
}

/// Bind `config.listen` and [`serve`].
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let listener = TcpListener::bind(config.listen).await?;
    serve(config, listener, shutdown).await
}
