//! The enrollment worker: enrolments in free published courses, lesson and course progress,
//! completion with a certificate, rosters and access checks, served as the NATS micro service
//! `enrollment` over PostgreSQL.
//!
//! Rules (see also `domain.rs`):
//! - one live (active or completed) enrolment per learner and course, enforced by a partial
//!   unique index; unenrolling keeps the cancelled row as history and enrolling again makes a
//!   fresh enrolment (new id, progress from zero, drip clock restarted);
//! - an enrolment is pinned to the published version it was made against (outline, required
//!   lessons, drip schedule); a later publish changes nothing for it;
//! - progress on a lesson whose module has not opened yet is `forbidden`, with `available_at`;
//! - completion takes every required lesson and every completion rule of the course (the
//!   learner's latest grade on a quiz or assignment at or above a minimum); grades arrive as
//!   assessment's `grade.released` events on the durable consumer `enrollment_assessment`, so a
//!   passing grade after the last lesson completes the enrolment then.

pub mod domain;
pub mod handlers;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use coursebus_bus::auth::{BusJwks, JwtVerifier};
use coursebus_bus::cache::SnapshotCache;
use coursebus_bus::{Bus, MicroService, ServiceSpec, idempotency, outbox, streams};
use coursebus_contracts::Rpc;
use coursebus_contracts::catalog::course_of_notice;
use coursebus_contracts::enrollment::{
    CancelEnrollment, CheckAccess, Enroll, GetCompletionRules, GetEnrollment, ListLearners, ListMyEnrollments,
    ListRoster, SetCompletionRules, UpdateProgress, VerifyCertificate,
};
use coursebus_contracts::subjects::catalog;
use coursebus_contracts::subjects::enrollment as subj;
use tokio_util::sync::CancellationToken;

use crate::handlers::Enrollments;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Enrolments, progress, completion and certificates",
};

/// Enrollment's schema (also applied by the bench's monolith baseline, which writes the same rows).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Failures that stop the worker (as opposed to refused requests): all of them happen while it
/// starts (database, migrations, NATS, streams, endpoints).
pub type EnrollmentError = coursebus_bus::worker::StartError;

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub database_url: String,
    /// JetStream replicas for the streams this worker owns (1 on a single node, 3 on a cluster).
    pub stream_replicas: usize,
    pub db_max_connections: u32,
    /// Deadline of each call to another service (the catalog); shorter than the gateway's.
    pub call_deadline: Duration,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            database_url: database_url.into(),
            stream_replicas: 1,
            db_max_connections: 10,
            call_deadline: Duration::from_secs(2),
        }
    }
}

/// Connect, migrate, provision `EVT_ENROLLMENT`, serve until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), EnrollmentError> {
    let spec = coursebus_bus::worker::Spec {
        service: subj::SERVICE,
        nats_url: &config.nats_url,
        database_url: &config.database_url,
        max_connections: config.db_max_connections,
        streams: vec![
            streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, config.stream_replicas),
            // Saga events this worker gives up on are parked there.
            coursebus_bus::dlq::stream_config(config.stream_replicas),
        ],
    };
    let coursebus_bus::worker::Started { pool, client, js } = coursebus_bus::worker::start_pg(spec, &MIGRATOR).await?;

    let bus = Bus::new(client.clone(), config.call_deadline);
    let relay = outbox::Relay::new(pool.clone(), js.clone());
    let enrollments = Arc::new(Enrollments {
        outbox: relay.waker(),
        pinned: Default::default(),
        pool: pool.clone(),
        verifier: JwtVerifier::new(BusJwks(bus.clone())),
        bus,
        catalog_deadline: config.call_deadline,
        courses: Arc::new(SnapshotCache::new(handlers::COURSE_CACHE_TTL, handlers::COURSE_CACHE_ENTRIES)),
    });
    // A catalog change drops the course's cached snapshot, as in the catalog's own replicas: the
    // hint arrives before any request sent after the change was answered (one NATS server).
    let invalidation = enrollments
        .courses
        .follow(&client, &[catalog::COURSE_CHANGED_HINT, catalog::EVENT_SUBJECTS], course_of_notice, shutdown.clone())
        .await?;

    let mut service = MicroService::start(&client, SPEC, shutdown.clone()).await?;
    coursebus_bus::serve!(
        service,
        enrollments,
        Enroll => enroll,
        GetEnrollment => get,
        CancelEnrollment => cancel,
        ListMyEnrollments => mine,
        UpdateProgress => update_progress,
        ListRoster => roster,
        VerifyCertificate => verify_certificate,
        CheckAccess => check_access,
        ListLearners => learners,
        SetCompletionRules => set_completion_rules,
        GetCompletionRules => completion_rules,
    );
    tracing::info!(endpoints = 11, first = %<Enroll as Rpc>::ENDPOINT.subject(), "enrollment serving");

    let payments = tokio::spawn(payment_events(js.clone(), enrollments.clone(), shutdown.clone()));
    let grades = tokio::spawn(assessment_events(js, enrollments.clone(), shutdown.clone()));
    let relay = tokio::spawn(relay.run(shutdown.clone()));
    let housekeeping = tokio::spawn(idempotency::purge_until(pool.clone(), Duration::from_secs(600), shutdown.clone()));
    service.run().await;
    let _ = tokio::join!(relay, payments, grades, housekeeping, invalidation);
    pool.close().await;
    client.flush().await.ok();
    tracing::info!("enrollment stopped");
    Ok(())
}

/// The paid-enrolment saga's side here: payments' `order.paid` enrols (or rejects), a full
/// `order.refunded` revokes. A durable consumer shared by the replicas, acknowledged after commit.
async fn payment_events(
    js: async_nats::jetstream::Context,
    enrollments: Arc<Enrollments>,
    shutdown: CancellationToken,
) {
    use coursebus_bus::consume::Handled;
    use coursebus_contracts::EventEnvelope;
    use coursebus_contracts::subjects::payments as pay;

    let config = coursebus_bus::consume::event_consumer(
        subj::PAYMENTS_CONSUMER,
        &[pay::EVT_ORDER_PAID, pay::EVT_ORDER_REFUNDED],
    );
    coursebus_bus::consume::run(js, pay::EVENT_STREAM, config, shutdown, move |subject, payload| {
        let enrollments = enrollments.clone();
        async move {
            match subject.as_str() {
                pay::EVT_ORDER_PAID => match serde_json::from_slice::<EventEnvelope<_>>(&payload) {
                    Ok(event) => enrollments.enroll_paid(event.data).await,
                    Err(err) => Handled::Reject(format!("malformed order.paid: {err}")),
                },
                pay::EVT_ORDER_REFUNDED => match serde_json::from_slice::<EventEnvelope<_>>(&payload) {
                    Ok(event) => enrollments.revoke_refunded(event.data).await,
                    Err(err) => Handled::Reject(format!("malformed order.refunded: {err}")),
                },
                _ => Handled::Done,
            }
        }
    })
    .await;
}

/// Completion rules' side of assessment: each `grade.released` stores the learner's latest grade
/// on the item and judges their enrolment again. A durable consumer shared by the replicas,
/// acknowledged after commit (it waits for `EVT_ASSESSMENT` if assessment has not created it yet).
async fn assessment_events(
    js: async_nats::jetstream::Context,
    enrollments: Arc<Enrollments>,
    shutdown: CancellationToken,
) {
    use coursebus_bus::consume::Handled;
    use coursebus_contracts::EventEnvelope;
    use coursebus_contracts::subjects::assessment as assess;

    let config = coursebus_bus::consume::event_consumer(subj::ASSESSMENT_CONSUMER, &[assess::EVT_GRADE_RELEASED]);
    coursebus_bus::consume::run(js, assess::EVENT_STREAM, config, shutdown, move |subject, payload| {
        let enrollments = enrollments.clone();
        async move {
            match subject.as_str() {
                assess::EVT_GRADE_RELEASED => match serde_json::from_slice::<EventEnvelope<_>>(&payload) {
                    Ok(event) => enrollments.grade_released(event).await,
                    Err(err) => Handled::Reject(format!("malformed grade.released: {err}")),
                },
                _ => Handled::Done,
            }
        }
    })
    .await;
}
