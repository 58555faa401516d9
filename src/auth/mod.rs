//! The main middleware, laid out as tower-http keeps its own: [`McpAuthLayer`] (the builder), [`McpAuth`] (the
//! service) and [`ResponseFuture`], with the decision table applied by one pure function beside it.
//!
//! A request flows down these files and never back up: `layer` builds the shared `config`; `service` takes the
//! credentials out of the headers and plans the `decision`; `future` awaits the validator and settles the
//! decision. See the [crate documentation](crate#decisions) for the table itself.

mod config;
mod decision;
mod future;
mod layer;
mod service;

pub use config::{DEFAULT_KEY_HEADER, DEFAULT_MAX_CREDENTIAL_LEN, DEFAULT_VALIDATION_TIMEOUT};
pub use future::ResponseFuture;
pub use layer::McpAuthLayer;
pub use service::McpAuth;
