//! Traces, metrics and logs: tracing spans exported as OpenTelemetry over OTLP, metrics through the
//! OpenTelemetry API, and logs on stderr (text or JSON lines).
//!
//! Export is off unless the standard variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT`, or the
//! per-signal `..._TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`; `OTEL_EXPORTER_OTLP_PROTOCOL` is
//! `http/protobuf` (default) or `grpc`; `OTEL_SERVICE_NAME`; `OTEL_SDK_DISABLED=true` wins).
//! When off, no OpenTelemetry layer or provider is installed: the decision path's spans are
//! `debug` level and disabled at their call sites, and metric instruments are no-ops.
//!
//! Export never slows or fails a decision: spans and metrics are batched and sent from the SDK's
//! own threads, and an exporter that fails is reported once (and again only after it recovered).

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line, with the request's span fields (request id, trace id).
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(String),
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL `{0}` is not supported: use `http/protobuf` or `grpc`")]
    Protocol(String),
}

/// The installed providers, flushed on shutdown.
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the standard variables turn export on for a signal.
fn export_enabled(signal: &str) -> bool {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")).is_some()
}

fn grpc(signal: &str) -> Result<bool, TelemetryError> {
    let protocol = env(&format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    match protocol.as_str() {
        "grpc" => Ok(true),
        "http/protobuf" => Ok(false),
        other => Err(TelemetryError::Protocol(other.into())),
    }
}

fn resource() -> opentelemetry_sdk::Resource {
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read by the builder; this is the default.
    let builder = opentelemetry_sdk::Resource::builder();
    if env("OTEL_SERVICE_NAME").is_some() {
        builder.build()
    } else {
        builder.with_service_name("reins").build()
    }
}

/// What the log shows: `REINS_LOG` (default `info`), without the OpenTelemetry SDK's own
/// diagnostics (failures are reported by [`Reported`]) unless `REINS_LOG` names their targets.
fn log_filter() -> EnvFilter {
    let filter = EnvFilter::try_from_env("REINS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // A target prefix: it covers opentelemetry_sdk, opentelemetry_otlp and the rest.
    match "opentelemetry=off".parse() {
        Ok(quiet) => filter.add_directive(quiet),
        Err(_) => filter,
    }
}

/// The log lines on stderr, unfiltered.
fn log_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    }
}

/// Installs logging and, when the environment asks for it, OTLP export of traces and metrics.
/// Call once, inside the Tokio runtime (the gRPC exporter needs it).
pub fn init(format: LogFormat) -> Result<Telemetry, TelemetryError> {
    let mut telemetry = Telemetry::default();
    let otel = if export_enabled("TRACES") {
        let exporter = if grpc("TRACES")? {
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
        } else {
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .build()
        }
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(Reported::new("traces", exporter))
            .with_resource(resource())
            .build();
        use opentelemetry::trace::TracerProvider as _;
        let tracer = provider.tracer("reins");
        telemetry.tracer = Some(provider);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(EnvFilter::new("info,reins=debug,opentelemetry=off")),
        )
    } else {
        None
    };
    if export_enabled("METRICS") {
        let exporter = if grpc("METRICS")? {
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .build()
        } else {
            opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .build()
        }
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let reader =
            opentelemetry_sdk::metrics::PeriodicReader::builder(Reported::new("metrics", exporter))
                .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource())
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        telemetry.meter = Some(provider);
    }
    match otel {
        // Filtered per layer: the exporter takes the decision path's debug spans, the log does not.
        Some(otel) => tracing_subscriber::registry()
            .with(log_layer(format).with_filter(log_filter()))
            .with(otel)
            .init(),
        // One filter for the whole subscriber: a per-layer filter puts every span's enter and
        // exit and every call site's check through its bookkeeping, which cost 31k of the 475k
        // instructions a decision took (callgrind), more than the request's span itself.
        None => tracing_subscriber::registry()
            .with(log_filter())
            .with(log_layer(format))
            .init(),
    }
    if telemetry.tracer.is_some() || telemetry.meter.is_some() {
        tracing::info!(
            traces = telemetry.tracer.is_some(),
            metrics = telemetry.meter.is_some(),
            "OpenTelemetry export on"
        );
    }
    Ok(telemetry)
}

impl Telemetry {
    /// Exports what is buffered and stops the providers (blocking: call off the async threads).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer {
            let _ = tracer.force_flush();
            let _ = tracer.shutdown();
        }
        if let Some(meter) = self.meter {
            let _ = meter.force_flush();
            let _ = meter.shutdown();
        }
    }
}

/// An exporter that logs its first failure, and its recovery, instead of every failed batch: a
/// dead collector is worth one line, not one per second.
#[derive(Debug)]
struct Reported<E> {
    signal: &'static str,
    inner: E,
    failing: Arc<AtomicBool>,
}

impl<E> Reported<E> {
    fn new(signal: &'static str, inner: E) -> Self {
        Self {
            signal,
            inner,
            failing: Arc::default(),
        }
    }

    fn note(&self, result: &OTelSdkResult) {
        match result {
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(target: "reins::telemetry", signal = self.signal, error = %e, "OpenTelemetry export failed; decisions are unaffected, further failures are not logged until it recovers");
            }
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(target: "reins::telemetry", signal = self.signal, "OpenTelemetry export recovered");
            }
            _ => {}
        }
    }
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Reported<E>
{
    async fn export(&self, batch: Vec<opentelemetry_sdk::trace::SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.note(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: opentelemetry_sdk::metrics::exporter::PushMetricExporter>
    opentelemetry_sdk::metrics::exporter::PushMetricExporter for Reported<E>
{
    async fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.note(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}

/// The context a W3C `traceparent` (and `tracestate`) header carries.
pub fn incoming_context(headers: &axum::http::HeaderMap) -> opentelemetry::Context {
    struct Headers<'a>(&'a axum::http::HeaderMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// The trace id (32 hex digits) of `span`, or of the incoming context, if either has one.
pub fn trace_id(span: &tracing::Span, incoming: &opentelemetry::Context) -> Option<String> {
    let own = span.context();
    [
        own.span().span_context().clone(),
        incoming.span().span_context().clone(),
    ]
    .into_iter()
    .find(|c| c.is_valid())
    .map(|c| c.trace_id().to_string())
}

/// The metric instruments, created on first use from the global meter provider (a no-op one
/// when export is off).
pub struct Metrics {
    pub decisions: Counter<u64>,
    pub decision_duration: Histogram<f64>,
    pub ledger_append_duration: Histogram<f64>,
    pub ledger_batch_size: Histogram<u64>,
    pub shadow_disagreements: Counter<u64>,
    pub http_connections_refused: Counter<u64>,
    meter: Meter,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let meter = opentelemetry::global::meter("reins");
    Metrics {
        decisions: meter
            .u64_counter("reins.decisions")
            .with_description("Decisions answered, by outcome, reason, risk tier and store")
            .build(),
        decision_duration: meter
            .f64_histogram("reins.decision.duration")
            .with_unit("s")
            .with_description("Time from request to durable answer")
            .build(),
        ledger_append_duration: meter
            .f64_histogram("reins.ledger.append.duration")
            .with_unit("s")
            .with_description("Time to commit one group of ledger entries")
            .build(),
        ledger_batch_size: meter
            .u64_histogram("reins.ledger.batch.size")
            .with_unit("{entry}")
            .with_description("Entries per group commit")
            .build(),
        shadow_disagreements: meter
            .u64_counter("reins.shadow.disagreements")
            .with_description(
                "Live requests a shadow policy version answers differently, by store and version",
            )
            .build(),
        http_connections_refused: meter
            .u64_counter("reins.http.connections.refused")
            .with_description("Connections answered 503 and closed at the connection limit")
            .build(),
        meter,
    }
});

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Gauges read from live state when metrics are collected.
pub struct Gauges {
    _instruments: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

/// What the gauges read when metrics are collected: closures over live state, so this module
/// needs none of the modules that own it.
pub struct GaugeSources {
    /// Time since the latest signed checkpoint, if one was signed.
    pub checkpoint_age: Box<dyn Fn() -> Option<std::time::Duration> + Send + Sync>,
    pub engaged_switches: Box<dyn Fn() -> usize + Send + Sync>,
    pub pending_approvals: Box<dyn Fn() -> usize + Send + Sync>,
    /// Open incidents past their reporting deadline, as last counted.
    pub overdue_incidents: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// Registers the observable gauges: checkpoint age, engaged kill switches, pending approvals.
pub fn register_gauges(sources: GaugeSources) -> Gauges {
    let GaugeSources {
        checkpoint_age,
        engaged_switches,
        pending_approvals,
        overdue_incidents,
    } = sources;
    let meter = &metrics().meter;
    let checkpoint = meter
        .f64_observable_gauge("reins.ledger.checkpoint.age")
        .with_unit("s")
        .with_description("Seconds since the latest signed checkpoint")
        .with_callback(move |o| {
            if let Some(age) = checkpoint_age() {
                o.observe(age.as_secs_f64(), &[]);
            }
        })
        .build();
    let switches = meter
        .u64_observable_gauge("reins.killswitch.engaged")
        .with_description("Kill switches engaged now")
        .with_callback(move |o| o.observe(engaged_switches() as u64, &[]))
        .build();
    let pending = meter
        .u64_observable_gauge("reins.approvals.pending")
        .with_description("Approvals waiting for a human")
        .with_callback(move |o| o.observe(pending_approvals() as u64, &[]))
        .build();
    let overdue = meter
        .u64_observable_gauge("reins.incidents.overdue")
        .with_description("Open serious incidents past their Art 73 reporting deadline")
        .with_callback(move |o| o.observe(overdue_incidents(), &[]))
        .build();
    Gauges {
        _instruments: vec![
            Box::new(checkpoint),
            Box::new(switches),
            Box::new(pending),
            Box::new(overdue),
        ],
    }
}

/// Attributes of a decision metric point.
pub fn decision_attributes(
    outcome: &'static str,
    reason: &'static str,
    tier: Option<&'static str>,
    store: Option<&str>,
) -> [KeyValue; 4] {
    [
        KeyValue::new("decision", outcome),
        KeyValue::new("reason", reason),
        KeyValue::new("risk_tier", tier.unwrap_or("unknown")),
        // The default store's name is static: no allocation on the common path.
        match store {
            None => KeyValue::new("store", crate::ids::DEFAULT_STORE),
            Some(name) => KeyValue::new("store", name.to_owned()),
        },
    ]
}

tokio::task_local! {
    /// The trace id of the request being handled, for the decision record.
    static TRACE_ID: Option<String>;
}

/// The trace id of the request this task serves, if it has one.
pub fn current_trace_id() -> Option<String> {
    TRACE_ID.try_with(Clone::clone).ok().flatten()
}

/// Parents a new request span under the caller's W3C `traceparent`, before it is first entered
/// (later, OpenTelemetry has already started it as a root). Without an OpenTelemetry layer there
/// is nothing to parent, and this does nothing.
pub fn adopt_parent(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if headers.contains_key("traceparent") {
        let _ = span.set_parent(incoming_context(headers));
    }
}

/// Middleware: makes the request's trace id (the span's, or the `traceparent`'s when nothing is
/// exported) available to the decision record ([`current_trace_id`]) and to JSON logs.
pub async fn trace_context(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let span = tracing::Span::current();
    let incoming = if request.headers().contains_key("traceparent") {
        incoming_context(request.headers())
    } else {
        opentelemetry::Context::new()
    };
    let id = trace_id(&span, &incoming);
    if let Some(id) = &id {
        span.record("trace_id", id.as_str());
    }
    TRACE_ID.scope(id, next.run(request)).await
}
