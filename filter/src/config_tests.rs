//! Unit tests for [`super::FilterConfig::parse`].

use super::*;

fn parse(s: &str) -> Result<FilterConfig, ConfigError> {
    FilterConfig::parse(Some(s.as_bytes()))
}

/// Asserts that `input` is rejected and the message mentions `needle`.
fn rejected(input: &str, needle: &str) -> Result<(), String> {
    match parse(input) {
        Ok(cfg) => Err(format!("{input:?} accepted as {cfg:?}")),
        Err(e) if e.to_string().contains(needle) => Ok(()),
        Err(e) => Err(format!("{input:?}: message {e:?} lacks {needle:?}")),
    }
}

#[test]
fn minimal_config_gets_defaults() -> Result<(), ConfigError> {
    let cfg = parse(r#"{"cluster": "proxy_acme_sidecar"}"#)?;
    assert_eq!(
        cfg,
        FilterConfig {
            cluster: "proxy_acme_sidecar".to_owned(),
            timeout: Duration::from_millis(1000),
            authority: "proxy-acme".to_owned(),
            max_token_length: 128,
            on_demand: false,
            on_demand_per_second: 10,
            sidecar_retry: Duration::from_millis(3000),
        }
    );
    Ok(())
}

#[test]
fn full_config() -> Result<(), ConfigError> {
    let cfg =
        parse(r#"{"cluster": "c", "timeout_ms": 60000, "authority": "acme.local:8080", "max_token_length": 16}"#)?;
    assert_eq!(cfg.cluster, "c");
    assert_eq!(cfg.timeout, Duration::from_millis(60_000));
    assert_eq!(cfg.authority, "acme.local:8080");
    assert_eq!(cfg.max_token_length, 16);
    let cfg = parse(r#"{"cluster": "c", "timeout_ms": 1, "max_token_length": 1024}"#)?;
    assert_eq!(cfg.timeout, Duration::from_millis(1));
    assert_eq!(cfg.max_token_length, 1024);
    Ok(())
}

#[test]
fn on_demand_is_off_unless_asked_for_and_typed() -> Result<(), String> {
    let cfg = parse(r#"{"cluster": "c", "on_demand": true, "on_demand_per_second": 3}"#).map_err(|e| e.to_string())?;
    assert!(cfg.on_demand);
    assert_eq!(cfg.on_demand_per_second, 3);
    assert!(!parse(r#"{"cluster": "c"}"#).map_err(|e| e.to_string())?.on_demand);
    rejected(r#"{"cluster": "c", "on_demand": "yes"}"#, "on_demand must be true or false, got \"yes\"")?;
    rejected(r#"{"cluster": "c", "on_demand_per_second": 0}"#, "on_demand_per_second must be between 1 and 1000, got 0")
}

#[test]
fn null_optional_fields_mean_default() -> Result<(), ConfigError> {
    let cfg = parse(r#"{"cluster": "c", "timeout_ms": null, "authority": null}"#)?;
    assert_eq!(cfg.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
    assert_eq!(cfg.authority, DEFAULT_AUTHORITY);
    Ok(())
}

#[test]
fn missing_cluster() -> Result<(), String> {
    rejected(r#"{"timeout_ms": 5}"#, "cluster is required")?;
    rejected(r#"{"cluster": null}"#, "cluster is required")
}

#[test]
fn empty_cluster() -> Result<(), String> {
    rejected(r#"{"cluster": ""}"#, "cluster must not be empty")
}

#[test]
fn cluster_wrong_type() -> Result<(), String> {
    rejected(r#"{"cluster": 5}"#, "cluster must be a string, got 5")
}

#[test]
fn timeout_out_of_range() -> Result<(), String> {
    rejected(r#"{"cluster": "c", "timeout_ms": 0}"#, "timeout_ms must be between 1 and 60000, got 0")?;
    rejected(r#"{"cluster": "c", "timeout_ms": 60001}"#, "timeout_ms must be between 1 and 60000, got 60001")?;
    rejected(r#"{"cluster": "c", "timeout_ms": -1}"#, "timeout_ms must be between")?;
    rejected(r#"{"cluster": "c", "timeout_ms": 1.5}"#, "timeout_ms must be between")?;
    rejected(r#"{"cluster": "c", "timeout_ms": "1000"}"#, "timeout_ms must be an integer")
}

#[test]
fn max_token_length_out_of_range() -> Result<(), String> {
    rejected(r#"{"cluster": "c", "max_token_length": 15}"#, "max_token_length must be between 16 and 1024, got 15")?;
    rejected(r#"{"cluster": "c", "max_token_length": 1025}"#, "max_token_length must be between 16 and 1024, got 1025")
}

#[test]
fn bad_authority() -> Result<(), String> {
    rejected(r#"{"cluster": "c", "authority": ""}"#, "authority must not be empty")?;
    rejected(r#"{"cluster": "c", "authority": "a b"}"#, "authority must contain")?;
    rejected(r#"{"cluster": "c", "authority": "a\nb"}"#, "authority must contain")?;
    rejected(r#"{"cluster": "c", "authority": true}"#, "authority must be a string")
}

#[test]
fn unknown_field() -> Result<(), String> {
    rejected(r#"{"cluster": "c", "clutser": "d"}"#, "unknown field `clutser`")
}

#[test]
fn duplicate_field() -> Result<(), String> {
    rejected(r#"{"cluster": "c", "cluster": "d"}"#, "duplicate field `cluster`")
}

#[test]
fn non_json() -> Result<(), String> {
    rejected("cluster = c", "not valid JSON")?;
    rejected(r#"{"cluster": "c"} trailing"#, "not valid JSON")?;
    rejected(r#"{"cluster": "c""#, "not valid JSON")
}

#[test]
fn json_but_not_an_object() -> Result<(), String> {
    rejected("[]", "expected a JSON object with a \"cluster\" field")?;
    rejected(r#""cluster""#, "expected a JSON object")?;
    rejected("null", "expected a JSON object")
}

#[test]
fn missing_or_blank() {
    assert_eq!(FilterConfig::parse(None), Err(ConfigError::Missing));
    assert_eq!(FilterConfig::parse(Some(b"")), Err(ConfigError::Missing));
    assert_eq!(FilterConfig::parse(Some(b" \n")), Err(ConfigError::Missing));
}

#[test]
fn non_utf8() {
    assert_eq!(FilterConfig::parse(Some(b"{\"cluster\": \"\xff\"}")), Err(ConfigError::NotUtf8));
}

#[test]
fn sidecar_retry_is_bounded_and_can_be_off() -> Result<(), String> {
    let off = parse(r#"{"cluster": "c", "sidecar_retry_ms": 0}"#).map_err(|e| e.to_string())?;
    assert_eq!(off.sidecar_retry, Duration::ZERO);
    rejected(r#"{"cluster": "c", "sidecar_retry_ms": 30001}"#, "sidecar_retry_ms must be between 0 and 30000")?;
    rejected(r#"{"cluster": "c", "sidecar_retry_ms": "3s"}"#, "sidecar_retry_ms must be an integer")
}
