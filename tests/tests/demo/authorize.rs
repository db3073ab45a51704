//! The authorization step: consent page, decisions, forged forms,
//! one-click login, and the checks that come before any redirect.

use doorman_tests::*;

fn assert_no_code(res: &Resp, what: &str) {
    if let Some(location) = res.location() {
        assert!(
            param(&location, "code").is_none(),
            "{what}: a code was issued: {res}"
        );
    }
}

/// The user-facing error page: 400, HTML, and never a redirect.
fn assert_error_page(res: &Resp, what: &str) {
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{what}: {res}");
    assert!(res.location().is_none(), "{what}: redirected: {res}");
    let ct = res.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/html"),
        "{what}: content-type {ct}: {res}"
    );
}

async fn consent_page(env: &TestEnv) {
    let app = env.register(AppSpec::new("Consent Test App")).await;
    let browser = env.login(ALICE).await;
    let res = env
        .get(&browser, &env.authorize_path(&app, SCOPES, "s", &[]))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let ct = res.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/html"), "content-type {ct}");
    assert_eq!(
        res.header("x-frame-options")
            .map(|v| v.to_ascii_uppercase())
            .as_deref(),
        Some("DENY"),
        "{res}"
    );
    assert!(
        res.header("content-security-policy")
            .is_some_and(|v| !v.trim().is_empty()),
        "no CSP: {res}"
    );
    assert_eq!(
        res.header("referrer-policy").as_deref(),
        Some("no-referrer"),
        "{res}"
    );
    assert!(
        res.body.contains("Consent Test App"),
        "app name not shown: {res}"
    );

    let all = forms(&res.body);
    assert_eq!(all.len(), 1, "exactly one form: {res}");
    let form = &all[0];
    assert!(
        form.tag
            .attr("method")
            .is_some_and(|m| m.eq_ignore_ascii_case("post")),
        "{res}"
    );
    assert_eq!(form.submits.len(), 2, "two submit buttons: {res}");
    let mut decisions: Vec<(&str, &str)> = form
        .submits
        .iter()
        .map(|t| (t.attr("name").unwrap_or(""), t.attr("value").unwrap_or("")))
        .collect();
    decisions.sort();
    assert_eq!(
        decisions,
        vec![("decision", "approve"), ("decision", "deny")],
        "{res}"
    );
    let consent = ConsentForm::parse(&res);
    let csrf = consent.csrf_fields();
    assert!(
        !csrf.is_empty() && csrf.iter().all(|(_, v)| !v.is_empty()),
        "no anti-CSRF field: {consent:?}"
    );
}

async fn consent_page_escapes_app_name(env: &TestEnv) {
    let hostile = "<script>alert(1)</script>";
    let app = env.register(AppSpec::new(hostile)).await;
    let browser = env.login(ALICE).await;
    let res = env
        .get(&browser, &env.authorize_path(&app, "profile", "s", &[]))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert!(!res.body.contains(hostile), "app name not escaped: {res}");
    assert!(
        !res.body.to_ascii_lowercase().contains("<script"),
        "a script element on the page: {res}"
    );
    assert!(
        res.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped app name not shown: {res}"
    );
}

async fn consent_approve(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let state = "approve-state/+ &x";
    let res = env
        .get(&browser, &env.authorize_path(&app, SCOPES, state, &[]))
        .await;
    let form = ConsentForm::parse(&res);
    let res = env.submit_consent(&browser, &form, "approve").await;
    let location = res
        .redirect_location()
        .unwrap_or_else(|| panic!("no redirect: {res}"));
    assert!(
        location.starts_with(&format!("{REDIRECT_URI}?")),
        "{location}"
    );
    assert!(
        param(&location, "code").is_some_and(|c| !c.is_empty()),
        "{location}"
    );
    assert_eq!(
        param(&location, "state").as_deref(),
        Some(state),
        "{location}"
    );
    assert_eq!(
        param(&location, "iss").as_deref(),
        Some(env.issuer()),
        "{location}"
    );
    assert!(param(&location, "error").is_none(), "{location}");
    let tokens = env
        .exchange(&app, &param(&location, "code").unwrap(), None)
        .await;
    assert_eq!(scope_set(&tokens.scope), scope_set(SCOPES));
}

async fn consent_deny(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let res = env
        .get(
            &browser,
            &env.authorize_path(&app, SCOPES, "deny-state", &[]),
        )
        .await;
    let form = ConsentForm::parse(&res);
    let res = env.submit_consent(&browser, &form, "deny").await;
    let location = res
        .redirect_location()
        .unwrap_or_else(|| panic!("no redirect: {res}"));
    assert!(
        location.starts_with(&format!("{REDIRECT_URI}?")),
        "{location}"
    );
    assert_eq!(
        param(&location, "error").as_deref(),
        Some("access_denied"),
        "{location}"
    );
    assert_eq!(
        param(&location, "state").as_deref(),
        Some("deny-state"),
        "{location}"
    );
    assert_eq!(
        param(&location, "iss").as_deref(),
        Some(env.issuer()),
        "{location}"
    );
    assert!(param(&location, "code").is_none(), "{location}");
}

/// The consent form only counts when its anti-CSRF token is the one issued
/// to this user for this very request.
async fn consent_forged_ticket(env: &TestEnv) {
    let app = env.app().await;
    let alice = env.login(ALICE).await;
    let bob = env.login(BOB).await;
    let path = env.authorize_path(&app, "profile", "forged", &[]);
    let alice_form = ConsentForm::parse(&env.get(&alice, &path).await);
    let bob_form = ConsentForm::parse(&env.get(&bob, &path).await);
    let csrf = alice_form.csrf_fields();
    assert!(!csrf.is_empty(), "no anti-CSRF field: {alice_form:?}");

    for (name, value) in &csrf {
        let forged = alice_form.with(name, &tamper(value));
        let res = env.submit_consent(&alice, &forged, "approve").await;
        assert_no_code(&res, &format!("tampered {name}"));
        let forged = alice_form.with(name, "");
        let res = env.submit_consent(&alice, &forged, "approve").await;
        assert_no_code(&res, &format!("empty {name}"));
    }
    let mut missing = alice_form.clone();
    for (name, _) in &csrf {
        missing = missing.without(name);
    }
    assert_no_code(
        &env.submit_consent(&alice, &missing, "approve").await,
        "no anti-CSRF field",
    );
    // Bob's form (his ticket) submitted from Alice's session.
    assert_no_code(
        &env.submit_consent(&alice, &bob_form, "approve").await,
        "another user's ticket",
    );
    // A valid ticket does not cover a request changed after it was issued.
    let wider = alice_form.with("scope", SCOPES);
    assert_no_code(
        &env.submit_consent(&alice, &wider, "approve").await,
        "scope widened under the ticket",
    );
    // Without any session at all.
    assert_no_code(
        &env.submit_consent(&env.browser(), &alice_form, "approve")
            .await,
        "no session",
    );

    // The genuine form still works.
    let res = env.submit_consent(&alice, &alice_form, "approve").await;
    let location = res
        .redirect_location()
        .unwrap_or_else(|| panic!("genuine form refused: {res}"));
    assert!(param(&location, "code").is_some(), "{location}");
}

/// An app registered with `auto_authorize: true` skips the consent page
/// when the request asks for it, and only then.
async fn auto_authorize_trusted(env: &TestEnv) {
    let app = env.register(AppSpec::new("Trusted App").trusted()).await;
    let browser = env.login(ALICE).await;
    let res = env
        .get(
            &browser,
            &env.authorize_path(&app, SCOPES, "auto", &[("auto_authorize", "true")]),
        )
        .await;
    let location = res
        .redirect_location()
        .unwrap_or_else(|| panic!("no straight redirect: {res}"));
    assert!(
        location.starts_with(&format!("{REDIRECT_URI}?")),
        "{location}"
    );
    assert!(param(&location, "code").is_some(), "{location}");
    assert_eq!(
        param(&location, "state").as_deref(),
        Some("auto"),
        "{location}"
    );
    assert_eq!(
        param(&location, "iss").as_deref(),
        Some(env.issuer()),
        "{location}"
    );

    // Without auto_authorize=true a trusted app still gets the consent page.
    let app2 = env.register(AppSpec::new("Trusted App 2").trusted()).await;
    ConsentForm::parse(
        &env.get(&browser, &env.authorize_path(&app2, SCOPES, "s", &[]))
            .await,
    );
}

/// One-click login never bypasses a user's first consent to an untrusted app.
async fn auto_authorize_untrusted_first_time(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let res = env
        .get(
            &browser,
            &env.authorize_path(&app, SCOPES, "s", &[("auto_authorize", "true")]),
        )
        .await;
    ConsentForm::parse(&res);
}

/// After the user approved every requested scope, `auto_authorize=true`
/// goes straight back to the app, for that user only.
async fn auto_authorize_after_approval(env: &TestEnv) {
    let app = env.app().await;
    let alice = env.login(ALICE).await;
    env.authorize_and_get_code(&alice, &app, SCOPES, &[]).await;
    for scope in [SCOPES, "profile", "balance"] {
        let res = env
            .get(
                &alice,
                &env.authorize_path(&app, scope, "again", &[("auto_authorize", "true")]),
            )
            .await;
        let location = res
            .redirect_location()
            .unwrap_or_else(|| panic!("{scope}: no straight redirect: {res}"));
        assert!(param(&location, "code").is_some(), "{location}");
        assert_eq!(
            param(&location, "state").as_deref(),
            Some("again"),
            "{location}"
        );
        assert_eq!(
            param(&location, "iss").as_deref(),
            Some(env.issuer()),
            "{location}"
        );
    }
    // Bob never approved this app.
    let bob = env.login(BOB).await;
    ConsentForm::parse(
        &env.get(
            &bob,
            &env.authorize_path(&app, "profile", "s", &[("auto_authorize", "true")]),
        )
        .await,
    );
}

/// Scopes approved in separate consents add up.
async fn consents_add_up(env: &TestEnv) {
    let app = env.app().await;
    let alice = env.login(ALICE).await;
    let auto = [("auto_authorize", "true")];
    env.authorize_and_get_code(&alice, &app, "profile", &[])
        .await;
    // `balance` was never approved: consent page.
    ConsentForm::parse(
        &env.get(&alice, &env.authorize_path(&app, SCOPES, "s", &auto))
            .await,
    );
    let res = env
        .get(&alice, &env.authorize_path(&app, "balance", "s", &[]))
        .await;
    let res = env
        .submit_consent(&alice, &ConsentForm::parse(&res), "approve")
        .await;
    assert!(
        res.redirect_location()
            .is_some_and(|l| param(&l, "code").is_some()),
        "{res}"
    );
    let res = env
        .get(&alice, &env.authorize_path(&app, SCOPES, "s", &auto))
        .await;
    let location = res
        .redirect_location()
        .unwrap_or_else(|| panic!("consents did not add up: {res}"));
    assert!(param(&location, "code").is_some(), "{location}");
}

/// An unknown client gets an error page, never a redirect, logged in or not.
async fn unknown_client_page(env: &TestEnv) {
    let ghost = App {
        id: serde_json::Value::Null,
        name: "ghost".into(),
        client_id: "client_00000000000000000000000000000000".into(),
        client_secret: "x".into(),
        redirect_uri: REDIRECT_URI.into(),
    };
    let alice = env.login(ALICE).await;
    for (who, browser) in [("anonymous", env.browser()), ("alice", alice)] {
        let res = env
            .get(&browser, &env.authorize_path(&ghost, "profile", "s", &[]))
            .await;
        assert_error_page(&res, &format!("unknown client_id, {who}"));
        let res = env
            .get(
                &browser,
                &path_with_query(AUTHORIZE, &[("response_type", "code"), ("state", "s")]),
            )
            .await;
        assert_error_page(&res, &format!("no client_id, {who}"));
    }
}

/// A redirect URI that is not registered exactly gets an error page, never
/// a redirect, logged in or not (the check comes before the login redirect).
async fn unregistered_redirect_uri_page(env: &TestEnv) {
    let app = env.app().await;
    let alice = env.login(ALICE).await;
    for uri in [
        "https://evil.example/cb",
        "https://app.example/cb2",
        "https://app.example/cb/",
        "https://app.example/cb?x=1",
        "https://app.example/CB",
        "http://app.example/cb",
        "https://app.example:8443/cb",
        "https://app.example.evil.example/cb",
    ] {
        let mut forged = app.clone();
        forged.redirect_uri = uri.into();
        for (who, browser) in [("anonymous", env.browser()), ("alice", alice.clone())] {
            let res = env
                .get(&browser, &env.authorize_path(&forged, "profile", "s", &[]))
                .await;
            assert_error_page(&res, &format!("redirect_uri {uri}, {who}"));
        }
    }
}

/// RFC 8252 §7.3: a loopback IP redirect may differ in port only.
async fn loopback_redirect_port(env: &TestEnv) {
    let app = env
        .register(AppSpec::new("Native App").redirect_uri("http://127.0.0.1/cb"))
        .await;
    let mut presented = app.clone();
    presented.redirect_uri = "http://127.0.0.1:4567/cb".into();
    // Accepted before login: the login redirect, not an error page.
    let res = env
        .get(
            &env.browser(),
            &env.authorize_path(&presented, "profile", "s", &[]),
        )
        .await;
    assert!(is_redirect(res.status), "{res}");
    assert!(
        env.local(&res.location().unwrap()).starts_with("/login"),
        "{res}"
    );
    // And after: the code goes to the presented port, and exchanges with it.
    let alice = env.login(ALICE).await;
    let code = env
        .authorize_and_get_code(&alice, &presented, "profile", &[])
        .await;
    let tokens = env.exchange(&presented, &code, None).await;
    env.assert_active(&tokens.access_token).await;
    // Another path is still another URI.
    let mut other = app.clone();
    other.redirect_uri = "http://127.0.0.1:4567/other".into();
    assert_error_page(
        &env.get(&alice, &env.authorize_path(&other, "profile", "s", &[]))
            .await,
        "other path",
    );
}

/// `localhost` is not a loopback IP for the port rule (RFC 8252 §8.3).
async fn localhost_redirect_port_rejected(env: &TestEnv) {
    let app = env
        .register(AppSpec::new("Localhost App").redirect_uri("http://localhost/cb"))
        .await;
    let alice = env.login(ALICE).await;
    let mut presented = app.clone();
    presented.redirect_uri = "http://localhost:4567/cb".into();
    for (who, browser) in [("anonymous", env.browser()), ("alice", alice.clone())] {
        let res = env
            .get(
                &browser,
                &env.authorize_path(&presented, "profile", "s", &[]),
            )
            .await;
        assert_error_page(&res, &format!("localhost with another port, {who}"));
    }
    // The registered URI itself is fine.
    ConsentForm::parse(
        &env.get(&alice, &env.authorize_path(&app, "profile", "s", &[]))
            .await,
    );
}

adapters!(
    consent_page,
    consent_page_escapes_app_name,
    consent_approve,
    consent_deny,
    consent_forged_ticket,
    auto_authorize_trusted,
    auto_authorize_untrusted_first_time,
    auto_authorize_after_approval,
    consents_add_up,
    unknown_client_page,
    unregistered_redirect_uri_page,
    loopback_redirect_port,
    localhost_redirect_port_rejected,
);
