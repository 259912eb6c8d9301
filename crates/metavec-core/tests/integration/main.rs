//! Integration tests of metavec-core through its public API.

mod support;

mod bytes;
mod candidates;
mod cascade;
mod compat;
mod corruption;
mod crash;
mod dtypes;
mod errors;
mod faults;
mod filter;
mod lifecycle;
mod model;
mod ops;
mod recall;
