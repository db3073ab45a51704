//! The authorization endpoint and the consent form (RFC 6749 §4.1.1,
//! §3.1.2, §3.3; RFC 7636; RFC 9207; RFC 9700 §2.1, §4.1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use doorman::SecretChoice;

fn q(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

fn base(app: &App) -> Vec<(&str, &str)> {
    vec![
        ("response_type", "code"),
        ("client_id", app.id.as_str()),
        ("redirect_uri", REDIRECT),
        ("scope", "profile"),
        ("state", "st4te"),
    ]
}

#[tokio::test]
async fn unknown_client_or_unregistered_redirect_is_a_page_never_a_redirect_even_before_login() {
    let h = harness();
    let app = h.app(false).await;
    let cases = [
        q(&[
            ("response_type", "code"),
            ("client_id", "nope"),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
        ]),
        q(&[
            ("response_type", "code"),
            ("client_id", &app.id),
            ("redirect_uri", "https://evil.example/cb"),
            ("state", "s"),
        ]),
        q(&[
            ("response_type", "code"),
            ("client_id", &app.id),
            ("redirect_uri", "https://app.example/cb/../x"),
            ("state", "s"),
        ]),
        q(&[
            ("response_type", "token"),
            ("client_id", &app.id),
            ("redirect_uri", "https://evil.example/"),
            ("state", "s"),
        ]),
        q(&[
            ("client_id", &app.id),
            ("client_id", &app.id),
            ("redirect_uri", REDIRECT),
        ]),
        q(&[("response_type", "code"), ("redirect_uri", REDIRECT)]),
    ];
    for query in cases {
        for user in [None, Some("alice")] {
            let res = h.authorize(&query, user).await;
            assert_eq!(res.status(), 400, "{query}");
            assert!(
                res.headers().get("location").is_none(),
                "{query} must not redirect"
            );
            assert!(
                res.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            assert_eq!(res.headers()["x-frame-options"], "DENY");
            assert!(body_text(&res).contains("invalid_request"));
        }
    }
}

#[tokio::test]
async fn not_logged_in_redirects_to_login_with_the_request_to_come_back_to() {
    let h = harness();
    let app = h.app(false).await;
    let query = q(&base(&app));
    let res = h.authorize(&query, None).await;
    let loc = location(&res);
    assert!(loc.starts_with("/login?return_to="));
    let back = query_param(&loc, "return_to").unwrap();
    assert_eq!(back, format!("/api/oauth2/authorize?{query}"));
}

#[tokio::test]
async fn errors_after_the_client_is_trusted_redirect_with_state_and_iss() {
    let h = harness();
    let app = h.app(false).await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("response_type", "")], "invalid_request"),
        (vec![("scope", "admin")], "invalid_scope"),
        (vec![("scope", "profile  balance")], "invalid_scope"),
        (vec![("scope", "nonexistent")], "invalid_scope"),
        (
            vec![("code_challenge", "x"), ("code_challenge_method", "plain")],
            "invalid_request",
        ),
        (
            vec![(
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            )],
            "invalid_request",
        ),
        (vec![("code_challenge_method", "S256")], "invalid_request"),
        (
            vec![
                ("code_challenge", "tooshort"),
                ("code_challenge_method", "S256"),
            ],
            "invalid_request",
        ),
    ];
    for (overrides, expected) in cases {
        let mut p = base(&app);
        for (k, v) in &overrides {
            p.retain(|(pk, _)| pk != k);
            p.push((k, v));
        }
        let res = h.authorize(&q(&p), Some("alice")).await;
        let loc = location(&res);
        assert!(loc.starts_with(REDIRECT), "{overrides:?}");
        assert_eq!(
            query_param(&loc, "error").as_deref(),
            Some(expected),
            "{overrides:?}"
        );
        assert_eq!(query_param(&loc, "state").as_deref(), Some("st4te"));
        assert_eq!(query_param(&loc, "iss").as_deref(), Some(ISSUER));
        assert!(query_param(&loc, "error_description").is_some());
        assert!(query_param(&loc, "code").is_none());
    }
    // A repeated parameter other than client_id/redirect_uri is an error redirect.
    let mut p = base(&app);
    p.push(("scope", "balance"));
    let loc = location(&h.authorize(&q(&p), Some("alice")).await);
    assert_eq!(
        query_param(&loc, "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn state_is_required_by_default_and_optional_by_policy() {
    let h = harness();
    let app = h.app(false).await;
    let mut p = base(&app);
    p.retain(|(k, _)| *k != "state");
    let loc = location(&h.authorize(&q(&p), Some("alice")).await);
    assert_eq!(
        query_param(&loc, "error").as_deref(),
        Some("invalid_request")
    );
    assert!(query_param(&loc, "state").is_none());

    let h = harness_with(config().require_state(false));
    let app = h.app(false).await;
    let mut p = base(&app);
    p.retain(|(k, _)| *k != "state");
    let res = h.authorize(&q(&p), Some("alice")).await;
    assert_eq!(res.status(), 200, "consent page without state");
}

#[tokio::test]
async fn public_clients_must_use_pkce_confidential_may_or_must_by_policy() {
    let h = harness();
    let public = h.app_with(|r| r.secret = SecretChoice::Public).await;
    let loc = location(&h.authorize(&q(&base(&public)), Some("alice")).await);
    assert_eq!(
        query_param(&loc, "error").as_deref(),
        Some("invalid_request")
    );
    let (_, challenge) = pkce_pair();
    let mut p = base(&public);
    p.push(("code_challenge", &challenge));
    p.push(("code_challenge_method", "S256"));
    assert_eq!(h.authorize(&q(&p), Some("alice")).await.status(), 200);

    let confidential = h.app(false).await;
    assert_eq!(
        h.authorize(&q(&base(&confidential)), Some("alice"))
            .await
            .status(),
        200
    );

    let h = harness_with(config().pkce(doorman::PkcePolicy::AllClients));
    let confidential = h.app(false).await;
    let loc = location(&h.authorize(&q(&base(&confidential)), Some("alice")).await);
    assert_eq!(
        query_param(&loc, "error").as_deref(),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn consent_page_then_approve_issues_code_with_state_and_iss() {
    let h = harness();
    let app = h
        .app_with(|r| r.name = "<script>alert(1)</script>".into())
        .await;
    let res = h.authorize(&q(&base(&app)), Some("alice")).await;
    assert_eq!(res.status(), 200);
    let html = body_text(&res);
    assert!(
        !html.contains("<script>alert(1)"),
        "client name must be escaped"
    );
    assert!(html.contains("&lt;script&gt;"));
    assert!(
        html.contains("See your username and email"),
        "scope described in words"
    );
    assert_eq!(html.matches("<form method=\"post\"").count(), 1);
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let mut fields = hidden_fields(&html);
    assert!(fields.iter().any(|(k, _)| k == "ticket"));
    fields.push(("decision".into(), "approve".into()));
    let loc = location(&h.post_consent(&fields, "alice").await);
    assert!(loc.starts_with(&format!("{REDIRECT}?code=")));
    assert_eq!(
        query_param(&loc, "code").unwrap().len(),
        51,
        "located 256-bit code"
    );
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st4te"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(ISSUER));
}

#[tokio::test]
async fn deny_redirects_access_denied() {
    let h = harness();
    let app = h.app(false).await;
    let res = h.authorize(&q(&base(&app)), Some("alice")).await;
    let mut fields = hidden_fields(&body_text(&res));
    fields.push(("decision".into(), "deny".into()));
    let loc = location(&h.post_consent(&fields, "alice").await);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&loc, "state").as_deref(), Some("st4te"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(ISSUER));
    assert!(query_param(&loc, "code").is_none());
}

#[tokio::test]
async fn consent_ticket_is_bound_to_user_request_and_time() {
    let h = harness();
    let app = h.app(false).await;
    let res = h.authorize(&q(&base(&app)), Some("alice")).await;
    let fields = hidden_fields(&body_text(&res));
    let with = |f: &[(String, String)], k: &str, v: &str| {
        let mut f = f.to_vec();
        f.retain(|(fk, _)| fk != k);
        f.push((k.into(), v.into()));
        f.push(("decision".into(), "approve".into()));
        f
    };
    // Another user submitting alice's form (CSRF or a shared link).
    let res = h
        .post_consent(&with(&fields, "decision", "approve")[..fields.len()], "bob")
        .await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    // Widened scope with the old ticket.
    let res = h
        .post_consent(&with(&fields, "scope", "profile balance"), "alice")
        .await;
    assert_eq!(res.status(), 400);
    // Changed state.
    assert_eq!(
        h.post_consent(&with(&fields, "state", "other"), "alice")
            .await
            .status(),
        400
    );
    // Forged ticket.
    assert_eq!(
        h.post_consent(&with(&fields, "ticket", "1.AAAA"), "alice")
            .await
            .status(),
        400
    );
    // No ticket at all.
    let mut no_ticket: Vec<_> = fields
        .iter()
        .filter(|(k, _)| k != "ticket")
        .cloned()
        .collect();
    no_ticket.push(("decision".into(), "approve".into()));
    assert_eq!(h.post_consent(&no_ticket, "alice").await.status(), 400);
    // Expired.
    h.clock.advance(chrono::TimeDelta::minutes(11));
    let mut ok = fields.clone();
    ok.push(("decision".into(), "approve".into()));
    assert_eq!(h.post_consent(&ok, "alice").await.status(), 400);
    // Nothing above was approved: no consent was recorded.
    assert!(
        h.server
            .authorized_apps(&doorman::UserId::new("alice"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        h.server
            .authorized_apps(&doorman::UserId::new("bob"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn consent_form_without_session_sends_to_login_and_back_to_the_request() {
    let h = harness();
    let app = h.app(false).await;
    let res = h.authorize(&q(&base(&app)), Some("alice")).await;
    let mut fields = hidden_fields(&body_text(&res));
    fields.push(("decision".into(), "approve".into()));
    let req = http::Request::post("/api/oauth2/authorize")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(bytes::Bytes::from(
            serde_urlencoded::to_string(&fields).unwrap(),
        ))
        .unwrap();
    let loc = location(&h.server.authorize(req).await);
    let back = query_param(&loc, "return_to").unwrap();
    assert!(back.starts_with("/api/oauth2/authorize?"));
    assert!(!back.contains("ticket"));
    assert_eq!(
        query_param(&back, "client_id").as_deref(),
        Some(app.id.as_str())
    );
}

#[tokio::test]
async fn auto_authorize_skips_consent_only_for_trusted_or_already_granted() {
    let h = harness();
    let trusted = h.app(true).await;
    let untrusted = h.app(false).await;
    let mut p = base(&trusted);
    p.push(("auto_authorize", "true"));
    let loc = location(&h.authorize(&q(&p), Some("alice")).await);
    assert!(
        query_param(&loc, "code").is_some(),
        "trusted app: one-click login"
    );

    // Untrusted, first time: consent page, never a silent first grant (RFC 6749 §10.12).
    let mut p = base(&untrusted);
    p.push(("auto_authorize", "true"));
    assert_eq!(h.authorize(&q(&p), Some("alice")).await.status(), 200);

    // The user approves profile once...
    h.code(&untrusted, "profile", None).await;
    // ...then auto_authorize for profile skips the page,
    let loc = location(&h.authorize(&q(&p), Some("alice")).await);
    assert!(query_param(&loc, "code").is_some());
    // but not for more than was granted,
    let mut wider = base(&untrusted);
    wider.retain(|(k, _)| *k != "scope");
    wider.push(("scope", "profile balance"));
    wider.push(("auto_authorize", "true"));
    assert_eq!(h.authorize(&q(&wider), Some("alice")).await.status(), 200);
    // and not for another user,
    assert_eq!(h.authorize(&q(&p), Some("bob")).await.status(), 200);
    // and not without auto_authorize.
    assert_eq!(
        h.authorize(&q(&base(&untrusted)), Some("alice"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn granted_scopes_add_up_across_consents() {
    let h = harness();
    let app = h.app(false).await;
    h.code(&app, "profile", None).await;
    h.code(&app, "balance", None).await;
    let apps = h
        .server
        .authorized_apps(&doorman::UserId::new("alice"))
        .await
        .unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].consent.scope.to_string(), "balance profile");
    let mut p = base(&app);
    p.retain(|(k, _)| *k != "scope");
    p.push(("scope", "balance profile"));
    p.push(("auto_authorize", "true"));
    assert!(query_param(&location(&h.authorize(&q(&p), Some("alice")).await), "code").is_some());
}

#[tokio::test]
async fn loopback_redirect_may_change_port_only() {
    // `localhost` over plain http needs the demo's relaxed policy to register at all.
    let h = harness_with(config().allow_http_redirects(true));
    let app = h
        .app_with(|r| {
            r.redirect_uris = vec![
                "http://127.0.0.1/cb".into(),
                "http://localhost:3000/cb".into(),
            ]
        })
        .await;
    let mk = |uri: &str| {
        q(&[
            ("response_type", "code"),
            ("client_id", &app.id),
            ("redirect_uri", uri),
            ("scope", "profile"),
            ("state", "s"),
        ])
    };
    assert_eq!(
        h.authorize(&mk("http://127.0.0.1:49152/cb"), Some("alice"))
            .await
            .status(),
        200
    );
    assert_eq!(
        h.authorize(&mk("http://localhost:3001/cb"), Some("alice"))
            .await
            .status(),
        400
    );
    assert_eq!(
        h.authorize(&mk("http://127.0.0.1:49152/cb2"), Some("alice"))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn missing_redirect_uri_uses_the_only_registered_one() {
    let h = harness();
    let app = h.app(false).await;
    let p: Vec<_> = base(&app)
        .into_iter()
        .filter(|(k, _)| *k != "redirect_uri")
        .collect();
    assert_eq!(h.authorize(&q(&p), Some("alice")).await.status(), 200);
    let two = h
        .app_with(|r| r.redirect_uris.push("https://app.example/other".into()))
        .await;
    let p: Vec<_> = base(&two)
        .into_iter()
        .filter(|(k, _)| *k != "redirect_uri")
        .collect();
    assert_eq!(h.authorize(&q(&p), Some("alice")).await.status(), 400);
}

#[tokio::test]
async fn default_scope_applies_when_configured() {
    let h = harness_with(config().default_scope(Some(doorman::Scopes::parse("profile").unwrap())));
    let app = h.app(true).await;
    let p: Vec<_> = base(&app)
        .into_iter()
        .filter(|(k, _)| *k != "scope")
        .chain([("auto_authorize", "true")])
        .collect();
    let code = query_param(&location(&h.authorize(&q(&p), Some("alice")).await), "code").unwrap();
    let res = h.exchange(&app, &code, None).await;
    assert_eq!(json(&res)["scope"], "profile");
    // Without a default, a missing scope is invalid_scope.
    let h = harness();
    let app = h.app(true).await;
    let p: Vec<_> = base(&app)
        .into_iter()
        .filter(|(k, _)| *k != "scope")
        .collect();
    let loc = location(&h.authorize(&q(&p), Some("alice")).await);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_scope"));
}

#[tokio::test]
async fn session_failure_is_a_500_page_without_details() {
    let h = harness();
    let app = h.app(false).await;
    let req = http::Request::get(format!("/api/oauth2/authorize?{}", q(&base(&app))))
        .header("x-session-broken", "1")
        .body(bytes::Bytes::new())
        .unwrap();
    let res = h.server.authorize(req).await;
    assert_eq!(res.status(), 500);
    assert!(!body_text(&res).contains("session store down"));
}
