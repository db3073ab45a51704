//! The access log, in a test binary of its own: a tracing subscriber
//! set on one thread while other tests' threads reach the same callsites
//! can miss events (the callsites' cached interest), so nothing else runs
//! here.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use axum::body::Body;
use http::{Request, header};
use tower::ServiceExt as _;

mod common;

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
    let app = doorman_axum::router::<()>(common::server());
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
