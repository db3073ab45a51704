//! Why the demo could not start.

/// A start-up failure. Its text never carries a password or token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// An environment variable is malformed.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be opened, migrated or seeded.
    #[error("database: {0}")]
    Database(String),
    /// The listen address could not be bound, or the server failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The chosen web framework adapter is not available in this build.
    #[error("{0} adapter not built yet")]
    AdapterNotBuilt(&'static str),
}

impl From<sqlx::Error> for DemoError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e.to_string())
    }
}

impl From<doorman::StoreError> for DemoError {
    fn from(e: doorman::StoreError) -> Self {
        Self::Database(e.to_string())
    }
}
