//! Bearer-protected resources: userinfo scope gating, top-up, bearer errors.

use doorman_tests::*;

const ALWAYS: [&str; 3] = ["id", "created_time", "status"];
const PROFILE: [&str; 2] = ["username", "email"];
const BALANCE: [&str; 3] = ["quota", "used_quota", "balance_formatted"];

async fn userinfo_of(env: &TestEnv, token: &str) -> serde_json::Value {
    let res = env.userinfo(token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert_no_store(&res);
    let v = res.json();
    for f in ALWAYS {
        assert!(v.get(f).is_some_and(|x| !x.is_null()), "{f} missing: {v}");
    }
    v
}

/// Fields a token's scopes do not cover are omitted, not null.
fn assert_absent(v: &serde_json::Value, fields: &[&str]) {
    for f in fields {
        assert!(v.get(*f).is_none(), "{f} present without its scope: {v}");
    }
}

async fn userinfo_profile_only(env: &TestEnv) {
    let (_, t) = env.tokens_for(ALICE, "profile").await;
    let v = userinfo_of(env, &t.access_token).await;
    assert_eq!(v["username"], "alice", "{v}");
    assert_eq!(v["email"], "alice@example.com", "{v}");
    assert_absent(&v, &BALANCE);
}

async fn userinfo_balance_only(env: &TestEnv) {
    let (_, t) = env.tokens_for(ALICE, "balance").await;
    let v = userinfo_of(env, &t.access_token).await;
    assert_eq!(v["quota"], 1_000_000, "{v}");
    assert_eq!(v["used_quota"], 250_000, "{v}");
    assert_eq!(v["balance_formatted"], "750.00", "{v}");
    assert_absent(&v, &PROFILE);
}

async fn userinfo_both(env: &TestEnv) {
    let (app, t) = env.tokens_for(ALICE, SCOPES).await;
    let alice = userinfo_of(env, &t.access_token).await;
    assert_eq!(alice["username"], "alice", "{alice}");
    assert_eq!(alice["email"], "alice@example.com", "{alice}");
    assert_eq!(alice["quota"], 1_000_000, "{alice}");
    assert_eq!(alice["used_quota"], 250_000, "{alice}");
    assert_eq!(alice["balance_formatted"], "750.00", "{alice}");

    let bob_browser = env.login(BOB).await;
    let t = env.tokens_with(&bob_browser, &app, SCOPES).await;
    let bob = userinfo_of(env, &t.access_token).await;
    assert_eq!(bob["username"], "bob", "{bob}");
    assert_eq!(bob["email"], "bob@example.com", "{bob}");
    assert_eq!(bob["quota"], 500_000, "{bob}");
    assert_eq!(bob["used_quota"], 0, "{bob}");
    assert_eq!(bob["balance_formatted"], "500.00", "{bob}");
    assert_ne!(alice["id"], bob["id"]);
}

async fn topup(env: &TestEnv) {
    let (app, t) = env.tokens_for(ALICE, SCOPES).await;
    let res = env.bearer_get(TOPUP, &t.access_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert!(
        res.json()["topup_url"]
            .as_str()
            .is_some_and(|u| !u.is_empty()),
        "{res}"
    );

    let browser = env.login(ALICE).await;
    let t = env.tokens_with(&browser, &app, "profile").await;
    let res = env.bearer_get(TOPUP, &t.access_token).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{res}");
    let challenge = res.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.to_ascii_lowercase().starts_with("bearer"),
        "WWW-Authenticate {challenge:?}"
    );
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "WWW-Authenticate {challenge:?}"
    );
}

async fn bearer_errors(env: &TestEnv) {
    for path in [USERINFO, TOPUP] {
        let res = env.get(&env.api(), path).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
        let challenge = res.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.to_ascii_lowercase().starts_with("bearer"),
            "{path}: WWW-Authenticate {challenge:?}"
        );

        let res = env.bearer_get(path, "garbage-token-0123456789").await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
        let challenge = res.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.to_ascii_lowercase().starts_with("bearer"),
            "{path}: WWW-Authenticate {challenge:?}"
        );
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{path}: WWW-Authenticate {challenge:?}"
        );
    }
}

adapters!(
    userinfo_profile_only,
    userinfo_balance_only,
    userinfo_both,
    topup,
    bearer_errors
);
