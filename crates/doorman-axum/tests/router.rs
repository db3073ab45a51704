//! The router and the extractor over a memory store, driven in process
//! with `tower::ServiceExt::oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::routing::get;
use doorman::redirect::form_encode;
use doorman::{
    AuthorizationServer, ClientRegistration, Config, Endpoints, GrantType, MemoryStore, Sessions,
    StoreError, UserId,
};
use doorman_axum::{Bearer, required_scope};
use http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

struct NoSessions;

#[async_trait::async_trait]
impl Sessions for NoSessions {
    async fn current_user(&self, _: &http::request::Parts) -> Result<Option<UserId>, StoreError> {
        Ok(None)
    }
    fn login_url(&self, return_to: &str) -> String {
        format!("/login?return_to={}", form_encode(return_to))
    }
}

required_scope!(BalanceScope = "balance");

async fn credit(token: Bearer<BalanceScope>) -> String {
    token.client_id.clone()
}

async fn anything(token: Bearer) -> String {
    token.scope.to_string()
}

fn server() -> AuthorizationServer {
    let config = Config::builder("http://id.example")
        .endpoints(Endpoints::under("/api/oauth2"))
        .scope("profile", "See your profile")
        .scope("balance", "See your balance")
        .build();
    AuthorizationServer::builder(config, Arc::new(MemoryStore::new()), Arc::new(NoSessions)).build()
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

/// What the subscriber wrote, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Drives `requests` through the router with a subscriber at `level` on
/// this thread, and answers what it logged.
async fn logged(level: tracing::Level, requests: Vec<Request<Body>>) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = server();
    let app = app(&server);
    for req in requests {
        let _ = app.clone().oneshot(req).await.unwrap();
    }
    out.text()
}

fn logged_requests() -> Vec<Request<Body>> {
    vec![
        Request::get("/api/oauth2/authorize?response_type=code&client_id=c&state=STATE-NOT-LOGGED")
            .body(Body::empty())
            .unwrap(),
        Request::post("/api/oauth2/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::AUTHORIZATION, "Basic Yzpub3QtbG9nZ2Vk")
            .body(Body::from(
                "grant_type=client_credentials&client_secret=SECRET-NOT-LOGGED",
            ))
            .unwrap(),
    ]
}

/// At `DEBUG` every endpoint answers inside an `http` span that names its
/// method, path and status; never its query, headers or body.
#[tokio::test]
async fn the_access_log_names_method_path_and_status_and_nothing_secret() {
    let log = logged(tracing::Level::DEBUG, logged_requests()).await;
    for line in [
        "method=GET path=/api/oauth2/authorize status=400",
        "method=POST path=/api/oauth2/token status=400",
    ] {
        assert!(log.contains(line), "{line} missing from:\n{log}");
    }
    assert_eq!(log.matches(": response").count(), 2, "{log}");
    for secret in [
        "STATE-NOT-LOGGED",
        "SECRET-NOT-LOGGED",
        "Yzpub3QtbG9nZ2Vk",
        "client_id=c",
    ] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
    // At the usual `info`, nothing per request.
    let quiet = logged(tracing::Level::INFO, logged_requests()).await;
    assert!(!quiet.contains("response"), "{quiet}");
}
