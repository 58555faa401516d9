//! OpenTelemetry traces (cargo feature `otel`): an OTLP/HTTP (protobuf) exporter, configured by the standard
//! `OTEL_*` environment variables and off unless an endpoint is set; one span per request to `/mcp/NAME`
//! ([`span`]); and the W3C trace context, taken from the client (unless told not to) and handed to the upstream
//! as the child of the gateway's span.
//!
//! A span carries the route, the upstream, the JSON-RPC methods, tools and decisions, how the caller was
//! admitted (`key`, `jwt`, `passthrough`, ... — never who, nor any credential, token or fingerprint of one) and
//! the status.

use std::str::FromStr;

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderName, Method},
    response::Response,
};
use http_body_util::BodyExt;
use opentelemetry::{propagation::TextMapPropagator, trace::TracerProvider as _, Context};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tower_mcp_auth::{mcp::McpOutcome, route::McpRoute};
use tracing::{field::Empty, Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    filter::{Directive, LevelFilter, Targets},
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
    Layer,
};

use super::{
    access_log::{Auth, Calls},
    Prepared,
};

/// The target of the request spans: only they are exported, and the log lines leave them out.
pub const TARGET: &str = "gateway::request";

/// The variables that turn the exporter on: an endpoint for traces, or for every signal.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The service name when `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) does not give one.
const SERVICE_NAME: &str = "mcp-gateway";

/// The W3C trace-context headers.
const TRACE_HEADERS: [HeaderName; 2] = [
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
];

/// The running exporter; [`Telemetry::shutdown`] sends the spans still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// The exporter of the `OTEL_*` variables (endpoint, headers, timeout, `OTEL_BSP_*` batching, service name),
    /// or `None` when neither `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` nor `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub fn from_env(env: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        if !ENDPOINT_VARS
            .iter()
            .any(|var| env(var).is_some_and(|v| !v.trim().is_empty()))
        {
            return Ok(None);
        }
        for var in ENDPOINT_VARS {
            if env(var).is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("https:")) {
                return Err(format!(
                    "{var}: the exporter speaks OTLP over plain HTTP only; send to a collector on loopback or \
                     a private network (http://), which can forward over TLS"
                ));
            }
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
            .map_err(|e| format!("OpenTelemetry exporter: {e}"))?;
        let mut resource = Resource::builder();
        let named = env("OTEL_SERVICE_NAME").is_some()
            || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
        if !named {
            resource = resource.with_service_name(SERVICE_NAME);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(Self { provider }))
    }

    /// The subscriber layer that turns the request spans (and only them) into OpenTelemetry spans.
    fn layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer(SERVICE_NAME))
            .with_filter(Targets::new().with_target(TARGET, LevelFilter::INFO))
    }

    /// Sends the spans still queued and stops the exporter; a failure is printed, as logging may be gone.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("OpenTelemetry: the last spans were not sent: {error}");
        }
    }
}

/// Installs `subscriber` as the global one, with the exporter of the `OTEL_*` variables when they name an
/// endpoint (see [`Telemetry::from_env`]).
pub fn init<S>(subscriber: S) -> Result<Option<Telemetry>, String>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let telemetry = Telemetry::from_env(&|var| std::env::var(var).ok())?;
    match &telemetry {
        Some(telemetry) => subscriber.with(telemetry.layer()).init(),
        None => subscriber.init(),
    }
    Ok(telemetry)
}

/// Whether the client's W3C trace context is continued, or every request starts a trace of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientContext {
    /// The gateway's span is a child of the client's `traceparent`, and `tracestate` is kept.
    Trusted,
    /// The client's `traceparent` and `tracestate` are dropped.
    Ignored,
}

/// The gateway with a span per request to `/mcp/NAME` ([`span`]), outside every other layer.
pub fn traced(prepared: Prepared, client: ClientContext) -> Prepared {
    Prepared {
        app: crate::App::new(
            tower::ServiceBuilder::new()
                .layer(crate::stage::stage(client, span))
                .service(prepared.app),
        ),
        ..prepared
    }
}

/// The filter directive that keeps the request spans out of the log lines.
pub fn unlogged() -> Directive {
    Directive::from_str(&format!("{TARGET}=off")).expect("a target name is a valid directive")
}

/// Middleware: one span per request to `/mcp/NAME`, the child of the client's trace context when it is
/// [`ClientContext::Trusted`]; the request goes on with the gateway's span as its `traceparent` (the relay
/// forwards it), and the span ends with the response body.
pub fn span<S: crate::stage::Answers>(
    client: &ClientContext,
    request: Request,
    next: crate::stage::Next<'_, S>,
) -> impl std::future::Future<Output = Response> {
    spanned(*client, request, next.owned())
}

/// [`span`], once it holds the rest of the path.
async fn spanned<S: crate::stage::Answers>(
    client: ClientContext,
    mut request: Request,
    next: crate::stage::Owned<S>,
) -> Response {
    // Other paths (and non-canonical ones, which are refused) are not relayed.
    let Ok(route) = McpRoute::parse(request.uri().path()) else {
        return next.run(request).await;
    };
    let method = request.method().clone();
    let span = request_span(&method, route.name());
    let propagator = TraceContextPropagator::new();
    let parent = match client {
        ClientContext::Trusted => propagator.extract(&HeaderExtractor(request.headers())),
        ClientContext::Ignored => Context::new(),
    };
    // Only fails when the exporter's layer is missing, and then there is no trace to join.
    let _ = span.set_parent(parent);
    let headers = request.headers_mut();
    for name in TRACE_HEADERS {
        headers.remove(name);
    }
    propagator.inject_context(&span.context(), &mut HeaderInjector(headers));
    // A trace without state gets an empty `tracestate` from the propagator: none is sent instead.
    if headers
        .get(&TRACE_HEADERS[1])
        .is_some_and(|state| state.is_empty())
    {
        headers.remove(&TRACE_HEADERS[1]);
    }
    let response = next.run(request).instrument(span.clone()).await;
    record(&span, &response);
    // The span lives as long as the body: an event stream's span ends when the stream does.
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _ = &span;
            frame
        }))
    })
}

/// The span of one request, its outcome fields still empty.
fn request_span(method: &Method, upstream: &str) -> Span {
    let route = format!("/mcp/{upstream}");
    let name = format!("{method} {route}");
    tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = Empty,
        mcp.upstream = upstream,
        mcp.method.name = Empty,
        gen_ai.tool.name = Empty,
        mcp.decision = Empty,
        gateway.auth = Empty,
    )
}

/// The outcome of the exchange as the access log has it, without identities or fingerprints.
fn record(span: &Span, response: &Response) {
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    span.record("gateway.auth", Auth::of(response).kind());
    if let Some(mcp) = response.extensions().get::<McpOutcome>() {
        let calls = Some(mcp);
        span.record(
            "mcp.method.name",
            Calls(calls, |c| c.method.as_deref()).to_string(),
        );
        if mcp.calls().iter().any(|c| c.name.is_some()) {
            span.record(
                "gen_ai.tool.name",
                Calls(calls, |c| c.name.as_deref()).to_string(),
            );
        }
        span.record(
            "mcp.decision",
            Calls(calls, |c| Some(c.decision.as_str())).to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn no_endpoint_no_exporter() {
        assert!(Telemetry::from_env(&env(&[])).unwrap().is_none());
        assert!(
            Telemetry::from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_https_endpoint_is_refused_naming_its_variable() {
        for var in ENDPOINT_VARS {
            let error = Telemetry::from_env(&env(&[(var, "HTTPS://collector:4318")]))
                .err()
                .expect("refused");
            assert!(error.starts_with(var), "{error}");
        }
    }

    #[test]
    fn the_request_spans_stay_out_of_the_log_lines() {
        assert_eq!(unlogged().to_string(), format!("{TARGET}=off"));
    }
}
