//! actix-web glue: the only part of the demo that knows actix-web.
//!
//! The OAuth endpoints come from `doorman_actix::configure`; every other
//! path falls back to [`Demo::respond`], the same dispatcher the axum glue
//! mounts.

use std::future::Future;

use actix_web::web::{self, Payload};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use doorman_actix::{into_response, read_request, traced};

use crate::host::Demo;

async fn host_route(demo: web::Data<Demo>, req: HttpRequest, payload: Payload) -> HttpResponse {
    traced(&req, async {
        let request = match read_request(demo.server(), &req, payload).await {
            Ok(r) => r,
            Err(res) => return into_response(res),
        };
        into_response(demo.respond(request).await)
    })
    .await
}

/// Serves `demo` on `listener` until `shutdown` completes, then lets
/// requests in flight finish (up to 30 s).
pub(crate) async fn serve(
    demo: Demo,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app_demo = demo.clone();
    let server = HttpServer::new(move || {
        let oauth = app_demo.server().clone();
        App::new()
            .app_data(web::Data::new(app_demo.clone()))
            .app_data(web::Data::new(oauth.clone()))
            .configure(doorman_actix::configure(oauth))
            .default_service(web::to(host_route))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(30)
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    server.await
}
