//! Meta protocol tests.
