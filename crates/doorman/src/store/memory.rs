//! The in-memory store (placeholder until implemented).

/// An in-memory [`Store`](super::Store).
#[derive(Debug, Default)]
pub struct MemoryStore {}
