//! OAuth discovery through the gateway: finding each passthrough upstream's protected-resource metadata
//! ([`upstream`]) and publishing the gateway's own document for its route ([`metadata`]).

pub mod metadata;
pub mod upstream;
