//! App registration: the developer API (`/api/oauth_apps`) and RFC 7591.

use doorman_tests::*;
use serde_json::{Value, json};

async fn registration_needs_dev_token(env: &TestEnv) {
    let body = json!({"name": "x", "description": "", "redirect_uri": REDIRECT_URI});
    for path in [OAUTH_APPS, REGISTER] {
        let body = if path == REGISTER {
            json!({"client_name": "x", "redirect_uris": [REDIRECT_URI]})
        } else {
            body.clone()
        };
        let res = env
            .send(
                env.api().post(env.url(path)).json(&body),
                "register without a token",
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
        let res = env
            .send(
                env.api()
                    .post(env.url(path))
                    .bearer_auth("wrong-token")
                    .json(&body),
                "wrong token",
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
        let wrong = tamper(env.dev_token());
        let res = env
            .send(
                env.api()
                    .post(env.url(path))
                    .bearer_auth(&wrong)
                    .json(&body),
                "near-miss token",
            )
            .await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
    }
}

fn assert_failure(res: &Resp, what: &str) {
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{what}: {res}");
    let v = res.json();
    assert_eq!(v["success"], false, "{what}: {res}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message: {res}"
    );
}

async fn registration_invalid_input(env: &TestEnv) {
    // Not JSON at all.
    for (ct, body) in [
        ("application/json", "{not json"),
        ("application/json", ""),
        ("text/plain", "name=x"),
    ] {
        let req = env
            .api()
            .post(env.url(OAUTH_APPS))
            .bearer_auth(env.dev_token())
            .header("content-type", ct)
            .body(body);
        assert_failure(
            &env.send(req, "register").await,
            &format!("{ct} body {body:?}"),
        );
    }
    let r = REDIRECT_URI;
    let cases: Vec<(&str, Value)> = vec![
        ("a JSON array", json!([])),
        ("an empty object", json!({})),
        ("no redirect_uri", json!({"name": "x", "description": "d"})),
        ("no name", json!({"description": "d", "redirect_uri": r})),
        (
            "empty name",
            json!({"name": "", "description": "d", "redirect_uri": r}),
        ),
        (
            "empty redirect_uri",
            json!({"name": "x", "description": "d", "redirect_uri": ""}),
        ),
        (
            "numeric name",
            json!({"name": 123, "description": "d", "redirect_uri": r}),
        ),
        (
            "null name",
            json!({"name": null, "description": "d", "redirect_uri": r}),
        ),
        (
            "numeric redirect_uri",
            json!({"name": "x", "description": "d", "redirect_uri": 5}),
        ),
        (
            "array redirect_uri",
            json!({"name": "x", "description": "d", "redirect_uri": [r]}),
        ),
        (
            "numeric description",
            json!({"name": "x", "description": 7, "redirect_uri": r}),
        ),
        (
            "string auto_authorize",
            json!({"name": "x", "description": "d", "redirect_uri": r, "auto_authorize": "yes"}),
        ),
        (
            "numeric client_secret",
            json!({"name": "x", "description": "d", "redirect_uri": r, "client_secret": 1}),
        ),
        (
            "javascript: redirect_uri",
            json!({"name": "x", "description": "d", "redirect_uri": "javascript:alert(1)"}),
        ),
        (
            "relative redirect_uri",
            json!({"name": "x", "description": "d", "redirect_uri": "/cb"}),
        ),
        (
            "redirect_uri with a fragment",
            json!({"name": "x", "description": "d", "redirect_uri": "https://a.example/cb#f"}),
        ),
    ];
    for (what, body) in cases {
        assert_failure(&env.register_app_raw(&body).await, what);
    }
}

async fn registration_success_shape(env: &TestEnv) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = json!({"name": "Shape App", "description": "checks the answer", "redirect_uri": REDIRECT_URI});
    let res = env.register_app_raw(&body).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let v = res.json();
    assert_eq!(v["success"], true, "{v}");
    assert!(v["message"].is_string(), "{v}");
    let d = &v["data"];
    assert!(
        d["id"].is_i64() || d["id"].is_u64(),
        "id is not an integer: {v}"
    );
    assert_eq!(d["name"], "Shape App", "{v}");
    assert!(
        d["client_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert!(
        d["client_secret"].as_str().is_some_and(|s| s.len() >= 32),
        "{v}"
    );
    assert_eq!(d["redirect_uri"], REDIRECT_URI, "{v}");
    let created = d["created_time"]
        .as_i64()
        .unwrap_or_else(|| panic!("created_time is not a number: {v}"));
    assert!(
        (created - now).abs() < 300,
        "created_time {created} is not now ({now})"
    );

    let again = env.register_app_raw(&body).await.json();
    assert_ne!(again["data"]["id"], d["id"], "{again}");
    assert_ne!(again["data"]["client_id"], d["client_id"], "{again}");
    assert_ne!(
        again["data"]["client_secret"], d["client_secret"],
        "{again}"
    );

    // A chosen secret is kept and authenticates; auto_authorize is accepted.
    let secret = "a-chosen-secret-that-is-long-enough-0123456789";
    let body = json!({
        "name": "Chosen Secret App", "description": "", "redirect_uri": REDIRECT_URI,
        "client_secret": secret, "auto_authorize": false,
    });
    let res = env.register_app_raw(&body).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let d = res.json()["data"].clone();
    assert_eq!(d["client_secret"], secret, "{d}");
    let client_id = d["client_id"].as_str().unwrap();
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", "no-such-code"),
        ("redirect_uri", REDIRECT_URI),
    ];
    env.token_request(ClientAuth::Basic(client_id, secret), &grant)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

async fn rfc7591_register(env: &TestEnv) {
    let v = env
        .register_rfc7591(&json!({"client_name": "Dynamic App", "redirect_uris": [REDIRECT_URI]}))
        .await;
    assert_eq!(v["redirect_uris"], json!([REDIRECT_URI]), "{v}");
    let app = App {
        id: Value::Null,
        name: "Dynamic App".into(),
        client_id: v["client_id"]
            .as_str()
            .unwrap_or_else(|| panic!("client_id: {v}"))
            .into(),
        client_secret: v["client_secret"]
            .as_str()
            .unwrap_or_else(|| panic!("client_secret: {v}"))
            .into(),
        redirect_uri: REDIRECT_URI.into(),
    };
    let browser = env.login(ALICE).await;
    let t = env.tokens_with(&browser, &app, SCOPES).await;
    env.assert_active(&t.access_token).await;
}

adapters!(
    registration_needs_dev_token,
    registration_invalid_input,
    registration_success_shape,
    rfc7591_register
);
