//! Store conformance testkit (placeholder).
