//! Assessment: question banks, quizzes with per-learner seeded papers, saving and resuming,
//! the server's time limit, attempt limits, and the grading queue group.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use coursebus_tests::{Infra, Platform, Service, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{call, create_course, instructor, publish_with_lessons, user};

const WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn platform(infra: &Infra, assessment_replicas: usize) -> Result<Platform> {
    Platform::builder()
        .with(Service::Catalog, 1)
        .with(Service::Enrollment, 1)
        .with(Service::Assessment, assessment_replicas)
        .start(infra)
        .await
}

/// A published free course and (teacher token, course id).
pub(crate) async fn course(p: &Platform, teacher_email: &str) -> Result<(String, String)> {
    let (_, teacher) = instructor(p, teacher_email).await?;
    let course = create_course(p, &teacher, "Quizzed", json!({})).await?;
    let course = publish_with_lessons(p, &teacher, &course, 1).await?;
    Ok((teacher, course["id"].as_str().context("id")?.to_owned()))
}

/// A learner enrolled in `course`: (id, token).
pub(crate) async fn learner(p: &Platform, email: &str, course: &str) -> Result<(String, String)> {
    let (id, token) = user(p, email).await?;
    let enrolled = call(p, Method::POST, "/v1/enrollments", Some(&token), Some(json!({"course_id": course}))).await?;
    ensure!(enrolled.status.is_success(), "enrolling {email}: {enrolled:?}");
    Ok((id, token))
}

/// Twelve auto-gradable questions of every kind, two points each.
fn questions() -> Value {
    let mut qs = Vec::new();
    for i in 0..4 {
        qs.push(json!({"prompt": format!("Pick option {i}"), "points": 2,
            "body": {"kind": "single_choice", "options": ["right", "wrong a", "wrong b", "wrong c"], "correct": 0}}));
    }
    qs.push(json!({"prompt": "Primes", "points": 2, "body": {"kind": "multiple_choice", "options": ["2", "4", "5", "9"], "correct": [0, 2]}}));
    qs.push(json!({"prompt": "Rust is memory safe", "points": 2, "body": {"kind": "true_false", "correct": true}}));
    qs.push(json!({"prompt": "7 divided by 4", "points": 2, "body": {"kind": "numeric", "answer": 1.75, "tolerance": 0.005}}));
    qs.push(json!({"prompt": "Capital of France", "points": 2, "body": {"kind": "short_text", "accepted": ["Paris"]}}));
    qs.push(json!({"prompt": "Order the steps", "points": 2, "body": {"kind": "ordering", "items": ["edit", "compile", "run"]}}));
    for i in 0..3 {
        qs.push(json!({"prompt": format!("Statement {i} is false"), "points": 2, "body": {"kind": "true_false", "correct": false}}));
    }
    Value::Array(qs)
}

/// The right answer to bank question `q` (the author's body), as a learner would send it.
fn right_answer(q: &Value) -> Value {
    let body = &q["body"];
    match body["kind"].as_str().unwrap_or_default() {
        "single_choice" => json!([body["correct"]]),
        "multiple_choice" => body["correct"].clone(),
        "true_false" | "numeric" => body[if body["kind"] == "numeric" { "answer" } else { "correct" }].clone(),
        "short_text" => json!(format!("  {}  ", body["accepted"][0].as_str().unwrap_or_default().to_uppercase())),
        "ordering" => json!((0..body["items"].as_array().map_or(0, Vec::len)).collect::<Vec<_>>()),
        _ => Value::Null,
    }
}

pub(crate) async fn create_quiz(p: &Platform, teacher: &str, course: &str, body: Value) -> Result<(Value, Value)> {
    let bank = call(
        p,
        Method::POST,
        &format!("/v1/courses/{course}/question-banks"),
        Some(teacher),
        Some(json!({"title": "Basics", "questions": questions()})),
    )
    .await?;
    ensure!(bank.status == StatusCode::CREATED, "bank: {bank:?}");
    let mut quiz = json!({"title": "Check-up", "draws": [{"bank_id": bank.body["id"], "count": 5}], "max_attempts": 2, "scoring": "highest"});
    if let (Some(q), Some(extra)) = (quiz.as_object_mut(), body.as_object()) {
        q.extend(extra.clone());
    }
    let created = call(p, Method::POST, &format!("/v1/courses/{course}/quizzes"), Some(teacher), Some(quiz)).await?;
    ensure!(created.status == StatusCode::CREATED, "quiz: {created:?}");
    Ok((bank.body, created.body))
}

pub(crate) async fn start(p: &Platform, token: &str, quiz: &str) -> Result<crate::support::Reply> {
    call(p, Method::POST, &format!("/v1/quizzes/{quiz}/attempts"), Some(token), None).await
}

/// Every paper question answered right.
fn all_right(bank: &Value, attempt: &Value) -> Value {
    let answers: Vec<Value> = attempt["paper"]
        .as_array()
        .map(|paper| {
            paper
                .iter()
                .map(|pq| {
                    let q =
                        bank["questions"].as_array().and_then(|qs| qs.iter().find(|q| q["id"] == pq["question_id"]));
                    json!({"question_id": pq["question_id"], "value": q.map(right_answer).unwrap_or(Value::Null)})
                })
                .collect()
        })
        .unwrap_or_default();
    json!({ "answers": answers })
}

pub(crate) async fn wait_graded(p: &Platform, token: &str, attempt: &str) -> Result<Value> {
    eventually(WAIT, &format!("attempt {attempt} graded"), || async {
        let a = call(p, Method::GET, &format!("/v1/attempts/{attempt}"), Some(token), None).await?;
        Ok((a.body["status"] == "graded").then_some(a.body))
    })
    .await
}

pub async fn papers_are_personal_stable_and_answers_stay_hidden_until_graded(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra, 1).await?;
    let (teacher, course) = course(&p, "teacher@quiz.test").await?;
    let (bank, quiz) = create_quiz(&p, &teacher, &course, json!({})).await?;
    let quiz_id = quiz["id"].as_str().context("quiz id")?;
    assert_eq!(quiz["question_count"], 5);
    let (_, ada) = learner(&p, "ada@quiz.test", &course).await?;
    let (_, bob) = learner(&p, "bob@quiz.test", &course).await?;

    let a = start(&p, &ada, quiz_id).await?;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let b = start(&p, &bob, quiz_id).await?;
    assert_ne!(a.body["paper"], b.body["paper"], "two learners, two papers");
    // Resuming (a reload, another device) gives the same attempt and paper.
    let again = start(&p, &ada, quiz_id).await?;
    assert_eq!((&again.body["id"], &again.body["paper"]), (&a.body["id"], &a.body["paper"]));
    // No answer of any kind is on the paper.
    let text = a.body.to_string();
    for secret in ["\"correct\"", "\"accepted\"", "\"tolerance\"", "\"answer\"", "\"solution\"", "\"items\""] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(a.body["results"].as_array().is_some_and(Vec::is_empty));

    // Ada answers half, reloads (everything saved), answers the rest, submits.
    let attempt = a.body["id"].as_str().context("attempt id")?;
    let everything = all_right(&bank, &a.body);
    let answers = everything["answers"].as_array().context("answers")?;
    let (first, rest) = answers.split_at(2);
    let saved =
        call(&p, Method::PUT, &format!("/v1/attempts/{attempt}/answers"), Some(&ada), Some(json!({"answers": first})))
            .await?;
    assert_eq!((saved.status, saved.body["saved"].as_i64()), (StatusCode::OK, Some(2)), "{saved:?}");
    let reloaded = call(&p, Method::GET, &format!("/v1/attempts/{attempt}"), Some(&ada), None).await?;
    assert_eq!(reloaded.body["answers"].as_array().map(Vec::len), Some(2));
    assert_eq!(reloaded.body["paper"], a.body["paper"]);
    call(&p, Method::PUT, &format!("/v1/attempts/{attempt}/answers"), Some(&ada), Some(json!({"answers": rest})))
        .await?;
    // Others cannot see or touch it.
    let snoop = call(&p, Method::GET, &format!("/v1/attempts/{attempt}"), Some(&bob), None).await?;
    assert_eq!(snoop.status, StatusCode::NOT_FOUND);
    let meddle =
        call(&p, Method::PUT, &format!("/v1/attempts/{attempt}/answers"), Some(&bob), Some(json!({"answers": first})))
            .await?;
    assert_eq!(meddle.status, StatusCode::NOT_FOUND);
    let submitted = call(&p, Method::POST, &format!("/v1/attempts/{attempt}/submit"), Some(&ada), None).await?;
    assert_eq!(submitted.status, StatusCode::OK);
    assert!(matches!(submitted.body["status"].as_str(), Some("submitted" | "graded")));
    let graded = wait_graded(&p, &ada, attempt).await?;
    assert_eq!((graded["score_hundredths"].as_i64(), graded["max_points"].as_i64()), (Some(1000), Some(10)));
    assert!(graded["results"].as_array().is_some_and(|r| r.len() == 5 && r.iter().all(|q| q["correct"] == true)));
    assert!(graded.to_string().contains("\"solution\""), "solutions shown once graded");
    let late =
        call(&p, Method::PUT, &format!("/v1/attempts/{attempt}/answers"), Some(&ada), Some(json!({"answers": first})))
            .await?;
    assert_eq!(late.status, StatusCode::CONFLICT, "a submitted attempt takes no answers");

    // The second attempt: a new paper; handed in blank it scores 0; a third is refused.
    let second = start(&p, &ada, quiz_id).await?;
    assert_eq!(second.body["number"], 2);
    assert_ne!(second.body["paper"], a.body["paper"]);
    let second_id = second.body["id"].as_str().context("id")?;
    call(&p, Method::POST, &format!("/v1/attempts/{second_id}/submit"), Some(&ada), None).await?;
    let blank = wait_graded(&p, &ada, second_id).await?;
    assert_eq!(blank["score_hundredths"], 0);
    let third = start(&p, &ada, quiz_id).await?;
    assert_eq!(
        (third.status, third.body["details"]["max_attempts"].as_i64()),
        (StatusCode::CONFLICT, Some(2)),
        "{third:?}"
    );
    // Highest of 100 % and 0 %.
    let grade = call(&p, Method::GET, &format!("/v1/quizzes/{quiz_id}/grade"), Some(&ada), None).await?;
    assert_eq!(
        (grade.body["percent_bp"].as_i64(), grade.body["attempts_graded"].as_i64()),
        (Some(10_000), Some(2)),
        "{grade:?}"
    );

    // Not enrolled: no quiz; not the instructor: no authoring; bad questions name themselves.
    let (_, eve) = user(&p, "eve@quiz.test").await?;
    assert_eq!(start(&p, &eve, quiz_id).await?.status, StatusCode::NOT_FOUND);
    // Assessment learns enrolments from enrollment's events; once it has learnt that a learner
    // unenrolled, the one-statement start refuses them as well.
    let (carl_id, carl) = learner(&p, "carl@quiz.test", &course).await?;
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&p.assessment_database_url).await?;
    let projected = |live: bool| {
        let (db, carl_id, course) = (db.clone(), carl_id.clone(), course.clone());
        async move {
            let found: Option<bool> = sqlx::query_scalar(
                "SELECT live FROM learner_enrolments WHERE user_id = $1::uuid AND course_id = $2::uuid",
            )
            .bind(&carl_id)
            .bind(&course)
            .fetch_optional(&db)
            .await?;
            anyhow::Ok((found == Some(live)).then_some(()))
        }
    };
    eventually(WAIT, "carl's enrolment projected", || projected(true)).await?;
    let mine = call(&p, Method::GET, "/v1/enrollments", Some(&carl), None).await?;
    let enrolment = mine.body["items"][0]["id"].as_str().context("carl's enrolment")?.to_owned();
    let left = call(&p, Method::DELETE, &format!("/v1/enrollments/{enrolment}"), Some(&carl), None).await?;
    assert_eq!(left.status, StatusCode::OK, "{left:?}");
    eventually(WAIT, "carl's cancellation projected", || projected(false)).await?;
    assert_eq!(start(&p, &carl, quiz_id).await?.status, StatusCode::NOT_FOUND);
    let denied = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{course}/question-banks"),
        Some(&ada),
        Some(json!({"title": "x", "questions": questions()})),
    )
    .await?;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let bad = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{course}/question-banks"),
        Some(&teacher),
        Some(json!({"title": "x", "questions": [
        {"prompt": "ok", "points": 1, "body": {"kind": "true_false", "correct": true}},
        {"prompt": "bad", "points": 1, "body": {"kind": "single_choice", "options": ["a", "b"], "correct": 5}}]})),
    )
    .await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body["message"].as_str().unwrap_or_default().starts_with("question 2:"), "{bad:?}");
    let too_many = call(&p, Method::POST, &format!("/v1/courses/{course}/quizzes"), Some(&teacher), Some(json!({"title": "t", "draws": [{"bank_id": bank["id"], "count": 13}], "max_attempts": 1, "scoring": "latest"}))).await?;
    assert_eq!((too_many.status, too_many.body["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("draws")));
    p.shutdown().await;
    Ok(())
}

pub async fn the_time_limit_is_the_servers_and_late_answers_do_not_count(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra, 1).await?;
    let (teacher, course) = course(&p, "teacher@timed.test").await?;
    let (bank, quiz) = create_quiz(&p, &teacher, &course, json!({"time_limit_secs": 10, "max_attempts": 1})).await?;
    let quiz_id = quiz["id"].as_str().context("quiz id")?;
    let (_, kai) = learner(&p, "kai@timed.test", &course).await?;
    let (_, lou) = learner(&p, "lou@timed.test", &course).await?;

    let attempt = start(&p, &kai, quiz_id).await?.body;
    let id = attempt["id"].as_str().context("id")?;
    assert!(attempt["deadline"].is_string());
    let everything = all_right(&bank, &attempt);
    let answers = everything["answers"].as_array().context("answers")?.clone();
    let saved = call(
        &p,
        Method::PUT,
        &format!("/v1/attempts/{id}/answers"),
        Some(&kai),
        Some(json!({"answers": [answers[0]]})),
    )
    .await?;
    assert_eq!(saved.status, StatusCode::OK);
    // Kai keeps answering until the server says time is up (ten seconds after the start).
    let refused = eventually(Duration::from_secs(20), "the deadline", || async {
        let r = call(
            &p,
            Method::PUT,
            &format!("/v1/attempts/{id}/answers"),
            Some(&kai),
            Some(json!({"answers": answers[1..]})),
        )
        .await?;
        Ok((r.status == StatusCode::CONFLICT).then_some(r))
    })
    .await?;
    // Either the save itself was past the deadline, or the server had already submitted the
    // attempt when its time ran out.
    let why = refused.body["message"].as_str().unwrap_or_default();
    assert!(why.contains("time is up") || why.contains("submitted"), "{refused:?}");
    // Whatever was saved before the deadline counts; Kai's last answers were refused, or if
    // some landed in time they count too — so compare with what the attempt shows as saved.
    call(&p, Method::POST, &format!("/v1/attempts/{id}/submit"), Some(&kai), None).await?;
    let graded = wait_graded(&p, &kai, id).await?;
    let counted = graded["answers"].as_array().map_or(0, Vec::len) as i64;
    assert!(counted >= 1);
    assert_eq!(graded["score_hundredths"].as_i64(), Some(counted * 200), "{graded}");

    // Lou starts and walks away: at the deadline the server submits the attempt and grades it.
    let walked = start(&p, &lou, quiz_id).await?.body;
    let walked_id = walked["id"].as_str().context("id")?;
    let graded = eventually(Duration::from_secs(25), "the abandoned attempt graded", || async {
        let a = call(&p, Method::GET, &format!("/v1/attempts/{walked_id}"), Some(&lou), None).await?;
        Ok((a.body["status"] == "graded").then_some(a.body))
    })
    .await?;
    assert_eq!(graded["score_hundredths"], 0);
    assert!(start(&p, &lou, quiz_id).await?.status == StatusCode::CONFLICT, "its one attempt is used");
    p.shutdown().await;
    Ok(())
}

pub async fn grading_replicas_share_the_work_and_a_killed_one_loses_no_submission(infra: Arc<Infra>) -> Result<()> {
    let mut p = platform(&infra, 2).await?;
    let (teacher, course) = course(&p, "teacher@grading.test").await?;
    let (bank, quiz) = create_quiz(&p, &teacher, &course, json!({"max_attempts": 1})).await?;
    let quiz_id = quiz["id"].as_str().context("quiz id")?.to_owned();
    let mut learners = Vec::new();
    for i in 0..16 {
        learners.push(learner(&p, &format!("l{i}@grading.test"), &course).await?.1);
    }
    let submit_all = |tokens: Vec<String>| {
        let (p, bank, quiz_id) = (&p, &bank, &quiz_id);
        async move {
            let mut ids = Vec::new();
            for token in tokens {
                let attempt = start(p, &token, quiz_id).await?.body;
                let id = attempt["id"].as_str().context("id")?.to_owned();
                call(
                    p,
                    Method::PUT,
                    &format!("/v1/attempts/{id}/answers"),
                    Some(&token),
                    Some(all_right(bank, &attempt)),
                )
                .await?;
                let submitted = call(p, Method::POST, &format!("/v1/attempts/{id}/submit"), Some(&token), None).await?;
                ensure!(submitted.status == StatusCode::OK, "{submitted:?}");
                ids.push((token, id));
            }
            Ok::<_, anyhow::Error>(ids)
        }
    };
    let first = submit_all(learners[..8].to_vec()).await?;
    for (token, id) in &first {
        assert_eq!(wait_graded(&p, token, id).await?["score_hundredths"], 1000);
    }
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&p.assessment_database_url).await?;
    let graders: i64 = sqlx::query_scalar("SELECT count(DISTINCT graded_by) FROM attempts").fetch_one(&db).await?;
    assert_eq!(graders, 2, "both replicas of the queue group graded");
    // Eight more submissions; one replica crashes at once, with whatever jobs it had taken.
    let second = submit_all(learners[8..].to_vec()).await?;
    p.kill_one_replica("assessment");
    for (token, id) in &second {
        assert_eq!(wait_graded(&p, token, id).await?["score_hundredths"], 1000);
    }
    // Every attempt graded exactly once: sixteen grade events, sixteen attempts.
    let nats = p.nats_client().await?;
    let graded = crate::support::stream_events(&nats, "EVT_ASSESSMENT", "cb.evt.assessment.attempt.graded").await?;
    let mut attempts: Vec<String> =
        graded.iter().filter_map(|(e, _)| e["data"]["attempt_id"].as_str().map(str::to_owned)).collect();
    attempts.sort();
    attempts.dedup();
    assert_eq!((graded.len(), attempts.len()), (16, 16));
    let js = async_nats::jetstream::new(nats);
    let queue = js.get_stream("JOB_GRADING").await?.info().await?.state.messages;
    assert_eq!(queue, 0, "the work queue is empty");
    db.close().await;
    p.shutdown().await;
    Ok(())
}

/// Start `quiz`, answer every true/false question with `value` (all of them, or only the first
/// `right` with true and the rest false), submit, and wait until graded.
pub(crate) async fn take_true_false(p: &Platform, token: &str, quiz: &str, right: usize) -> Result<Value> {
    let attempt = start(p, token, quiz).await?.body;
    let id = attempt["id"].as_str().context("id")?.to_owned();
    let answers: Vec<Value> = attempt["paper"]
        .as_array()
        .context("paper")?
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"question_id": q["question_id"], "value": i < right}))
        .collect();
    call(p, Method::PUT, &format!("/v1/attempts/{id}/answers"), Some(token), Some(json!({"answers": answers}))).await?;
    call(p, Method::POST, &format!("/v1/attempts/{id}/submit"), Some(token), None).await?;
    wait_graded(p, token, &id).await
}

pub async fn essays_are_graded_by_rubric_and_the_gradebook_weighs_categories(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra, 1).await?;
    let (teacher, course) = course(&p, "teacher@rubric.test").await?;
    let (ada_id, ada) = learner(&p, "ada@rubric.test", &course).await?;
    let banks = format!("/v1/courses/{course}/question-banks");
    let essay = json!({"prompt": "Why ownership?", "points": 5, "body": {"kind": "essay", "rubric": [
        {"name": "argument", "max_points": 3}, {"name": "clarity", "max_points": 2}]}});
    let mismatched = json!({"prompt": "Why?", "points": 9, "body": essay["body"]});
    let bad =
        call(&p, Method::POST, &banks, Some(&teacher), Some(json!({"title": "x", "questions": [mismatched]}))).await?;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "an essay is worth its rubric: {bad:?}");
    let tf = json!({"prompt": "Borrowing is free at run time", "points": 2, "body": {"kind": "true_false", "correct": true}});
    let bank =
        call(&p, Method::POST, &banks, Some(&teacher), Some(json!({"title": "Essays", "questions": [essay, tf]})))
            .await?;
    assert_eq!(bank.status, StatusCode::CREATED, "{bank:?}");
    let quizzes = format!("/v1/courses/{course}/quizzes");
    let quiz = call(&p, Method::POST, &quizzes, Some(&teacher), Some(json!({"title": "Essay", "draws": [{"bank_id": bank.body["id"], "count": 2}], "max_attempts": 1, "scoring": "latest"}))).await?;
    let quiz_id = quiz.body["id"].as_str().context("quiz")?.to_owned();

    let attempt = start(&p, &ada, &quiz_id).await?.body;
    let id = attempt["id"].as_str().context("id")?.to_owned();
    let text = "Ownership makes aliasing and mutation exclusive, so data races cannot compile.";
    let answers: Vec<Value> = attempt["paper"]
        .as_array()
        .context("paper")?
        .iter()
        .map(|q| json!({"question_id": q["question_id"], "value": if q["kind"] == "essay" { json!(text) } else { json!(true) }}))
        .collect();
    call(&p, Method::PUT, &format!("/v1/attempts/{id}/answers"), Some(&ada), Some(json!({"answers": answers}))).await?;
    call(&p, Method::POST, &format!("/v1/attempts/{id}/submit"), Some(&ada), None).await?;
    let waiting = eventually(WAIT, "auto-grading", || async {
        let a = call(&p, Method::GET, &format!("/v1/attempts/{id}"), Some(&ada), None).await?;
        Ok((a.body["status"] == "needs_manual_grading").then_some(a.body))
    })
    .await?;
    assert_eq!(waiting["score_hundredths"], 200, "the true/false part, so far");

    // The instructor's queue shows the essay with its rubric and the learner's text.
    let queue = call(&p, Method::GET, &format!("/v1/quizzes/{quiz_id}/grading-queue"), Some(&teacher), None).await?;
    assert_eq!(queue.status, StatusCode::OK, "{queue:?}");
    let item = &queue.body["items"][0];
    assert_eq!((item["attempt_id"].as_str(), item["essays"][0]["answer"].as_str()), (Some(id.as_str()), Some(text)));
    assert_eq!(item["essays"][0]["rubric"][0]["name"], "argument");
    let essay_id = item["essays"][0]["question_id"].as_str().context("essay id")?;
    let denied = call(&p, Method::GET, &format!("/v1/quizzes/{quiz_id}/grading-queue"), Some(&ada), None).await?;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let grade_path = format!("/v1/attempts/{id}/essays/{essay_id}/grade");
    let too_high = call(&p, Method::POST, &grade_path, Some(&teacher), Some(json!({"scores": [4, 1]}))).await?;
    assert_eq!(
        (too_high.status, too_high.body["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("scores"))
    );
    let by_learner = call(&p, Method::POST, &grade_path, Some(&ada), Some(json!({"scores": [3, 2]}))).await?;
    assert_eq!(by_learner.status, StatusCode::FORBIDDEN);
    let graded = call(
        &p,
        Method::POST,
        &grade_path,
        Some(&teacher),
        Some(json!({"scores": [3, 1], "feedback": "Clear argument; tighten the prose."})),
    )
    .await?;
    assert_eq!(
        (graded.status, graded.body["status"].as_str(), graded.body["score_hundredths"].as_i64()),
        (StatusCode::OK, Some("graded"), Some(600)),
        "{graded:?}"
    );
    let seen = call(&p, Method::GET, &format!("/v1/attempts/{id}"), Some(&ada), None).await?;
    let result = seen.body["results"]
        .as_array()
        .and_then(|r| r.iter().find(|q| q["question_id"] == essay_id))
        .cloned()
        .context("essay result")?;
    assert_eq!(
        (result["points_hundredths"].as_i64(), result["feedback"].as_str()),
        (Some(400), Some("Clear argument; tighten the prose."))
    );
    let again = call(&p, Method::POST, &grade_path, Some(&teacher), Some(json!({"scores": [3, 2]}))).await?;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // The gradebook: quizzes 40 % (drop the lowest of three), the final 60 %.
    let tf_bank = call(
        &p,
        Method::POST,
        &banks,
        Some(&teacher),
        Some(json!({"title": "TF", "questions": [
        {"prompt": "a", "points": 1, "body": {"kind": "true_false", "correct": true}},
        {"prompt": "b", "points": 1, "body": {"kind": "true_false", "correct": true}}]})),
    )
    .await?;
    let mut ids = Vec::new();
    for title in ["Quiz 1", "Quiz 2", "Quiz 3", "Final"] {
        let q = call(&p, Method::POST, &quizzes, Some(&teacher), Some(json!({"title": title, "draws": [{"bank_id": tf_bank.body["id"], "count": 2}], "max_attempts": 1, "scoring": "highest"}))).await?;
        ids.push(q.body["id"].as_str().context("quiz id")?.to_owned());
    }
    for (quiz, right) in ids.iter().zip([2, 1, 0, 2]) {
        take_true_false(&p, &ada, quiz, right).await?;
    }
    let book = format!("/v1/courses/{course}/gradebook");
    let categories = |final_weight: u32| {
        json!({"categories": [
            {"name": "Quizzes", "weight_percent": 40, "drop_lowest": 1, "quiz_ids": &ids[..3]},
            {"name": "Final", "weight_percent": final_weight, "quiz_ids": [&ids[3]]}]})
    };
    let unbalanced = call(&p, Method::PUT, &book, Some(&teacher), Some(categories(50))).await?;
    assert_eq!(unbalanced.status, StatusCode::BAD_REQUEST, "{unbalanced:?}");
    let set = call(&p, Method::PUT, &book, Some(&teacher), Some(categories(60))).await?;
    assert_eq!(set.status, StatusCode::OK, "{set:?}");
    let mine = call(&p, Method::GET, &format!("{book}/me"), Some(&ada), None).await?;
    let grade = &mine.body["grade"];
    // Quizzes: 100 %, 50 %, 0 % → the 0 % is dropped → 75 %; final 100 %; 0.4·75 + 0.6·100 = 90 %.
    assert_eq!(
        (
            grade["categories"][0]["percent_bp"].as_i64(),
            grade["categories"][1]["percent_bp"].as_i64(),
            grade["total_bp"].as_i64()
        ),
        (Some(7_500), Some(10_000), Some(9_000)),
        "{mine:?}"
    );
    assert_eq!(grade["categories"][0]["dropped"], json!([ids[2]]));
    let csv = p.http.get(p.url(&format!("{book}?format=csv"))).bearer_auth(&teacher).send().await?;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await?;
    let row = csv.lines().find(|l| l.starts_with(&ada_id)).context("Ada's row")?;
    assert!(row.ends_with(",75.00,100.00,90.00"), "{csv}");
    let theirs = call(&p, Method::GET, &book, Some(&ada), None).await?;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    p.shutdown().await;
    Ok(())
}

/// `POST path` as the holder of `token` with `Idempotency-Key: key`.
async fn post_keyed(p: &Platform, token: &str, path: &str, key: &str, body: &Value) -> Result<crate::support::Reply> {
    let resp = p.http.post(p.url(path)).bearer_auth(token).header("Idempotency-Key", key).json(body).send().await?;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = serde_json::from_slice(&resp.bytes().await?).unwrap_or(Value::Null);
    Ok(crate::support::Reply { status, headers, body })
}

/// `body` posted to `/v1/courses/{course}/{what}` with `key` six times at once, then again: one
/// answer, one row in `table`; the key with another title is a conflict naming the header and
/// creates nothing. Returns what was created.
async fn created_once(
    p: &Platform,
    db: &sqlx::PgPool,
    teacher: &str,
    course: &str,
    (what, table): (&str, &str),
    key: &str,
    body: Value,
) -> Result<Value> {
    let path = format!("/v1/courses/{course}/{what}");
    // Concurrent retries of one request (a client that timed out and retried) create one: the
    // same key waits for the request holding it and is answered with what that one stored.
    let tries = futures::future::join_all((0..6).map(|_| post_keyed(p, teacher, &path, key, &body))).await;
    let tries = tries.into_iter().collect::<Result<Vec<_>>>()?;
    let a = &tries[0];
    assert!(a.status == StatusCode::CREATED && a.body["id"].is_string(), "{what}: {a:?}");
    for b in &tries[1..] {
        assert_eq!((b.status, &b.body), (StatusCode::CREATED, &a.body), "{what}: a retry got the first answer");
    }
    let again = post_keyed(p, teacher, &path, key, &body).await?;
    assert_eq!((again.status, &again.body), (StatusCode::CREATED, &a.body), "{what}: a later retry too");

    let mut changed = body;
    changed["title"] = json!("Something else");
    let reused = post_keyed(p, teacher, &path, key, &changed).await?;
    assert_eq!((reused.status, reused.code()), (StatusCode::CONFLICT, "conflict"), "{what}: {reused:?}");
    assert_eq!(reused.body["details"]["field"], "Idempotency-Key", "{what}: {reused:?}");

    let stored: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id::text FROM {table} WHERE course_id = $1::uuid")))
            .bind(course)
            .fetch_all(db)
            .await?;
    assert_eq!(stored, [a.body["id"].as_str().unwrap_or_default()], "{what}: one, not two");
    Ok(a.body.clone())
}

pub async fn creating_banks_quizzes_and_assignments_honours_idempotency_keys(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra, 2).await?;
    let (teacher, course) = course(&p, "teacher@keys.test").await?;
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&p.assessment_database_url).await?;
    // One key for all three: a key is scoped to its endpoint (and caller).
    let key = "retry-1";
    let bank = json!({"title": "Basics", "questions": questions()});
    let bank = created_once(&p, &db, &teacher, &course, ("question-banks", "banks"), key, bank).await?;
    let quiz = json!({"title": "Check-up", "draws": [{"bank_id": bank["id"], "count": 5}], "max_attempts": 2,
        "scoring": "highest"});
    let quiz = created_once(&p, &db, &teacher, &course, ("quizzes", "quizzes"), key, quiz).await?;
    let due_at = (time::OffsetDateTime::now_utc() + time::Duration::days(7))
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    let assignment = json!({"title": "Explain ownership", "submission_type": "text",
        "rubric": [{"name": "accuracy", "max_points": 5}], "due_at": due_at});
    let assignment = created_once(&p, &db, &teacher, &course, ("assignments", "assignments"), key, assignment).await?;

    // What the retries were answered with is what exists.
    let path = format!("/v1/quizzes/{}", quiz["id"].as_str().unwrap_or_default());
    let fetched = call(&p, Method::GET, &path, Some(&teacher), None).await?;
    assert_eq!((fetched.status, &fetched.body), (StatusCode::OK, &quiz), "{fetched:?}");
    let path = format!("/v1/assignments/{}", assignment["id"].as_str().unwrap_or_default());
    let fetched = call(&p, Method::GET, &path, Some(&teacher), None).await?;
    assert_eq!((fetched.status, &fetched.body), (StatusCode::OK, &assignment), "{fetched:?}");
    p.shutdown().await;
    Ok(())
}
