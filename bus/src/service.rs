//! Workers as NATS micro services: `$SRV.PING|INFO|STATS` answer with the service's name,
//! version and endpoints, endpoints join queue group `q`, and handlers are typed by [`Rpc`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::service::{self, ServiceExt};
use async_nats::{Client, HeaderMap};
use coursebus_contracts::{ErrorBody, ErrorCode, Rpc, headers, subjects::QUEUE_GROUP};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::{BusError, CallContext};

/// What `$SRV.INFO` reports.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    pub name: &'static str,
    /// SemVer.
    pub version: &'static str,
    pub description: &'static str,
}

/// A running micro service. Add endpoints with [`MicroService::serve`], then [`MicroService::run`]
/// until shutdown: it stops taking requests, answers the ones in flight, then unregisters.
pub struct MicroService {
    spec: ServiceSpec,
    client: Client,
    service: service::Service,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for MicroService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicroService").field("spec", &self.spec).finish_non_exhaustive()
    }
}

/// At most this many requests are handled at once by one replica; the rest wait in NATS.
const MAX_IN_FLIGHT: usize = 512;

impl MicroService {
    pub async fn start(client: &Client, spec: ServiceSpec, shutdown: CancellationToken) -> Result<Self, BusError> {
        let service = client
            .service_builder()
            .description(spec.description)
            .queue_group(QUEUE_GROUP)
            .start(spec.name, spec.version)
            .await
            .map_err(|e| BusError::Service(e.to_string()))?;
        tracing::info!(service.name = spec.name, service.version = spec.version, "micro service started");
        Ok(Self {
            spec,
            client: client.clone(),
            service,
            tracker: TaskTracker::new(),
            shutdown,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    /// Serve `R`'s endpoint with `handler`. A malformed request is answered `invalid_input`; a
    /// handler that panics is answered `internal` and the replica keeps serving.
    pub async fn serve<R, H, Fut>(&mut self, handler: H) -> Result<(), BusError>
    where
        R: Rpc,
        H: Fn(CallContext, R::Request) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<R::Reply, ErrorBody>> + Send + 'static,
    {
        let ep = R::ENDPOINT;
        let mut endpoint =
            self.service.group(ep.group).endpoint(ep.name).await.map_err(|e| BusError::Service(e.to_string()))?;
        let shutdown = self.shutdown.clone();
        let tracker = self.tracker.clone();
        let in_flight = self.in_flight.clone();
        self.tracker.spawn(async move {
            loop {
                let request = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = endpoint.next() => match next {
                        Some(request) => request,
                        None => break,
                    },
                };
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let handler = handler.clone();
                tracker.spawn(async move {
                    handle::<R, H, Fut>(request, handler).await;
                    drop(permit);
                });
            }
            if let Err(err) = endpoint.stop().await {
                tracing::warn!(error = %err, "could not unsubscribe an endpoint");
            }
        });
        Ok(())
    }

    /// Run until shutdown is requested, then drain and unregister.
    pub async fn run(self) {
        self.shutdown.cancelled().await;
        self.tracker.close();
        self.tracker.wait().await;
        if let Err(err) = self.service.stop().await {
            tracing::warn!(error = %err, "could not stop the micro service cleanly");
        }
        // The unsubscriptions are only queued so far. Before the replica goes away the server
        // must have processed them, or it keeps routing requests here and they wait for a
        // timeout instead of failing over at once. A request nobody serves is answered (no
        // responders) only after the server handled everything this connection sent before it.
        let barrier = coursebus_contracts::subjects::barrier(&uuid::Uuid::now_v7().simple().to_string());
        let synced =
            tokio::time::timeout(Duration::from_secs(2), self.client.request(barrier, bytes::Bytes::new())).await;
        if synced.is_err() {
            tracing::warn!("the server did not confirm the unsubscriptions within 2 s");
        }
        tracing::info!(service.name = self.spec.name, "micro service stopped");
    }
}

async fn handle<R, H, Fut>(request: service::Request, handler: H)
where
    R: Rpc,
    H: Fn(CallContext, R::Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R::Reply, ErrorBody>> + Send + 'static,
{
    let ctx = CallContext::from_headers(request.message.headers.as_ref());
    let span = tracing::info_span!(
        "rpc",
        endpoint = %R::ENDPOINT.subject(),
        request_id = %ctx.request_id,
        trace_id = ctx.trace_id().unwrap_or_default(),
    );
    async move {
        let started = std::time::Instant::now();
        let result = match serde_json::from_slice::<R::Request>(&request.message.payload) {
            Ok(body) => match tokio::spawn(handler(ctx, body).instrument(tracing::Span::current())).await {
                Ok(result) => result,
                Err(join_error) => {
                    tracing::error!(error = %join_error, "handler panicked");
                    Err(ErrorBody::internal())
                }
            },
            Err(err) => Err(ErrorBody::invalid_input(format!("malformed request: {err}"))),
        };
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let response = match result {
            Ok(reply) => match serde_json::to_vec(&reply) {
                Ok(bytes) => {
                    tracing::debug!(elapsed_ms, "ok");
                    request.respond(Ok(bytes.into())).await
                }
                Err(err) => {
                    tracing::error!(error = %err, "could not serialise a reply");
                    respond_error(&request, ErrorBody::internal()).await
                }
            },
            Err(body) => {
                if body.code == ErrorCode::Internal {
                    tracing::error!(code = %body.code, elapsed_ms, "request failed");
                } else {
                    tracing::info!(code = %body.code, message = %body.message, elapsed_ms, "request refused");
                }
                respond_error(&request, body).await
            }
        };
        if let Err(err) = response {
            tracing::warn!(error = %err, "could not send a reply");
        }
    }
    .instrument(span)
    .await
}

async fn respond_error(request: &service::Request, body: ErrorBody) -> Result<(), async_nats::PublishError> {
    let mut headers = HeaderMap::new();
    if let Ok(json) = serde_json::to_string(&body) {
        headers.insert(headers::ERROR, json.as_str());
    }
    let status = format!("{}: {}", body.code, body.message).replace(|c: char| c.is_control(), " ");
    let error = service::error::Error { status, code: usize::from(body.code.http_status()) };
    request.respond_with_headers(Err(error), headers).await
}

/// Serve each listed endpoint with a method of a shared handler state:
/// `serve!(service, state, Register => register, Login => login)` calls
/// `state.register(ctx, request)` for every `Register` request (`state` is an `Arc`). Expands to
/// `?` on registration failures, so use it in a function returning a `From<BusError>` error.
#[macro_export]
macro_rules! serve {
    ($service:expr, $state:expr, $($rpc:ty => $method:ident),+ $(,)?) => {{
        $({
            let state = $state.clone();
            $service
                .serve::<$rpc, _, _>(move |ctx, req| {
                    let state = state.clone();
                    async move { state.$method(ctx, req).await }
                })
                .await?;
        })+
    }};
}
