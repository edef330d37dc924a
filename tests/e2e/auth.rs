//! Registration, login, tokens, profiles and roles, through the gateway.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coursebus_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Infra, Platform, eventually};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{PASSWORD, access_token, call, login, post, register, role, user};

pub async fn register_login_refresh_reuse_profile_roles(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder().start(&infra).await?;

    let reg = register(&p, "  Ada@Example.com ", PASSWORD, "Ada Lovelace").await?;
    assert_eq!(reg.status, StatusCode::CREATED, "{reg:?}");
    assert_eq!(reg.body["email"], "ada@example.com", "emails are normalised");
    assert_eq!(reg.body["roles"], json!(["student"]));
    assert!(reg.body.get("password").is_none() && reg.body.get("password_hash").is_none());
    let user_id = reg.body["id"].as_str().unwrap().to_owned();

    let dup = register(&p, "ADA@example.com", PASSWORD, "Someone Else").await?;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.code(), "conflict");

    let tokens = login(&p, "ada@example.com", PASSWORD).await?;
    assert_eq!(tokens.status, StatusCode::OK, "{tokens:?}");
    assert_eq!(tokens.body["token_type"], "Bearer");
    assert_eq!(tokens.body["expires_in"], 900, "access tokens live 15 minutes");
    let access = tokens.body["access_token"].as_str().unwrap().to_owned();
    let refresh1 = tokens.body["refresh_token"].as_str().unwrap().to_owned();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').next().unwrap())?)?;
    assert_eq!(header["alg"], "EdDSA");

    // Profile: read and update.
    let me = call(&p, Method::GET, "/v1/me", Some(&access), None).await?;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["id"], user_id.as_str());
    assert_eq!(me.body["display_name"], "Ada Lovelace");
    let upd = call(
        &p,
        Method::PATCH,
        "/v1/me",
        Some(&access),
        Some(json!({"display_name": "Countess Ada", "bio": "Notes on the Analytical Engine"})),
    )
    .await?;
    assert_eq!(upd.status, StatusCode::OK, "{upd:?}");
    assert_eq!(upd.body["display_name"], "Countess Ada");
    let me = call(&p, Method::GET, "/v1/me", Some(&access), None).await?;
    assert_eq!(me.body["bio"], "Notes on the Analytical Engine");
    let bad = call(&p, Method::PATCH, "/v1/me", Some(&access), Some(json!({"display_name": "   "}))).await?;
    assert_eq!(
        (bad.status, bad.code(), bad.body["details"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, "invalid_input", Some("display_name"))
    );
    let anon = call(&p, Method::GET, "/v1/me", None, None).await?;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);

    // Refresh rotates: a new refresh token each time.
    let r2 = post(&p, "/v1/auth/refresh", json!({ "refresh_token": refresh1 })).await?;
    assert_eq!(r2.status, StatusCode::OK, "{r2:?}");
    let refresh2 = r2.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh1);
    let r3 = post(&p, "/v1/auth/refresh", json!({ "refresh_token": refresh2 })).await?;
    assert_eq!(r3.status, StatusCode::OK);
    let refresh3 = r3.body["refresh_token"].as_str().unwrap().to_owned();

    // Reusing an old one revokes the whole family, including the newest token.
    let reuse = post(&p, "/v1/auth/refresh", json!({ "refresh_token": refresh1 })).await?;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reuse.code(), "unauthenticated");
    let after = post(&p, "/v1/auth/refresh", json!({ "refresh_token": refresh3 })).await?;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "the newest token of a reused family is revoked too");
    // Another login is a separate family and still works.
    let fresh = login(&p, "ada@example.com", PASSWORD).await?;
    let refresh_other = fresh.body["refresh_token"].as_str().unwrap();
    assert_eq!(post(&p, "/v1/auth/refresh", json!({ "refresh_token": refresh_other })).await?.status, StatusCode::OK);

    // Roles: the admin makes Ada an instructor; her next token carries it.
    let admin = access_token(&p, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let grant = role(&p, Method::PUT, &user_id, "instructor", &admin).await?;
    assert_eq!(grant.status, StatusCode::OK, "{grant:?}");
    assert_eq!(grant.body["roles"], json!(["student", "instructor"]));
    let ada = access_token(&p, "ada@example.com", PASSWORD).await?;
    let me = call(&p, Method::GET, "/v1/me", Some(&ada), None).await?;
    assert_eq!(me.body["roles"], json!(["student", "instructor"]));
    let revoke = role(&p, Method::DELETE, &user_id, "instructor", &admin).await?;
    assert_eq!(revoke.body["roles"], json!(["student"]));
    p.shutdown().await;
    Ok(())
}

pub async fn registration_rejects_bad_input(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder().start(&infra).await?;
    let cases = [
        (json!({"email": "not-an-email", "password": PASSWORD, "display_name": "X"}), "email"),
        (json!({"email": "a@b", "password": PASSWORD, "display_name": "X"}), "email"),
        (json!({"email": "weak@example.com", "password": "short", "display_name": "X"}), "password"),
        (json!({"email": "weak@example.com", "password": "password123", "display_name": "X"}), "password"),
        (json!({"email": "weak@example.com", "password": "aaaaaaaaaaaaaaaa", "display_name": "X"}), "password"),
        (json!({"email": "weak@example.com", "password": PASSWORD, "display_name": "  "}), "display_name"),
        (json!({"email": "weak@example.com", "password": PASSWORD}), "display_name"),
        (json!({"email": 42, "password": PASSWORD, "display_name": "X"}), "email"),
    ];
    for (body, field) in cases {
        let reply = post(&p, "/v1/auth/register", body.clone()).await?;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body} -> {reply:?}");
        assert_eq!(reply.code(), "invalid_input", "{body}");
        assert_eq!(reply.body["details"]["field"], field, "{body} -> {reply:?}");
    }
    // Not JSON at all.
    let raw =
        p.http.post(p.url("/v1/auth/register")).header("content-type", "application/json").body("{oops").send().await?;
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);
    assert_eq!(raw.json::<serde_json::Value>().await?["code"], "invalid_input");
    // Too big.
    let huge = json!({"email": "big@example.com", "password": PASSWORD, "display_name": "x".repeat(2 * 1024 * 1024)});
    let reply = post(&p, "/v1/auth/register", huge).await?;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.code(), "payload_too_large");
    // Nothing of the above created an account.
    let db = p.db().await?;
    let users: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email <> $1").bind(ADMIN_EMAIL).fetch_one(&db).await?;
    assert_eq!(users, 0);
    p.shutdown().await;
    Ok(())
}

pub async fn wrong_credentials_are_401_without_saying_which(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder().start(&infra).await?;
    user(&p, "grace@example.com").await?;
    let wrong_password = login(&p, "grace@example.com", "not the passphrase").await?;
    let unknown_user = login(&p, "nobody@example.com", PASSWORD).await?;
    let malformed = login(&p, "nonsense", PASSWORD).await?;
    for reply in [&wrong_password, &unknown_user, &malformed] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(reply.code(), "unauthenticated");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
    }
    assert_eq!(wrong_password.body, unknown_user.body, "the reply must not tell which part was wrong");
    assert_eq!(wrong_password.body, malformed.body);
    p.shutdown().await;
    Ok(())
}

pub async fn tampered_expired_and_wrong_algorithm_tokens_are_401(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder().start(&infra).await?;
    let (user_id, token) = user(&p, "mallory@example.com").await?;
    assert_eq!(call(&p, Method::GET, "/v1/me", Some(&token), None).await?.status, StatusCode::OK);

    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1])?)?;
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0])?)?;
    let kid = header["kid"].as_str().unwrap().to_owned();

    // 1. Tampered: make myself admin, keep the signature.
    claims["roles"] = json!(["student", "admin"]);
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?), parts[2]);
    // 2. Wrong algorithm: HS256 keyed with the public key (the classic alg-confusion attack), and alg none.
    let jwks = call(&p, Method::GET, "/.well-known/jwks.json", None, None).await?.body;
    let public_x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256 =
        jsonwebtoken::encode(&hs_header, &claims, &jsonwebtoken::EncodingKey::from_secret(public_x.as_bytes()))?;
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json!({"alg": "none", "typ": "JWT", "kid": kid}))?),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?)
    );
    // 3. Expired, but validly signed with the real key (read from the identity database).
    let db = p.db().await?;
    let der: Vec<u8> =
        sqlx::query_scalar("SELECT private_der FROM signing_keys WHERE kid = $1").bind(&kid).fetch_one(&db).await?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    let mut old = claims.clone();
    old["roles"] = json!(["student"]);
    old["iat"] = json!(now - 3600);
    old["exp"] = json!(now - 1800);
    let mut ed_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    ed_header.kid = Some(kid.clone());
    let key = jsonwebtoken::EncodingKey::from_ed_der(&der);
    let expired = jsonwebtoken::encode(&ed_header, &old, &key)?;
    // Control: the same forging path with a valid expiry is accepted, so the 401s above are about
    // what they test and not about how the tokens were made.
    old["exp"] = json!(now + 600);
    let control = jsonwebtoken::encode(&ed_header, &old, &key)?;
    assert_eq!(call(&p, Method::GET, "/v1/me", Some(&control), None).await?.status, StatusCode::OK);
    // 4. Another issuer's key.
    let mut other_der =
        vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    other_der.extend_from_slice(&[7u8; 32]);
    let foreign = jsonwebtoken::encode(&ed_header, &old, &jsonwebtoken::EncodingKey::from_ed_der(&other_der))?;

    for (what, bad) in [
        ("tampered", &forged),
        ("hs256", &hs256),
        ("none", &none),
        ("expired", &expired),
        ("foreign", &foreign),
        ("garbage", &"abc.def".to_owned()),
    ] {
        let me = call(&p, Method::GET, "/v1/me", Some(bad), None).await?;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED, "{what}: {me:?}");
        assert_eq!(me.code(), "unauthenticated", "{what}");
        // The worker re-checks too: a forged token sent straight over the bus is refused.
        let grant = role(&p, Method::PUT, &user_id, "admin", bad).await?;
        assert_eq!(grant.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    let bus = coursebus_bus::Bus::new(p.nats_client().await?, std::time::Duration::from_secs(3));
    let ctx = coursebus_bus::CallContext::new_root().with_bearer(&forged);
    let direct = bus
        .request::<coursebus_contracts::identity::GrantRole>(
            &ctx,
            &coursebus_contracts::identity::RoleChangeRequest { user_id: user_id.parse()?, role: "admin".into() },
        )
        .await;
    assert_eq!(
        direct.unwrap_err().code,
        coursebus_contracts::ErrorCode::Unauthenticated,
        "workers verify tokens themselves"
    );
    p.shutdown().await;
    Ok(())
}

pub async fn logout_revokes_the_session(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder().start(&infra).await?;
    assert_eq!(register(&p, "leaving@example.com", PASSWORD, "Leaving").await?.status, StatusCode::CREATED);
    let tokens = login(&p, "leaving@example.com", PASSWORD).await?;
    let refresh = tokens.body["refresh_token"].as_str().unwrap();
    let out = post(&p, "/v1/auth/logout", json!({ "refresh_token": refresh })).await?;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let again = post(&p, "/v1/auth/refresh", json!({ "refresh_token": refresh })).await?;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    // Logging out twice (or with an unknown token) is not an error.
    assert_eq!(post(&p, "/v1/auth/logout", json!({ "refresh_token": refresh })).await?.status, StatusCode::NO_CONTENT);
    let db = p.db().await?;
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND user_id = (SELECT id FROM users WHERE email = 'leaving@example.com')")
        .fetch_one(&db)
        .await?;
    assert_eq!(live, 0);
    p.shutdown().await;
    Ok(())
}

pub async fn roles_are_admin_only_and_the_last_admin_stays(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder().start(&infra).await?;
    let (alice, alice_token) = user(&p, "alice@example.com").await?;
    let (bob, _) = user(&p, "bob@example.com").await?;
    let admin = access_token(&p, ADMIN_EMAIL, ADMIN_PASSWORD).await?;

    let by_student = role(&p, Method::PUT, &bob, "instructor", &alice_token).await?;
    assert_eq!((by_student.status, by_student.code()), (StatusCode::FORBIDDEN, "forbidden"));
    let self_promote = role(&p, Method::PUT, &alice, "admin", &alice_token).await?;
    assert_eq!(self_promote.status, StatusCode::FORBIDDEN);
    let bad_role = role(&p, Method::PUT, &bob, "superuser", &admin).await?;
    assert_eq!((bad_role.status, bad_role.body["details"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("role")));
    let bad_id = call(&p, Method::PUT, "/v1/users/not-a-uuid/roles/student", Some(&admin), None).await?;
    assert_eq!((bad_id.status, bad_id.code()), (StatusCode::BAD_REQUEST, "invalid_input"));
    let missing =
        call(&p, Method::PUT, &format!("/v1/users/{}/roles/student", uuid::Uuid::now_v7()), Some(&admin), None).await?;
    assert_eq!((missing.status, missing.code()), (StatusCode::NOT_FOUND, "not_found"));

    // Granting twice is idempotent.
    for _ in 0..2 {
        let ok = role(&p, Method::PUT, &bob, "instructor", &admin).await?;
        assert_eq!(ok.body["roles"], json!(["student", "instructor"]));
    }
    // The only admin cannot drop the role; with a second admin it can.
    let me = call(&p, Method::GET, "/v1/me", Some(&admin), None).await?;
    let admin_id = me.body["id"].as_str().unwrap().to_owned();
    let last = role(&p, Method::DELETE, &admin_id, "admin", &admin).await?;
    assert_eq!((last.status, last.code()), (StatusCode::CONFLICT, "conflict"));
    let promote = role(&p, Method::PUT, &alice, "admin", &admin).await?;
    assert_eq!(promote.status, StatusCode::OK);
    let step_down = role(&p, Method::DELETE, &admin_id, "admin", &admin).await?;
    assert_eq!(step_down.status, StatusCode::OK);
    // The old token still says admin, but the worker checks the database: no longer allowed.
    let stale = role(&p, Method::PUT, &bob, "admin", &admin).await?;
    assert_eq!(stale.status, StatusCode::FORBIDDEN, "a revoked admin's unexpired token no longer grants roles");
    p.shutdown().await;
    Ok(())
}

pub async fn auth_endpoints_are_rate_limited_per_client(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder()
        // Slow enough that no slot comes back during the test, however slow the machine.
        .rate_limit(3, std::time::Duration::from_secs(600))
        .start(&infra)
        .await?;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(login(&p, "someone@example.com", "wrong password!").await?);
    }
    assert!(statuses[..3].iter().all(|r| r.status == StatusCode::UNAUTHORIZED), "{statuses:?}");
    let limited = &statuses[4];
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"].to_str()?.parse()?;
    assert!((500..=600).contains(&retry_after), "Retry-After tells the real wait: {retry_after}");
    // Other endpoints are not limited by the auth budget.
    assert_eq!(call(&p, Method::GET, "/healthz", None, None).await?.status, StatusCode::OK);
    p.shutdown().await;
    Ok(())
}

pub async fn registration_honours_idempotency_keys(infra: Arc<Infra>) -> Result<()> {
    let p = Platform::builder().start(&infra).await?;
    let send = |key: &'static str, email: &'static str| {
        let req = p
            .http
            .post(p.url("/v1/auth/register"))
            .header("Idempotency-Key", key)
            .json(&json!({ "email": email, "password": PASSWORD, "display_name": "Retry Ruth" }));
        async move {
            let resp = req.send().await?;
            Ok::<_, anyhow::Error>((resp.status(), resp.json::<serde_json::Value>().await?))
        }
    };
    let (first_status, first) = send("signup-7f3a", "ruth@example.com").await?;
    assert_eq!(first_status, StatusCode::CREATED, "{first}");
    // The client lost the answer and retries: same key, same request → the same user, not a 409.
    let (again_status, again) = send("signup-7f3a", "ruth@example.com").await?;
    assert_eq!(again_status, StatusCode::CREATED, "{again}");
    assert_eq!(again["id"], first["id"]);
    // The same key for another request is refused; without a key a duplicate is a plain 409.
    let (other_status, other) = send("signup-7f3a", "someone-else@example.com").await?;
    assert_eq!((other_status, other["code"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    assert_eq!(other["details"]["field"], "Idempotency-Key");
    assert_eq!(register(&p, "ruth@example.com", PASSWORD, "Retry Ruth").await?.status, StatusCode::CONFLICT);
    let bad_key = p.http.post(p.url("/v1/auth/register")).header("Idempotency-Key", "").json(&json!({})).send().await?;
    assert_eq!(bad_key.status(), StatusCode::BAD_REQUEST);

    let db = p.db().await?;
    let users: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'ruth@example.com'").fetch_one(&db).await?;
    let nats = p.nats_client().await?;
    let user_id = first["id"].as_str().context("user id")?.to_owned();
    let events = eventually(Duration::from_secs(10), "the registered event in EVT_IDENTITY", || async {
        let events = crate::operations::registered_events(&nats, &user_id).await?;
        Ok((!events.is_empty()).then_some(events.len() as i64))
    })
    .await?;
    assert_eq!((users, events), (1, 1), "one user, one registered event");
    p.shutdown().await;
    Ok(())
}
