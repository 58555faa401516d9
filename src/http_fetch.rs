//! Reading an HTTP response body with a size cap, as the crate's own HTTP clients do.

use bytes::Bytes;
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::validate::BoxError;

/// Why [`read_capped`] gave up.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The body was longer than the cap.
    TooLarge,
    /// The body failed while it was read.
    Body(BoxError),
}

/// Collects `body`, failing with [`ReadError::TooLarge`] once it passes `limit` bytes.
pub(crate) async fn read_capped<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(ReadError::TooLarge),
        Err(e) => Err(ReadError::Body(e)),
    }
}
