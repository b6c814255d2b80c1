//! The OpenSLO v1 documents as serde reads them, before validation: every
//! field optional where the spec allows it, unknown fields refused.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSloDoc {
    #[allow(dead_code)]
    pub(super) api_version: String,
    #[allow(dead_code)]
    pub(super) kind: String,
    pub(super) metadata: RawMetadata,
    pub(super) spec: RawSloSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSliDoc {
    #[allow(dead_code)]
    pub(super) api_version: String,
    #[allow(dead_code)]
    pub(super) kind: String,
    pub(super) metadata: RawMetadata,
    pub(super) spec: RawSliSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawHeader {
    pub(super) api_version: Option<String>,
    pub(super) kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMetadata {
    pub(super) name: String,
    pub(super) display_name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) labels: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSloSpec {
    pub(super) description: Option<String>,
    pub(super) service: String,
    pub(super) indicator: Option<RawInlineSli>,
    pub(super) indicator_ref: Option<String>,
    pub(super) time_window: Vec<RawTimeWindow>,
    pub(super) budgeting_method: String,
    pub(super) objectives: Vec<RawObjective>,
    #[serde(default)]
    #[allow(dead_code)]
    pub(super) alert_policies: Vec<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawInlineSli {
    pub(super) metadata: RawMetadata,
    pub(super) spec: RawSliSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSliSpec {
    pub(super) description: Option<String>,
    pub(super) threshold_metric: Option<RawMetric>,
    pub(super) ratio_metric: Option<RawRatio>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRatio {
    #[allow(dead_code)]
    pub(super) counter: Option<bool>,
    pub(super) good: Option<RawMetric>,
    pub(super) bad: Option<RawMetric>,
    pub(super) total: Option<RawMetric>,
    pub(super) raw_type: Option<String>,
    pub(super) raw: Option<RawMetric>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMetric {
    pub(super) metric_source: RawMetricSource,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMetricSource {
    pub(super) metric_source_ref: Option<String>,
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) spec: RawSourceSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawSourceSpec {
    pub(super) query: Option<String>,
    pub(super) service: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawTimeWindow {
    pub(super) duration: String,
    pub(super) is_rolling: Option<bool>,
    pub(super) calendar: Option<RawCalendar>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawCalendar {
    pub(super) start_time: String,
    pub(super) time_zone: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawObjective {
    pub(super) display_name: Option<String>,
    pub(super) op: Option<String>,
    pub(super) value: Option<f64>,
    pub(super) target: Option<f64>,
    pub(super) target_percent: Option<f64>,
    pub(super) time_slice_target: Option<f64>,
    pub(super) time_slice_window: Option<String>,
}
