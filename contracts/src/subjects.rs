//! Every subject, stream, consumer and bucket name of the platform. Nothing else in the tree
//! spells one: other crates use these constants and builders.
//!
//! Naming (see DESIGN.md): requests `cb.<domain>.<resource>.<action>`, events
//! `cb.evt.<domain>.<entity>.<event>` in stream `EVT_<DOMAIN>`, jobs `cb.job.<domain>.<kind>`,
//! real-time pushes `cb.rt.<scope>.<id>`.

/// The queue group every micro-service endpoint joins, so replicas share the load.
pub const QUEUE_GROUP: &str = "q";

/// Identity: users, credentials, tokens, roles, profiles.
pub mod identity {
    use crate::rpc::Endpoint;

    pub const SERVICE: &str = "identity";
    pub const GROUP: &str = "cb.identity";

    const fn ep(name: &'static str) -> Endpoint {
        Endpoint { service: SERVICE, group: GROUP, name }
    }

    pub const USER_REGISTER: Endpoint = ep("user.register");
    pub const AUTH_LOGIN: Endpoint = ep("auth.login");
    pub const AUTH_REFRESH: Endpoint = ep("auth.refresh");
    pub const AUTH_LOGOUT: Endpoint = ep("auth.logout");
    pub const PROFILE_GET: Endpoint = ep("profile.get");
    pub const PROFILE_UPDATE: Endpoint = ep("profile.update");
    pub const ROLE_GRANT: Endpoint = ep("role.grant");
    pub const ROLE_REVOKE: Endpoint = ep("role.revoke");
    pub const JWKS_GET: Endpoint = ep("jwks.get");
    /// Confirm an email address with the token from the link in the email (public).
    pub const EMAIL_VERIFY: Endpoint = ep("email.verify");
    /// Ask for another verification email (the caller's own address).
    pub const EMAIL_RESEND: Endpoint = ep("email.resend");
    /// Internal, for the notifications service only: mint a verification token for the email it
    /// is about to send. Subjects under `cb.*.internal.>` are denied to the gateway (nats/accounts.conf).
    pub const INTERNAL_VERIFICATION_TOKEN: Endpoint = ep("internal.verification_token");

    /// The stream holding identity events.
    pub const EVENT_STREAM: &str = "EVT_IDENTITY";
    /// Every identity event subject.
    pub const EVENT_SUBJECTS: &str = "cb.evt.identity.>";
    pub const EVT_USER_REGISTERED: &str = "cb.evt.identity.user.registered";
    pub const EVT_PROFILE_UPDATED: &str = "cb.evt.identity.user.profile_updated";
    pub const EVT_ROLE_GRANTED: &str = "cb.evt.identity.user.role_granted";
    pub const EVT_ROLE_REVOKED: &str = "cb.evt.identity.user.role_revoked";
    pub const EVT_EMAIL_VERIFIED: &str = "cb.evt.identity.user.email_verified";
    /// The user asked for another verification email.
    pub const EVT_VERIFICATION_REQUESTED: &str = "cb.evt.identity.user.verification_requested";
}

/// Catalog: courses, modules, lessons, the publish workflow.
pub mod catalog {
    use crate::rpc::Endpoint;

    pub const SERVICE: &str = "catalog";
    pub const GROUP: &str = "cb.catalog";

    const fn ep(name: &'static str) -> Endpoint {
        Endpoint { service: SERVICE, group: GROUP, name }
    }

    pub const COURSE_CREATE: Endpoint = ep("course.create");
    pub const COURSE_UPDATE: Endpoint = ep("course.update");
    pub const COURSE_OUTLINE: Endpoint = ep("course.outline");
    pub const COURSE_PUBLISH: Endpoint = ep("course.publish");
    pub const COURSE_ARCHIVE: Endpoint = ep("course.archive");
    pub const COURSE_GET: Endpoint = ep("course.get");
    pub const COURSE_LIST: Endpoint = ep("course.list");

    pub const EVENT_STREAM: &str = "EVT_CATALOG";
    pub const EVENT_SUBJECTS: &str = "cb.evt.catalog.>";
    /// A course changed (its id as text): published by the catalog replica that changed it
    /// before it replies, so the caches of other replicas and services (which follow this
    /// besides the events) drop their snapshot before any request sent after the reply reads
    /// it. A hint on core NATS, not an event: it is not stored and carries no state.
    pub const COURSE_CHANGED_HINT: &str = "cb.hint.catalog.course";
    pub const EVT_COURSE_CHANGED: &str = "cb.evt.catalog.course.changed";
    pub const EVT_COURSE_PUBLISHED: &str = "cb.evt.catalog.course.published";
    pub const EVT_COURSE_ARCHIVED: &str = "cb.evt.catalog.course.archived";
}

/// Search: course search over the published catalog.
pub mod search {
    use crate::rpc::Endpoint;

    pub const SERVICE: &str = "search";
    pub const GROUP: &str = "cb.search";

    const fn ep(name: &'static str) -> Endpoint {
        Endpoint { service: SERVICE, group: GROUP, name }
    }

    pub const COURSE_SEARCH: Endpoint = ep("course.search");

    /// Each replica of the embedded engine feeds its own index from `EVT_CATALOG` with its own
    /// ordered (ephemeral) consumer, named `<prefix>_<replica id>`.
    pub const INDEXER_CONSUMER_PREFIX: &str = "search_index";
    /// With an external index (OpenSearch) the replicas share one durable consumer instead.
    pub const SHARED_INDEXER_CONSUMER: &str = "search_index_shared";
}

/// Enrollment: enrolments, progress, completion, certificates.
pub mod enrollment {
    use crate::rpc::Endpoint;

    pub const SERVICE: &str = "enrollment";
    pub const GROUP: &str = "cb.enrollment";

    const fn ep(name: &'static str) -> Endpoint {
        Endpoint { service: SERVICE, group: GROUP, name }
    }

    pub const ENROLLMENT_CREATE: Endpoint = ep("enrollment.create");
    pub const ENROLLMENT_GET: Endpoint = ep("enrollment.get");
    /// Unenrol.
    pub const ENROLLMENT_CANCEL: Endpoint = ep("enrollment.cancel");
    /// The caller's enrolments ("my courses").
    pub const ENROLLMENT_MINE: Endpoint = ep("enrollment.mine");
    pub const PROGRESS_UPDATE: Endpoint = ep("progress.update");
    /// A course's learners with their progress (its instructor and admins).
    pub const ROSTER_LIST: Endpoint = ep("roster.list");
    /// Public verification of a certificate code.
    pub const CERTIFICATE_VERIFY: Endpoint = ep("certificate.verify");
    /// Is a user enrolled in a course (and is a lesson released to them)? For other services.
    pub const ACCESS_CHECK: Endpoint = ep("access.check");
    /// Internal (notifications' announcement fan-out): a page of a course's current learners.
    pub const INTERNAL_LEARNERS: Endpoint = ep("internal.learners");
    /// Replace a course's completion rules (its instructor and admins).
    pub const COMPLETION_RULES_SET: Endpoint = ep("completion_rules.set");
    /// A course's completion rules (its instructor, admins and its learners).
    pub const COMPLETION_RULES_GET: Endpoint = ep("completion_rules.get");

    pub const EVENT_STREAM: &str = "EVT_ENROLLMENT";
    pub const EVENT_SUBJECTS: &str = "cb.evt.enrollment.>";
    pub const EVT_ENROLMENT_CREATED: &str = "cb.evt.enrollment.enrolment.created";
    pub const EVT_ENROLMENT_CANCELLED: &str = "cb.evt.enrollment.enrolment.cancelled";
    pub const EVT_ENROLMENT_COMPLETED: &str = "cb.evt.enrollment.enrolment.completed";
    pub const EVT_PROGRESS_UPDATED: &str = "cb.evt.enrollment.progress.updated";
    /// A paid order could not become an enrolment (prerequisites missing, already enrolled,
    /// course gone): payments refunds it.
    pub const EVT_ENROLMENT_REJECTED: &str = "cb.evt.enrollment.enrolment.rejected";
    /// The durable consumer of payment events (paid → enrol, refunded → revoke).
    pub const PAYMENTS_CONSUMER: &str = "enrollment_payments";
    /// The durable consumer of assessment's `grade.released` events (completion rules).
    pub const ASSESSMENT_CONSUMER: &str = "enrollment_assessment";
}

/// Notifications: the in-app inbox, and delivery of notification jobs per channel.
pub mod notifications {
    use crate::rpc::Endpoint;

    pub const SERVICE: &str = "notifications";
    pub const GROUP: &str = "cb.notifications";

    const fn ep(name: &'static str) -> Endpoint {
        Endpoint { service: SERVICE, group: GROUP, name }
    }

    /// The caller's notifications, newest first.
    pub const INBOX_LIST: Endpoint = ep("inbox.list");
    /// How many of the caller's notifications are unread.
    pub const INBOX_UNREAD: Endpoint = ep("inbox.unread");
    pub const INBOX_READ: Endpoint = ep("inbox.read");
    pub const INBOX_READ_ALL: Endpoint = ep("inbox.read_all");
    /// The caller's delivery preferences per kind and channel.
    pub const PREFERENCES_GET: Endpoint = ep("preferences.get");
    pub const PREFERENCES_UPDATE: Endpoint = ep("preferences.update");
    pub const UNSUBSCRIBE: Endpoint = ep("preferences.unsubscribe");
    /// The caller's phone number for text messages.
    pub const PHONE_SET: Endpoint = ep("preferences.phone");
    /// The caller's delivery log: what went out on which channel, or why not.
    pub const DELIVERIES_LIST: Endpoint = ep("deliveries.list");
    /// The caller's digest frequency and quiet hours.
    pub const SCHEDULE_GET: Endpoint = ep("preferences.schedule.get");
    pub const SCHEDULE_UPDATE: Endpoint = ep("preferences.schedule.update");
    /// An instructor posts to everyone enrolled in their course.
    pub const ANNOUNCEMENT_CREATE: Endpoint = ep("announcement.create");
    /// How far an announcement's fan-out got (its author and admins).
    pub const ANNOUNCEMENT_GET: Endpoint = ep("announcement.get");

    /// The work-queue stream of notification jobs (one message per notification to deliver).
    pub const JOB_STREAM: &str = "JOB_NOTIFY";
    pub const JOB_SUBJECTS: &str = "cb.job.notifications.>";
    /// A notification to deliver on its channels (`NotificationJob`).
    pub const JOB_DELIVER: &str = "cb.job.notifications.deliver";
    /// Fan an announcement out to the course's learners (`AnnounceJob`).
    pub const JOB_ANNOUNCE: &str = "cb.job.notifications.announce";
    /// Send the digests of one frequency that are due (`DigestRun`).
    pub const JOB_DIGEST: &str = "cb.job.notifications.digest";

    /// Timers: a limits stream with JetStream message schedules (`Nats-Schedule`). Schedules
    /// live on `schedule.>` subjects and fire messages on `tick.>` subjects, which the
    /// `notifications_scheduler` consumer turns into jobs.
    pub const SCHEDULE_STREAM: &str = "SCHED_NOTIFY";
    pub const SCHEDULE_SUBJECTS: &str = "cb.sched.notifications.>";
    pub const TICK_SUBJECTS: &str = "cb.sched.notifications.tick.>";
    pub const SCHEDULER_CONSUMER: &str = "notifications_scheduler";
    /// The cron schedule of digests of `frequency` (`daily`, `weekly`) and the tick it fires;
    /// an operator (or a test) may publish the tick by hand to send due digests now.
    pub fn digest_schedule(frequency: &str) -> String {
        format!("cb.sched.notifications.schedule.digest.{frequency}")
    }
    pub fn digest_tick(frequency: &str) -> String {
        format!("cb.sched.notifications.tick.digest.{frequency}")
    }
    /// A job held back by quiet hours: its one-shot schedule and the tick that releases it.
    pub fn deferred_schedule(notification: &uuid::Uuid) -> String {
        format!("cb.sched.notifications.schedule.deferred.{notification}")
    }
    pub fn deferred_tick(notification: &uuid::Uuid) -> String {
        format!("cb.sched.notifications.tick.deferred.{notification}")
    }
    /// The durable pull consumer on `JOB_NOTIFY` that every sender replica shares.
    pub const SENDER_CONSUMER: &str = "notifications_sender";
    /// Durable consumers turning other domains' events into jobs.
    pub const IDENTITY_CONSUMER: &str = "notifications_identity";
    pub const ENROLLMENT_CONSUMER: &str = "notifications_enrollment";
    pub const CATALOG_CONSUMER: &str = "notifications_catalog";
    /// Receipts of paid orders (`payments.order.fulfilled`).
    pub const PAYMENTS_CONSUMER: &str = "notifications_payments";

    /// Real-time pushes to one user's open sockets (core NATS, not stored): `cb.rt.user.<id>`.
    /// The gateway subscribes to it for an authenticated WebSocket of that user only.
    pub fn user_push(user_id: &uuid::Uuid) -> String {
        format!("cb.rt.user.{user_id}")
    }
}

/// Content: lesson assets (metadata in PostgreSQL, bytes in S3), presigned uploads, playback.
pub mod content {
    use crate::rpc::Endpoint;

    pub const SERVICE: &str = "content";
    pub const GROUP: &str = "cb.content";

    const fn ep(name: &'static str) -> Endpoint {
        Endpoint { service: SERVICE, group: GROUP, name }
    }

    /// Start an upload: an asset record and an S3 multipart upload (the course's instructor).
    pub const ASSET_CREATE: Endpoint = ep("asset.create");
    pub const ASSET_GET: Endpoint = ep("asset.get");
    /// A course's assets (its instructor and admins).
    pub const ASSET_LIST: Endpoint = ep("asset.list");
    /// Presigned URLs for parts of the upload.
    pub const UPLOAD_PARTS: Endpoint = ep("upload.parts");
    /// Which parts S3 already holds (to resume an interrupted upload).
    pub const UPLOAD_STATUS: Endpoint = ep("upload.status");
    pub const UPLOAD_COMPLETE: Endpoint = ep("upload.complete");
    pub const UPLOAD_ABORT: Endpoint = ep("upload.abort");
    /// A short-lived presigned GET of a downloadable asset.
    pub const ASSET_DOWNLOAD: Endpoint = ep("asset.download");
    /// A playback grant (signed path prefix) for a ready video.
    pub const PLAYBACK_GRANT: Endpoint = ep("playback.grant");
    /// A file under a playback grant: a playlist's text, or a presigned URL of a segment.
    pub const PLAYBACK_FETCH: Endpoint = ep("playback.fetch");
    /// Add or replace the WebVTT captions of one language.
    pub const CAPTION_PUT: Endpoint = ep("caption.put");
    /// Internal (media): how far a transcode got.
    pub const INTERNAL_PROGRESS: Endpoint = ep("internal.progress");

    pub const EVENT_STREAM: &str = "EVT_CONTENT";
    pub const EVENT_SUBJECTS: &str = "cb.evt.content.>";
    /// An upload was completed and its bytes are in S3.
    pub const EVT_ASSET_UPLOADED: &str = "cb.evt.content.asset.uploaded";
    pub const EVT_ASSET_READY: &str = "cb.evt.content.asset.ready";
    pub const EVT_ASSET_FAILED: &str = "cb.evt.content.asset.failed";
    /// The durable consumer of `EVT_MEDIA` that records transcode results on assets.
    pub const MEDIA_CONSUMER: &str = "content_media";
}

/// Media: transcoding jobs (ffmpeg) shared by a queue group of replicas.
pub mod media {
    /// The micro-service name media replicas register (no endpoints: it makes replicas visible
    /// to `nats micro ls` and `$SRV.PING.media`).
    pub const SERVICE: &str = "media";

    /// The work queue of media jobs.
    pub const JOB_STREAM: &str = "JOB_MEDIA";
    pub const JOB_SUBJECTS: &str = "cb.job.media.>";
    /// Transcode an uploaded video into HLS and DASH renditions, poster and preview strip.
    pub const JOB_TRANSCODE: &str = "cb.job.media.transcode";
    /// The durable pull consumer every media replica shares.
    pub const TRANSCODE_CONSUMER: &str = "media_transcode";

    /// The results of transcodes, as facts.
    pub const EVENT_STREAM: &str = "EVT_MEDIA";
    pub const EVENT_SUBJECTS: &str = "cb.evt.media.>";
    pub const EVT_TRANSCODE_COMPLETED: &str = "cb.evt.media.transcode.completed";
    pub const EVT_TRANSCODE_FAILED: &str = "cb.evt.media.transcode.failed";
}

/// Assessment: question banks, quizzes, attempts, the grading queue group.
pub mod assessment {
    use crate::rpc::Endpoint;

    pub const SERVICE: &str = "assessment";
    pub const GROUP: &str = "cb.assessment";

    const fn ep(name: &'static str) -> Endpoint {
        Endpoint { service: SERVICE, group: GROUP, name }
    }

    /// A question bank of a course (its instructor or an admin).
    pub const BANK_CREATE: Endpoint = ep("bank.create");
    pub const QUIZ_CREATE: Endpoint = ep("quiz.create");
    pub const QUIZ_GET: Endpoint = ep("quiz.get");
    /// The caller's grade on a quiz under its scoring policy.
    pub const QUIZ_GRADE: Endpoint = ep("quiz.grade");
    /// Start (or resume) the caller's attempt.
    pub const ATTEMPT_START: Endpoint = ep("attempt.start");
    pub const ATTEMPT_GET: Endpoint = ep("attempt.get");
    pub const ATTEMPT_SAVE: Endpoint = ep("attempt.save");
    pub const ATTEMPT_SUBMIT: Endpoint = ep("attempt.submit");
    /// The instructor's queue of essays to grade.
    pub const QUIZ_MANUAL_QUEUE: Endpoint = ep("quiz.manual_queue");
    pub const ESSAY_GRADE: Endpoint = ep("essay.grade");
    pub const GRADEBOOK_SET: Endpoint = ep("gradebook.set");
    /// A learner's own gradebook.
    pub const GRADEBOOK_MINE: Endpoint = ep("gradebook.mine");
    /// The whole course's gradebook (instructor, admins), with CSV.
    pub const GRADEBOOK_COURSE: Endpoint = ep("gradebook.course");
    /// An assignment of a course (its instructor or an admin).
    pub const ASSIGNMENT_CREATE: Endpoint = ep("assignment.create");
    pub const ASSIGNMENT_GET: Endpoint = ep("assignment.get");
    /// Hand in (or, until the due date, hand in again).
    pub const ASSIGNMENT_SUBMIT: Endpoint = ep("assignment.submit");
    /// The caller's current submission (its grade once released).
    pub const SUBMISSION_MINE: Endpoint = ep("submission.mine");
    /// Every learner's current submission (instructor).
    pub const SUBMISSION_LIST: Endpoint = ep("submission.list");
    pub const SUBMISSION_GRADE: Endpoint = ep("submission.grade");
    /// Publish an assignment's grades to its learners.
    pub const ASSIGNMENT_RELEASE: Endpoint = ep("assignment.release");
    /// The plagiarism reports of an assignment.
    pub const ASSIGNMENT_SIMILARITY: Endpoint = ep("assignment.similarity");

    /// The grading work queue.
    pub const JOB_STREAM: &str = "JOB_GRADING";
    pub const JOB_SUBJECTS: &str = "cb.job.assessment.>";
    pub const JOB_GRADE_ATTEMPT: &str = "cb.job.assessment.grade";
    /// The durable pull consumer every grading replica shares.
    pub const GRADING_CONSUMER: &str = "assessment_grading";
    /// Plagiarism checks of assignments' text submissions (same stream, own consumer).
    pub const JOB_CHECK_SIMILARITY: &str = "cb.job.assessment.similarity";
    pub const SIMILARITY_CONSUMER: &str = "assessment_similarity";
    /// Assessment's durable consumer of `EVT_ENROLLMENT` (enrolments created and cancelled), kept
    /// as its `learner_enrolments` table so a quiz start need not ask enrollment.
    pub const ENROLMENT_CONSUMER: &str = "assessment_enrolments";

    pub const EVENT_STREAM: &str = "EVT_ASSESSMENT";
    pub const EVENT_SUBJECTS: &str = "cb.evt.assessment.>";
    pub const EVT_ATTEMPT_GRADED: &str = "cb.evt.assessment.attempt.graded";
    pub const EVT_SUBMISSION_GRADED: &str = "cb.evt.assessment.submission.graded";
    /// A learner's grade on a quiz or an assignment became visible to them (or changed):
    /// enrollment's completion rules read it.
    pub const EVT_GRADE_RELEASED: &str = "cb.evt.assessment.grade.released";
}

/// Payments: checkout, Stripe, refunds, the ledger, invoices and receipts.
pub mod payments {
    use crate::rpc::Endpoint;

    pub const SERVICE: &str = "payments";
    pub const GROUP: &str = "cb.payments";

    const fn ep(name: &'static str) -> Endpoint {
        Endpoint { service: SERVICE, group: GROUP, name }
    }

    /// Create (or resume) the caller's order for a course and its Stripe PaymentIntent.
    pub const CHECKOUT_CREATE: Endpoint = ep("checkout.create");
    pub const ORDER_GET: Endpoint = ep("order.get");
    /// The caller's orders.
    pub const ORDER_MINE: Endpoint = ep("order.mine");
    /// Refund an order (its buyer within the refund window; admins always, also partially).
    pub const ORDER_REFUND: Endpoint = ep("order.refund");
    /// The PDF receipt of a paid order.
    pub const ORDER_RECEIPT: Endpoint = ep("order.receipt");
    /// Create a coupon (admins; instructors for their own courses).
    pub const COUPON_CREATE: Endpoint = ep("coupon.create");
    /// Admin: revenue per course and period, from the ledger.
    pub const REPORT_REVENUE: Endpoint = ep("report.revenue");
    /// Admin: the ledger entries of an order (or the latest ones).
    pub const LEDGER_LIST: Endpoint = ep("ledger.list");
    /// Admin: the invoices of a year, in number order.
    pub const INVOICE_LIST: Endpoint = ep("invoice.list");
    /// Operator: run the reconciliation pass now (it also runs on a timer).
    pub const ADMIN_RECONCILE: Endpoint = ep("admin.reconcile");

    /// Verified Stripe webhook events, as the gateway received them (`cb.in.stripe.<type>`,
    /// `Nats-Msg-Id` = Stripe's event id). Owned (created) by payments.
    pub const STRIPE_STREAM: &str = "IN_STRIPE";
    pub const STRIPE_SUBJECTS: &str = "cb.in.stripe.>";
    /// The subject a verified Stripe event of `event_type` (`payment_intent.succeeded`) goes to.
    pub fn stripe_subject(event_type: &str) -> String {
        let kind: String = event_type
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' })
            .collect();
        format!("cb.in.stripe.{kind}")
    }
    /// The durable consumer of `IN_STRIPE` shared by the payments replicas.
    pub const STRIPE_CONSUMER: &str = "payments_stripe";
    /// The durable consumer of enrolment outcomes (the paid-enrolment saga).
    pub const ENROLLMENT_CONSUMER: &str = "payments_enrollment";

    pub const EVENT_STREAM: &str = "EVT_PAYMENTS";
    pub const EVENT_SUBJECTS: &str = "cb.evt.payments.>";
    /// An order was paid: enrollment enrols its buyer.
    pub const EVT_ORDER_PAID: &str = "cb.evt.payments.order.paid";
    /// A paid order's enrolment exists: the receipt goes out.
    pub const EVT_ORDER_FULFILLED: &str = "cb.evt.payments.order.fulfilled";
    /// A payment failed (declined card); nothing was charged.
    pub const EVT_ORDER_FAILED: &str = "cb.evt.payments.order.failed";
    /// Money went back; a full refund revokes the enrolment.
    pub const EVT_ORDER_REFUNDED: &str = "cb.evt.payments.order.refunded";
}

pub mod config {
    //! The central configuration: a NATS KV bucket (keys in `crate::settings`).

    /// The bucket (its stream is `KV_cb_config`).
    pub const BUCKET: &str = "cb_config";
}

/// The dead-letter stream: copies of jobs (and events) a consumer gave up on, kept for an
/// operator to inspect (`nats stream view DLQ`) and replay. It also captures JetStream's
/// max-deliveries advisories, which each job owner turns into copies of the original message.
pub mod dlq {
    pub const STREAM: &str = "DLQ";
    /// A copy of a message given up on: `cb.dlq.<stream>.<consumer>`.
    pub const COPIES: &str = "cb.dlq.>";
    /// JetStream's advisories when a message exhausted `max_deliver`.
    pub const MAX_DELIVERIES: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>";

    pub fn copy(stream: &str, consumer: &str) -> String {
        format!("cb.dlq.{stream}.{consumer}")
    }

    pub fn max_deliveries(stream: &str, consumer: &str) -> String {
        format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}")
    }

    /// Headers of a copy: where the original was, how often it was tried, and why it was given up.
    pub const HEADER_SUBJECT: &str = "Cb-Dlq-Subject";
    pub const HEADER_STREAM: &str = "Cb-Dlq-Stream";
    pub const HEADER_SEQUENCE: &str = "Cb-Dlq-Stream-Seq";
    pub const HEADER_DELIVERIES: &str = "Cb-Dlq-Deliveries";
    pub const HEADER_REASON: &str = "Cb-Dlq-Reason";
}

/// `cargo xtask bench`: the request-reply ceiling's empty service.
pub mod bench {
    pub const ECHO_SERVICE: &str = "bench_echo";
    pub const ECHO: &str = "cb.bench.echo";
}

/// A subject nobody subscribes to (`_INBOX.<token>.barrier`, which every service may publish):
/// a request on it comes back at once with "no responders", and only after the server processed
/// everything the connection sent before it — a round trip to wait on.
pub fn barrier(token: &str) -> String {
    format!("_INBOX.{token}.barrier")
}

/// The NATS micro-service protocol subjects (`$SRV.PING|INFO|STATS[.<name>[.<id>]]`).
pub mod srv {
    /// `$SRV.PING.<service>`: every replica answers.
    pub fn ping(service: &str) -> String {
        format!("$SRV.PING.{service}")
    }

    /// `$SRV.INFO.<service>`: name, version, description and endpoints of each replica.
    pub fn info(service: &str) -> String {
        format!("$SRV.INFO.{service}")
    }

    /// `$SRV.STATS.<service>`: per-endpoint request and error counts of each replica.
    pub fn stats(service: &str) -> String {
        format!("$SRV.STATS.{service}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_subjects_follow_the_naming_scheme() {
        assert_eq!(identity::USER_REGISTER.subject(), "cb.identity.user.register");
        assert_eq!(identity::JWKS_GET.subject(), "cb.identity.jwks.get");
        for subject in [
            identity::EVT_USER_REGISTERED,
            identity::EVT_PROFILE_UPDATED,
            identity::EVT_ROLE_GRANTED,
            identity::EVT_ROLE_REVOKED,
        ] {
            assert!(subject.starts_with("cb.evt.identity."), "{subject}");
            assert_eq!(subject.split('.').count(), 5, "{subject}");
        }
        assert_eq!(srv::info("identity"), "$SRV.INFO.identity");
        assert_eq!(notifications::INBOX_LIST.subject(), "cb.notifications.inbox.list");
        assert!(notifications::JOB_DELIVER.starts_with("cb.job.notifications."));
    }
}
