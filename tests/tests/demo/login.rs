//! The host's login and logout, and the login step of authorization.

use doorman_tests::*;

/// Not logged in: the authorize request sends the browser to the login page
/// with the request as `return_to`; logging in lands back on it.
async fn login_redirect(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.browser();
    let path = env.authorize_path(&app, "profile balance", "state-1", &[]);
    let res = env.get(&browser, &path).await;
    assert!(is_redirect(res.status), "expected a login redirect: {res}");
    let location = env.local(&res.location().unwrap());
    let (login_path, _) = location.split_once('?').unwrap_or((location.as_str(), ""));
    assert_eq!(login_path, "/login", "{res}");
    let return_to =
        param(&location, "return_to").unwrap_or_else(|| panic!("no return_to in {location}"));
    assert_eq!(return_to, path, "return_to is not the authorize request");

    let page = env.get(&browser, &location).await;
    assert_eq!(page.status, StatusCode::OK, "{page}");

    let res = env.post_login(&browser, ALICE, &return_to).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    let back = env.local(&res.location().unwrap());
    assert_eq!(
        back, return_to,
        "login did not return to the authorize request"
    );
    let res = env.get(&browser, &back).await;
    let form = ConsentForm::parse(&res);
    assert!(
        form.fields
            .iter()
            .any(|(k, v)| k == "client_id" && *v == app.client_id),
        "{res}"
    );
}

/// `return_to` must be a path on this server; anything a browser could read
/// as another host goes to `/`.
async fn login_open_redirect(env: &TestEnv) {
    let hostile = [
        "//evil.example",
        "//evil.example/cb",
        "/\\evil.example",
        "/\\/evil.example",
        "\\\\evil.example",
        "http://evil.example",
        "https://evil.example/",
        "HTTP://evil.example",
        "javascript:alert(1)",
        "evil.example",
        "",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "\t//evil.example",
        "/\u{0}/evil.example",
        "/x\r\nSet-Cookie: a=b",
    ];
    for return_to in hostile {
        let browser = env.browser();
        let res = env.post_login(&browser, ALICE, return_to).await;
        assert_eq!(
            res.status,
            StatusCode::SEE_OTHER,
            "return_to {return_to:?}: {res}"
        );
        assert_eq!(
            env.local(&res.location().unwrap()),
            "/",
            "return_to {return_to:?}: {res}"
        );
    }
    // A genuine path is kept.
    let res = env
        .post_login(&env.browser(), ALICE, "/account/authorizations?x=1")
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    assert_eq!(
        env.local(&res.location().unwrap()),
        "/account/authorizations?x=1",
        "{res}"
    );
}

async fn login_failure(env: &TestEnv) {
    let app = env.app().await;
    let path = env.authorize_path(&app, "profile", "s", &[]);
    for (user, password) in [
        ("alice", "wrong-password"),
        ("alice", ""),
        ("nobody", "alice-password"),
        ("bob", "alice-password"),
    ] {
        let browser = env.browser();
        let res = env.post_login(&browser, (user, password), &path).await;
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "{user}/{password}: {res}"
        );
        assert!(
            res.body.to_ascii_lowercase().contains("<form"),
            "the login form is not shown again: {res}"
        );
        // Still not logged in.
        let res = env.get(&browser, &path).await;
        assert!(is_redirect(res.status), "{res}");
        assert!(
            env.local(&res.location().unwrap()).starts_with("/login"),
            "{res}"
        );
    }
}

/// Logout ends the session on the server: the old cookie, replayed by hand,
/// no longer logs anyone in.
async fn logout_invalidates_session(env: &TestEnv) {
    let app = env.app().await;
    let path = env.authorize_path(&app, "profile", "s", &[]);
    let browser = env.browser();
    let res = env.post_login(&browser, ALICE, "/").await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    let cookie = res.set_cookies().join("; ");
    assert!(!cookie.is_empty(), "{res}");

    let replay = |env: &TestEnv| {
        env.api()
            .get(env.url(&path))
            .header("cookie", cookie.clone())
    };
    let res = env
        .send(replay(env), "GET authorize with the session cookie")
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "the cookie does not log in: {res}"
    );

    let res = env.post_form(&browser, "/logout", &[]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    assert_eq!(env.local(&res.location().unwrap()), "/", "{res}");

    let res = env
        .send(replay(env), "GET authorize with the old cookie")
        .await;
    assert!(
        is_redirect(res.status),
        "the old cookie still logs in: {res}"
    );
    assert!(
        env.local(&res.location().unwrap()).starts_with("/login"),
        "{res}"
    );
    let res = env.get(&browser, &path).await;
    assert!(
        is_redirect(res.status),
        "still logged in after logout: {res}"
    );
}

adapters!(
    login_redirect,
    login_open_redirect,
    login_failure,
    logout_invalidates_session
);
