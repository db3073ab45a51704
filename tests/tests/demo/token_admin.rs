//! Revocation (RFC 7009) and introspection (RFC 7662).

use doorman_tests::*;
use serde_json::json;

async fn revocation(env: &TestEnv) {
    let (app, t) = env.tokens_for(ALICE, SCOPES).await;
    // Revoking the refresh token takes the grant's access tokens with it.
    let res = env.revoke(&app, t.refresh()).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    env.assert_revoked(&t.access_token).await;
    env.refresh(&app, t.refresh(), None)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // An access token alone.
    let browser = env.login(ALICE).await;
    let t = env.tokens_with(&browser, &app, "profile").await;
    let res = env.revoke(&app, &t.access_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    env.assert_revoked(&t.access_token).await;

    // Unknown tokens: 200.
    let res = env.revoke(&app, "no-such-token-0123456789").await;
    assert_eq!(res.status, StatusCode::OK, "{res}");

    // Revocation needs the client's credentials.
    let t = env.tokens_with(&browser, &app, "profile").await;
    let res = env
        .client_post(
            REVOKE,
            ClientAuth::Basic(&app.client_id, "wrong"),
            &[("token", t.refresh())],
        )
        .await;
    res.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    env.assert_active(&t.access_token).await;
}

async fn introspection(env: &TestEnv) {
    let (app, t) = env.tokens_for(ALICE, SCOPES).await;
    let res = env.introspect(&app, &t.access_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let v = res.json();
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(
        scope_set(v["scope"].as_str().unwrap_or_default()),
        scope_set(SCOPES),
        "{v}"
    );
    assert_eq!(v["client_id"], app.client_id.as_str(), "{v}");
    assert_eq!(v["token_type"], "Bearer", "{v}");
    let exp = v["exp"].as_i64().unwrap_or_else(|| panic!("exp: {v}"));
    let iat = v["iat"].as_i64().unwrap_or_else(|| panic!("iat: {v}"));
    assert!(exp > iat, "{v}");
    let sub = v["sub"]
        .as_str()
        .unwrap_or_else(|| panic!("sub is not a string: {v}"));
    let info = env.userinfo(&t.access_token).await.json();
    let id = match &info["id"] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    assert_eq!(sub, id, "sub is not the user id");

    // Wrong client secret.
    let res = env
        .client_post(
            INTROSPECT,
            ClientAuth::Basic(&app.client_id, "wrong"),
            &[("token", &t.access_token)],
        )
        .await;
    res.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // Unknown and revoked tokens: exactly {"active":false}.
    let res = env.introspect(&app, "no-such-token-0123456789").await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert_eq!(res.json(), json!({"active": false}));
    let res = env.revoke(&app, t.refresh()).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let res = env.introspect(&app, &t.access_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    assert_eq!(res.json(), json!({"active": false}));
}

adapters!(revocation, introspection);
