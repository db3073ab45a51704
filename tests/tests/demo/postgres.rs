//! The demo on PostgreSQL, when `DATABASE_URL` names one (`.ci/run` starts
//! a server). Runs on the shared database: every run registers its own app,
//! and the seeded users are only read, so repeated and concurrent runs are fine.

use doorman_tests::*;

const SKIPPED: &str =
    "skipped: DATABASE_URL not set (PostgreSQL tests need a server; .ci/run provides one)";

/// One full flow: register, login, consent, exchange, userinfo, refresh.
/// (`env` is the SQLite instance every scenario gets; this one starts its own.)
async fn postgres_full_flow(env: &TestEnv) {
    let url = match std::env::var("DATABASE_URL") {
        Ok(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => u,
        Ok(_) | Err(_) => {
            println!("{SKIPPED}");
            return;
        }
    };
    let pg = TestEnv::start_with(same_adapter(env.adapter()), Database::External(url)).await;
    let name = format!("PostgreSQL App {}", random_state());
    let app = pg.register(AppSpec::new(&name)).await;
    let browser = pg.login(ALICE).await;
    let res = pg
        .get(
            &browser,
            &pg.authorize_path(&app, SCOPES, "pg", &[("auto_authorize", "true")]),
        )
        .await;
    let form = ConsentForm::parse(&res);
    let res = pg.submit_consent(&browser, &form, "approve").await;
    let location = res
        .redirect_location()
        .unwrap_or_else(|| panic!("no redirect: {res}"));
    assert_eq!(
        param(&location, "state").as_deref(),
        Some("pg"),
        "{location}"
    );
    assert_eq!(
        param(&location, "iss").as_deref(),
        Some(pg.issuer()),
        "{location}"
    );
    let code = param(&location, "code").unwrap_or_else(|| panic!("{location}"));
    let t = pg.exchange(&app, &code, None).await;
    let info = pg.userinfo(&t.access_token).await;
    assert_eq!(info.status, StatusCode::OK, "{info}");
    let info = info.json();
    assert_eq!(info["username"], "alice", "{info}");
    assert_eq!(info["balance_formatted"], "750.00", "{info}");
    let t2 = Tokens::from_response(&pg.refresh(&app, t.refresh(), None).await);
    pg.assert_active(&t2.access_token).await;
    pg.refresh(&app, t.refresh(), None)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    pg.assert_revoked(&t2.access_token).await;
    pg.stop().await;
}

adapters!(postgres_full_flow);
