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

use coursebus_bus::cache::SnapshotCache;
use coursebus_bus::config::{CommonConfig, ConfigError};
use coursebus_bus::consume::{Consumer, Delivery, Handled};
use coursebus_bus::{ServiceSpec, StartError, Worker, streams};
use coursebus_contracts::EventEnvelope;
use coursebus_contracts::catalog::course_of_notice;
use coursebus_contracts::enrollment::{
    CancelEnrollment, CheckAccess, Enroll, GetCompletionRules, GetEnrollment, ListLearners, ListMyEnrollments,
    ListRoster, SetCompletionRules, UpdateProgress, VerifyCertificate,
};
use coursebus_contracts::subjects::enrollment as subj;
use coursebus_contracts::subjects::{assessment as assess, catalog, payments as pay};
use tokio_util::sync::CancellationToken;

use crate::handlers::Enrollments;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Enrolments, progress, completion and certificates",
};

/// Enrollment's schema (also applied by the bench's monolith baseline, which writes the same rows).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Everything enrollment is configured with is common to every worker (`CB_ENROLLMENT_*`).
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>) -> Self {
        Self { common: CommonConfig::new(nats_url).with_database(database_url) }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self { common: CommonConfig::from_env(subj::SERVICE)? })
    }
}

/// Serve until `shutdown`: the endpoints, payments' saga events (`order.paid` enrols or
/// rejects, a full `order.refunded` revokes) and assessment's released grades (completion
/// rules), each a durable consumer shared by the replicas and acknowledged after commit.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let mut worker = Worker::start(SPEC, &config.common, shutdown).await?;
    let db = worker.postgres(&MIGRATOR).await?;
    worker
        .streams([
            streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, worker.replicas()),
            // Saga events this worker gives up on are parked there.
            coursebus_bus::dlq::stream_config(worker.replicas()),
        ])
        .await?;

    let enrollments = Arc::new(Enrollments {
        outbox: db.outbox,
        pinned: Default::default(),
        pool: db.pool,
        verifier: worker.verifier(),
        bus: worker.bus(),
        catalog_deadline: config.common.call_deadline,
        courses: Arc::new(SnapshotCache::new(handlers::COURSE_CACHE_TTL, handlers::COURSE_CACHE_ENTRIES)),
    });
    // A catalog change drops the course's cached snapshot, as in the catalog's own replicas: the
    // hint arrives before any request sent after the change was answered (one NATS server).
    let invalidation = enrollments
        .courses
        .follow(
            worker.client(),
            &[catalog::COURSE_CHANGED_HINT, catalog::EVENT_SUBJECTS],
            course_of_notice,
            worker.shutdown(),
        )
        .await?;
    worker.spawn(async move {
        let _ = invalidation.await;
    });

    coursebus_bus::endpoints!(
        worker,
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

    let state = enrollments.clone();
    worker.consume(
        Consumer::events(pay::EVENT_STREAM, subj::PAYMENTS_CONSUMER, &[pay::EVT_ORDER_PAID, pay::EVT_ORDER_REFUNDED]),
        move |delivery| {
            let enrollments = state.clone();
            async move { enrollments.on_payment_event(delivery).await }
        },
    );
    let state = enrollments;
    worker.consume(
        Consumer::events(assess::EVENT_STREAM, subj::ASSESSMENT_CONSUMER, &[assess::EVT_GRADE_RELEASED]),
        move |delivery| {
            let enrollments = state.clone();
            async move { enrollments.on_assessment_event(delivery).await }
        },
    );
    worker.run().await
}

impl Enrollments {
    async fn on_payment_event(&self, delivery: Delivery) -> Handled {
        match delivery.subject.as_str() {
            pay::EVT_ORDER_PAID => match delivery.json::<EventEnvelope<_>>() {
                Ok(event) => self.enroll_paid(event.data).await,
                Err(rejected) => rejected,
            },
            pay::EVT_ORDER_REFUNDED => match delivery.json::<EventEnvelope<_>>() {
                Ok(event) => self.revoke_refunded(event.data).await,
                Err(rejected) => rejected,
            },
            _ => Handled::Done,
        }
    }

    async fn on_assessment_event(&self, delivery: Delivery) -> Handled {
        match delivery.subject.as_str() {
            assess::EVT_GRADE_RELEASED => match delivery.json::<EventEnvelope<_>>() {
                Ok(event) => self.grade_released(event).await,
                Err(rejected) => rejected,
            },
            _ => Handled::Done,
        }
    }
}
