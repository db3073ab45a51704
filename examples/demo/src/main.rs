//! `cargo run --release -p doorman-demo`: the demo provider, configured
//! from the environment (see `spec/demo-provider.md`).
#![forbid(unsafe_code)]

use std::io::IsTerminal as _;
use std::process::ExitCode;

use doorman_demo::{DemoConfig, start};
use tracing_subscriber::EnvFilter;

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr, so stdout carries only the start-up summary.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match DemoConfig::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("doorman-demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let adapter = config.adapter;
    let running = match start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("doorman-demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("doorman demo provider ({} adapter)", adapter.as_str());
    println!("  listening on     {}", running.base_url);
    println!("  issuer           {}", running.issuer);
    println!("  storage          {}", running.storage);
    println!("  developer token  {}", running.dev_token);
    println!("  users            alice / alice-password, bob / bob-password");
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    println!("shutting down: finishing requests in flight…");
    running.shutdown().await;
    println!("stopped");
    ExitCode::SUCCESS
}
