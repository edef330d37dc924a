//! The assessment worker: question banks, quizzes with seeded per-learner papers, attempts with
//! a server-enforced time limit, the grading queue group on `JOB_GRADING`, assignments with
//! rubric grading and plagiarism checks, and the gradebook, served as the NATS micro service
//! `assessment` over PostgreSQL.
//!
//! - `handlers.rs`: the endpoints (authoring checked with catalog, attempts for enrolled
//!   learners asked of enrollment);
//! - `grading.rs`: the queue group's job handler and the sweeper that submits overdue attempts;
//! - `instructor.rs`: the essay grading queue, rubric grading, the gradebook endpoints;
//! - `domain.rs`: papers (seeded draw and shuffle), grading rules per question kind, scoring
//!   policies; `store.rs`: SQL;
//! - `assignments.rs`: assignments, hand-ins (text, or a file through content) with the late
//!   policy, rubric grading and grade release;
//! - `similarity.rs`: the plagiarism check job and reports, over `plagiarism.rs` (shingling +
//!   MinHash/LSH, overlapping passages);
//! - `gradebook.rs`: weighted categories, drop-lowest, CSV (the rules).

pub mod assignments;
pub mod domain;
pub mod gradebook;
pub mod grading;
pub mod handlers;
pub mod instructor;
pub mod plagiarism;
pub mod similarity;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer;
use coursebus_bus::auth::{BusJwks, JwtVerifier};
use coursebus_bus::{Bus, MicroService, ServiceSpec, consume, outbox, streams};
use coursebus_contracts::Rpc;
use coursebus_contracts::assessment::{
    CourseGrades, CreateAssignment, CreateBank, CreateQuiz, GetAssignment, GetAttempt, GetQuiz, GetQuizGrade,
    GetSimilarity, GradeEssay, GradeSubmission, ListSubmissions, ManualQueue, MyGrades, MySubmission, ReleaseGrades,
    SaveAnswers, SetGradebook, StartAttempt, SubmitAssignment, SubmitAttempt,
};
use coursebus_contracts::subjects::assessment as subj;
use tokio_util::sync::CancellationToken;

use crate::handlers::Assessments;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Question banks, quizzes, attempts and grading",
};

/// Failures that stop the worker (as opposed to refused requests): all of them happen while it
/// starts (database, migrations, NATS, streams, endpoints).
pub type AssessmentError = coursebus_bus::worker::StartError;

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub database_url: String,
    pub stream_replicas: usize,
    pub db_max_connections: u32,
    pub call_deadline: Duration,
    /// How long a grading job may go unacknowledged before another replica gets it.
    pub grading_ack_wait: Duration,
    /// Grading jobs one replica works on at once.
    pub grading_concurrency: usize,
    /// How often overdue attempts are looked for.
    pub sweep_every: Duration,
}

impl Config {
    pub fn new(nats_url: impl Into<String>, database_url: impl Into<String>) -> Self {
        Self {
            nats_url: nats_url.into(),
            database_url: database_url.into(),
            stream_replicas: 1,
            db_max_connections: 10,
            call_deadline: Duration::from_secs(2),
            grading_ack_wait: Duration::from_secs(30),
            grading_concurrency: 8,
            sweep_every: Duration::from_secs(5),
        }
    }
}

/// Connect, migrate, provision `EVT_ASSESSMENT` and `JOB_GRADING`, serve and grade until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AssessmentError> {
    let spec = coursebus_bus::worker::Spec {
        service: subj::SERVICE,
        nats_url: &config.nats_url,
        database_url: &config.database_url,
        max_connections: config.db_max_connections,
        streams: vec![
            streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, config.stream_replicas),
            streams::job_stream(subj::JOB_STREAM, subj::JOB_SUBJECTS, config.stream_replicas),
            coursebus_bus::dlq::stream_config(config.stream_replicas),
        ],
    };
    let coursebus_bus::worker::Started { pool, client, js } =
        coursebus_bus::worker::start_pg(spec, &sqlx::migrate!("./migrations")).await?;

    let bus = Bus::new(client.clone(), config.call_deadline);
    let relay = outbox::Relay::new(pool.clone(), js.clone());
    let assessments = Arc::new(Assessments {
        pool: pool.clone(),
        verifier: JwtVerifier::new(BusJwks(bus.clone())),
        bus,
        call_deadline: config.call_deadline,
        outbox: relay.waker(),
        replica: format!("assessment-{}", uuid::Uuid::now_v7().simple()),
        cache: store::Cache::default(),
    });

    let mut service = MicroService::start(&client, SPEC, shutdown.clone()).await?;
    coursebus_bus::serve!(
        service,
        assessments,
        CreateBank => create_bank,
        CreateQuiz => create_quiz,
        GetQuiz => get_quiz,
        StartAttempt => start,
        GetAttempt => get_attempt,
        SaveAnswers => save,
        SubmitAttempt => submit,
        GetQuizGrade => grade_of,
        ManualQueue => manual_queue,
        GradeEssay => grade_essay,
        SetGradebook => set_gradebook,
        MyGrades => my_grades,
        CourseGrades => course_grades,
        CreateAssignment => create_assignment,
        GetAssignment => get_assignment,
        SubmitAssignment => submit_assignment,
        MySubmission => my_submission,
        ListSubmissions => list_submissions,
        GradeSubmission => grade_submission,
        ReleaseGrades => release_grades,
        GetSimilarity => similarity_report,
    );
    tracing::info!(endpoints = 21, first = %<CreateBank as Rpc>::ENDPOINT.subject(), replica = %assessments.replica, "assessment serving");

    // Both job kinds share `JOB_GRADING`, each with the durable consumer all replicas pull from.
    let grading_in_flight = config.grading_concurrency;
    let job_consumer = |durable: &str, filter: &str| consumer::pull::Config {
        durable_name: Some(durable.into()),
        filter_subject: filter.into(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: config.grading_ack_wait,
        max_deliver: 10,
        ..Default::default()
    };
    let grading = {
        let assessments = assessments.clone();
        let config = job_consumer(subj::GRADING_CONSUMER, subj::JOB_GRADE_ATTEMPT);
        tokio::spawn(consume::run_many(
            js.clone(),
            subj::JOB_STREAM,
            config,
            shutdown.clone(),
            grading_in_flight,
            move |_, payload| {
                let assessments = assessments.clone();
                async move { assessments.on_grading_job(payload).await }
            },
        ))
    };
    let similarity = {
        let assessments = assessments.clone();
        let config = job_consumer(subj::SIMILARITY_CONSUMER, subj::JOB_CHECK_SIMILARITY);
        tokio::spawn(consume::run(js.clone(), subj::JOB_STREAM, config, shutdown.clone(), move |_, payload| {
            let assessments = assessments.clone();
            async move { assessments.on_similarity_job(payload).await }
        }))
    };
    // Enrolments as enrollment's events tell them (one durable consumer shared by the replicas;
    // recording is idempotent and a cancellation always wins, so order does not matter).
    let enrolments = {
        use coursebus_contracts::subjects::enrollment as enr;
        let assessments = assessments.clone();
        let config = consume::event_consumer(
            subj::ENROLMENT_CONSUMER,
            &[enr::EVT_ENROLMENT_CREATED, enr::EVT_ENROLMENT_CANCELLED],
        );
        tokio::spawn(consume::run_many(
            js.clone(),
            enr::EVENT_STREAM,
            config,
            shutdown.clone(),
            16,
            move |subject, payload| {
                let assessments = assessments.clone();
                async move { assessments.on_enrolment_event(&subject, &payload).await }
            },
        ))
    };
    let sweeper = {
        let (assessments, shutdown, every) = (assessments.clone(), shutdown.clone(), config.sweep_every);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(err) = assessments.submit_overdue().await {
                    tracing::warn!(error = %err, "overdue sweep failed");
                }
            }
        })
    };
    let relay = tokio::spawn(relay.run(shutdown.clone()));
    service.run().await;
    let _ = tokio::join!(relay, grading, similarity, enrolments, sweeper);
    pool.close().await;
    client.flush().await.ok();
    tracing::info!("assessment stopped");
    Ok(())
}
