//! Deadlines that many waits share: one ticker checks them all, so a wait registers no timer of its own.
//!
//! The relay bounds each upstream request (connecting and the response head) by `--upstream-timeout`. A Tokio
//! timer per request is a registration in the timer wheel and its removal, about 1,900 instructions per proxied
//! request (BENCHMARKS.md, "Against the floor"). Here a wait is an entry in a shared table that one ticker task
//! scans each tick, so a wait ends **no earlier than its timeout and at most one tick after it** (plus the time
//! to schedule the waiting task). The tick is a tenth of the timeout, between 10 ms and 1 s: the default 30 s
//! timeout ends a hung request between 30 and 31 s.
//!
//! The ticker starts with the first wait (on the runtime of that wait) and stops after a minute without any,
//! so an idle gateway wakes for nothing; it also stops when every handle to the deadlines is gone. A ticker
//! lost with its runtime is replaced by the next wait.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    task::{Context, Poll, Waker},
    time::Duration,
};

use pin_project_lite::pin_project;
use slab::Slab;
use tokio::{
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};

/// The shortest tick: shorter timeouts end up to 10 ms late.
const MIN_TICK: Duration = Duration::from_millis(10);
/// The longest tick.
const MAX_TICK: Duration = Duration::from_secs(1);
/// How long the ticker runs on without a wait before it stops, in ticks.
const IDLE_TICKS: u32 = 60;

/// Waits bounded by one timeout, all checked by one ticker.
///
/// ```text
/// let deadlines = Deadlines::new(Duration::from_secs(30));
/// match deadlines.within(upstream.send(request)).await {
///     Ok(answer) => answer,
///     Err(Elapsed) => gateway_timeout(),
/// }
/// ```
#[derive(Clone)]
pub struct Deadlines {
    shared: Arc<Shared>,
}

struct Shared {
    timeout: Duration,
    tick: Duration,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    waits: Slab<Wait>,
    /// The ticker task for this table, while it runs. A ticker whose runtime shut down is finished too, and is
    /// replaced by the next wait (a gateway served by one runtime after another keeps its deadlines).
    ticker: Option<JoinHandle<()>>,
}

struct Wait {
    due: Instant,
    /// Taken (and woken) when the wait is found due: `None` means expired.
    waker: Option<Waker>,
}

/// A wait that outlived the timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed;

impl Deadlines {
    /// Deadlines `timeout` after each wait starts.
    pub fn new(timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                timeout,
                tick: (timeout / 10).clamp(MIN_TICK, MAX_TICK),
                table: Mutex::default(),
            }),
        }
    }

    /// `future`, cut with [`Elapsed`] when it has not finished within the timeout (counted from this call).
    pub fn within<F: Future>(&self, future: F) -> Within<'_, F> {
        Within {
            inner: future,
            deadlines: self,
            due: Instant::now() + self.shared.timeout,
            key: None,
        }
    }

    /// The waits in the table (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.shared.lock().waits.len()
    }

    /// Whether a ticker runs (for tests).
    #[cfg(test)]
    fn ticking(&self) -> bool {
        self.shared
            .lock()
            .ticker
            .as_ref()
            .is_some_and(|ticker| !ticker.is_finished())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves the table consistent: every change is a single slab operation.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pin_project! {
    /// The future of [`Deadlines::within`].
    pub struct Within<'a, F> {
        #[pin]
        inner: F,
        deadlines: &'a Deadlines,
        due: Instant,
        // The wait's entry in the table, from its first pending poll until it ends.
        key: Option<usize>,
    }

    impl<F> PinnedDrop for Within<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(key) = this.key.take() {
                this.deadlines.shared.lock().waits.remove(key);
            }
        }
    }
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The answer first: one that is ready when the deadline passes still counts.
        if let Poll::Ready(output) = this.inner.poll(cx) {
            if let Some(key) = this.key.take() {
                this.deadlines.shared.lock().waits.remove(key);
            }
            return Poll::Ready(Ok(output));
        }
        let shared = &this.deadlines.shared;
        let mut table = shared.lock();
        match *this.key {
            None => {
                *this.key = Some(table.waits.insert(Wait {
                    due: *this.due,
                    waker: Some(cx.waker().clone()),
                }));
                if table.ticker.as_ref().is_none_or(JoinHandle::is_finished) {
                    table.ticker = Some(tokio::spawn(ticker(Arc::downgrade(shared), shared.tick)));
                }
            }
            Some(key) => match &mut table.waits[key].waker {
                None => {
                    table.waits.remove(key);
                    *this.key = None;
                    return Poll::Ready(Err(Elapsed));
                }
                Some(waker) if !waker.will_wake(cx.waker()) => *waker = cx.waker().clone(),
                Some(_) => {}
            },
        }
        Poll::Pending
    }
}

/// Each tick, marks the waits that are due and wakes them; stops when the table has been empty for
/// [`IDLE_TICKS`] ticks, or when the deadlines are gone.
async fn ticker(shared: Weak<Shared>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut idle, mut due) = (0, Vec::new());
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        {
            let mut table = shared.lock();
            if table.waits.is_empty() {
                idle += 1;
                if idle >= IDLE_TICKS {
                    // Under the lock: the next wait finds no ticker and starts another.
                    table.ticker = None;
                    return;
                }
                continue;
            }
            idle = 0;
            for (_, wait) in table.waits.iter_mut() {
                if wait.due <= now {
                    due.extend(wait.waker.take());
                }
            }
        }
        // Woken outside the lock: a woken task may poll (and lock) at once on another thread.
        for waker in due.drain(..) {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::future::pending;

    #[tokio::test]
    async fn a_wait_that_finishes_leaves_nothing_behind() {
        let deadlines = Deadlines::new(Duration::from_secs(30));
        let answer = deadlines
            .within(async {
                tokio::task::yield_now().await;
                7
            })
            .await;
        assert_eq!(answer, Ok(7));
        assert_eq!(deadlines.waiting(), 0);
    }

    #[tokio::test]
    async fn a_wait_ends_no_earlier_than_its_timeout() {
        let timeout = Duration::from_millis(200);
        let deadlines = Deadlines::new(timeout);
        let started = Instant::now();
        assert_eq!(deadlines.within(pending::<()>()).await, Err(Elapsed));
        // Never early (the ticker compares with the same clock); late by at most a tick and scheduling, which
        // is only checked one-sided and with a wide margin.
        assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(deadlines.waiting(), 0);
    }

    #[tokio::test]
    async fn a_dropped_wait_leaves_its_entry() {
        let deadlines = Deadlines::new(Duration::from_secs(30));
        let mut wait = Box::pin(deadlines.within(pending::<()>()));
        let first = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        assert_eq!(deadlines.waiting(), 1);
        drop(wait);
        assert_eq!(deadlines.waiting(), 0);
    }

    #[tokio::test]
    async fn many_waits_each_end_and_the_idle_ticker_stops_then_starts_again() {
        let deadlines = Deadlines::new(Duration::from_millis(50));
        let waits = (0..100).map(|_| deadlines.within(pending::<()>()));
        for answer in futures_util::future::join_all(waits).await {
            assert_eq!(answer, Err(Elapsed));
        }
        assert!(deadlines.ticking());
        // Idle for IDLE_TICKS ticks of 10 ms: the ticker stops (waited for, within a wide bound).
        let started = Instant::now();
        while deadlines.ticking() {
            assert!(started.elapsed() < Duration::from_secs(20), "never stopped");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The next wait starts it again, and still ends.
        assert_eq!(deadlines.within(pending::<()>()).await, Err(Elapsed));
        assert!(deadlines.ticking());
    }

    #[test]
    fn a_ticker_lost_with_its_runtime_is_replaced() {
        let deadlines = Deadlines::new(Duration::from_millis(50));
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        first.block_on(async {
            assert_eq!(deadlines.within(pending::<()>()).await, Err(Elapsed));
        });
        // The runtime that ran the ticker is gone, and the ticker with it.
        drop(first);
        assert!(!deadlines.ticking());
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        second.block_on(async {
            let ended =
                tokio::time::timeout(Duration::from_secs(10), deadlines.within(pending::<()>()))
                    .await;
            assert_eq!(
                ended,
                Ok(Err(Elapsed)),
                "a wait on the second runtime never ended"
            );
        });
    }
}
