//! The service configuration and the extractor over a memory store,
//! driven in process with actix-web's test service.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use actix_web::{App, HttpResponse, test, web};
use doorman::redirect::form_encode;
use doorman::{AuthorizationServer, ClientRegistration, GrantType};
use doorman_actix::{Bearer, required_scope};
use serde_json::Value;

mod common;
use common::server;

required_scope!(BalanceScope = "balance");

async fn credit(token: Bearer<BalanceScope>) -> HttpResponse {
    HttpResponse::Ok().body(token.client_id.clone())
}

async fn anything(token: Bearer) -> HttpResponse {
    HttpResponse::Ok().body(token.scope.to_string())
}

fn hdr(res: &actix_web::dev::ServiceResponse, name: &str) -> String {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn client(server: &AuthorizationServer) -> (String, String) {
    let mut reg = ClientRegistration::new("Test", vec!["https://app.example/cb".to_owned()]);
    reg.grant_types = Some(vec![
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
    ]);
    let r = server.register_client(reg).await.expect("registers");
    (
        r.client.client_id,
        r.client_secret.expect("confidential").secret().to_owned(),
    )
}

macro_rules! app {
    ($server:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($server.clone()))
                .route("/api/credit", web::get().to(credit))
                .route("/api/anything", web::get().to(anything))
                .configure(doorman_actix::configure($server.clone())),
        )
        .await
    };
}

fn token_req(id: &str, secret: &str, scope: &str) -> test::TestRequest {
    test::TestRequest::post()
        .uri("/api/oauth2/token")
        .insert_header(("content-type", "application/x-www-form-urlencoded"))
        .set_payload(format!(
            "grant_type=client_credentials&client_id={id}&client_secret={secret}&scope={scope}"
        ))
}

#[actix_web::test]
async fn token_responses_are_not_stored_and_errors_are_rfc() {
    let server = server();
    let app = app!(server);
    let (id, secret) = client(&server).await;
    let res = test::call_service(&app, token_req(&id, &secret, "balance").to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(hdr(&res, "cache-control"), "no-store");
    let v: Value = test::read_body_json(res).await;
    assert!(v["access_token"].is_string());
    let res = test::call_service(&app, token_req(&id, "wrong", "balance").to_request()).await;
    assert_eq!(res.status(), 401);
    assert_eq!(hdr(&res, "cache-control"), "no-store");
    let v: Value = test::read_body_json(res).await;
    assert_eq!(v["error"], "invalid_client");
}

#[actix_web::test]
async fn bodies_over_the_limit_answer_413() {
    let server = server();
    let app = app!(server);
    let big = "a".repeat(64 * 1024 + 1);
    let req = test::TestRequest::post()
        .uri("/api/oauth2/token")
        .insert_header(("content-type", "application/x-www-form-urlencoded"))
        .set_payload(big.clone())
        .to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), 413);
    let v: Value = test::read_body_json(res).await;
    assert_eq!(v["error"], "invalid_request");
    let req = test::TestRequest::post()
        .uri("/api/oauth2/token")
        .insert_header(("content-type", "application/x-www-form-urlencoded"))
        .set_payload(big[1..].to_owned())
        .to_request();
    assert_ne!(test::call_service(&app, req).await.status(), 413);
}

#[actix_web::test]
async fn extractor_answers_rfc6750_errors() {
    let server = server();
    let app = app!(server);
    let (id, secret) = client(&server).await;
    let get = |path: &str, bearer: Option<&str>| {
        let mut r = test::TestRequest::get().uri(path);
        if let Some(t) = bearer {
            r = r.insert_header(("authorization", format!("Bearer {t}")));
        }
        r.to_request()
    };
    let v: Value = test::read_body_json(
        test::call_service(&app, token_req(&id, &secret, "profile").to_request()).await,
    )
    .await;
    let profile = v["access_token"].as_str().unwrap().to_owned();
    let v: Value = test::read_body_json(
        test::call_service(&app, token_req(&id, &secret, "balance").to_request()).await,
    )
    .await;
    let balance = v["access_token"].as_str().unwrap().to_owned();

    let res = test::call_service(&app, get("/api/credit", None)).await;
    assert_eq!(res.status(), 401);
    assert!(hdr(&res, "www-authenticate").starts_with("Bearer"));
    let res = test::call_service(&app, get("/api/credit", Some("garbage"))).await;
    assert_eq!(res.status(), 401);
    assert!(hdr(&res, "www-authenticate").contains("invalid_token"));
    let res = test::call_service(&app, get("/api/credit", Some(&profile))).await;
    assert_eq!(res.status(), 403);
    assert!(hdr(&res, "www-authenticate").contains("scope=\"balance\""));
    let res = test::call_service(&app, get("/api/credit", Some(&balance))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, id.as_bytes());
    let res = test::call_service(&app, get("/api/anything", Some(&profile))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, "profile".as_bytes());
}

#[actix_web::test]
async fn metadata_and_method_checks() {
    let server = server();
    let app = app!(server);
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/.well-known/oauth-authorization-server")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 200);
    let v: Value = test::read_body_json(res).await;
    assert_eq!(v["token_endpoint"], "http://id.example/api/oauth2/token");
    let res = test::call_service(
        &app,
        test::TestRequest::get()
            .uri("/api/oauth2/token")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 405);
    assert_eq!(hdr(&res, "allow"), "POST");
    // Not logged in: the authorize endpoint sends to login with the full original URI.
    let (id, _) = client(&server).await;
    let uri =
        format!("/api/oauth2/authorize?response_type=code&client_id={id}&scope=profile&state=s");
    let res = test::call_service(&app, test::TestRequest::get().uri(&uri).to_request()).await;
    assert_eq!(res.status(), 302);
    assert_eq!(
        hdr(&res, "location"),
        format!("/login?return_to={}", form_encode(&uri))
    );
}
