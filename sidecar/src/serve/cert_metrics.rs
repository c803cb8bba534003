//! The four gauges every certificate has (expiry, next order and why,
//! failures in a row, last success), kept as one small record per
//! certificate and encoded when `/metrics` is scraped. As four
//! prometheus-client families they held about 420 B per certificate in
//! label strings, atomics and hash tables (heaptrack, 50,000
//! certificates); this is one map entry and the name.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue};
use prometheus_client::metrics::MetricType;

use super::metrics::{unix, CertificateState};

/// What the gauges show of one certificate.
#[derive(Debug, Clone, Copy, Default)]
struct Series {
    not_after: Option<i64>,
    renew_at: Option<(i64, &'static str)>,
    failures: u32,
    /// Once set, kept (as the gauge it replaces was).
    last_success: Option<i64>,
}

/// Every certificate's gauges, by name.
#[derive(Debug, Default)]
pub(crate) struct CertGauges(Mutex<BTreeMap<Box<str>, Series>>);

impl CertGauges {
    /// Records one certificate's state.
    pub(crate) fn set(&self, name: &str, state: &CertificateState) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let series = match all.get_mut(name) {
            Some(series) => series,
            None => all.entry(name.into()).or_default(),
        };
        series.not_after = state.not_after.map(unix);
        series.renew_at = state.renew_at.map(|(at, reason)| (unix(at), reason));
        series.failures = state.failures;
        if let Some(t) = state.last_success {
            series.last_success = Some(unix(t));
        }
    }
}

/// One gauge family: its series in name order; nothing when it has none.
fn family<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder<'_>,
    all: &BTreeMap<Box<str>, Series>,
    (name, help): (&str, &str),
    value: impl Fn(&Series) -> Option<(V, Option<&'static str>)>,
) -> Result<(), std::fmt::Error> {
    let mut series = all.iter().filter_map(|(certificate, s)| value(s).map(|v| (&**certificate, v))).peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (certificate, (v, reason)) in series {
        match reason {
            Some(reason) => {
                metric.encode_family(&[("certificate", certificate), ("reason", reason)])?.encode_gauge(&v)?
            }
            None => metric.encode_family(&[("certificate", certificate)])?.encode_gauge(&v)?,
        }
    }
    Ok(())
}

impl Collector for CertGauges {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let e = &mut encoder;
        family(e, &all, ("certificate_not_after_seconds", "Expiry of the deployed certificate"), |s| {
            s.not_after.map(|t| (t, None))
        })?;
        family(
            e,
            &all,
            ("certificate_renew_at_seconds", "When the certificate will be ordered again, and why (reason)"),
            |s| s.renew_at.map(|(t, reason)| (t, Some(reason))),
        )?;
        family(e, &all, ("certificate_consecutive_failures", "Orders failed in a row since the last success"), |s| {
            Some((i64::from(s.failures), None))
        })?;
        family(
            e,
            &all,
            (
                "certificate_last_success_seconds",
                "Time of the last successful order (after a restart: the stored certificate's notBefore)",
            ),
            |s| s.last_success.map(|t| (t, None)),
        )
    }
}
