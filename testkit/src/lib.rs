//! Test servers shared by the library's and the gateway's test suites, all on 127.0.0.1: a small authorization
//! server ([`issuer`]), an rmcp upstream that admits only tokens for its own audience ([`resource_server`]), and a
//! certificate authority generated in the test with HTTPS servers presenting its certificates ([`tls`]), and
//! an rmcp upstream counting the calls of each tool ([`tools_upstream`]).
#![forbid(unsafe_code)]

pub mod issuer;
pub mod postgres;
pub mod resource_server;
pub mod tls;
pub mod tools_upstream;
