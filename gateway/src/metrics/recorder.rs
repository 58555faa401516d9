//! The process's recorder: Prometheus', with each metric's handle kept once registered.
//!
//! The `metrics` facade asks the recorder for a handle on every `counter!`/`histogram!` call that has no handle
//! of its own (tower-mcp-auth counts each decision that way), and the Prometheus recorder copies the key into an
//! owned one (an allocation) before looking it up. [`Kept`] answers a key it has seen from its own map, looked
//! up by the key's precomputed hash: what is recorded is the same, at a read lock's cost.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use super::Handles;

/// A recorder that keeps the handles `inner` registers, by key (what it records is `inner`'s).
pub struct Kept<R> {
    inner: R,
    counters: Handles<Key, Counter>,
    gauges: Handles<Key, Gauge>,
    histograms: Handles<Key, Histogram>,
}

impl<R> Kept<R> {
    /// `inner`, with its handles kept.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            counters: Handles::default(),
            gauges: Handles::default(),
            histograms: Handles::default(),
        }
    }

    /// The recorder whose handles are kept.
    #[cfg(test)]
    fn inner(&self) -> &R {
        &self.inner
    }
}

impl<R: Recorder> Recorder for Kept<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.counters
            .get(key, |key| self.inner.register_counter(key, metadata))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.gauges
            .get(key, |key| self.inner.register_gauge(key, metadata))
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.histograms
            .get(key, |key| self.inner.register_histogram(key, metadata))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    fn metadata() -> Metadata<'static> {
        Metadata::new("test", metrics::Level::INFO, None)
    }

    #[test]
    fn every_metric_kind_is_recorded_once_per_key_whatever_the_calls() {
        let recorder = Kept::new(PrometheusBuilder::new().build_recorder());
        let labels = |value: &str| {
            Key::from_parts("calls", vec![metrics::Label::new("kind", value.to_owned())])
        };
        for _ in 0..3 {
            recorder
                .register_counter(&labels("a"), &metadata())
                .increment(1);
        }
        recorder
            .register_counter(&labels("b"), &metadata())
            .increment(5);
        recorder
            .register_gauge(&Key::from_static_name("level"), &metadata())
            .set(4.0);
        for value in [0.5, 1.5] {
            recorder
                .register_histogram(&Key::from_static_name("sizes"), &metadata())
                .record(value);
        }
        let text = recorder.inner().handle().render();
        assert!(text.contains("calls{kind=\"a\"} 3"), "{text}");
        assert!(text.contains("calls{kind=\"b\"} 5"), "{text}");
        assert!(text.contains("level 4"), "{text}");
        assert!(text.contains("sizes_count 2"), "{text}");
        assert_eq!(recorder.counters.0.read().unwrap().len(), 2);
    }
}
