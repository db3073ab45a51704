//! The access log, in a test binary of its own: a tracing subscriber set
//! on one thread while other tests' threads reach the same callsites can
//! miss events (the callsites' cached interest), so nothing else runs here.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};

use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, test, web};

mod common;

/// What the subscriber wrote, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends three requests — two to the provider's endpoints, one to a host
/// route behind `trace_request` — with a subscriber at `level` on this
/// thread, and answers what it logged.
async fn logged(level: tracing::Level) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let app = test::init_service(
        App::new()
            .service(
                web::resource("/api/host")
                    .wrap(from_fn(doorman_actix::trace_request))
                    .to(|| async { HttpResponse::Accepted().finish() }),
            )
            .configure(doorman_actix::configure(common::server())),
    )
    .await;
    let requests = [
        test::TestRequest::get()
            .uri("/api/oauth2/authorize?response_type=code&client_id=c&state=STATE-NOT-LOGGED"),
        test::TestRequest::post()
            .uri("/api/oauth2/token")
            .insert_header(("content-type", "application/x-www-form-urlencoded"))
            .insert_header(("authorization", "Basic Yzpub3QtbG9nZ2Vk"))
            .set_payload("grant_type=client_credentials&client_secret=SECRET-NOT-LOGGED"),
        test::TestRequest::get().uri("/api/host?q=QUERY-NOT-LOGGED"),
    ];
    for req in requests {
        let _ = test::call_service(&app, req.to_request()).await;
    }
    String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned()
}

/// At `DEBUG` every request answers inside an `http` span naming its
/// method, path and status, never its query, headers or body; at the
/// usual `info`, nothing is logged per request.
#[actix_web::test]
async fn the_access_log_names_method_path_and_status_and_nothing_secret() {
    let log = logged(tracing::Level::DEBUG).await;
    for line in [
        "method=GET path=/api/oauth2/authorize status=400",
        "method=POST path=/api/oauth2/token status=400",
        "method=GET path=/api/host status=202",
    ] {
        assert!(log.contains(line), "{line} missing from:\n{log}");
    }
    assert_eq!(log.matches(": response").count(), 3, "{log}");
    for secret in [
        "STATE-NOT-LOGGED",
        "SECRET-NOT-LOGGED",
        "Yzpub3QtbG9nZ2Vk",
        "QUERY-NOT-LOGGED",
        "client_id=c",
    ] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
    let quiet = logged(tracing::Level::INFO).await;
    assert!(!quiet.contains("response"), "{quiet}");
}
