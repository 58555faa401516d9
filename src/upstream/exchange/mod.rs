//! RFC 8693 token exchange on the outgoing side (feature `token-exchange`): each upstream that accepts only
//! tokens issued for itself gets one, exchanged from the token the client presented to the gateway.
//!
//! - [`TokenExchange`] (`client`): the client of one authorization server, with its cache of exchanged tokens
//!   (`cache`) and single-flight exchanges;
//! - [`ExchangeTarget`] and [`TokenClientAuth`] (`config`): what is asked for, and as whom;
//! - [`Subject`], [`SubjectToken`] and [`ExchangedToken`] (`token`): what goes in and what comes out;
//! - [`ExchangeTokenLayer`] (`layer`): the middleware that sets the exchanged token on requests to one upstream;
//! - [`ExchangeError`] (`error`).

mod cache;
mod client;
mod config;
mod error;
mod layer;
mod token;

pub use client::{TokenExchange, TokenExchangeBuilder};
pub use config::{ExchangeTarget, TokenClientAuth, ACCESS_TOKEN_TYPE};
pub use error::ExchangeError;
pub use layer::{ExchangeToken, ExchangeTokenLayer};
pub use token::{ExchangedToken, Subject, SubjectToken};
