//! Black-box tests: start the real `metavec serve` binary on a free loopback port and a temp
//! directory, talk gRPC to it.

mod support;

mod auto_budget;
mod bad_input;
mod candidates;
mod cli;
mod cli_errors;
mod cli_npy;
mod cli_oracle;
mod cluster;
mod console;
mod crash_loop;
mod documents;
mod dtypes;
mod e2e;
mod faults;
mod filters;
mod health;
mod http;
mod http_access;
mod limits;
mod logs;
mod metrics;
mod python;
mod router;
mod rust_client;
mod scale;
mod security;
mod shrunk;
mod soak;
mod verify_on_open;
mod view;
mod wire;
