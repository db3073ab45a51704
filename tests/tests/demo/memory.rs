//! The demo on `DATABASE_URL=memory:` (what the load benchmark's memory
//! store runs): the same provider, with OAuth state in `doorman::MemoryStore`
//! and the host's users and sessions in process memory.

use doorman_tests::*;

/// Login, consent, code + PKCE exchange, userinfo by scope, refresh
/// rotation and replay, logout. (`env` is the SQLite instance every
/// scenario gets; this one starts its own.)
async fn memory_full_flow(env: &TestEnv) {
    let mem = TestEnv::start_with(
        same_adapter(env.adapter()),
        Database::External("memory:".into()),
    )
    .await;
    let (app, t) = mem.tokens_for(ALICE, "profile balance").await;
    let info = mem.userinfo(&t.access_token).await;
    assert_eq!(info.status, StatusCode::OK, "{info}");
    let v = info.json();
    assert_eq!(v["username"], "alice", "{v}");
    assert_eq!(v["balance_formatted"], "750.00", "{v}");
    let (_, narrow) = mem.tokens_for(BOB, "profile").await;
    let v = mem.userinfo(&narrow.access_token).await.json();
    assert_eq!(v["username"], "bob", "{v}");
    assert!(v.get("quota").is_none(), "{v}");
    // The joined read of token and user refuses what the separate reads
    // refused: a token without a user, an unknown token, a revoked one.
    let cc = mem
        .token_request(app.basic(), &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(cc.status, StatusCode::OK, "{cc}");
    let cc = cc.json()["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let res = mem.userinfo(&cc).await;
    assert_eq!(
        res.status,
        StatusCode::FORBIDDEN,
        "client_credentials: {res}"
    );
    let res = mem.userinfo("garbage-token-0123456789").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "unknown: {res}");
    let bob = mem.login(BOB).await;
    let gone = mem.tokens_with(&bob, &app, "profile").await;
    assert_eq!(
        mem.userinfo(&gone.access_token).await.status,
        StatusCode::OK
    );
    let res = mem.revoke(&app, &gone.access_token).await;
    assert_eq!(res.status, StatusCode::OK, "{res}");
    let res = mem.userinfo(&gone.access_token).await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "revoked: {res}");
    let t2 = Tokens::from_response(&mem.refresh(&app, t.refresh(), None).await);
    mem.assert_active(&t2.access_token).await;
    mem.refresh(&app, t.refresh(), None)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    mem.assert_revoked(&t2.access_token).await;
    // Wrong password still fails; sessions end on logout.
    let browser = mem.browser();
    let res = mem.post_login(&browser, (ALICE.0, "wrong"), "/").await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{res}");
    let browser = mem.login(ALICE).await;
    let res = mem.post_form(&browser, "/logout", &[]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{res}");
    let res = mem.get(&browser, ACCOUNT_AUTHORIZATIONS).await;
    assert!(res.status.is_redirection(), "logged out: {res}");
    mem.stop().await;
}

adapters!(memory_full_flow);
