//! The cache of exchanged tokens and the exchanges in flight, keyed by a digest of the subject and the
//! parameters.

use std::{
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use futures_util::future::{BoxFuture, Shared};
use moka::Expiry;

use super::{error::ExchangeError, token::ExchangedToken};

pub(super) type Flight = Shared<BoxFuture<'static, Result<ExchangedToken, ExchangeError>>>;

/// A cached outcome, and the subject it came from (for [`TokenExchange::invalidate_subject`]).
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) subject: [u8; 32],
    pub(super) outcome: Result<ExchangedToken, ExchangeError>,
    pub(super) ttl: Duration,
}

pub(super) struct PerEntry;

impl Expiry<[u8; 32], Entry> for PerEntry {
    fn expire_after_create(&self, _: &[u8; 32], entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

pub(super) struct InFlight {
    pub(super) id: u64,
    pub(super) subject: [u8; 32],
    /// Set when the subject is invalidated mid-flight, so the result is not cached.
    pub(super) dropped: Arc<AtomicBool>,
    pub(super) flight: Flight,
}
