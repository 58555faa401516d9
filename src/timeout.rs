//! The validation deadline, armed only when a validation has to wait.

use std::{
    error::Error,
    fmt,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// The validator did not answer within the layer's validation timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimedOut(pub(crate) Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "validation timed out after {:?}", self.0)
    }
}

impl Error for TimedOut {}

pin_project! {
    /// Like `tokio::time::Timeout`, but the timer is only created when the validation first returns `Pending`.
    ///
    /// Most validations answer on their first poll (static keys, cache hits); for those, reading the clock and
    /// registering a timer would be most of the layer's cost. A validation that has to wait pays one boxed
    /// `Sleep`, next to the round-trip to its store. The deadline counts from that first poll, which follows
    /// the layer's `call` at once.
    pub(crate) struct LazyTimeout<F> {
        #[pin]
        future: F,
        timeout: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<F> LazyTimeout<F> {
    pub(crate) fn new(future: F, timeout: Duration) -> Self {
        Self {
            future,
            timeout,
            sleep: None,
        }
    }
}

impl<F: Future> Future for LazyTimeout<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let timeout = *this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Err(TimedOut(timeout)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_futures_need_no_timer_and_slow_ones_time_out() {
        let fast = LazyTimeout::new(std::future::ready(7), Duration::from_secs(1));
        assert_eq!(fast.await, Ok(7));
        let started = tokio::time::Instant::now();
        let slow = LazyTimeout::new(std::future::pending::<()>(), Duration::from_secs(2));
        assert_eq!(slow.await, Err(TimedOut(Duration::from_secs(2))));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let finishes = LazyTimeout::new(
            tokio::time::sleep(Duration::from_secs(1)),
            Duration::from_secs(2),
        );
        assert_eq!(finishes.await, Ok(()));
    }
}
