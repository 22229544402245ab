//! Runs untrusted Python against tests in an isolated warm worker pool.
