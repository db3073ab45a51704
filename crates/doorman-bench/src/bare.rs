//! The bare server: axum with no OAuth work, the physical limit of the box
//! for the same HTTP stack. `GET /bare` answers a constant; `POST /bare`
//! parses a form (as the token endpoint must) and answers constant JSON.
//! It runs as a child process on the same tokio defaults as the demo, so
//! both meet the load generator on equal terms.

use std::io::Write as _;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::Form;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The path both bare measures use.
pub const PATH: &str = "/bare";

/// A constant answer shaped like a small OAuth JSON response.
const JSON: &str = r#"{"active":true,"scope":"profile balance","client_id":"bare","token_type":"Bearer","exp":1900000000,"iat":1800000000,"sub":"1"}"#;

async fn bare_get() -> &'static str {
    "ok"
}

async fn bare_post(Form(fields): Form<Vec<(String, String)>>) -> impl IntoResponse {
    // Touch the parsed fields so the parse cannot be optimised away.
    let status = if fields.iter().any(|(k, _)| k.is_empty()) {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        JSON,
    )
}

/// Serves until killed; prints `listening on http://ADDR` once bound.
pub fn serve(addr: SocketAddr) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("bind {addr}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        let app = Router::new().route(PATH, get(bare_get).post(bare_post));
        let mut out = std::io::stdout();
        writeln!(out, "  listening on     http://{bound}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}
