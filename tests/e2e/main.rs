//! End-to-end tests: the real stack (nats-server with JetStream, PostgreSQL) started by the
//! harness, the platform driven over HTTP through the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod assessment;
mod assignments;
mod auth;
mod catalog;
mod completion;
mod content;
mod enrollment;
mod journey;
mod notifications;
mod operations;
mod payments;
mod search;
mod support;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use coursebus_tests::Infra;
use libtest_mimic::{Arguments, Failed, Trial};

const TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The shared servers, or why they did not start.
type InfraSlot = Result<Arc<Infra>, String>;

type TestFn = fn(Arc<Infra>) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

macro_rules! tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        vec![$((concat!(stringify!($module), "::", stringify!($name)), (|infra| Box::pin($module::$name(infra))) as TestFn)),*]
    };
}

fn all() -> Vec<(&'static str, TestFn)> {
    tests![
        auth::register_login_refresh_reuse_profile_roles,
        auth::registration_rejects_bad_input,
        auth::registration_honours_idempotency_keys,
        auth::wrong_credentials_are_401_without_saying_which,
        auth::tampered_expired_and_wrong_algorithm_tokens_are_401,
        auth::logout_revokes_the_session,
        auth::roles_are_admin_only_and_the_last_admin_stays,
        auth::auth_endpoints_are_rate_limited_per_client,
        catalog::authoring_publishing_and_visibility,
        catalog::bad_course_input_names_the_field,
        catalog::listing_filters_and_cursor_pagination,
        catalog::every_change_is_an_event_on_evt_catalog,
        catalog::cached_reads_are_invalidated_on_every_replica,
        catalog::course_creation_honours_idempotency_keys,
        enrollment::enrolling_is_idempotent_and_refuses_paid_and_draft_courses,
        enrollment::prerequisites_are_enforced_until_completed,
        enrollment::progress_to_completion_issues_a_certificate_and_events_once,
        enrollment::drip_locked_modules_refuse_progress_until_they_open,
        enrollment::learners_see_only_their_own_and_rosters_are_for_instructors,
        enrollment::unenrolling_cancels_once_and_re_enrolling_starts_afresh,
        enrollment::enrolments_keep_their_version_across_republishing_and_restarts,
        enrollment::an_archived_course_takes_no_new_learners_and_keeps_its_own,
        search::published_courses_become_searchable_and_drafts_never_do,
        search::a_typo_finds_the_course_and_title_matches_rank_first,
        search::facets_count_matches_and_filters_narrow_them,
        search::archiving_removes_a_course_from_search,
        search::a_replica_started_later_catches_up_by_itself,
        search::bad_input_is_400_invalid_input,
        journey::instructor_publishes_student_finds_enrols_completes,
        notifications::registration_sends_exactly_one_verification_email,
        notifications::a_resent_verification_link_confirms_the_address,
        notifications::enrolment_notifies_in_app_and_the_inbox_is_private,
        notifications::a_duplicate_job_sends_one_email,
        notifications::smtp_down_is_retried_and_delivered_once_it_is_back,
        notifications::preferences_turn_channels_off,
        notifications::a_websocket_gets_its_own_pushes_only,
        notifications::unsubscribe_link_works_once_and_a_tampered_one_is_rejected,
        notifications::an_announcement_reaches_every_learner_once,
        notifications::texts_go_to_twilio_rejections_fail_and_outages_retry,
        notifications::a_digest_gathers_emails_into_one,
        notifications::quiet_hours_hold_emails_until_they_end,
        notifications::poison_jobs_land_in_the_dlq_never_looping,
        notifications::a_new_deployment_does_not_greet_old_accounts,
        notifications::a_republished_course_tells_its_learners,
        notifications::an_event_given_up_on_is_kept_in_the_dlq,
        content::a_clip_uploaded_in_parts_resumes_transcodes_and_plays,
        content::a_killed_media_replica_leaves_exactly_one_ready_asset,
        content::a_text_file_named_mp4_fails_with_a_reason_and_lands_in_the_dlq,
        content::a_job_that_kills_every_replica_fails_its_asset,
        content::abort_leaves_no_parts_and_documents_download_for_learners_only,
        content::bad_asset_input_gets_clear_errors,
        operations::replicas_share_requests_and_answer_the_micro_protocol,
        operations::no_identity_replica_means_503_within_a_second,
        operations::registration_event_reaches_the_stream_once_across_a_relay_restart,
        operations::health_metrics_openapi_jwks_and_errors,
        operations::nats_configurations_are_valid,
        operations::every_service_works_within_its_nats_permissions,
        payments::buying_with_a_coupon_enrols_and_sends_a_receipt,
        payments::a_declined_card_enrols_nobody,
        payments::refunds_follow_the_window_revoke_access_and_balance_the_ledger,
        payments::forged_or_stale_webhooks_change_nothing,
        payments::the_saga_completes_after_enrollment_is_killed_and_restarted,
        payments::a_course_closed_before_payment_is_refunded_by_the_saga,
        payments::lost_webhooks_are_repaired_and_invoices_have_no_gaps,
        payments::payment_endpoints_validate_input,
        assessment::papers_are_personal_stable_and_answers_stay_hidden_until_graded,
        assessment::the_time_limit_is_the_servers_and_late_answers_do_not_count,
        assessment::grading_replicas_share_the_work_and_a_killed_one_loses_no_submission,
        assessment::essays_are_graded_by_rubric_and_the_gradebook_weighs_categories,
        assessment::creating_banks_quizzes_and_assignments_honours_idempotency_keys,
        completion::a_failed_final_quiz_withholds_completion_until_a_passing_grade,
        assignments::late_work_is_penalised_exactly_and_grades_are_released_by_the_instructor,
        assignments::near_copies_are_flagged_with_their_passages_and_files_go_through_content,
    ]
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot build a runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The servers start on first use, so `--list` starts nothing.
    let infra: Arc<Mutex<Option<InfraSlot>>> = Arc::new(Mutex::new(None));
    let trials = all()
        .into_iter()
        .map(|(name, test)| {
            let handle = runtime.handle().clone();
            let infra = infra.clone();
            Trial::test(name, move || {
                let infra = {
                    let mut slot = infra.lock().map_err(|_| Failed::from("infra lock poisoned"))?;
                    slot.get_or_insert_with(|| Infra::start().map(Arc::new).map_err(|e| format!("{e:#}"))).clone()
                };
                let infra = infra.map_err(|e| Failed::from(format!("the test stack did not start: {e}")))?;
                // A hung test fails instead of hanging the run.
                match handle.block_on(async { tokio::time::timeout(TEST_TIMEOUT, test(infra)).await }) {
                    Ok(result) => result.map_err(|e| Failed::from(format!("{e:#}"))),
                    Err(_) => Err(Failed::from(format!("timed out after {TEST_TIMEOUT:?}"))),
                }
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    // Stop PostgreSQL (and with it everything) before reporting.
    if let Ok(mut slot) = infra.lock() {
        slot.take();
    }
    drop(runtime);
    conclusion.exit_code()
}
