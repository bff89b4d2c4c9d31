//! End-to-end tests of the real binary: real processes, real files, a real etcd where the test
//! needs one. One test binary for all of them (issue #12: a few binaries link much faster than
//! one per file); each file is a module, and nextest still runs every test in its own process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

#[path = "../support/browser.rs"]
mod browser;
#[path = "../support/etcd.rs"]
mod etcd;
#[path = "../support/node.rs"]
mod node;
#[path = "../support/tls.rs"]
mod tls;

mod bad_storage;
mod cluster_words;
mod etcd_e2e;
mod etcd_security;
mod examples;
mod explain;
mod explain_json;
mod fleet;
mod hostile;
mod hostile_etcd;
mod local_e2e;
mod logs;
mod operations;
mod operator_docs;
