//! End-to-end tests of noted live in `tests/`.
