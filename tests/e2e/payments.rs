//! Payments: checkout with Stripe (localstripe behind the launcher's fidelity shim), webhooks
//! verified by the gateway, the paid-enrolment saga, refunds, the ledger, invoices, receipts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use coursebus_tests::{Infra, Platform, Service, eventually};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{ADMIN, Reply, access_token, call, create_course, instructor, publish_with_lessons, user};

const SAGA: Duration = Duration::from_secs(30);

pub(crate) async fn platform(infra: &Infra) -> Result<Platform> {
    Platform::builder()
        .with(Service::Catalog, 1)
        .with(Service::Enrollment, 1)
        .with(Service::Payments, 1)
        .with(Service::Notifications, 1)
        .start(infra)
        .await
}

/// A published course at EUR 49.00 (also USD 55.00) with two required lessons; its JSON.
pub(crate) async fn paid_course(p: &Platform, teacher: &str, title: &str) -> Result<Value> {
    let course = create_course(
        p,
        teacher,
        title,
        json!({"price": {"amount_minor": 4900, "currency": "EUR"}, "other_prices": [{"amount_minor": 5500, "currency": "USD"}]}),
    )
    .await?;
    publish_with_lessons(p, teacher, &course, 2).await
}

pub(crate) async fn checkout(p: &Platform, token: &str, key: &str, body: Value) -> Result<Reply> {
    let mut req = p.http.post(p.url("/v1/payments/checkout")).bearer_auth(token).json(&body);
    if !key.is_empty() {
        req = req.header("Idempotency-Key", key);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Ok(Reply { status, headers, body })
}

pub(crate) async fn refund(p: &Platform, token: &str, order: &str, key: &str, body: Value) -> Result<Reply> {
    let resp = p
        .http
        .post(p.url(&format!("/v1/payments/orders/{order}/refund")))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    Ok(Reply { status, headers, body })
}

fn stripe_url(p: &Platform, path: &str) -> String {
    format!("{}{}", p.stripe.as_ref().map(|s| s.url()).unwrap_or_default(), path.trim_start_matches('/'))
}

/// What Stripe.js does in the browser: confirm the PaymentIntent with the publishable key, its
/// client secret and a payment method.
pub(crate) async fn confirm(
    p: &Platform,
    intent: &str,
    client_secret: &str,
    method: &str,
) -> Result<reqwest::Response> {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("key", "pk_test_browser")
        .append_pair("client_secret", client_secret)
        .append_pair("payment_method", method)
        .finish();
    Ok(p.http
        .post(stripe_url(p, &format!("/v1/payment_intents/{intent}/confirm")))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?)
}

/// A PaymentIntent as Stripe has it (with the secret key).
async fn intent_at_stripe(p: &Platform, intent: &str) -> Result<Value> {
    Ok(p.http
        .get(stripe_url(p, &format!("/v1/payment_intents/{intent}")))
        .bearer_auth(&p.stripe_secret_key)
        .send()
        .await?
        .json()
        .await?)
}

pub(crate) async fn order(p: &Platform, token: &str, id: &str) -> Result<Value> {
    let reply = call(p, Method::GET, &format!("/v1/payments/orders/{id}"), Some(token), None).await?;
    ensure!(reply.status == StatusCode::OK, "order {id}: {reply:?}");
    Ok(reply.body)
}

pub(crate) async fn wait_status(p: &Platform, token: &str, id: &str, status: &str) -> Result<Value> {
    eventually(SAGA, &format!("order {id} {status}"), || async {
        let o = order(p, token, id).await?;
        Ok((o["status"] == status).then_some(o))
    })
    .await
}

/// Checkout and pay with a working card; the fulfilled order.
pub(crate) async fn buy(p: &Platform, token: &str, course: &str, key: &str) -> Result<Value> {
    let reply = checkout(p, token, key, json!({"course_id": course})).await?;
    ensure!(reply.status == StatusCode::CREATED, "checkout: {reply:?}");
    let intent = reply.body["order"]["payment_intent_id"].as_str().context("intent")?;
    let paid = confirm(p, intent, reply.body["client_secret"].as_str().context("secret")?, "pm_card_visa").await?;
    ensure!(paid.status() == StatusCode::OK, "confirm: {}", paid.text().await?);
    let id = reply.body["order"]["id"].as_str().context("order id")?.to_owned();
    wait_status(p, token, &id, "fulfilled").await
}

pub(crate) async fn my_enrollments(p: &Platform, token: &str) -> Result<Vec<Value>> {
    let reply = call(p, Method::GET, "/v1/enrollments", Some(token), None).await?;
    ensure!(reply.status == StatusCode::OK, "enrollments: {reply:?}");
    Ok(reply.body["items"].as_array().cloned().unwrap_or_default())
}

async fn ledger(p: &Platform, admin: &str, order: &str) -> Result<Vec<Value>> {
    let reply = call(p, Method::GET, &format!("/v1/payments/ledger?order_id={order}"), Some(admin), None).await?;
    ensure!(reply.status == StatusCode::OK, "ledger: {reply:?}");
    Ok(reply.body["items"].as_array().cloned().unwrap_or_default())
}

/// Every ledger transaction in the payments database sums to zero; returns how many there are.
async fn ledger_balances(p: &Platform) -> Result<i64> {
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&p.payments_database_url).await?;
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT transaction_id FROM ledger_entries GROUP BY 1 HAVING sum(amount_minor) <> 0) t",
    )
    .fetch_one(&db)
    .await?;
    ensure!(unbalanced == 0, "{unbalanced} ledger transactions do not balance");
    let transactions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT transaction_id) FROM ledger_entries").fetch_one(&db).await?;
    db.close().await;
    Ok(transactions)
}

fn account_sum(entries: &[Value], account: &str) -> i64 {
    entries.iter().filter(|e| e["account"] == account).map(|e| e["amount_minor"].as_i64().unwrap_or(0)).sum()
}

pub async fn buying_with_a_coupon_enrols_and_sends_a_receipt(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra).await?;
    let admin = access_token(&p, ADMIN.0, ADMIN.1).await?;
    let (_, teacher) = instructor(&p, "teacher@pay.test").await?;
    let course = paid_course(&p, &teacher, "Rust for money").await?;
    let course_id = course["id"].as_str().context("id")?;
    let coupon = call(
        &p,
        Method::POST,
        "/v1/payments/coupons",
        Some(&admin),
        Some(json!({"code": "spring-25", "discount": {"percent": 25}, "max_uses": 1, "course_id": course_id})),
    )
    .await?;
    assert_eq!(coupon.status, StatusCode::CREATED, "{coupon:?}");
    assert_eq!(coupon.body["code"], "SPRING-25");

    let (ada_id, ada) = user(&p, "ada@pay.test").await?;
    let first = checkout(&p, &ada, "buy-1", json!({"course_id": course_id, "coupon": "Spring-25"})).await?;
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    let o = &first.body["order"];
    assert_eq!(
        (o["list_price_minor"].as_i64(), o["discount_minor"].as_i64(), o["total_minor"].as_i64()),
        (Some(4900), Some(1225), Some(3675))
    );
    assert_eq!((o["status"].as_str(), o["currency"].as_str()), (Some("pending"), Some("EUR")));
    // The same request again (a retry after a lost answer): the same order and PaymentIntent.
    let again = checkout(&p, &ada, "buy-1", json!({"course_id": course_id, "coupon": "Spring-25"})).await?;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body["order"]["id"], o["id"]);
    assert_eq!(again.body["order"]["payment_intent_id"], o["payment_intent_id"]);
    // Another key for the same purchase resumes the waiting order rather than making a second.
    let resumed = checkout(&p, &ada, "buy-1b", json!({"course_id": course_id, "coupon": "SPRING-25"})).await?;
    assert_eq!(resumed.body["order"]["payment_intent_id"], o["payment_intent_id"], "{resumed:?}");
    // No key: refused, nothing created.
    let keyless = checkout(&p, &ada, "", json!({"course_id": course_id})).await?;
    assert_eq!((keyless.status, keyless.code()), (StatusCode::BAD_REQUEST, "invalid_input"));

    let intent = o["payment_intent_id"].as_str().context("intent")?;
    let secret = first.body["client_secret"].as_str().context("client secret")?;
    let paid = confirm(&p, intent, secret, "pm_card_visa").await?;
    assert_eq!(paid.status(), StatusCode::OK);
    // Paying the same PaymentIntent twice is impossible at Stripe.
    assert_eq!(confirm(&p, intent, secret, "pm_card_visa").await?.status(), StatusCode::BAD_REQUEST);
    let order_id = o["id"].as_str().context("order id")?;
    let done = wait_status(&p, &ada, order_id, "fulfilled").await?;
    let at_stripe = intent_at_stripe(&p, intent).await?;
    assert_eq!((at_stripe["status"].as_str(), at_stripe["amount_received"].as_i64()), (Some("succeeded"), Some(3675)));
    let year = time::OffsetDateTime::now_utc().year();
    let number = done["invoice_number"].as_str().context("invoice number")?;
    assert_eq!(number, format!("{year}-000001"));
    let enrolled = my_enrollments(&p, &ada).await?;
    assert_eq!(enrolled.len(), 1);
    assert_eq!(enrolled[0]["course_id"], course_id);
    assert_eq!(done["enrollment_id"], enrolled[0]["id"]);

    // The ledger: cash 36.75 + discount 12.25 = revenue 49.00; Stripe kept 1.37 (2.9 % + 0.30).
    let entries = ledger(&p, &admin, order_id).await?;
    assert_eq!(account_sum(&entries, "stripe_balance"), 3675 - 137);
    assert_eq!(account_sum(&entries, "payment_fees"), 137);
    assert_eq!(account_sum(&entries, "coupon_discounts"), 1225);
    assert_eq!(account_sum(&entries, "course_revenue"), -4900);
    assert_eq!(ledger_balances(&p).await?, 1);

    // The receipt: a PDF with the invoice number and what was paid; only for its buyer and admins.
    let pdf = p.http.get(p.url(&format!("/v1/payments/orders/{order_id}/receipt"))).bearer_auth(&ada).send().await?;
    assert_eq!(pdf.status(), StatusCode::OK);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    let bytes = pdf.bytes().await?;
    assert!(bytes.starts_with(b"%PDF-"));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains(number) && text.contains("EUR 36.75") && text.contains("SPRING-25"), "receipt text");
    let (_, eve) = user(&p, "eve@pay.test").await?;
    let snoop = call(&p, Method::GET, &format!("/v1/payments/orders/{order_id}/receipt"), Some(&eve), None).await?;
    assert_eq!(snoop.status, StatusCode::NOT_FOUND);
    // The receipt email, sent when the enrolment exists.
    let mail = eventually(SAGA, "the receipt email", || async {
        let messages = infra.smtp.messages()?;
        Ok(messages.into_iter().find(|m| m.contains("ada@pay.test") && m.contains(number)))
    })
    .await?;
    // The text part may be quoted-printable (soft line breaks, `=3D` for `=`).
    let mail = mail.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    assert!(mail.contains("Rust for money") && mail.contains("EUR 36.75"), "{mail}");
    assert!(mail.contains(&format!("/v1/payments/orders/{order_id}/receipt")), "{mail}");

    // The coupon had one use: the next buyer is told, and nothing is created for them.
    let used_up = checkout(&p, &eve, "eve-1", json!({"course_id": course_id, "coupon": "SPRING-25"})).await?;
    assert_eq!((used_up.status, used_up.code()), (StatusCode::CONFLICT, "conflict"), "{used_up:?}");
    // Already enrolled: no second purchase.
    let twice = checkout(&p, &ada, "buy-2", json!({"course_id": course_id})).await?;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{twice:?}");
    // Other currencies: the course's USD price; one it is not sold in is a 400 naming the field.
    let usd = checkout(&p, &eve, "eve-usd", json!({"course_id": course_id, "currency": "usd"})).await?;
    assert_eq!((usd.status, usd.body["order"]["total_minor"].as_i64()), (StatusCode::CREATED, Some(5500)), "{usd:?}");
    let gbp = checkout(&p, &eve, "eve-gbp", json!({"course_id": course_id, "currency": "GBP"})).await?;
    assert_eq!((gbp.status, gbp.body["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("currency")));
    let _ = ada_id;
    p.shutdown().await;
    Ok(())
}

pub async fn a_declined_card_enrols_nobody(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra).await?;
    let admin = access_token(&p, ADMIN.0, ADMIN.1).await?;
    let (_, teacher) = instructor(&p, "teacher@declined.test").await?;
    let course = paid_course(&p, &teacher, "Declined cards 101").await?;
    let (_, bob) = user(&p, "bob@declined.test").await?;
    let reply = checkout(&p, &bob, "bob-1", json!({"course_id": course["id"]})).await?;
    assert_eq!(reply.status, StatusCode::CREATED);
    let id = reply.body["order"]["id"].as_str().context("id")?;
    let intent = reply.body["order"]["payment_intent_id"].as_str().context("intent")?;
    let secret = reply.body["client_secret"].as_str().context("secret")?;
    let declined = confirm(&p, intent, secret, "pm_card_chargeDeclined").await?;
    assert_eq!(declined.status(), StatusCode::PAYMENT_REQUIRED);
    let failed = wait_status(&p, &bob, id, "failed").await?;
    assert_eq!(failed["failure_reason"], "Your card was declined.");
    assert!(failed["invoice_number"].is_null() && failed["paid_at"].is_null());
    assert!(my_enrollments(&p, &bob).await?.is_empty());
    assert!(ledger(&p, &admin, id).await?.is_empty(), "no money moved, nothing in the ledger");
    let receipt = call(&p, Method::GET, &format!("/v1/payments/orders/{id}/receipt"), Some(&bob), None).await?;
    assert_eq!(receipt.status, StatusCode::CONFLICT);

    // Another card on the same PaymentIntent (as Stripe allows) completes the purchase.
    let paid = confirm(&p, intent, secret, "pm_card_visa").await?;
    assert_eq!(paid.status(), StatusCode::OK);
    let done = wait_status(&p, &bob, id, "fulfilled").await?;
    assert!(done["failure_reason"].is_null());
    assert_eq!(my_enrollments(&p, &bob).await?.len(), 1);
    p.shutdown().await;
    Ok(())
}

pub async fn refunds_follow_the_window_revoke_access_and_balance_the_ledger(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra).await?;
    let admin = access_token(&p, ADMIN.0, ADMIN.1).await?;
    let (_, teacher) = instructor(&p, "teacher@refund.test").await?;
    let course = paid_course(&p, &teacher, "Refundable Rust").await?;
    let course_id = course["id"].as_str().context("id")?;
    let (_, ann) = user(&p, "ann@refund.test").await?;
    let (_, ben) = user(&p, "ben@refund.test").await?;
    let ann_order = buy(&p, &ann, course_id, "ann-1").await?;
    let ben_order = buy(&p, &ben, course_id, "ben-1").await?;
    let ann_id = ann_order["id"].as_str().context("id")?;
    let ben_id = ben_order["id"].as_str().context("id")?;

    // Ann, within the window and with no progress: a full refund that revokes her access.
    let partial = refund(&p, &ann, ann_id, "ann-r0", json!({"amount_minor": 100})).await?;
    assert_eq!(partial.status, StatusCode::FORBIDDEN, "learners refund in full only");
    let refunded = refund(&p, &ann, ann_id, "ann-r1", json!({"reason": "not for me"})).await?;
    assert_eq!(refunded.status, StatusCode::OK, "{refunded:?}");
    assert_eq!(
        (refunded.body["status"].as_str(), refunded.body["refunded_minor"].as_i64()),
        (Some("refunded"), Some(4900))
    );
    assert_eq!(refunded.body["refunds"][0]["status"], "succeeded");
    let retried = refund(&p, &ann, ann_id, "ann-r1", json!({"reason": "not for me"})).await?;
    assert_eq!(retried.body, refunded.body, "the same key answers the same, no second refund");
    let again = refund(&p, &ann, ann_id, "ann-r2", json!({})).await?;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let enrolment = ann_order["enrollment_id"].as_str().context("enrolment")?;
    eventually(SAGA, "Ann's enrolment revoked", || async {
        let e = call(&p, Method::GET, &format!("/v1/enrollments/{enrolment}"), Some(&ann), None).await?;
        Ok((e.body["status"] == "cancelled").then_some(()))
    })
    .await?;
    let entries = ledger(&p, &admin, ann_id).await?;
    assert_eq!(account_sum(&entries, "refunds"), 4900);
    assert_eq!(account_sum(&entries, "stripe_balance"), -172, "paid in, paid back; Stripe keeps its fee");
    let pi = intent_at_stripe(&p, ann_order["payment_intent_id"].as_str().context("pi")?).await?;
    let refunds: Value = p
        .http
        .get(stripe_url(&p, &format!("/v1/refunds?payment_intent={}", pi["id"].as_str().unwrap_or_default())))
        .bearer_auth(&p.stripe_secret_key)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(refunds["data"].as_array().map(Vec::len), Some(1), "exactly one refund at Stripe: {refunds}");

    // Ben completes one of two lessons (50 %): past the window's progress limit.
    let detail = call(
        &p,
        Method::GET,
        &format!("/v1/enrollments/{}", ben_order["enrollment_id"].as_str().unwrap_or_default()),
        Some(&ben),
        None,
    )
    .await?;
    let lesson = detail.body["modules"][0]["lessons"][0]["lesson_id"].as_str().context("lesson")?.to_owned();
    let progress = call(
        &p,
        Method::PUT,
        &format!(
            "/v1/enrollments/{}/lessons/{lesson}/progress",
            ben_order["enrollment_id"].as_str().unwrap_or_default()
        ),
        Some(&ben),
        Some(json!({"state": "completed"})),
    )
    .await?;
    assert_eq!(progress.status, StatusCode::OK, "{progress:?}");
    let late = refund(&p, &ben, ben_id, "ben-r1", json!({})).await?;
    assert_eq!((late.status, late.code()), (StatusCode::CONFLICT, "conflict"), "{late:?}");
    assert_eq!(late.body["details"]["max_progress_percent"], 30);
    // An admin may: first part of it (access stays), then the rest (access goes).
    let part = refund(&p, &admin, ben_id, "adm-1", json!({"amount_minor": 1000, "reason": "goodwill"})).await?;
    assert_eq!(
        (part.status, part.body["status"].as_str(), part.body["refunded_minor"].as_i64()),
        (StatusCode::OK, Some("fulfilled"), Some(1000)),
        "{part:?}"
    );
    let too_much = refund(&p, &admin, ben_id, "adm-2", json!({"amount_minor": 3901})).await?;
    assert_eq!(too_much.status, StatusCode::BAD_REQUEST);
    let rest = refund(&p, &admin, ben_id, "adm-3", json!({})).await?;
    assert_eq!(
        (rest.body["status"].as_str(), rest.body["refunded_minor"].as_i64()),
        (Some("refunded"), Some(4900)),
        "{rest:?}"
    );
    eventually(SAGA, "Ben's enrolment revoked", || async {
        Ok(my_enrollments(&p, &ben).await?.is_empty().then_some(()))
    })
    .await?;
    // Two payments, three refunds: five transactions, each balanced.
    assert_eq!(ledger_balances(&p).await?, 5);

    // The revenue report (admins only), as JSON and CSV.
    let today = time::OffsetDateTime::now_utc().date();
    let path = format!("/v1/payments/reports/revenue?from={today}&to={today}&period=day");
    let report = call(&p, Method::GET, &path, Some(&admin), None).await?;
    assert_eq!(report.status, StatusCode::OK, "{report:?}");
    let row = &report.body["rows"][0];
    assert_eq!(
        (row["orders"].as_i64(), row["gross_minor"].as_i64(), row["refunds_minor"].as_i64(), row["net_minor"].as_i64()),
        (Some(2), Some(9800), Some(9800), Some(-344))
    );
    assert_eq!(row["fees_minor"], 344);
    let csv = p.http.get(p.url(&format!("{path}&format=csv"))).bearer_auth(&admin).send().await?;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await?;
    assert!(csv.starts_with("period,course_id,course_title,currency,orders,gross_minor"));
    assert!(csv.contains(&format!("{today},{course_id},Refundable Rust,EUR,2,9800,0,9800,344,-344")), "{csv}");
    let denied = call(&p, Method::GET, &path, Some(&ben), None).await?;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    p.shutdown().await;
    Ok(())
}

fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn webhook(p: &Platform, signature: Option<&str>, body: &[u8]) -> Result<StatusCode> {
    let mut req = p
        .http
        .post(p.url("/v1/payments/webhooks/stripe"))
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        req = req.header("Stripe-Signature", signature);
    }
    Ok(req.send().await?.status())
}

pub async fn forged_or_stale_webhooks_change_nothing(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@hooks.test").await?;
    let course = paid_course(&p, &teacher, "Webhook safety").await?;
    let (_, mal) = user(&p, "mal@hooks.test").await?;
    let reply = checkout(&p, &mal, "mal-1", json!({"course_id": course["id"]})).await?;
    let id = reply.body["order"]["id"].as_str().context("id")?;
    let intent = reply.body["order"]["payment_intent_id"].as_str().context("intent")?;
    // An event claiming the (unpaid) PaymentIntent succeeded.
    let event = json!({"id": "evt_forged_1", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": intent, "object": "payment_intent", "status": "succeeded", "amount": 4900}}});
    let body = serde_json::to_vec(&event)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(webhook(&p, None, &body).await?, StatusCode::BAD_REQUEST);
    assert_eq!(webhook(&p, Some(&sign("whsec_wrong", now, &body)), &body).await?, StatusCode::BAD_REQUEST);
    assert_eq!(
        webhook(&p, Some(&sign(&p.stripe_webhook_secret, now - 600, &body)), &body).await?,
        StatusCode::BAD_REQUEST
    );
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        webhook(&p, Some(&sign(&p.stripe_webhook_secret, now, &body)), &tampered).await?,
        StatusCode::BAD_REQUEST
    );
    // None of these reached the bus.
    let nats = p.nats_client().await?;
    let js = async_nats::jetstream::new(nats.clone());
    let stream = coursebus_contracts::subjects::payments::STRIPE_STREAM;
    assert_eq!(js.get_stream(stream).await?.info().await?.state.messages, 0);
    // Correctly signed (e.g. a leaked secret) but untrue: payments asks Stripe, which says unpaid.
    assert_eq!(webhook(&p, Some(&sign(&p.stripe_webhook_secret, now, &body)), &body).await?, StatusCode::OK);
    assert_eq!(webhook(&p, Some(&sign(&p.stripe_webhook_secret, now, &body)), &body).await?, StatusCode::OK);
    assert_eq!(js.get_stream(stream).await?.info().await?.state.messages, 1, "the replay is deduplicated by event id");
    eventually(SAGA, "the event handled", || async {
        let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
            .get_stream(stream)
            .await?
            .get_consumer(coursebus_contracts::subjects::payments::STRIPE_CONSUMER)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let info = consumer.info().await?;
        Ok((info.delivered.stream_sequence >= 1 && info.num_ack_pending == 0 && info.num_pending == 0).then_some(()))
    })
    .await?;
    let o = order(&p, &mal, id).await?;
    assert_eq!(o["status"], "pending", "a webhook's word alone pays nothing: {o}");
    assert!(my_enrollments(&p, &mal).await?.is_empty());
    p.shutdown().await;
    Ok(())
}

pub async fn the_saga_completes_after_enrollment_is_killed_and_restarted(infra: Arc<Infra>) -> Result<()> {
    let mut p = platform(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@saga.test").await?;
    let course = paid_course(&p, &teacher, "Sagas in practice").await?;
    let (_, sam) = user(&p, "sam@saga.test").await?;
    let reply = checkout(&p, &sam, "sam-1", json!({"course_id": course["id"]})).await?;
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let id = reply.body["order"]["id"].as_str().context("id")?.to_owned();
    // Enrollment crashes (its runtime dropped: nothing handed back) before the payment lands.
    p.kill_replicas("enrollment");
    let intent = reply.body["order"]["payment_intent_id"].as_str().context("intent")?;
    let paid = confirm(&p, intent, reply.body["client_secret"].as_str().context("secret")?, "pm_card_visa").await?;
    assert_eq!(paid.status(), StatusCode::OK);
    let o = wait_status(&p, &sam, &id, "paid").await?;
    assert!(o["enrollment_id"].is_null() && o["invoice_number"].is_string());
    // A new enrollment replica picks the saga up where it stopped.
    p.start_enrollment_replica();
    p.wait_replicas("enrollment", 1).await?;
    let done = wait_status(&p, &sam, &id, "fulfilled").await?;
    let enrolled = my_enrollments(&p, &sam).await?;
    assert_eq!(enrolled.len(), 1);
    assert_eq!(done["enrollment_id"], enrolled[0]["id"]);
    p.shutdown().await;
    Ok(())
}

pub async fn a_course_closed_before_payment_is_refunded_by_the_saga(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra).await?;
    let admin = access_token(&p, ADMIN.0, ADMIN.1).await?;
    let (_, teacher) = instructor(&p, "teacher@closed.test").await?;
    let course = paid_course(&p, &teacher, "Closing soon").await?;
    let course_id = course["id"].as_str().context("id")?;
    let (_, kim) = user(&p, "kim@closed.test").await?;
    let reply = checkout(&p, &kim, "kim-1", json!({"course_id": course_id})).await?;
    let id = reply.body["order"]["id"].as_str().context("id")?;
    // The instructor archives the course while Kim is typing her card number.
    let current = call(&p, Method::GET, &format!("/v1/courses/{course_id}?draft=true"), Some(&teacher), None).await?;
    let archived = call(
        &p,
        Method::POST,
        &format!("/v1/courses/{course_id}/archive"),
        Some(&teacher),
        Some(json!({"version": current.body["version"]})),
    )
    .await?;
    assert_eq!(archived.status, StatusCode::OK, "{archived:?}");
    let intent = reply.body["order"]["payment_intent_id"].as_str().context("intent")?;
    confirm(&p, intent, reply.body["client_secret"].as_str().context("secret")?, "pm_card_visa").await?;
    let refunded = wait_status(&p, &kim, id, "refunded").await?;
    assert!(refunded["failure_reason"].as_str().unwrap_or_default().contains("no longer open"), "{refunded}");
    assert_eq!(refunded["refunded_minor"], 4900);
    assert!(my_enrollments(&p, &kim).await?.is_empty());
    let entries = ledger(&p, &admin, id).await?;
    assert_eq!((account_sum(&entries, "stripe_balance"), account_sum(&entries, "refunds")), (-172, 4900));
    assert_eq!(ledger_balances(&p).await?, 2);
    p.shutdown().await;
    Ok(())
}

pub async fn lost_webhooks_are_repaired_and_invoices_have_no_gaps(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra).await?;
    let admin = access_token(&p, ADMIN.0, ADMIN.1).await?;
    let (_, teacher) = instructor(&p, "teacher@recon.test").await?;
    let course = paid_course(&p, &teacher, "Reconciled").await?;
    let course_id = course["id"].as_str().context("id")?.to_owned();
    // Stripe's webhooks go nowhere from now on (a misconfigured endpoint, an outage).
    let rerouted = p
        .http
        .post(stripe_url(&p, "/_config/webhooks/launcher"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("url=http%3A%2F%2F127.0.0.1%3A9%2Fnowhere&secret=whsec_x")
        .send()
        .await?;
    assert!(rerouted.status().is_success());
    // Six learners pay at once.
    let mut buyers = Vec::new();
    for i in 0..6 {
        let (_, token) = user(&p, &format!("l{i}@recon.test")).await?;
        buyers.push(token);
    }
    let mut orders = Vec::new();
    let paid = futures::future::join_all(buyers.iter().enumerate().map(|(i, token)| {
        let (p, course_id) = (&p, &course_id);
        async move {
            let reply = checkout(p, token, &format!("k{i}"), json!({"course_id": course_id})).await?;
            ensure!(reply.status == StatusCode::CREATED, "{reply:?}");
            let intent = reply.body["order"]["payment_intent_id"].as_str().context("intent")?;
            let ok =
                confirm(p, intent, reply.body["client_secret"].as_str().context("secret")?, "pm_card_visa").await?;
            ensure!(ok.status() == StatusCode::OK);
            Ok(reply.body["order"]["id"].as_str().context("id")?.to_owned())
        }
    }))
    .await;
    for order in paid {
        orders.push(order?);
    }
    for (token, id) in buyers.iter().zip(&orders) {
        assert_eq!(order(&p, token, id).await?["status"], "pending", "no webhook arrived");
    }
    // The reconciliation pass (on a timer in production; by hand here) finds them paid at Stripe.
    let report = call(&p, Method::POST, "/v1/payments/admin/reconcile", Some(&admin), None).await?;
    assert_eq!(report.status, StatusCode::OK, "{report:?}");
    assert_eq!(report.body["repaired"].as_array().map(Vec::len), Some(6), "{report:?}");
    for (token, id) in buyers.iter().zip(&orders) {
        wait_status(&p, token, id, "fulfilled").await?;
    }
    let denied = call(&p, Method::POST, "/v1/payments/admin/reconcile", Some(&buyers[0]), None).await?;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    // Invoice numbers: 1..=6 of this year, no gaps, one per order.
    let year = time::OffsetDateTime::now_utc().year();
    let invoices = call(&p, Method::GET, &format!("/v1/payments/invoices?year={year}"), Some(&admin), None).await?;
    let items = invoices.body["items"].as_array().context("items")?;
    let sequences: Vec<i64> = items.iter().filter_map(|i| i["sequence"].as_i64()).collect();
    assert_eq!(sequences, (1..=6).collect::<Vec<_>>());
    let mut invoiced: Vec<String> = items.iter().filter_map(|i| i["order_id"].as_str().map(str::to_owned)).collect();
    invoiced.sort();
    orders.sort();
    assert_eq!(invoiced, orders);
    assert_eq!(ledger_balances(&p).await?, 6);
    // Fifteen days later the learner's refund window (14 days) has closed; an admin may still.
    p.clock.advance(time::Duration::days(15));
    let owner = futures::future::join_all(buyers.iter().map(|t| order(&p, t, &orders[0]))).await;
    let owner = owner.iter().position(Result::is_ok).context("the buyer of the first order")?;
    let late = refund(&p, &buyers[owner], &orders[0], "late", json!({})).await?;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert!(late.body["message"].as_str().unwrap_or_default().contains("14 days"), "{late:?}");
    let by_admin = refund(&p, &admin, &orders[0], "late-admin", json!({})).await?;
    assert_eq!(by_admin.body["status"], "refunded", "{by_admin:?}");
    // The database itself refuses an unbalanced ledger transaction.
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&p.payments_database_url).await?;
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO ledger_entries (transaction_id, order_id, course_id, account, currency, amount_minor, memo) VALUES ($1, $2::uuid, $3::uuid, 'refunds', 'EUR', 1, 'unbalanced')")
        .bind(uuid::Uuid::now_v7())
        .bind(&orders[0])
        .bind(&course_id)
        .execute(&mut *tx)
        .await?;
    let refused = tx.commit().await;
    assert!(refused.is_err_and(|e| e.to_string().contains("does not balance")));
    db.close().await;
    p.shutdown().await;
    Ok(())
}

pub async fn payment_endpoints_validate_input(infra: Arc<Infra>) -> Result<()> {
    let p = platform(&infra).await?;
    let admin = access_token(&p, ADMIN.0, ADMIN.1).await?;
    let (_, teacher) = instructor(&p, "teacher@bad.test").await?;
    let (_, other) = instructor(&p, "other@bad.test").await?;
    let course = paid_course(&p, &teacher, "Validation").await?;
    let free = create_course(&p, &teacher, "Free stuff", json!({})).await?;
    let free = publish_with_lessons(&p, &teacher, &free, 1).await?;
    let (_, lea) = user(&p, "lea@bad.test").await?;
    let cases = [
        (json!({"course_id": course["id"], "extra": 1}), StatusCode::BAD_REQUEST),
        (json!({"course_id": "not-a-uuid"}), StatusCode::BAD_REQUEST),
        (json!({"course_id": uuid::Uuid::now_v7()}), StatusCode::NOT_FOUND),
        (json!({"course_id": free["id"]}), StatusCode::CONFLICT),
        (json!({"course_id": course["id"], "coupon": "NOPE"}), StatusCode::BAD_REQUEST),
    ];
    for (i, (body, want)) in cases.into_iter().enumerate() {
        let reply = checkout(&p, &lea, &format!("v{i}"), body.clone()).await?;
        assert_eq!(reply.status, want, "{body}: {reply:?}");
        assert!(reply.body["code"].is_string());
    }
    let course_id = course["id"].as_str().context("id")?;
    // Coupons: instructors only for their own course; bad shapes name the field.
    let mine = call(&p, Method::POST, "/v1/payments/coupons", Some(&teacher), Some(json!({"code": "TEN", "discount": {"amount": {"amount_minor": 1000, "currency": "EUR"}}, "course_id": course_id}))).await?;
    assert_eq!(mine.status, StatusCode::CREATED, "{mine:?}");
    let theirs = call(
        &p,
        Method::POST,
        "/v1/payments/coupons",
        Some(&other),
        Some(json!({"code": "STEAL", "discount": {"percent": 100}, "course_id": course_id})),
    )
    .await?;
    assert_eq!(theirs.status, StatusCode::FORBIDDEN);
    let learner = call(
        &p,
        Method::POST,
        "/v1/payments/coupons",
        Some(&lea),
        Some(json!({"code": "MINE", "discount": {"percent": 100}})),
    )
    .await?;
    assert_eq!(learner.status, StatusCode::FORBIDDEN);
    let dup = call(
        &p,
        Method::POST,
        "/v1/payments/coupons",
        Some(&admin),
        Some(json!({"code": "ten", "discount": {"percent": 5}})),
    )
    .await?;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    for (body, field) in [
        (json!({"code": "X", "discount": {"percent": 5}}), "code"),
        (json!({"code": "BIG", "discount": {"percent": 150}}), "discount.percent"),
        (
            json!({"code": "NEG", "discount": {"amount": {"amount_minor": -5, "currency": "EUR"}}}),
            "discount.amount.amount_minor",
        ),
        (json!({"code": "OLD", "discount": {"percent": 5}, "expires_at": "2020-01-01T00:00:00Z"}), "expires_at"),
    ] {
        let reply = call(&p, Method::POST, "/v1/payments/coupons", Some(&admin), Some(body.clone())).await?;
        assert_eq!(
            (reply.status, reply.body["details"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{body}"
        );
    }
    // A coupon that expires in an hour is refused at checkout two hours later.
    let in_an_hour =
        (p.clock.now() + time::Duration::hours(1)).format(&time::format_description::well_known::Rfc3339)?;
    let expiring = call(
        &p,
        Method::POST,
        "/v1/payments/coupons",
        Some(&admin),
        Some(json!({"code": "SOON", "discount": {"percent": 10}, "expires_at": in_an_hour})),
    )
    .await?;
    assert_eq!(expiring.status, StatusCode::CREATED);
    p.clock.advance(time::Duration::hours(2));
    let expired = checkout(&p, &lea, "soon", json!({"course_id": course_id, "coupon": "soon"})).await?;
    assert_eq!(
        (expired.status, expired.body["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("this coupon has expired")),
        "{expired:?}"
    );
    // A fixed coupon in EUR does not apply to the USD price.
    let usd = checkout(&p, &lea, "usd", json!({"course_id": course_id, "currency": "USD", "coupon": "TEN"})).await?;
    assert_eq!(
        (usd.status, usd.body["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("coupon")),
        "{usd:?}"
    );
    // Orders of others are not found; refunds need a key; unknown orders are 404.
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        call(&p, Method::GET, &format!("/v1/payments/orders/{unknown}"), Some(&lea), None).await?.status,
        StatusCode::NOT_FOUND
    );
    let keyless =
        call(&p, Method::POST, &format!("/v1/payments/orders/{unknown}/refund"), Some(&lea), Some(json!({}))).await?;
    assert_eq!(keyless.status, StatusCode::BAD_REQUEST);
    assert_eq!(call(&p, Method::GET, "/v1/payments/orders", None, None).await?.status, StatusCode::UNAUTHORIZED);
    let bad_report =
        call(&p, Method::GET, "/v1/payments/reports/revenue?from=2026-13-01&to=2026-01-01", Some(&admin), None).await?;
    assert_eq!(bad_report.status, StatusCode::BAD_REQUEST);
    // A checkout with another coupon replaces the waiting order (its PaymentIntent cancelled).
    let first = checkout(&p, &lea, "w1", json!({"course_id": course_id})).await?;
    let second = checkout(&p, &lea, "w2", json!({"course_id": course_id, "coupon": "TEN"})).await?;
    assert_eq!(
        (second.status, second.body["order"]["total_minor"].as_i64()),
        (StatusCode::CREATED, Some(3900)),
        "{second:?}"
    );
    let old = order(&p, &lea, first.body["order"]["id"].as_str().context("id")?).await?;
    assert_eq!(old["status"], "cancelled");
    let old_intent = intent_at_stripe(&p, old["payment_intent_id"].as_str().context("pi")?).await?;
    assert_eq!(old_intent["status"], "canceled", "the replaced PaymentIntent can no longer be paid");
    let listed = call(&p, Method::GET, "/v1/payments/orders?limit=1", Some(&lea), None).await?;
    assert_eq!(listed.body["items"][0]["id"], second.body["order"]["id"]);
    assert!(listed.body["next_cursor"].is_string());
    p.shutdown().await;
    Ok(())
}

/// The refund window is central configuration: a running payments replica applies a new value
/// of `payments.refund_window_days` from `cb_config` within 2 s, without a restart; a malformed
/// value is refused and the last good one kept.
pub async fn a_refund_window_set_in_cb_config_applies_without_a_restart(infra: Arc<Infra>) -> Result<()> {
    use coursebus_contracts::settings::{REFUND_MAX_PROGRESS_PERCENT, REFUND_WINDOW_DAYS};
    use coursebus_contracts::subjects::config::BUCKET;

    let p = platform(&infra).await?;
    let (_, teacher) = instructor(&p, "teacher@window.test").await?;
    let course = paid_course(&p, &teacher, "Windowed Rust").await?;
    let course_id = course["id"].as_str().context("id")?;
    let (_, ann) = user(&p, "ann@window.test").await?;
    let order = buy(&p, &ann, course_id, "ann-1").await?;
    let order_id = order["id"].as_str().context("id")?;
    let bucket = async_nats::jetstream::new(p.nats_client().await?).get_key_value(BUCKET).await?;
    // The replica seeded the bucket with its configured window.
    let seeded = bucket.get(REFUND_WINDOW_DAYS.name).await?.context("seeded")?;
    assert_eq!(&seeded[..], b"14");

    // Fifteen days after payment the 14-day window has closed.
    p.clock.advance(time::Duration::days(15));
    let late = refund(&p, &ann, order_id, "late-1", json!({})).await?;
    assert_eq!(late.status, StatusCode::CONFLICT, "{late:?}");
    assert_eq!(late.body["details"]["refund_window_days"], 14, "{late:?}");

    // A malformed value is refused and the old one stays. The valid change of another key put
    // after it shows when the replica has read both (a watch delivers in order).
    bucket.put(REFUND_WINDOW_DAYS.name, "thirty".into()).await?;
    bucket.put(REFUND_MAX_PROGRESS_PERCENT.name, "31".into()).await?;
    let mut attempt = 0;
    let kept = eventually(Duration::from_secs(2), "the progress limit of 31 % applied", || {
        attempt += 1;
        let key = format!("late-bad-{attempt}");
        let (p, ann) = (&p, &ann);
        async move {
            let r = refund(p, ann, order_id, &key, json!({})).await?;
            Ok((r.body["details"]["max_progress_percent"] == 31).then_some(r))
        }
    })
    .await?;
    assert_eq!(kept.status, StatusCode::CONFLICT, "{kept:?}");
    assert_eq!(kept.body["details"]["refund_window_days"], 14, "the malformed value is not applied: {kept:?}");

    // Thirty days: the same refund is now allowed, within 2 s and with no restart.
    let changed = std::time::Instant::now();
    bucket.put(REFUND_WINDOW_DAYS.name, "30".into()).await?;
    let mut attempt = 0;
    let refunded = eventually(Duration::from_secs(2), "the refund allowed by a 30-day window", || {
        attempt += 1;
        let key = format!("late-ok-{attempt}");
        let (p, ann) = (&p, &ann);
        async move {
            let r = refund(p, ann, order_id, &key, json!({})).await?;
            Ok((r.status == StatusCode::OK).then_some(r))
        }
    })
    .await?;
    assert_eq!(refunded.body["status"], "refunded", "{refunded:?}");
    assert!(changed.elapsed() < Duration::from_secs(2), "applied after {:?}", changed.elapsed());
    p.shutdown().await;
    Ok(())
}
