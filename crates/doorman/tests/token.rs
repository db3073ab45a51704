//! The token endpoint: codes, PKCE, client authentication, refresh
//! rotation, client credentials, request hygiene (RFC 6749 §2.3, §3.2,
//! §4.1.3, §4.4, §5, §6; RFC 7636; RFC 9700 §4.8.2, §4.14.2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use chrono::TimeDelta;
use common::*;
use doorman::SecretChoice;
use http::Request;

async fn tokens(h: &Harness, app: &App, scope: &str) -> serde_json::Value {
    let code = h.code(app, scope, None).await;
    let res = h.exchange(app, &code, None).await;
    assert_eq!(res.status(), 200, "{}", body_text(&res));
    json(&res)
}

#[tokio::test]
async fn code_exchange_issues_bearer_tokens_with_no_store() {
    let h = harness();
    let app = h.app(false).await;
    let code = h.code(&app, "profile balance", None).await;
    let res = h.exchange(&app, &code, None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.headers()["content-type"], "application/json");
    let v = json(&res);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["scope"], "balance profile");
    assert_eq!(v["access_token"].as_str().unwrap().len(), 51);
    assert_eq!(v["refresh_token"].as_str().unwrap().len(), 51);
    let info = json(
        &h.get_bearer("/api/oauth2/userinfo", v["access_token"].as_str().unwrap())
            .await,
    );
    assert_eq!(info["username"], "alice");
}

#[tokio::test]
async fn a_code_is_single_use_and_replay_revokes_what_it_issued() {
    let h = harness();
    let app = h.app(false).await;
    let code = h.code(&app, "profile", None).await;
    let first = json(&h.exchange(&app, &code, None).await);
    let access = first["access_token"].as_str().unwrap();
    let refresh = first["refresh_token"].as_str().unwrap();
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", access).await.status(),
        200
    );

    let again = h.exchange(&app, &code, None).await;
    assert_eq!(again.status(), 400);
    assert_eq!(err_code(&again), "invalid_grant");
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", access).await.status(),
        401,
        "access token revoked"
    );
    let r = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &app.id),
            ("client_secret", app.secret.as_deref().unwrap()),
        ])
        .await;
    assert_eq!(err_code(&r), "invalid_grant", "refresh token revoked");
}

#[tokio::test]
async fn code_bindings_client_redirect_uri_and_expiry() {
    let h = harness_with(config().code_ttl(TimeDelta::seconds(30)));
    let app = h.app(false).await;
    let other = h.app(false).await;
    // Another client cannot redeem it.
    let code = h.code(&app, "profile", None).await;
    assert_eq!(
        err_code(&h.exchange(&other, &code, None).await),
        "invalid_grant"
    );
    // The redirect_uri must repeat the authorization request's.
    let code = h.code(&app, "profile", None).await;
    let res = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://app.example/other"),
            ("client_id", &app.id),
            ("client_secret", app.secret.as_deref().unwrap()),
        ])
        .await;
    assert_eq!(err_code(&res), "invalid_grant");
    let code = h.code(&app, "profile", None).await;
    let res = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &app.id),
            ("client_secret", app.secret.as_deref().unwrap()),
        ])
        .await;
    assert_eq!(err_code(&res), "invalid_grant", "redirect_uri omitted");
    // Expired after the configured 30 s.
    let code = h.code(&app, "profile", None).await;
    h.clock.advance(TimeDelta::seconds(31));
    assert_eq!(
        err_code(&h.exchange(&app, &code, None).await),
        "invalid_grant"
    );
    // Unknown code.
    assert_eq!(
        err_code(&h.exchange(&app, "not-a-code", None).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn code_lifetime_is_configurable_to_a_day() {
    let h = harness_with(config().code_ttl(TimeDelta::hours(24)));
    let app = h.app(false).await;
    let code = h.code(&app, "profile", None).await;
    h.clock.advance(TimeDelta::hours(23));
    assert_eq!(h.exchange(&app, &code, None).await.status(), 200);
}

#[tokio::test]
async fn pkce_verifier_checked_and_downgrade_refused() {
    let h = harness();
    let app = h.app(false).await;
    let (verifier, challenge) = pkce_pair();
    let code = h.code(&app, "profile", Some(&challenge)).await;
    assert_eq!(h.exchange(&app, &code, Some(&verifier)).await.status(), 200);
    // Challenge but no verifier.
    let code = h.code(&app, "profile", Some(&challenge)).await;
    assert_eq!(
        err_code(&h.exchange(&app, &code, None).await),
        "invalid_grant"
    );
    // Wrong verifier.
    let code = h.code(&app, "profile", Some(&challenge)).await;
    let wrong = "A".repeat(43);
    assert_eq!(
        err_code(&h.exchange(&app, &code, Some(&wrong)).await),
        "invalid_grant"
    );
    // Verifier for a code issued without a challenge (RFC 9700 §4.8.2).
    let code = h.code(&app, "profile", None).await;
    assert_eq!(
        err_code(&h.exchange(&app, &code, Some(&verifier)).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn public_client_uses_none_auth_with_pkce() {
    let h = harness();
    let app = h.app_with(|r| r.secret = SecretChoice::Public).await;
    let (verifier, challenge) = pkce_pair();
    let code = h.code(&app, "profile", Some(&challenge)).await;
    let res = h.exchange(&app, &code, Some(&verifier)).await;
    assert_eq!(res.status(), 200, "{}", body_text(&res));
    // A public client presenting a secret is refused.
    let code = h.code(&app, "profile", Some(&challenge)).await;
    let res = h
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", &app.id),
            ("client_secret", "guess"),
            ("code_verifier", &verifier),
        ])
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(err_code(&res), "invalid_client");
    // And it cannot use client_credentials.
    let res = h
        .token(&[("grant_type", "client_credentials"), ("client_id", &app.id)])
        .await;
    assert_eq!(err_code(&res), "unauthorized_client");
}

#[tokio::test]
async fn client_authentication_rules() {
    let h = harness();
    // A secret with characters that form-encoding changes (RFC 6749 §2.3.1).
    let chosen = "s3cret:with spaces+plus&amp=eq%percent-1234567890".to_owned();
    let app = h
        .app_with(|r| r.secret = SecretChoice::Chosen(doorman::ClientSecret::new(chosen.clone())))
        .await;
    let cc = [("grant_type", "client_credentials")];
    // client_secret_basic with correct encoding.
    let res = h.token_basic(&app.id, &chosen, &cc).await;
    assert_eq!(res.status(), 200, "{}", body_text(&res));
    // client_secret_post.
    let res = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app.id),
            ("client_secret", &chosen),
        ])
        .await;
    assert_eq!(res.status(), 200);
    // Wrong secret via Basic: 401 + WWW-Authenticate: Basic.
    let res = h.token_basic(&app.id, "wrong", &cc).await;
    assert_eq!(res.status(), 401);
    assert_eq!(err_code(&res), "invalid_client");
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    // Wrong secret via body: 401 without a Basic challenge.
    let res = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app.id),
            ("client_secret", "x"),
        ])
        .await;
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("www-authenticate").is_none());
    // Unknown client.
    let res = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
            ("client_secret", "x"),
        ])
        .await;
    assert_eq!(err_code(&res), "invalid_client");
    // No authentication at all.
    assert_eq!(h.token(&cc).await.status(), 401);
    // Two methods at once.
    let res = h
        .token_basic(
            &app.id,
            &chosen,
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &chosen),
            ],
        )
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(err_code(&res), "invalid_request");
    // Basic without form-encoding the secret (raw '+' means space) fails.
    let raw = format!("{}:{}", app.id, chosen);
    let req = Request::post("/api/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!(
                "Basic {}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw)
            ),
        )
        .body(Bytes::from_static(b"grant_type=client_credentials"))
        .unwrap();
    assert_eq!(h.server.token(req).await.status(), 401);
    // A developer-chosen secret shorter than the minimum is refused at registration.
    let short = h
        .server
        .register_client({
            let mut r = doorman::ClientRegistration::new("x", vec![REDIRECT.into()]);
            r.secret = SecretChoice::Chosen(doorman::ClientSecret::new("short"));
            r
        })
        .await;
    assert_eq!(
        short.unwrap_err().code,
        doorman::ErrorCode::InvalidClientMetadata
    );
}

#[tokio::test]
async fn request_hygiene_duplicates_json_size_method_grant_type() {
    let h = harness();
    let app = h.app(false).await;
    let secret = app.secret.clone().unwrap();
    // Duplicate parameter.
    let res = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
            ("client_id", &app.id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(err_code(&res), "invalid_request");
    // JSON body with the same fields (seed 004).
    let body = serde_json::json!({"grant_type": "client_credentials", "client_id": app.id, "client_secret": secret});
    let req = Request::post("/api/oauth2/token")
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap();
    let res = h.server.token(req).await;
    assert_eq!(res.status(), 200, "{}", body_text(&res));
    // JSON duplicate keys are duplicates too.
    let req = Request::post("/api/oauth2/token")
        .header("content-type", "application/json")
        .body(Bytes::from(format!(
            r#"{{"grant_type":"client_credentials","grant_type":"x","client_id":"{}","client_secret":"{}"}}"#,
            app.id, secret
        )))
        .unwrap();
    assert_eq!(err_code(&h.server.token(req).await), "invalid_request");
    // Over the body limit: 413.
    let req = Request::post("/api/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Bytes::from(vec![b'a'; 64 * 1024 + 1]))
        .unwrap();
    assert_eq!(h.server.token(req).await.status(), 413);
    let small = harness_with(config().max_body_bytes(100));
    let req = Request::post("/api/oauth2/token")
        .body(Bytes::from(vec![b'a'; 101]))
        .unwrap();
    assert_eq!(small.server.token(req).await.status(), 413);
    // Wrong method, unsupported content type, unknown grant type, missing grant type.
    let res = h
        .server
        .token(
            Request::get("/api/oauth2/token")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), 405);
    let req = Request::post("/api/oauth2/token")
        .header("content-type", "text/plain")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(err_code(&h.server.token(req).await), "invalid_request");
    let res = h
        .token(&[
            ("grant_type", "password"),
            ("client_id", &app.id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(err_code(&res), "unsupported_grant_type");
    let res = h
        .token(&[("client_id", &app.id), ("client_secret", &secret)])
        .await;
    assert_eq!(err_code(&res), "invalid_request");
    // A grant type the client was not registered for.
    let limited = h
        .app_with(|r| r.grant_types = Some(vec![doorman::GrantType::AuthorizationCode]))
        .await;
    let res = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &limited.id),
            ("client_secret", limited.secret.as_deref().unwrap()),
        ])
        .await;
    assert_eq!(err_code(&res), "unauthorized_client");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_grant() {
    let h = harness();
    let app = h.app(false).await;
    let secret = app.secret.clone().unwrap();
    let t1 = tokens(&h, &app, "profile balance").await;
    let r1 = t1["refresh_token"].as_str().unwrap();
    let refresh = |rt: &str| {
        let rt = rt.to_owned();
        let (id, secret) = (app.id.clone(), secret.clone());
        let h = &h;
        async move {
            h.token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("client_id", &id),
                ("client_secret", &secret),
            ])
            .await
        }
    };
    let res = refresh(r1).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let t2 = json(&res);
    let r2 = t2["refresh_token"].as_str().unwrap();
    assert_ne!(r1, r2, "rotated");
    assert_eq!(t2["scope"], "balance profile");
    // With the default grace of 0 the previous access token stops working.
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", t1["access_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    let a2 = t2["access_token"].as_str().unwrap();
    assert_eq!(h.get_bearer("/api/oauth2/userinfo", a2).await.status(), 200);
    // The old refresh token again: invalid_grant, and everything of the grant dies.
    let res = refresh(r1).await;
    assert_eq!(err_code(&res), "invalid_grant");
    assert_eq!(h.get_bearer("/api/oauth2/userinfo", a2).await.status(), 401);
    assert_eq!(err_code(&refresh(r2).await), "invalid_grant");
}

#[tokio::test]
async fn refresh_scope_may_narrow_never_widen_and_client_is_bound() {
    let h = harness();
    let app = h.app(false).await;
    let other = h.app(false).await;
    let secret = app.secret.clone().unwrap();
    let t = tokens(&h, &app, "profile").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let res = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("scope", "profile balance"),
            ("client_id", &app.id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(err_code(&res), "invalid_scope");
    // Another client cannot use it (and does not burn it).
    let res = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &other.id),
            ("client_secret", other.secret.as_deref().unwrap()),
        ])
        .await;
    assert_eq!(err_code(&res), "invalid_grant");
    let t = tokens(&h, &app, "profile balance").await;
    let res = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("scope", "profile"),
            ("client_id", &app.id),
            ("client_secret", &secret),
        ])
        .await;
    let narrowed = json(&res);
    assert_eq!(narrowed["scope"], "profile");
    let info = json(
        &h.get_bearer(
            "/api/oauth2/userinfo",
            narrowed["access_token"].as_str().unwrap(),
        )
        .await,
    );
    assert!(info.get("quota").is_none());
    // The new refresh token keeps the grant's full scope (RFC 6749 §6).
    let res = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", narrowed["refresh_token"].as_str().unwrap()),
            ("client_id", &app.id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(json(&res)["scope"], "balance profile");
}

#[tokio::test]
async fn refresh_grace_keeps_the_previous_access_token_for_a_while() {
    let h = harness_with(config().refresh_grace(TimeDelta::minutes(10)));
    let app = h.app(false).await;
    let t = tokens(&h, &app, "profile").await;
    let old_access = t["access_token"].as_str().unwrap();
    let res = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", &app.id),
            ("client_secret", app.secret.as_deref().unwrap()),
        ])
        .await;
    assert_eq!(res.status(), 200);
    h.clock.advance(TimeDelta::minutes(9));
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", old_access)
            .await
            .status(),
        200
    );
    h.clock.advance(TimeDelta::minutes(2));
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", old_access)
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn lifetimes_expire_or_never() {
    let h = harness_with(
        config()
            .access_ttl(Some(TimeDelta::hours(2)))
            .refresh_ttl(Some(TimeDelta::days(30))),
    );
    let app = h.app(false).await;
    let t = tokens(&h, &app, "profile").await;
    assert_eq!(t["expires_in"], 7200);
    h.clock.advance(TimeDelta::hours(2));
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", t["access_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    h.clock.advance(TimeDelta::days(30));
    let res = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", &app.id),
            ("client_secret", app.secret.as_deref().unwrap()),
        ])
        .await;
    assert_eq!(err_code(&res), "invalid_grant", "refresh token expired");

    // Permanent tokens (seed 003).
    let h = harness_with(config().access_ttl(None).refresh_ttl(None));
    let app = h.app(false).await;
    let t = tokens(&h, &app, "profile").await;
    assert!(t.get("expires_in").is_none());
    h.clock.advance(TimeDelta::days(3650));
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", t["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn client_credentials_scope_rules_and_no_refresh_token() {
    let h = harness();
    let app = h.app(false).await;
    let secret = app.secret.clone().unwrap();
    let res = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app.id),
            ("client_secret", &secret),
        ])
        .await;
    let v = json(&res);
    assert_eq!(v["scope"], "balance profile");
    assert!(v.get("refresh_token").is_none());
    let res = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("scope", "admin"),
            ("client_id", &app.id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(err_code(&res), "invalid_scope");
    let res = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("scope", "balance"),
            ("client_id", &app.id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(json(&res)["scope"], "balance");
}

#[tokio::test]
async fn no_refresh_tokens_by_policy() {
    let h = harness_with(config().issue_refresh_tokens(false));
    let app = h.app(false).await;
    let t = tokens(&h, &app, "profile").await;
    assert!(t.get("refresh_token").is_none());
}
