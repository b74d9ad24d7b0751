//! Logs through `tracing` (JSON in production, pretty in a terminal) and metrics through the `metrics`
//! facade, rendered as Prometheus text by `GET /metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogFormat, TelemetrySettings};

/// Flushes exported traces when dropped (at shutdown).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("fieldbot: flushing traces failed: {e}");
        }
    }
}

/// A tracer provider exporting spans over OTLP/HTTP (protobuf) to `endpoint`, batched on its own thread.
pub fn otlp_provider(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| anyhow::anyhow!("telemetry.otlp_endpoint {endpoint:?}: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("fieldbot")
                .build(),
        )
        .build())
}

/// Installs the global subscriber. `RUST_LOG` wins over the configured filter. Writes to `sink`, so tests
/// can stay quiet. With `telemetry.otlp_endpoint` set, spans are exported over OTLP too; keep the guard
/// alive until shutdown so the last spans are flushed.
pub fn init_tracing<W>(settings: &TelemetrySettings, sink: W) -> anyhow::Result<TelemetryGuard>
where
    W: for<'a> fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .map_err(|e| anyhow::anyhow!("telemetry.filter {:?}: {e}", settings.filter))?;
    let provider = match settings.otlp_endpoint.trim() {
        "" => None,
        endpoint => Some(otlp_provider(endpoint)?),
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("fieldbot")));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match settings.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(sink),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().with_writer(sink)).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("tracing subscriber already installed: {e}"))?;
    Ok(TelemetryGuard { provider })
}

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder; installed once even when several applications run in one process
/// (the test suite).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            start_upkeep(handle.clone(), UPKEEP_EVERY);
            Some(handle)
        })
        .clone()
}

/// How often the recorder folds the histogram samples recorded since into its buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The recorder keeps every histogram sample until upkeep folds it into the buckets; only the exporter's
/// own HTTP listener runs upkeep by itself, and `/metrics` is served by the application, so without this
/// every sample recorded between two scrapes stays in memory: a few bytes per activity, without bound when
/// nothing scrapes (it was most of the heap in the load benchmark). A thread, not a task: the recorder is
/// per process and outlives any one runtime.
fn start_upkeep(handle: PrometheusHandle, every: Duration) {
    let started = std::thread::Builder::new()
        .name("fieldbot-metrics".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histogram samples are folded at each scrape only");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// Spans reach an OTLP/HTTP collector as protobuf.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_are_exported_over_otlp() {
        let collector = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/traces"))
            .respond_with(ResponseTemplate::new(200))
            .expect(1..)
            .mount(&collector)
            .await;
        let endpoint = format!("{}/v1/traces", collector.uri());
        let provider = tokio::task::spawn_blocking(move || {
            let provider = otlp_provider(&endpoint).unwrap();
            let subscriber = tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("fieldbot")));
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!("activity", activity.id = "a1");
                let _entered = span.enter();
                tracing::info!("inside");
            });
            provider.force_flush().unwrap();
            provider
        })
        .await
        .unwrap();
        let received = collector.received_requests().await.unwrap();
        assert!(!received.is_empty(), "the collector got the spans");
        assert_eq!(
            received[0].headers.get("content-type").unwrap(),
            "application/x-protobuf"
        );
        tokio::task::spawn_blocking(move || provider.shutdown().unwrap())
            .await
            .unwrap();
    }
}
