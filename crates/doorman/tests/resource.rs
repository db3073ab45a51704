//! Bearer validation, userinfo, top-up, revocation, introspection,
//! metadata, registration, error mapping and the wire-profile seam.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use common::*;
use doorman::store::{ClientStore, CodeStore, GrantStore, Store, TokenStore};
use doorman::{
    AuthorizationServer, Client, CodeRecord, CodeTake, Consent, GrantId, GrantRecord, IssuedTokens,
    OAuthError, Purged, Rotation, Scopes, StoreError, TokenHash, TokenRecord, UserId, WireProfile,
};
use http::{Request, Response, StatusCode};
use serde_json::json;

async fn user_tokens(h: &Harness, app: &App, scope: &str) -> serde_json::Value {
    let code = h.code(app, scope, None).await;
    json(&h.exchange(app, &code, None).await)
}

/// Userinfo with a fresh user token of `scope` for `app`.
async fn userinfo_for(h: &Harness, app: &App, scope: &str) -> Response<Bytes> {
    let t = user_tokens(h, app, scope).await;
    h.get_bearer("/api/oauth2/userinfo", t["access_token"].as_str().unwrap())
        .await
}

/// `app` introspects `token` (RFC 7662), authenticated as itself.
async fn introspect(h: &Harness, app: &App, token: &str) -> Response<Bytes> {
    h.post_client("/api/oauth2/introspect", app, &[("token", token)])
        .await
}

async fn cc_token(h: &Harness, app: &App) -> String {
    let res = h
        .token(&[
            ("grant_type", "client_credentials"),
            ("client_id", &app.id),
            ("client_secret", app.secret.as_deref().unwrap()),
        ])
        .await;
    json(&res)["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bearer_errors_follow_rfc_6750() {
    let h = harness();
    // No token: 401 with a bare challenge.
    let res = h
        .server
        .userinfo(
            Request::get("/api/oauth2/userinfo")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), 401);
    let www = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.starts_with("Bearer"));
    assert!(!www.contains("error="));
    // Unknown token.
    let res = h.get_bearer("/api/oauth2/userinfo", "garbage").await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    assert_eq!(err_code(&res), "invalid_token");
    // Malformed header.
    let req = Request::get("/")
        .header("authorization", "Bearer a b")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(h.server.userinfo(req).await.status(), 400);
    // The token in a query parameter is not accepted by the RFC profile (RFC 6750 §2.3 is opt-in).
    let app = h.app(false).await;
    let t = user_tokens(&h, &app, "profile").await;
    let at = t["access_token"].as_str().unwrap();
    let req = Request::get(format!("/api/oauth2/userinfo?access_token={at}"))
        .body(Bytes::new())
        .unwrap();
    assert_eq!(h.server.userinfo(req).await.status(), 401);
    // A refresh token is not an access token.
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", t["refresh_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    // Past its expiry the access token is refused (this host reads its
    // claims apart from the token: the check reads the clock once and
    // hands the time on to the client read).
    assert_eq!(h.get_bearer("/api/oauth2/userinfo", at).await.status(), 200);
    h.clock.advance(chrono::TimeDelta::days(30));
    let res = h.get_bearer("/api/oauth2/userinfo", at).await;
    assert_eq!(res.status(), 401);
    assert_eq!(err_code(&res), "invalid_token");
    assert!(body_text(&res).contains("expired"), "{}", body_text(&res));
}

/// Replaces the character at `i` with another base64url character.
fn flip(token: &str, i: usize) -> String {
    let mut b = token.as_bytes().to_vec();
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// Codes and tokens open with their issue time (the store's key sorts by
/// it), which anyone holding one can read. Knowing a real token's time,
/// or keeping it while guessing the rest, must buy an attacker nothing:
/// every character still counts, for bearer tokens, refresh tokens and
/// codes alike.
#[tokio::test]
async fn a_real_locator_does_not_make_a_forged_credential_valid() {
    let h = harness();
    let app = h.app(false).await;
    let t = user_tokens(&h, &app, "profile").await;
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    // The locator (first 8 characters) kept, one character after it
    // changed; then the locator changed and the rest kept.
    for forged in [flip(at, 8), flip(at, 50), flip(at, 0), flip(at, 7)] {
        let res = h.get_bearer("/api/oauth2/userinfo", &forged).await;
        assert_eq!(res.status(), 401, "forged access token");
        assert_eq!(err_code(&res), "invalid_token");
        let res = introspect(&h, &app, &forged).await;
        assert_eq!(json(&res), json!({"active": false}), "forged, introspected");
    }
    for forged in [flip(rt, 8), flip(rt, 3)] {
        let res = h
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &forged),
                ("client_id", &app.id),
                ("client_secret", app.secret.as_deref().unwrap()),
            ])
            .await;
        assert_eq!(res.status(), 400, "forged refresh token");
        assert_eq!(err_code(&res), "invalid_grant");
    }
    let code = h.code(&app, "profile", None).await;
    for forged in [flip(&code, 20), flip(&code, 1)] {
        let res = h.exchange(&app, &forged, None).await;
        assert_eq!(res.status(), 400, "forged code");
        assert_eq!(err_code(&res), "invalid_grant");
    }
    // The real ones were not disturbed by the attempts.
    assert_eq!(h.get_bearer("/api/oauth2/userinfo", at).await.status(), 200);
    let res = introspect(&h, &app, at).await;
    assert_eq!(json(&res)["active"], true);
    assert_eq!(h.exchange(&app, &code, None).await.status(), 200);
}

/// A token stored before the located form (43 characters, keyed by its
/// plain SHA-256) is still found: upgrading doorman does not log anyone out.
#[tokio::test]
async fn a_token_from_before_the_located_form_still_validates() {
    let h = harness();
    let app = h.app(false).await;
    let t = user_tokens(&h, &app, "profile").await;
    let at = t["access_token"].as_str().unwrap();
    let record = h
        .store
        .token(&TokenHash::of_token(at))
        .await
        .unwrap()
        .unwrap();
    let legacy = "Jq3bVv0c8kS2YgO1n-5xWm7Tz_HhQ4rLpE9aCdUuK6w";
    assert_eq!(legacy.len(), 43);
    let grant = GrantRecord {
        id: GrantId::generate(),
        client_id: app.id.clone(),
        user_id: Some(UserId::new("alice")),
        scope: record.scope.clone(),
        created_at: record.issued_at,
    };
    let mut old = record;
    old.hash = TokenHash::of(legacy);
    old.grant_id = grant.id.clone();
    assert!(h.store.create_grant(&grant, &[old]).await.unwrap());
    let res = h.get_bearer("/api/oauth2/userinfo", legacy).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(&res)["sub"], "alice");
}

#[tokio::test]
async fn insufficient_scope_is_403_naming_the_scope() {
    let h = harness();
    let app = h.app(false).await;
    let t = user_tokens(&h, &app, "profile").await;
    let res = h
        .get_bearer("/api/oauth2/topup", t["access_token"].as_str().unwrap())
        .await;
    assert_eq!(res.status(), 403);
    let www = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(www.contains("error=\"insufficient_scope\""));
    assert!(www.contains("scope=\"balance\""));
    // The typed validation for host routes.
    let (parts, _) = Request::get("/mine")
        .header(
            "authorization",
            format!("Bearer {}", t["access_token"].as_str().unwrap()),
        )
        .body(())
        .unwrap()
        .into_parts();
    let ok = h
        .server
        .validate_bearer(&parts, Some("profile"))
        .await
        .unwrap();
    assert_eq!(ok.user_id, Some(UserId::new("alice")));
    assert_eq!(ok.client_id, app.id);
    assert!(ok.expires_at.is_some());
    let err = h
        .server
        .validate_bearer(&parts, Some("balance"))
        .await
        .unwrap_err();
    assert_eq!(h.server.bearer_error_response(&err).status(), 403);
}

#[tokio::test]
async fn userinfo_releases_claims_by_scope_and_omits_the_rest() {
    let h = harness();
    let app = h.app(false).await;
    let profile = json(&userinfo_for(&h, &app, "profile").await);
    assert_eq!(profile["id"], 1);
    assert_eq!(profile["username"], "alice");
    assert_eq!(profile["email"], "alice@example.com");
    assert!(profile.get("quota").is_none() && profile.get("balance_formatted").is_none());

    let balance = json(&userinfo_for(&h, &app, "balance").await);
    assert_eq!(balance["quota"], 1_000_000);
    assert_eq!(balance["used_quota"], 250_000);
    assert_eq!(balance["balance_formatted"], "750.00");
    assert!(balance.get("username").is_none() && balance.get("email").is_none());
    assert_eq!(balance["id"], 1);

    let t = user_tokens(&h, &app, "balance profile").await;
    let topup = json(
        &h.get_bearer("/api/oauth2/topup", t["access_token"].as_str().unwrap())
            .await,
    );
    assert_eq!(topup, json!({"topup_url": format!("{ISSUER}/topup")}));
}

#[tokio::test]
async fn per_client_claim_release() {
    let h = harness();
    let app = h
        .app_with(|r| r.released_claims = Some(vec!["username".into(), "quota".into()]))
        .await;
    let t = user_tokens(&h, &app, "profile balance").await;
    let v = json(
        &h.get_bearer("/api/oauth2/userinfo", t["access_token"].as_str().unwrap())
            .await,
    );
    assert_eq!(v["username"], "alice");
    assert_eq!(v["quota"], 1_000_000);
    assert!(
        v.get("email").is_none(),
        "email not enabled for this client"
    );
    assert!(v.get("balance_formatted").is_none());
    assert_eq!(v["id"], 1, "base claims always released");
}

#[tokio::test]
async fn client_credentials_token_has_no_user_so_userinfo_is_403() {
    let h = harness();
    let app = h.app(false).await;
    let at = cc_token(&h, &app).await;
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", &at).await.status(),
        403
    );
    assert_eq!(h.get_bearer("/api/oauth2/topup", &at).await.status(), 403);
}

#[tokio::test]
async fn revocation_rfc7009() {
    let h = harness();
    let app = h.app(false).await;
    let other = h.app(false).await;
    // Revoking a refresh token revokes its grant's access tokens.
    let t = user_tokens(&h, &app, "profile").await;
    let at = t["access_token"].as_str().unwrap();
    let res = h
        .post_client(
            "/api/oauth2/revoke",
            &app,
            &[("token", t["refresh_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(h.get_bearer("/api/oauth2/userinfo", at).await.status(), 401);
    // Revoking an access token revokes only it.
    let t = user_tokens(&h, &app, "profile").await;
    let res = h
        .post_client(
            "/api/oauth2/revoke",
            &app,
            &[
                ("token", t["access_token"].as_str().unwrap()),
                ("token_type_hint", "access_token"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", t["access_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
    let res = h
        .token(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", &app.id),
            ("client_secret", app.secret.as_deref().unwrap()),
        ])
        .await;
    assert_eq!(
        res.status(),
        200,
        "refresh token survives an access-token revocation"
    );
    // Unknown tokens: 200.
    assert_eq!(
        h.post_client("/api/oauth2/revoke", &app, &[("token", "unknown")])
            .await
            .status(),
        200
    );
    // Another client's token is left alone (and the answer does not tell).
    let t = user_tokens(&h, &app, "profile").await;
    let res = h
        .post_client(
            "/api/oauth2/revoke",
            &other,
            &[("token", t["access_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        h.get_bearer("/api/oauth2/userinfo", t["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    // Client authentication is required; token is required.
    let bad = App {
        id: app.id.clone(),
        secret: Some("wrong".into()),
    };
    assert_eq!(
        h.post_client("/api/oauth2/revoke", &bad, &[("token", "x")])
            .await
            .status(),
        401
    );
    assert_eq!(
        err_code(&h.post_client("/api/oauth2/revoke", &app, &[]).await),
        "invalid_request"
    );
}

#[tokio::test]
async fn introspection_rfc7662() {
    let h = harness();
    let app = h.app(false).await;
    let other = h.app(false).await;
    let t = user_tokens(&h, &app, "profile balance").await;
    let at = t["access_token"].as_str().unwrap();
    let v = json(&introspect(&h, &app, at).await);
    assert_eq!(v["active"], true);
    assert_eq!(v["scope"], "balance profile");
    assert_eq!(v["client_id"], app.id.as_str());
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["sub"], "alice");
    assert_eq!(
        v["exp"].as_i64().unwrap() - v["iat"].as_i64().unwrap(),
        3600
    );
    // The standard wire writes its members in name order, nothing else.
    let res = introspect(&h, &app, at).await;
    assert_eq!(
        body_text(&res),
        format!(
            r#"{{"active":true,"client_id":"{}","exp":{},"iat":{},"iss":"{ISSUER}","scope":"balance profile","sub":"alice","token_type":"Bearer"}}"#,
            app.id, v["exp"], v["iat"]
        )
    );
    // Other clients learn nothing.
    let res = introspect(&h, &other, at).await;
    assert_eq!(body_text(&res), r#"{"active":false}"#);
    // Unknown, revoked, expired: exactly {"active":false}.
    assert_eq!(
        json(&introspect(&h, &app, "nope").await),
        json!({"active": false})
    );
    h.clock.advance(chrono::TimeDelta::hours(2));
    assert_eq!(
        json(&introspect(&h, &app, at).await),
        json!({"active": false})
    );
    // Client-credentials tokens have no sub.
    let cc = cc_token(&h, &app).await;
    let v = json(&introspect(&h, &app, &cc).await);
    assert_eq!(v["active"], true);
    assert!(v.get("sub").is_none());
    // Wrong secret.
    let bad = App {
        id: app.id.clone(),
        secret: Some("wrong".into()),
    };
    let res = introspect(&h, &bad, &cc).await;
    assert_eq!(res.status(), 401);
    assert_eq!(err_code(&res), "invalid_client");
}

#[tokio::test]
async fn user_revokes_an_app_and_every_grant_goes() {
    let h = harness();
    let app = h.app(false).await;
    let t1 = user_tokens(&h, &app, "profile").await;
    let t2 = user_tokens(&h, &app, "balance").await;
    let alice = UserId::new("alice");
    assert_eq!(h.server.authorized_apps(&alice).await.unwrap().len(), 1);
    assert!(h.server.revoke_app(&alice, &app.id).await.unwrap());
    for t in [&t1, &t2] {
        assert_eq!(
            h.get_bearer("/api/oauth2/userinfo", t["access_token"].as_str().unwrap())
                .await
                .status(),
            401
        );
    }
    assert!(h.server.authorized_apps(&alice).await.unwrap().is_empty());
    // Consent is gone: auto_authorize no longer skips the page.
    let q = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", &app.id),
        ("redirect_uri", REDIRECT),
        ("scope", "profile"),
        ("state", "s"),
        ("auto_authorize", "true"),
    ])
    .unwrap();
    assert_eq!(h.authorize(&q, Some("alice")).await.status(), 200);
    // Form tokens for the host's revoke form are bound to user and purpose.
    let tok = h.server.form_token(&alice, "revoke:x");
    assert!(h.server.verify_form_token(&tok, &alice, "revoke:x"));
    assert!(
        !h.server
            .verify_form_token(&tok, &UserId::new("bob"), "revoke:x")
    );
    assert!(!h.server.verify_form_token(&tok, &alice, "revoke:y"));
}

#[tokio::test]
async fn metadata_rfc8414() {
    let h = harness();
    let res = h.server.metadata();
    assert_eq!(res.status(), 200);
    let v = json(&res);
    assert_eq!(v["issuer"], ISSUER);
    assert_eq!(
        v["authorization_endpoint"],
        format!("{ISSUER}/api/oauth2/authorize")
    );
    assert_eq!(v["token_endpoint"], format!("{ISSUER}/api/oauth2/token"));
    assert_eq!(
        v["userinfo_endpoint"],
        format!("{ISSUER}/api/oauth2/userinfo")
    );
    assert_eq!(
        v["revocation_endpoint"],
        format!("{ISSUER}/api/oauth2/revoke")
    );
    assert_eq!(
        v["introspection_endpoint"],
        format!("{ISSUER}/api/oauth2/introspect")
    );
    assert_eq!(
        v["registration_endpoint"],
        format!("{ISSUER}/api/oauth2/register")
    );
    assert_eq!(v["response_types_supported"], json!(["code"]));
    assert_eq!(v["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(v["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        v["scopes_supported"],
        json!(["profile", "balance", "admin"])
    );
    for m in ["client_secret_basic", "client_secret_post"] {
        assert!(
            v["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(m))
        );
    }
}

#[tokio::test]
async fn dynamic_registration_rfc7591() {
    let h = harness();
    let post = |body: String| {
        let s = h.server.clone();
        async move {
            s.register(
                Request::post("/api/oauth2/register")
                    .header("content-type", "application/json")
                    .body(Bytes::from(body))
                    .unwrap(),
            )
            .await
        }
    };
    let res = post(
        json!({"client_name": "CLI", "redirect_uris": ["http://127.0.0.1/cb"], "scope": "profile"})
            .to_string(),
    )
    .await;
    assert_eq!(res.status(), 201, "{}", body_text(&res));
    let v = json(&res);
    assert!(v["client_id"].as_str().unwrap().starts_with("client_"));
    assert!(v["client_secret"].as_str().unwrap().len() >= 43);
    assert_eq!(v["client_secret_expires_at"], 0);
    // The secret is stored only as a hash.
    let stored = h
        .store
        .client(v["client_id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.secret_hash,
        Some(TokenHash::of(v["client_secret"].as_str().unwrap()))
    );
    // Public client.
    let v = json(&post(json!({"client_name": "SPA", "redirect_uris": ["https://spa.example/cb"], "token_endpoint_auth_method": "none"}).to_string()).await);
    assert!(v.get("client_secret").is_none());
    // Errors.
    let res =
        post(json!({"client_name": "X", "redirect_uris": ["http://evil.example/cb"]}).to_string())
            .await;
    assert_eq!(err_code(&res), "invalid_redirect_uri");
    let res =
        post(json!({"client_name": "X", "redirect_uris": ["javascript:alert(1)"]}).to_string())
            .await;
    assert_eq!(err_code(&res), "invalid_redirect_uri");
    let res = post(json!({"client_name": "X", "redirect_uris": []}).to_string()).await;
    assert_eq!(err_code(&res), "invalid_redirect_uri");
    let res = post(json!({"redirect_uris": ["https://a.example/cb"]}).to_string()).await;
    assert_eq!(err_code(&res), "invalid_client_metadata");
    let res = post("not json".into()).await;
    assert_eq!(res.status(), 400);
    assert_eq!(err_code(&res), "invalid_client_metadata");
    let res = post(
        json!({"client_name": "X", "redirect_uris": ["https://a.example/cb"], "scope": "root"})
            .to_string(),
    )
    .await;
    assert_eq!(err_code(&res), "invalid_client_metadata");
}

/// A store whose every call fails with a message that must never reach a client.
struct BrokenStore;

fn broken<T>() -> Result<T, StoreError> {
    Err(StoreError::message(
        "connection to db at 10.0.0.5 failed: password=hunter2",
    ))
}

#[async_trait]
impl ClientStore for BrokenStore {
    async fn client(&self, _: &str) -> Result<Option<Client>, StoreError> {
        broken()
    }
    async fn create_client(&self, _: &Client) -> Result<bool, StoreError> {
        broken()
    }
    async fn update_client(&self, _: &Client) -> Result<bool, StoreError> {
        broken()
    }
    async fn delete_client(&self, _: &str) -> Result<bool, StoreError> {
        broken()
    }
}

#[async_trait]
impl CodeStore for BrokenStore {
    async fn put_code(&self, _: &CodeRecord) -> Result<(), StoreError> {
        broken()
    }
    async fn take_code(&self, _: &TokenHash, _: DateTime<Utc>) -> Result<CodeTake, StoreError> {
        broken()
    }
}

#[async_trait]
impl GrantStore for BrokenStore {
    async fn create_grant(&self, _: &GrantRecord, _: &[TokenRecord]) -> Result<bool, StoreError> {
        broken()
    }
    async fn revoke_grant(&self, _: &GrantId) -> Result<(), StoreError> {
        broken()
    }
    async fn consent(&self, _: &UserId, _: &str) -> Result<Option<Consent>, StoreError> {
        broken()
    }
    async fn add_consent(
        &self,
        _: &UserId,
        _: &str,
        _: &Scopes,
        _: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        broken()
    }
    async fn list_consents(&self, _: &UserId) -> Result<Vec<Consent>, StoreError> {
        broken()
    }
    async fn revoke_consent(&self, _: &UserId, _: &str) -> Result<bool, StoreError> {
        broken()
    }
}

#[async_trait]
impl TokenStore for BrokenStore {
    async fn token(&self, _: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        broken()
    }
    async fn rotate_refresh(
        &self,
        _: &TokenHash,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
        _: &[TokenRecord],
    ) -> Result<Rotation, StoreError> {
        broken()
    }
    async fn delete_token(&self, _: &TokenHash) -> Result<bool, StoreError> {
        broken()
    }
}

#[async_trait]
impl Store for BrokenStore {
    async fn purge_expired(&self, _: DateTime<Utc>) -> Result<Purged, StoreError> {
        broken()
    }
}

#[tokio::test]
async fn storage_failures_are_500_server_error_without_internals() {
    let server = AuthorizationServer::builder(
        config().build(),
        Arc::new(BrokenStore),
        Arc::new(HeaderSessions),
    )
    .build();
    let form = |path: &str, body: &'static str| {
        Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from_static(body.as_bytes()))
            .unwrap()
    };
    let responses = vec![
        server
            .token(form(
                "/t",
                "grant_type=client_credentials&client_id=a&client_secret=b",
            ))
            .await,
        server
            .revoke(form("/r", "token=x&client_id=a&client_secret=b"))
            .await,
        server
            .introspect(form("/i", "token=x&client_id=a&client_secret=b"))
            .await,
        server
            .userinfo(
                Request::get("/u")
                    .header("authorization", "Bearer abc")
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await,
        server
            .authorize(
                Request::get("/a?response_type=code&client_id=a&state=s")
                    .header("x-user", "alice")
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await,
    ];
    for res in responses {
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let text = body_text(&res);
        assert!(text.contains("server_error"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("10.0.0.5"),
            "{text}"
        );
    }
}

/// A provider whose token answers are wrapped in `{ec, em, data}` (seed 000)
/// and whose errors use the same envelope: only the profile changes.
struct Envelope;

impl WireProfile for Envelope {
    fn token_response(&self, t: &IssuedTokens) -> Response<Bytes> {
        doorman::wire::json_response(
            StatusCode::OK,
            &json!({"ec": 200, "em": "ok", "data": {"access_token": t.access_token.secret(), "user_id": t.user_id.as_ref().map(UserId::as_str)}}),
        )
    }
    fn error_response(&self, e: &OAuthError, _basic: bool) -> Response<Bytes> {
        doorman::wire::json_response(
            StatusCode::OK,
            &json!({"ec": 400, "em": e.code.as_str(), "data": {}}),
        )
    }
}

#[tokio::test]
async fn wire_profile_changes_the_envelope_not_the_rules() {
    let h = harness_hosted(config(), |b| b.profile(Arc::new(Envelope)));
    let app = h.app(false).await;
    let code = h.code(&app, "profile", None).await;
    let v = json(&h.exchange(&app, &code, None).await);
    assert_eq!(v["ec"], 200);
    assert_eq!(v["data"]["user_id"], "alice");
    assert_eq!(v["data"]["access_token"].as_str().unwrap().len(), 51);
    let v = json(&h.exchange(&app, &code, None).await);
    assert_eq!(v, json!({"ec": 400, "em": "invalid_grant", "data": {}}));
}

/// The client cache: a change made through the server applies at once; one
/// made straight in the store (another instance) within the cache's TTL.
#[tokio::test]
async fn client_changes_apply_at_once_here_and_within_the_cache_ttl_elsewhere() {
    let h = harness_with(config().client_cache_ttl(chrono::TimeDelta::seconds(5)));
    let app = h
        .app_with(|r| r.released_claims = Some(vec!["username".into()]))
        .await;
    let t = user_tokens(&h, &app, "profile").await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    let userinfo = || h.get_bearer("/api/oauth2/userinfo", &at);
    assert!(json(&userinfo().await).get("email").is_none());

    // Through the server: seen on the next request.
    let mut client = h
        .server
        .client(&app.id)
        .await
        .unwrap()
        .unwrap()
        .as_ref()
        .clone();
    client.released_claims = Some(vec!["username".into(), "email".into()]);
    assert!(h.server.update_client(&client).await.unwrap());
    assert_eq!(json(&userinfo().await)["email"], "alice@example.com");

    // Straight in the store: the cached client holds for the TTL, no longer.
    client.released_claims = Some(vec!["username".into()]);
    assert!(h.store.update_client(&client).await.unwrap());
    assert_eq!(json(&userinfo().await)["email"], "alice@example.com");
    h.clock.advance(chrono::TimeDelta::seconds(5));
    assert!(json(&userinfo().await).get("email").is_none());

    // A secret reset through the server: the old secret fails at once, the
    // new one works.
    let new_secret = "a-brand-new-secret-of-enough-length";
    client.secret_hash = Some(doorman::TokenHash::of(new_secret));
    assert!(h.server.update_client(&client).await.unwrap());
    let secret = app.secret.clone().unwrap();
    let res = h
        .token_basic(&app.id, &secret, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(res.status(), 401, "{}", body_text(&res));
    let res = h
        .token_basic(&app.id, new_secret, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(res.status(), 200, "{}", body_text(&res));

    // Deleted through the server: unknown at once, whatever the secret.
    assert!(h.server.delete_client(&app.id).await.unwrap());
    assert!(h.server.client(&app.id).await.unwrap().is_none());
    let res = h
        .token_basic(&app.id, new_secret, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(err_code(&res), "invalid_client");
}

/// The client cache keeps a copy per thread. A secret reset and a deletion
/// made through the server must reach every thread's copy at once: the old
/// secret is refused on each thread that had just authenticated with it.
#[test]
fn a_client_change_through_the_server_reaches_every_threads_cache() {
    const THREADS: usize = 8;
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    };
    let h = harness_with(config().client_cache_ttl(chrono::TimeDelta::seconds(60)));
    let app = rt().block_on(h.app(false));
    let old_secret = app.secret.clone().unwrap();
    let old_secret = old_secret.as_str();
    let new_secret = "a-brand-new-secret-of-enough-length";
    let cc = |secret| h.token_basic(&app.id, secret, &[("grant_type", "client_credentials")]);
    // Steps are handed over by channels with a timeout, not a barrier: if
    // a thread panics, the others fail instead of waiting forever.
    let timeout = std::time::Duration::from_secs(60);
    let (reached, steps) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let (workers, go): (Vec<_>, Vec<_>) = (0..THREADS)
            .map(|_| {
                let (go, wait) = std::sync::mpsc::channel::<()>();
                let reached = reached.clone();
                let worker = s.spawn(move || {
                    let rt = rt();
                    let next = || {
                        reached.send(()).unwrap();
                        wait.recv_timeout(timeout)
                            .expect("the changing thread stopped");
                    };
                    // Cached on this thread, then changed by another one.
                    let before = rt.block_on(cc(old_secret)).status();
                    next();
                    let old_after_reset = rt.block_on(cc(old_secret)).status();
                    let new_after_reset = rt.block_on(cc(new_secret)).status();
                    next();
                    let after_delete = err_code(&rt.block_on(cc(new_secret)));
                    (before, old_after_reset, new_after_reset, after_delete)
                });
                (worker, go)
            })
            .unzip();
        // Only the workers hold a sender now: if they all stop, the wait
        // below ends at once.
        drop(reached);
        let all_reached = || {
            for _ in 0..THREADS {
                steps.recv_timeout(timeout).expect("a worker stopped");
            }
        };
        let go_on = || go.iter().for_each(|g| g.send(()).unwrap());
        let rt = rt();
        let mut client = rt
            .block_on(h.server.client(&app.id))
            .unwrap()
            .unwrap()
            .as_ref()
            .clone();
        client.secret_hash = Some(TokenHash::of(new_secret));
        // The workers have each read the client before each change.
        all_reached();
        assert!(rt.block_on(h.server.update_client(&client)).unwrap());
        go_on();
        all_reached();
        assert!(rt.block_on(h.server.delete_client(&app.id)).unwrap());
        go_on();
        for w in workers {
            let (before, old_after_reset, new_after_reset, after_delete) = w.join().unwrap();
            assert_eq!(before, StatusCode::OK);
            assert_eq!(old_after_reset, StatusCode::UNAUTHORIZED);
            // The new secret works, so the deletion below is what refuses it.
            assert_eq!(new_after_reset, StatusCode::OK);
            assert_eq!(after_delete, "invalid_client");
        }
    });
}

/// A host whose claims carry the balance is asked once per userinfo; the
/// balance is still released by the balance scope only.
#[tokio::test]
async fn a_balance_carried_with_the_claims_is_released_by_scope_only() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct OneRow {
        claims_calls: AtomicUsize,
    }
    #[async_trait::async_trait]
    impl doorman::Claims for OneRow {
        async fn claims(
            &self,
            _user: &doorman::UserId,
        ) -> Result<Option<doorman::UserClaims>, doorman::StoreError> {
            self.claims_calls.fetch_add(1, Ordering::SeqCst);
            Ok(Some(
                doorman::UserClaims::new()
                    .base("id", 7)
                    .scoped("profile", "username", "alice")
                    .with_balance(doorman::Balance {
                        quota: 500,
                        used_quota: 100,
                        formatted: "4.00".into(),
                        topup_url: "https://idp.example/topup".into(),
                    }),
            ))
        }
    }
    let host = std::sync::Arc::new(OneRow {
        claims_calls: AtomicUsize::new(0),
    });
    // No Balances at all: the carried balance is the only source.
    let h = harness_hosted(config(), |b| b.claims(host.clone()));
    let app = h.app(false).await;
    let with = user_tokens(&h, &app, "profile balance").await;
    let without = user_tokens(&h, &app, "profile").await;
    let before = host.claims_calls.load(Ordering::SeqCst);
    let v = json(
        &h.get_bearer(
            "/api/oauth2/userinfo",
            with["access_token"].as_str().unwrap(),
        )
        .await,
    );
    assert_eq!(host.claims_calls.load(Ordering::SeqCst), before + 1);
    assert_eq!(v["quota"], 500);
    assert_eq!(v["used_quota"], 100);
    assert_eq!(v["balance_formatted"], "4.00");
    let v = json(
        &h.get_bearer(
            "/api/oauth2/userinfo",
            without["access_token"].as_str().unwrap(),
        )
        .await,
    );
    assert_eq!(v["username"], "alice");
    assert!(v.get("quota").is_none(), "{v}");
    assert!(v.get("balance_formatted").is_none(), "{v}");
}

/// A host whose claims overlap: a scoped claim takes the place of a base
/// claim of its name, the balance fields take the place of claims named
/// like them, and the host's own `sub` that of the token's user.
struct Overlapping;

#[async_trait]
impl doorman::Claims for Overlapping {
    async fn claims(&self, _: &UserId) -> Result<Option<doorman::UserClaims>, StoreError> {
        Ok(Some(
            doorman::UserClaims::new()
                .base("name", "base")
                .base("quota", "host quota")
                .scoped("profile", "name", "profile")
                .scoped("profile", "sub", String::from("host-sub"))
                .base("created", 5)
                .with_balance(doorman::Balance {
                    quota: 9,
                    used_quota: 4,
                    formatted: "0.01".into(),
                    topup_url: "https://idp.example/topup".into(),
                }),
        ))
    }
}

/// A profile that wraps every JSON answer but says nothing of userinfo.
struct Wrapped;

impl WireProfile for Wrapped {
    fn json(&self, status: StatusCode, body: &serde_json::Value) -> Response<Bytes> {
        doorman::wire::json_response(status, &json!({"code": 0, "data": body}))
    }
}

fn overlapping(profile: Option<Arc<dyn WireProfile>>) -> Harness {
    harness_hosted(config(), |b| {
        let b = b.claims(Arc::new(Overlapping));
        match profile {
            Some(p) => b.profile(p),
            None => b,
        }
    })
}

#[tokio::test]
async fn userinfo_keeps_one_claim_per_name_by_precedence_in_name_order() {
    let h = overlapping(None);
    let app = h.app(false).await;
    let res = userinfo_for(&h, &app, "profile balance").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        body_text(&res),
        r#"{"balance_formatted":"0.01","created":5,"name":"profile","quota":9,"sub":"host-sub","used_quota":4}"#
    );

    // Without `profile`, the base claims stand and `sub` is the token's user.
    let v = json(&userinfo_for(&h, &app, "balance").await);
    assert_eq!(v["name"], "base");
    assert_eq!(v["sub"], "alice");
    assert_eq!(v["quota"], 9);
    let v = json(&userinfo_for(&h, &app, "profile").await);
    assert_eq!(v["quota"], "host quota");
    assert!(v.get("used_quota").is_none(), "{v}");
}

#[tokio::test]
async fn a_profile_that_wraps_its_json_wraps_the_userinfo_answer() {
    let h = overlapping(Some(Arc::new(Wrapped)));
    let app = h.app(false).await;
    let v = json(&userinfo_for(&h, &app, "profile").await);
    assert_eq!(
        v,
        json!({"code": 0, "data": {"created": 5, "name": "profile", "quota": "host quota", "sub": "host-sub"}})
    );
}

#[tokio::test]
async fn a_profile_that_wraps_its_json_wraps_the_introspection_answer() {
    let h = overlapping(Some(Arc::new(Wrapped)));
    let app = h.app(false).await;
    let t = user_tokens(&h, &app, "profile").await;
    let at = t["access_token"].as_str().unwrap();
    let v = json(&introspect(&h, &app, at).await);
    assert_eq!(v["code"], 0);
    assert_eq!(v["data"]["active"], true);
    assert_eq!(v["data"]["scope"], "profile");
    assert_eq!(v["data"]["sub"], "alice");
    let v = json(&introspect(&h, &app, "nope").await);
    assert_eq!(v, json!({"code": 0, "data": {"active": false}}));
}
