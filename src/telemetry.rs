//! Logs and traces for the binary: `tracing` to stderr as text or JSON, and, only when an
//! OTLP endpoint is configured, spans exported over OTLP (gRPC or HTTP/protobuf) with W3C
//! trace-context propagation. Without an endpoint no OpenTelemetry layer is installed, so
//! tracing costs what plain logging costs.

use crate::cli::{LogFormat, OtlpProtocol, TelemetryGlobal};
use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Keeps the exporter (and the runtime its gRPC client lives on) alive; flushes on drop.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// The OTLP traces URL for HTTP, from a base or a full endpoint.
fn http_traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

fn tracer_provider(
    endpoint: &str,
    protocol: OtlpProtocol,
    service: &str,
) -> anyhow::Result<(SdkTracerProvider, Option<tokio::runtime::Runtime>)> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_string())
        .build();
    let build = |exporter: opentelemetry_otlp::SpanExporter| {
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.clone())
            .build()
    };
    match protocol {
        OtlpProtocol::Grpc => {
            // The tonic client needs a runtime of its own that outlives every span.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("otlp")
                .enable_all()
                .build()
                .context("starting the OTLP runtime")?;
            let provider = rt.block_on(async {
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .build()
                    .map(build)
            })?;
            Ok((provider, Some(rt)))
        }
        OtlpProtocol::HttpProtobuf => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(http_traces_url(endpoint))
                .build()?;
            Ok((build(exporter), None))
        }
    }
}

/// Installs the global subscriber; `service` names this process in traces.
pub fn init(filter: &str, format: LogFormat, otlp: &TelemetryGlobal, service: &str) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    let mut telemetry = Telemetry {
        provider: None,
        _runtime: None,
    };
    let mut failed = None;
    let otel = match otlp.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        None => None,
        Some(endpoint) => match tracer_provider(endpoint, otlp.otlp_protocol, service) {
            Ok((provider, rt)) => {
                opentelemetry::global::set_text_map_propagator(
                    opentelemetry_sdk::propagation::TraceContextPropagator::new(),
                );
                let tracer = provider.tracer("switchboard");
                switchboard_dataplane::tracecontext::enable();
                telemetry.provider = Some(provider);
                telemetry._runtime = rt;
                Some(tracing_opentelemetry::layer().with_tracer(tracer))
            }
            Err(e) => {
                failed = Some(format!("{e:#}"));
                None
            }
        },
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    if let Some(e) = failed {
        tracing::error!(error = %e, "cannot export traces over OTLP; running without");
    } else if let Some(endpoint) = &otlp.otlp_endpoint {
        tracing::info!(%endpoint, protocol = ?otlp.otlp_protocol, "exporting traces over OTLP");
    }
    telemetry
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_endpoints_get_the_traces_path_once() {
        assert_eq!(
            super::http_traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            super::http_traces_url("http://c/v1/traces"),
            "http://c/v1/traces"
        );
    }
}
