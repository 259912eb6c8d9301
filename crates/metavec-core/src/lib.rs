//! metavec core
