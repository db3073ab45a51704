//! The router and the extractor over a memory store, driven in process
//! with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::routing::get;
use doorman::redirect::form_encode;
use doorman::{AuthorizationServer, ClientRegistration, GrantType};
use doorman_axum::{Bearer, required_scope};
use http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

mod common;
use common::server;

required_scope!(BalanceScope = "balance");

async fn credit(token: Bearer<BalanceScope>) -> String {
    token.client_id.clone()
}

async fn anything(token: Bearer) -> String {
    token.scope.to_string()
}

fn app(server: &AuthorizationServer) -> Router {
    Router::new()
        .route("/api/credit", get(credit))
        .route("/api/anything", get(anything))
        .merge(doorman_axum::router(server.clone()))
        .with_state(server.clone())
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

async fn token(app: &Router, id: &str, secret: &str, scope: &str) -> http::Response<Body> {
    let body = format!(
        "grant_type=client_credentials&client_id={id}&client_secret={secret}&scope={scope}"
    );
    let req = Request::post("/api/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    app.clone().oneshot(req).await.unwrap()
}

async fn json(res: http::Response<Body>) -> Value {
    serde_json::from_slice(&to_bytes(res.into_body(), 1 << 20).await.unwrap()).unwrap()
}

async fn get_with(app: &Router, path: &str, bearer: Option<&str>) -> http::Response<Body> {
    let mut req = Request::get(path);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    app.clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn token_responses_are_not_stored() {
    let server = server();
    let app = app(&server);
    let (id, secret) = client(&server).await;
    let res = token(&app, &id, &secret, "balance").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    assert!(json(res).await["access_token"].is_string());
    let res = token(&app, &id, "wrong-secret", "balance").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn bodies_over_the_limit_answer_413() {
    let server = server();
    let app = app(&server);
    let big = "a".repeat(64 * 1024 + 1);
    // Read until the limit (no Content-Length header) ...
    let req = Request::post("/api/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(big.clone()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The rest of the body is never read: the connection must not be reused.
    assert_eq!(res.headers()[header::CONNECTION], "close");
    assert_eq!(json(res).await["error"], "invalid_request");
    // ... or refused up front for the length it declares.
    let req = Request::post("/api/oauth2/revoke")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::CONTENT_LENGTH, "10000000")
        .body(Body::from("token=x"))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(res.headers()[header::CONNECTION], "close");
    // Exactly at the limit is read (and refused for its content, not its size).
    let req = Request::post("/api/oauth2/token")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(big[1..].to_owned()))
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_ne!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn extractor_answers_rfc6750_errors() {
    let server = server();
    let app = app(&server);
    let (id, secret) = client(&server).await;
    let profile = json(token(&app, &id, &secret, "profile").await).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let balance = json(token(&app, &id, &secret, "balance").await).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let res = get_with(&app, "/api/credit", None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"doorman\""
    );

    let res = get_with(&app, "/api/credit", Some("not-a-token")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    let res = get_with(&app, "/api/credit", Some(&profile)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let challenge = res.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("scope=\"balance\""),
        "{challenge}"
    );

    let res = get_with(&app, "/api/credit", Some(&balance)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        to_bytes(res.into_body(), 1024).await.unwrap(),
        id.as_bytes()
    );

    let res = get_with(&app, "/api/anything", Some(&profile)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        to_bytes(res.into_body(), 1024).await.unwrap(),
        "profile".as_bytes()
    );
}

#[tokio::test]
async fn authorize_sends_the_full_original_uri_to_login() {
    let server = server();
    let (id, _) = client(&server).await;
    let query = format!(
        "response_type=code&client_id={id}&scope=profile&state=xyz&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"
    );
    let uri = format!("/api/oauth2/authorize?{query}");
    let res = app(&server)
        .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(
        res.headers()[header::LOCATION],
        format!("/login?return_to={}", form_encode(&uri)).as_str()
    );

    // A host handler under a nested router still hands the server the URI the client used.
    let nested_server = server.clone();
    let handler = move |req: axum::extract::Request| {
        let server = nested_server.clone();
        async move {
            match doorman_axum::read_request(&server, req).await {
                Ok(req) => doorman_axum::into_response(server.authorize(req).await),
                Err(res) => doorman_axum::into_response(res),
            }
        }
    };
    let nested: Router = Router::new().nest(
        "/api",
        Router::new().route("/oauth2/authorize", axum::routing::any(handler)),
    );
    let res = nested
        .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(
        res.headers()[header::LOCATION],
        format!("/login?return_to={}", form_encode(&uri)).as_str()
    );
}

#[tokio::test]
async fn metadata_and_method_handling() {
    let server = server();
    let app = app(&server);
    let res = get_with(&app, doorman::server::METADATA_PATH, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let meta = json(res).await;
    assert_eq!(meta["issuer"], "http://id.example");
    assert_eq!(meta["token_endpoint"], "http://id.example/api/oauth2/token");
    let res = get_with(&app, "/api/oauth2/token", None).await;
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    // Registration is the host's to mount, behind its own check.
    let res = app
        .clone()
        .oneshot(
            Request::post("/api/oauth2/register")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// Each route is its own endpoint's: for requests every endpoint answers
/// differently (a GET and a POST without credentials, a POST with a
/// client's credentials and its token, a GET with that token), the router
/// answers at each path exactly what the core's `handle` answers for that
/// path's endpoint, status, headers and body.
#[tokio::test]
async fn every_route_answers_as_its_endpoint() {
    let server = server();
    let app = app(&server);
    let (id, secret) = client(&server).await;
    let issued = json(token(&app, &id, &secret, "profile balance").await).await;
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let requests = |path: &str| {
        let post = |form: String| {
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(form)
        };
        [
            Request::get(path).body(String::new()),
            post(format!("token={access}")),
            post(format!(
                "client_id={id}&client_secret={secret}&token={access}"
            )),
            Request::get(path)
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(String::new()),
        ]
        .map(Result::unwrap)
    };
    let routes = server.routes();
    assert_eq!(routes.len(), 7, "every endpoint and the metadata");
    for (path, endpoint) in routes {
        for req in requests(&path) {
            let (parts, body) = req.into_parts();
            let core = server
                .handle(
                    endpoint,
                    Request::from_parts(parts.clone(), bytes::Bytes::from(body.clone())),
                )
                .await;
            let routed = app
                .clone()
                .oneshot(Request::from_parts(parts, Body::from(body)))
                .await
                .unwrap();
            let what = format!("{} {path}", routed.status());
            assert_eq!(routed.status(), core.status(), "{what}");
            for (name, value) in core.headers() {
                assert_eq!(routed.headers().get(name), Some(value), "{what}: {name}");
            }
            let routed = to_bytes(routed.into_body(), 1 << 20).await.unwrap();
            assert_eq!(routed, core.into_body(), "{what}");
        }
    }
}
