//! A restart on the same database keeps every client, grant and token.

use doorman_tests::*;

async fn restart_keeps_tokens(env: &TestEnv) {
    let (app, t) = env.tokens_for(ALICE, SCOPES).await;
    env.assert_active(&t.access_token).await;

    env.restart().await;

    env.assert_active(&t.access_token).await;
    let t2 = Tokens::from_response(&env.refresh(&app, t.refresh(), None).await);
    env.assert_active(&t2.access_token).await;
    // The client and Alice's consent survived too: one-click login goes straight through.
    let browser = env.login(ALICE).await;
    let res = env
        .get(
            &browser,
            &env.authorize_path(&app, SCOPES, "s", &[("auto_authorize", "true")]),
        )
        .await;
    let location = res
        .redirect_location()
        .unwrap_or_else(|| panic!("consent forgotten across restart: {res}"));
    let code = param(&location, "code").unwrap_or_else(|| panic!("{location}"));
    env.exchange(&app, &code, None).await;
}

adapters!(restart_keeps_tokens);
