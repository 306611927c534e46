//! Automatic certificates for the NTS-KE server over ACME (RFC 8555): the
//! daemon obtains a certificate for its domain names at first start, keeps
//! it in its state directory, renews it when a third of its lifetime is
//! left (or when the CA's renewal information says), and swaps it in
//! through the same hot reload that serves certbot's files.
//!
//! - `schedule.rs`: when to renew and when to retry (pure);
//! - `store.rs`: the state directory (account, certificate, key; 0600);
//! - `challenge.rs`: our own HTTP-01 / TLS-ALPN-01 responder;
//! - `order.rs`: one order through instant-acme;
//! - `manager.rs`: the life cycle: obtain, serve, renew, back off.
#![forbid(unsafe_code)]

pub mod challenge;
pub mod manager;
pub mod order;
pub mod schedule;
pub mod store;
