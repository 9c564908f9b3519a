//! The control plane's Prometheus metrics, served as text on `/metrics` of its main address
//! (beside gRPC) and of `--metrics-listen`. Labels come from data planes' groups, snapshot
//! versions and upstream names the registry holds, never from request content.

use crate::dataplanes::DataPlanes;
use crate::upstreams::follow::Status;
use crate::upstreams::records::HealthState;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;

/// Every control-plane metric, registered once per process.
pub struct Metrics {
    registry: Registry,
    /// group, version: connected data planes (as of the scrape).
    pub dataplanes: IntGaugeVec,
    pub pushes: IntCounter,
    pub acks: IntCounter,
    pub nacks: IntCounter,
    pub push_to_ack: HistogramVec,
    /// op, outcome.
    pub store_ops: IntCounterVec,
    /// upstream, kind (refresh, check), outcome (ok, error).
    pub discovery: IntCounterVec,
    /// upstream: 1 healthy, 0 unhealthy or unknown (as of the scrape).
    pub upstream_healthy: IntGaugeVec,
    /// 1 when this replica leads discovery.
    pub leader: IntGauge,
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            r.register(c).expect("registered once");
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let push_to_ack = HistogramVec::new(
            HistogramOpts::new(
                "switchboard_cp_push_to_ack_seconds",
                "Time from sending a snapshot to its ACK or NACK.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["result"],
        )
        .expect("valid metric");
        reg(Box::new(push_to_ack.clone()));
        let leader = IntGauge::new(
            "switchboard_cp_discovery_leader",
            "1 when this replica leads upstream discovery.",
        )
        .expect("valid metric");
        reg(Box::new(leader.clone()));
        Metrics {
            dataplanes: gauge_vec(
                "switchboard_cp_dataplanes",
                "Data planes connected to this replica, by group and acknowledged version.",
                &["group", "version"],
            ),
            pushes: counter(
                "switchboard_cp_pushes_total",
                "Snapshots pushed to data planes.",
            ),
            acks: counter(
                "switchboard_cp_acks_total",
                "Snapshots data planes applied.",
            ),
            nacks: counter(
                "switchboard_cp_nacks_total",
                "Snapshots data planes rejected.",
            ),
            push_to_ack,
            store_ops: counter_vec(
                "switchboard_cp_store_operations_total",
                "Store operations, by operation and outcome.",
                &["op", "outcome"],
            ),
            discovery: counter_vec(
                "switchboard_cp_discovery_total",
                "Catalog listings and health checks of upstreams, by result.",
                &["upstream", "kind", "outcome"],
            ),
            upstream_healthy: gauge_vec(
                "switchboard_cp_upstream_healthy",
                "1 when the discovery leader last found the upstream healthy.",
                &["upstream"],
            ),
            leader,
            registry: r,
        }
    }

    /// The text exposition, with the gauges read from `dataplanes` and `status` now.
    pub fn render(&self, dataplanes: &DataPlanes, status: &Status, replica: &str) -> Vec<u8> {
        self.dataplanes.reset();
        for dp in dataplanes.list() {
            self.dataplanes
                .with_label_values(&[dp.group.as_str(), dp.acked_version.as_str()])
                .inc();
        }
        self.upstream_healthy.reset();
        for (name, h) in &status.health {
            let up = i64::from(h.state == HealthState::Healthy);
            self.upstream_healthy
                .with_label_values(&[name.as_str()])
                .set(up);
        }
        let leads = status.leader.as_ref().is_some_and(|l| l.holder == replica);
        self.leader.set(i64::from(leads));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
