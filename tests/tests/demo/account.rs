//! The user's own page of authorized apps, and revoking an app there.

use doorman_tests::*;

/// The revoke form for `app` on the account page.
async fn revoke_form(
    env: &TestEnv,
    browser: &reqwest::Client,
    app: &App,
) -> (String, Vec<(String, String)>) {
    let res = env.get(browser, ACCOUNT_AUTHORIZATIONS).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert!(
        res.header("content-type")
            .unwrap_or_default()
            .starts_with("text/html"),
        "{res}"
    );
    assert!(res.body.contains(&app.name), "the app is not listed: {res}");
    let expected = format!("{ACCOUNT_AUTHORIZATIONS}/{}/revoke", app.client_id);
    let form = forms(&res.body)
        .into_iter()
        .find(|f| {
            f.tag
                .attr("action")
                .is_some_and(|a| env.local(a) == expected)
        })
        .unwrap_or_else(|| panic!("no form posting to {expected}: {res}"));
    assert!(
        form.tag
            .attr("method")
            .is_some_and(|m| m.eq_ignore_ascii_case("post")),
        "{res}"
    );
    assert!(
        !form.hidden.is_empty(),
        "the revoke form has no anti-CSRF token: {res}"
    );
    (expected, form.hidden)
}

fn pairs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

async fn account_revoke(env: &TestEnv) {
    let app = env.register(AppSpec::new("Account Page App")).await;
    let alice = env.login(ALICE).await;
    let t1 = env.tokens_with(&alice, &app, SCOPES).await;
    let t2 = env.tokens_with(&alice, &app, "profile").await;
    let (action, fields) = revoke_form(env, &alice, &app).await;
    let res = env.post_form(&alice, &action, &pairs(&fields)).await;
    assert!(
        res.status.is_success() || is_redirect(res.status),
        "revoke refused: {res}"
    );
    // Every grant of Alice to this app is gone.
    for t in [&t1, &t2] {
        env.assert_revoked(&t.access_token).await;
        env.refresh(&app, t.refresh(), None)
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
}

async fn account_revoke_needs_csrf_token(env: &TestEnv) {
    let app = env.register(AppSpec::new("Account CSRF App")).await;
    let alice = env.login(ALICE).await;
    let t = env.tokens_with(&alice, &app, SCOPES).await;
    let (action, fields) = revoke_form(env, &alice, &app).await;

    let res = env.post_form(&alice, &action, &[]).await;
    assert!(
        res.status.is_client_error(),
        "revoke without anti-CSRF token: {res}"
    );
    env.assert_active(&t.access_token).await;

    let bad: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.clone(), tamper(v))).collect();
    let res = env.post_form(&alice, &action, &pairs(&bad)).await;
    assert!(
        res.status.is_client_error(),
        "revoke with a bad anti-CSRF token: {res}"
    );
    env.assert_active(&t.access_token).await;

    // Alice's form, posted from Bob's session or none, does not touch Alice's grant.
    let bob = env.login(BOB).await;
    env.post_form(&bob, &action, &pairs(&fields)).await;
    env.post_form(&env.browser(), &action, &pairs(&fields))
        .await;
    env.assert_active(&t.access_token).await;

    let res = env.post_form(&alice, &action, &pairs(&fields)).await;
    assert!(
        res.status.is_success() || is_redirect(res.status),
        "revoke refused: {res}"
    );
    env.assert_revoked(&t.access_token).await;
}

adapters!(account_revoke, account_revoke_needs_csrf_token);
