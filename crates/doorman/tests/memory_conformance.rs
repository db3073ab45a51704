//! The memory store passes the public store conformance testkit.
//!
//! Compiled only with feature `testkit` (the workspace turns it on through
//! `doorman-sqlx`'s dev-dependency; or `cargo test -p doorman --features testkit`).
#![cfg(feature = "testkit")]

use std::sync::Arc;

use doorman::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_passes_the_testkit() {
    doorman::testkit::run_all(Arc::new(MemoryStore::new())).await;
}

/// The checks are built to run concurrently against one shared store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn testkit_runs_concurrently_against_one_shared_store() {
    let store = Arc::new(MemoryStore::new());
    let runs: Vec<_> = (0..4)
        .map(|_| tokio::spawn(doorman::testkit::run_all(store.clone())))
        .collect();
    for run in runs {
        run.await.expect("a testkit run panicked");
    }
}
