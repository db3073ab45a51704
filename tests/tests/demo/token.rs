//! The token endpoint: code exchange (with the `oauth2` crate as an
//! independent client), PKCE, replay, refresh rotation, client
//! authentication and request-format rules.

use doorman_tests::*;
use oauth2::{AuthType, AuthorizationCode, CsrfToken, PkceCodeChallenge, Scope, TokenResponse};
use serde_json::json;

/// The whole flow as a third-party app using the `oauth2` crate would run it.
async fn oauth2_crate_flow(env: &TestEnv, auth_type: AuthType) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let client = app.oauth2_client(env, auth_type);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("balance".into()))
        .set_pkce_challenge(challenge)
        .url();
    let res = env.get(&browser, url.as_str()).await;
    let form = ConsentForm::parse(&res);
    let res = env.submit_consent(&browser, &form, "approve").await;
    let location = res
        .redirect_location()
        .unwrap_or_else(|| panic!("no redirect: {res}"));
    assert_eq!(
        param(&location, "state").as_deref(),
        Some(csrf.secret().as_str()),
        "{location}"
    );
    assert_eq!(
        param(&location, "iss").as_deref(),
        Some(env.issuer()),
        "{location}"
    );
    let code = param(&location, "code").unwrap_or_else(|| panic!("no code: {location}"));

    let http = env.oauth2_http();
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("exchange failed: {e:?}"));
    assert_eq!(*token.token_type(), oauth2::basic::BasicTokenType::Bearer);
    assert_eq!(
        token.expires_in(),
        Some(std::time::Duration::from_secs(7200))
    );
    let mut scopes: Vec<String> = token
        .scopes()
        .expect("scope echoed")
        .iter()
        .map(|s| s.to_string())
        .collect();
    scopes.sort();
    assert_eq!(scopes, ["balance", "profile"]);
    let refresh = token.refresh_token().expect("a refresh token").clone();

    let info = env.userinfo(token.access_token().secret()).await;
    assert_eq!(info.status, StatusCode::OK, "{info}");
    assert_eq!(info.json()["username"], "alice", "{info}");
    assert_eq!(info.json()["balance_formatted"], "750.00", "{info}");

    let refreshed = client
        .exchange_refresh_token(&refresh)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("refresh failed: {e:?}"));
    assert_ne!(
        refreshed.access_token().secret(),
        token.access_token().secret()
    );
    env.assert_active(refreshed.access_token().secret()).await;
}

async fn oauth2_crate_client_secret_basic(env: &TestEnv) {
    oauth2_crate_flow(env, AuthType::BasicAuth).await;
}

async fn oauth2_crate_client_secret_post(env: &TestEnv) {
    oauth2_crate_flow(env, AuthType::RequestBody).await;
}

async fn pkce_challenge_without_verifier(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let (_, challenge) = pkce_pair();
    let code = env
        .authorize_and_get_code(
            &browser,
            &app,
            "profile",
            &[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    let res = env
        .token_request(
            app.basic(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &app.redirect_uri),
            ],
        )
        .await;
    res.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

async fn pkce_verifier_without_challenge(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let (verifier, _) = pkce_pair();
    let code = env
        .authorize_and_get_code(&browser, &app, "profile", &[])
        .await;
    let res = env
        .token_request(
            app.basic(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &app.redirect_uri),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    res.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

async fn pkce_wrong_verifier(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let (_, challenge) = pkce_pair();
    let (other_verifier, _) = pkce_pair();
    let code = env
        .authorize_and_get_code(
            &browser,
            &app,
            "profile",
            &[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    let res = env
        .token_request(
            app.basic(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &app.redirect_uri),
                ("code_verifier", &other_verifier),
            ],
        )
        .await;
    res.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

/// A code works once; the second redemption revokes what the first issued.
async fn code_replay_revokes(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let (verifier, challenge) = pkce_pair();
    let code = env
        .authorize_and_get_code(
            &browser,
            &app,
            SCOPES,
            &[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    let first = env.exchange(&app, &code, Some(&verifier)).await;
    env.assert_active(&first.access_token).await;
    let res = env
        .token_request(
            app.basic(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &app.redirect_uri),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    res.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    env.assert_revoked(&first.access_token).await;
    env.refresh(&app, first.refresh(), None)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

/// Refresh tokens rotate; presenting a used one revokes the whole grant.
async fn refresh_rotation(env: &TestEnv) {
    let (app, t1) = env.tokens_for(ALICE, SCOPES).await;
    let t2 = Tokens::from_response(&env.refresh(&app, t1.refresh(), None).await);
    assert_ne!(t2.access_token, t1.access_token);
    assert_ne!(
        t2.refresh(),
        t1.refresh(),
        "the refresh token did not rotate"
    );
    assert_eq!(scope_set(&t2.scope), scope_set(SCOPES));
    env.assert_active(&t2.access_token).await;

    let t3 = Tokens::from_response(&env.refresh(&app, t2.refresh(), None).await);
    env.assert_active(&t3.access_token).await;

    // Replay of an already used refresh token.
    env.refresh(&app, t1.refresh(), None)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    env.assert_revoked(&t3.access_token).await;
    env.refresh(&app, t3.refresh(), None)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

async fn refresh_scope_narrowing(env: &TestEnv) {
    let (app, t1) = env.tokens_for(ALICE, SCOPES).await;
    let t2 = Tokens::from_response(&env.refresh(&app, t1.refresh(), Some("profile")).await);
    assert_eq!(t2.scope, "profile");
    let info = env.userinfo(&t2.access_token).await.json();
    assert_eq!(info["username"], "alice", "{info}");
    assert!(
        info.get("quota").is_none(),
        "narrowed token still releases balance: {info}"
    );
}

async fn refresh_scope_widening(env: &TestEnv) {
    let (app, t1) = env.tokens_for(ALICE, "profile").await;
    env.refresh(&app, t1.refresh(), Some(SCOPES))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
}

async fn client_auth_errors(env: &TestEnv) {
    let app = env.app().await;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", "no-such-code"),
        ("redirect_uri", REDIRECT_URI),
    ];

    // Control: right credentials, bad code.
    env.token_request(app.basic(), &grant)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    env.token_request(app.post(), &grant)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    let res = env
        .token_request(ClientAuth::Post(&app.client_id, "wrong-secret"), &grant)
        .await;
    res.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    let res = env
        .token_request(ClientAuth::Basic(&app.client_id, "wrong-secret"), &grant)
        .await;
    res.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let challenge = res.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.to_ascii_lowercase().starts_with("basic"),
        "WWW-Authenticate {challenge:?}: {res}"
    );

    let mut both = grant.to_vec();
    both.push(("client_id", &app.client_id));
    both.push(("client_secret", &app.client_secret));
    let res = env.token_request(app.basic(), &both).await;
    res.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    let unknown = "client_00000000000000000000000000000000";
    let res = env
        .token_request(ClientAuth::Post(unknown, "whatever"), &grant)
        .await;
    res.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let res = env
        .token_request(ClientAuth::Basic(unknown, "whatever"), &grant)
        .await;
    res.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // A confidential client that does not authenticate at all.
    let mut id_only = grant.to_vec();
    id_only.push(("client_id", &app.client_id));
    let res = env.token_request(ClientAuth::None, &id_only).await;
    assert!(
        res.status == StatusCode::UNAUTHORIZED || res.status == StatusCode::BAD_REQUEST,
        "{res}"
    );
    assert_eq!(res.oauth_error(), "invalid_client", "{res}");
}

async fn duplicate_parameter(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let code = env
        .authorize_and_get_code(&browser, &app, "profile", &[])
        .await;
    let redirect = form_encode(&app.redirect_uri);
    for body in [
        format!("grant_type=authorization_code&code={code}&code={code}&redirect_uri={redirect}"),
        format!(
            "grant_type=authorization_code&grant_type=authorization_code&code={code}&redirect_uri={redirect}"
        ),
        format!(
            "grant_type=authorization_code&code={code}&redirect_uri={redirect}&redirect_uri={redirect}"
        ),
    ] {
        let req = env
            .api()
            .post(env.url(TOKEN))
            .header(
                "authorization",
                basic_header(&app.client_id, &app.client_secret),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        let res = env.send(req, "POST token with a repeated parameter").await;
        res.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
}

async fn json_body(env: &TestEnv) {
    let app = env.app().await;
    let browser = env.login(ALICE).await;
    let (verifier, challenge) = pkce_pair();
    let code = env
        .authorize_and_get_code(
            &browser,
            &app,
            SCOPES,
            &[
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
    let body = json!({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": app.redirect_uri,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "code_verifier": verifier,
    });
    let res = env
        .send(
            env.api().post(env.url(TOKEN)).json(&body),
            "POST token as JSON",
        )
        .await;
    let tokens = Tokens::from_response(&res);
    assert_eq!(scope_set(&tokens.scope), scope_set(SCOPES));
    env.assert_active(&tokens.access_token).await;
}

async fn oversized_body(env: &TestEnv) {
    let app = env.app().await;
    let body = format!(
        "grant_type=authorization_code&redirect_uri=x&code={}",
        "a".repeat(70 * 1024)
    );
    let req = env
        .api()
        .post(env.url(TOKEN))
        .header(
            "authorization",
            basic_header(&app.client_id, &app.client_secret),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    let res = env.send(req, "POST token with a 70 KiB body").await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{res}");
}

/// Client credentials: a token without a user. It has no userinfo (403)
/// and introspects without `sub`.
async fn client_credentials(env: &TestEnv) {
    let reg = env
        .register_rfc7591(&json!({
            "client_name": "Machine Client",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .await;
    let app = App {
        id: reg["client_id"].clone(),
        name: "Machine Client".into(),
        client_id: reg["client_id"].as_str().expect("client_id").into(),
        client_secret: reg["client_secret"].as_str().expect("client_secret").into(),
        redirect_uri: REDIRECT_URI.into(),
    };
    let res = env
        .token_request(
            app.basic(),
            &[("grant_type", "client_credentials"), ("scope", "profile")],
        )
        .await;
    let tokens = Tokens::from_response(&res);
    assert_eq!(tokens.scope, "profile");
    let info = env.userinfo(&tokens.access_token).await;
    assert_eq!(info.status, StatusCode::FORBIDDEN, "{info}");
    let intro = env.introspect(&app, &tokens.access_token).await;
    assert_eq!(intro.status, StatusCode::OK, "{intro}");
    let intro = intro.json();
    assert_eq!(intro["active"], true, "{intro}");
    assert_eq!(intro["client_id"], app.client_id.as_str(), "{intro}");
    assert!(
        intro.get("sub").is_none(),
        "a client-credentials token has no sub: {intro}"
    );
}

adapters!(
    oauth2_crate_client_secret_basic,
    oauth2_crate_client_secret_post,
    pkce_challenge_without_verifier,
    pkce_verifier_without_challenge,
    pkce_wrong_verifier,
    code_replay_revokes,
    refresh_rotation,
    refresh_scope_narrowing,
    refresh_scope_widening,
    client_auth_errors,
    duplicate_parameter,
    json_body,
    oversized_body,
    client_credentials,
);
