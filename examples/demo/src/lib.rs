//! `doorman-demo`: a complete OAuth 2.0 provider built only from the
//! workspace's public API, the way a host web application embeds doorman
//! (contract: `spec/demo-provider.md`).
//!
//! The host side (users with argon2 password hashes, server-side login
//! sessions, login and consent pages, the developer API, the authorized-apps
//! page, seeding, purging) is framework-agnostic: [`host::Demo`] answers
//! `http::Request<Bytes>` with `http::Response<Bytes>`. Each web framework
//! gets a thin glue module that mounts the doorman adapter's router and
//! falls back to [`host::Demo::respond`] for every other path:
//! [`serve_axum`] and [`serve_actix`].
//!
//! ```no_run
//! # async fn run() -> Result<(), doorman_demo::DemoError> {
//! use doorman_demo::{Adapter, DemoConfig, start};
//!
//! let running = start(DemoConfig::for_tests("sqlite://demo-test.db?mode=rwc".into(), Adapter::Axum)).await?;
//! println!("{} (developer token {})", running.base_url, running.dev_token);
//! running.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod account;
pub mod config;
pub mod db;
pub mod developer;
pub mod error;
pub mod host;
pub mod login;
pub mod pages;
pub mod serve_actix;
pub mod serve_axum;
mod storage;
pub mod users;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{Adapter, DemoConfig};
pub use error::DemoError;
pub use host::Demo;

/// How often expired codes, tokens, grants and sessions are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// A demo serving in the background; stop it with [`RunningDemo::shutdown`].
pub struct RunningDemo {
    /// The bound address (the real port when port 0 was asked for).
    pub addr: SocketAddr,
    /// `http://<addr>`: where to send requests.
    pub base_url: String,
    /// The issuer URL.
    pub issuer: String,
    /// The developer token of the app-registration API.
    pub dev_token: String,
    /// The storage in use, for people (no credentials).
    pub storage: String,
    demo: Demo,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    purge: JoinHandle<()>,
}

impl std::fmt::Debug for RunningDemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningDemo")
            .field("addr", &self.addr)
            .field("issuer", &self.issuer)
            .field("storage", &self.storage)
            .field("dev_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl RunningDemo {
    /// The provider behind the server (e.g. to call the core directly in tests).
    pub fn demo(&self) -> &Demo {
        &self.demo
    }

    /// Stops accepting connections, lets requests in flight finish, stops
    /// the purge task and closes the database pools.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "server stopped with an error"),
            Err(e) => tracing::error!(error = %e, "server task failed"),
        }
        if let Err(e) = self.purge.await {
            tracing::error!(error = %e, "purge task failed");
        }
        self.demo.close().await;
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn purge_loop(demo: Demo, stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = stopped(stop);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => demo.purge().await,
        }
    }
}

/// Starts the demo: binds `config.addr` (port 0 picks a free port), opens
/// and prepares the database, and serves in a background task with the
/// chosen adapter. Returns once the socket accepts connections. The issuer
/// defaults to `http://<bound address>`.
pub async fn start(config: DemoConfig) -> Result<RunningDemo, DemoError> {
    let listener = std::net::TcpListener::bind(config.addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let issuer = config.issuer.clone().unwrap_or_else(|| base_url.clone());
    let demo = Demo::open(&config, issuer).await?;
    let (stop, stop_rx) = watch::channel(false);
    let server = match config.adapter {
        Adapter::Axum => tokio::spawn(serve_axum::serve(
            demo.clone(),
            listener,
            stopped(stop_rx.clone()),
        )),
        Adapter::Actix => tokio::spawn(serve_actix::serve(
            demo.clone(),
            listener,
            stopped(stop_rx.clone()),
        )),
    };
    let purge = tokio::spawn(purge_loop(demo.clone(), stop_rx));
    tracing::info!(%addr, issuer = demo.issuer(), storage = demo.storage(), adapter = config.adapter.as_str(), "serving");
    Ok(RunningDemo {
        addr,
        base_url,
        issuer: demo.issuer().to_owned(),
        dev_token: demo.dev_token().to_owned(),
        storage: demo.storage().to_owned(),
        demo,
        stop,
        server,
        purge,
    })
}
