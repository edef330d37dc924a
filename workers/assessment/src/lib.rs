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

use coursebus_bus::config::{self, CommonConfig, ConfigError};
use coursebus_bus::consume::Consumer;
use coursebus_bus::{ServiceSpec, StartError, Worker, streams};
use coursebus_contracts::assessment::{
    CourseGrades, CreateAssignment, CreateBank, CreateQuiz, GetAssignment, GetAttempt, GetQuiz, GetQuizGrade,
    GetSimilarity, GradeEssay, GradeSubmission, ListSubmissions, ManualQueue, MyGrades, MySubmission, ReleaseGrades,
    SaveAnswers, SetGradebook, StartAttempt, SubmitAssignment, SubmitAttempt,
};
use coursebus_contracts::subjects::{assessment as subj, enrollment as enr};
use tokio_util::sync::CancellationToken;

use crate::handlers::Assessments;

pub const SPEC: ServiceSpec = ServiceSpec {
    name: subj::SERVICE,
    version: env!("CARGO_PKG_VERSION"),
    description: "Question banks, quizzes, attempts and grading",
};

/// Assessment's schema.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often a grading or similarity job is tried before it is parked in the DLQ.
const JOB_MAX_DELIVER: i64 = 10;

/// Enrolment events one replica records at once.
const ENROLMENTS_IN_FLIGHT: usize = 16;

/// What assessment is configured with: the common settings (`CB_ASSESSMENT_*`) and
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `CB_GRADING_ACK_WAIT_SECS` | how long a grading job may go unacknowledged | 30 |
/// | `CB_GRADING_CONCURRENCY` | grading jobs one replica works on at once (1–1000) | 8 |
/// | `CB_ASSESSMENT_SWEEP_EVERY_MS` | how often overdue attempts are looked for | 5000 |
#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
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
            common: CommonConfig::new(nats_url).with_database(database_url),
            grading_ack_wait: Duration::from_secs(30),
            grading_concurrency: 8,
            sweep_every: Duration::from_secs(5),
        }
    }

    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::new("", "");
        let sweep_ms = u64::try_from(defaults.sweep_every.as_millis()).unwrap_or(u64::MAX);
        Ok(Self {
            common: CommonConfig::from_env(subj::SERVICE)?,
            grading_ack_wait: Duration::from_secs(config::checked(
                "CB_GRADING_ACK_WAIT_SECS",
                defaults.grading_ack_wait.as_secs(),
                within(1, 86_400),
            )?),
            grading_concurrency: config::checked(
                "CB_GRADING_CONCURRENCY",
                defaults.grading_concurrency,
                within(1, 1000),
            )?,
            sweep_every: Duration::from_millis(config::checked(
                "CB_ASSESSMENT_SWEEP_EVERY_MS",
                sweep_ms,
                within(1, 86_400_000),
            )?),
        })
    }
}

/// A check for [`config::checked`]: `low` to `high`.
fn within<T: PartialOrd + std::fmt::Display>(low: T, high: T) -> impl Fn(&T) -> Result<(), String> {
    move |n| if low <= *n && *n <= high { Ok(()) } else { Err(format!("must be {low} to {high}")) }
}

/// Serve until `shutdown`: the endpoints; the grading queue group and the plagiarism checks on
/// `JOB_GRADING` (each job kind its durable consumer shared by the replicas); enrolments as
/// enrollment's events tell them; and the sweeper that submits overdue attempts.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    let mut worker = Worker::start(SPEC, &config.common, shutdown).await?;
    let db = worker.postgres(&MIGRATOR).await?;
    worker
        .streams([
            streams::event_stream(subj::EVENT_STREAM, subj::EVENT_SUBJECTS, worker.replicas()),
            streams::job_stream(subj::JOB_STREAM, subj::JOB_SUBJECTS, worker.replicas()),
            coursebus_bus::dlq::stream_config(worker.replicas()),
        ])
        .await?;

    let assessments = Arc::new(Assessments {
        pool: db.pool,
        verifier: worker.verifier(),
        bus: worker.bus(),
        call_deadline: config.common.call_deadline,
        outbox: db.outbox,
        replica: format!("assessment-{}", uuid::Uuid::now_v7().simple()),
        cache: store::Cache::default(),
    });
    tracing::info!(replica = %assessments.replica, "assessment grades as this replica");

    coursebus_bus::endpoints!(
        worker,
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

    // Both job kinds share `JOB_GRADING`, each with the durable consumer all replicas pull from.
    let state = assessments.clone();
    worker.consume(
        Consumer::jobs(subj::JOB_STREAM, subj::GRADING_CONSUMER, &[subj::JOB_GRADE_ATTEMPT])
            .in_flight(config.grading_concurrency)
            .ack_wait(config.grading_ack_wait)
            .max_deliver(JOB_MAX_DELIVER),
        move |delivery| {
            let assessments = state.clone();
            async move { assessments.on_grading_job(delivery).await }
        },
    );
    let state = assessments.clone();
    worker.consume(
        Consumer::jobs(subj::JOB_STREAM, subj::SIMILARITY_CONSUMER, &[subj::JOB_CHECK_SIMILARITY])
            .ack_wait(config.grading_ack_wait)
            .max_deliver(JOB_MAX_DELIVER),
        move |delivery| {
            let assessments = state.clone();
            async move { assessments.on_similarity_job(delivery).await }
        },
    );
    // Enrolments as enrollment's events tell them (recording is idempotent and a cancellation
    // always wins, so order does not matter).
    let state = assessments.clone();
    worker.consume(
        Consumer::events(
            enr::EVENT_STREAM,
            subj::ENROLMENT_CONSUMER,
            &[enr::EVT_ENROLMENT_CREATED, enr::EVT_ENROLMENT_CANCELLED],
        )
        .in_flight(ENROLMENTS_IN_FLIGHT),
        move |delivery| {
            let assessments = state.clone();
            async move { assessments.on_enrolment_event(delivery).await }
        },
    );
    let state = assessments;
    worker.every("overdue sweep", config.sweep_every, move || {
        let assessments = state.clone();
        async move { assessments.submit_overdue().await.map(|_| ()) }
    });
    worker.run().await
}
