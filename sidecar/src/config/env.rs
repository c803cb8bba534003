//! Environment overrides for any setting, for containers and replicas:
//! `PROXY_ACME_<PATH>`, the path's keys separated by `__`, upper or lower
//! case, e.g. `PROXY_ACME_STORAGE__ETCD__REPLICA=gateway-1` sets
//! `[storage.etcd] replica`, `PROXY_ACME_RESOLVERS__LE__EMAIL=...` sets
//! `[resolvers.le] email`, `PROXY_ACME_CERTIFICATES__0__DOMAINS=["a.example"]`
//! the first `[[certificates]]` entry's domains. A variable overrides the
//! file; the value is read as a TOML value when it is one (`8555`, `true`,
//! `["a", "b"]`, `"quoted"`), else taken as a string (`gateway-1`).
//!
//! Variables without `__` (`PROXY_ACME_LOG`, `PROXY_ACME_CONFIG`, ...) are
//! not settings and are left alone. Pure: the variables come in as a list.

use toml::{Table, Value};

use super::ConfigError;

const PREFIX: &str = "PROXY_ACME_";

/// One override: the variable, the lower-cased key path, the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub variable: String,
    pub path: Vec<String>,
    pub value: String,
}

/// The overrides among `vars` (name, value), in name order.
pub fn overrides(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Override> {
    let mut found: Vec<Override> = vars
        .into_iter()
        .filter_map(|(variable, value)| {
            let rest = variable.strip_prefix(PREFIX)?;
            rest.contains("__").then(|| Override {
                path: rest.split("__").map(str::to_ascii_lowercase).collect(),
                variable: variable.clone(),
                value,
            })
        })
        .collect();
    found.sort_by(|a, b| a.variable.cmp(&b.variable));
    found
}

/// Sets each override in `table` (the file as parsed).
pub fn apply(table: &mut Table, overrides: &[Override]) -> Result<(), ConfigError> {
    for o in overrides {
        let refuse = |why: String| ConfigError::invalid(o.variable.clone(), why);
        if o.path.iter().any(String::is_empty) {
            return Err(refuse("an empty key: separate keys with exactly two underscores".into()));
        }
        set(table, &o.path, &o.value, &refuse)?;
    }
    Ok(())
}

/// Sets `path` (at least one key) in `table` to `text`'s value.
fn set(
    table: &mut Table,
    path: &[String],
    text: &str,
    refuse: &dyn Fn(String) -> ConfigError,
) -> Result<(), ConfigError> {
    let (key, rest) = path.split_first().ok_or_else(|| refuse("no key".into()))?;
    if rest.is_empty() {
        table.insert(key.clone(), value(text));
        return Ok(());
    }
    match table.entry(key.clone()).or_insert_with(|| Value::Table(Table::new())) {
        Value::Table(inner) => set(inner, rest, text, refuse),
        Value::Array(items) => {
            let (index, rest) = rest.split_first().ok_or_else(|| refuse("no key".into()))?;
            let index: usize = index
                .parse()
                .map_err(|_| refuse(format!("{key} is a list: the next key must be an index (0, 1, ...)")))?;
            set_in_array(items, index, rest, text, refuse)
        }
        _ => Err(refuse(format!("{key} is a value, not a table"))),
    }
}

/// `items[index]` (appended when `index` is one past the end), then the rest of the path in it.
fn set_in_array(
    items: &mut Vec<Value>,
    index: usize,
    rest: &[String],
    text: &str,
    refuse: &dyn Fn(String) -> ConfigError,
) -> Result<(), ConfigError> {
    if index == items.len() {
        items.push(Value::Table(Table::new()));
    }
    let item = items.get_mut(index).ok_or_else(|| refuse(format!("no entry {index} in that list")))?;
    match item {
        item if rest.is_empty() => {
            *item = value(text);
            Ok(())
        }
        Value::Table(table) => set(table, rest, text, refuse),
        _ => Err(refuse(format!("entry {index} is a value, not a table"))),
    }
}

/// `text` as a TOML value when it is one, else as a string.
fn value(text: &str) -> Value {
    format!("v = {text}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn only_prefixed_variables_with_a_path_are_settings() {
        let found = overrides(vars(&[
            ("PROXY_ACME_LOG", "debug"),
            ("PROXY_ACME_CONFIG", "/etc/x.toml"),
            ("HOME", "/root"),
            ("PROXY_ACME_STORAGE__ETCD__REPLICA", "gateway-1"),
        ]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, ["storage", "etcd", "replica"]);
    }

    #[test]
    fn values_are_typed_when_they_are_toml_and_strings_otherwise() {
        let mut table: Table =
            "[listen]\nhttp = \"127.0.0.1:8555\"\n[[certificates]]\nname = \"a\"\ndomains = [\"a.test\"]\nresolver = \"le\"\n"
                .parse()
                .unwrap();
        let found = overrides(vars(&[
            ("PROXY_ACME_STORAGE__ETCD__REPLICA", "gateway-1"),
            ("PROXY_ACME_LISTEN__HTTP", "0.0.0.0:8555"),
            ("PROXY_ACME_ENVOY__PLACEHOLDER", "false"),
            ("PROXY_ACME_CERTIFICATES__0__DOMAINS", "[\"b.test\", \"www.b.test\"]"),
            ("PROXY_ACME_RESOLVERS__LE__RATE_LIMIT__ORDERS", "50"),
        ]));
        apply(&mut table, &found).unwrap();
        assert_eq!(table["storage"]["etcd"]["replica"].as_str(), Some("gateway-1"));
        assert_eq!(table["listen"]["http"].as_str(), Some("0.0.0.0:8555"));
        assert_eq!(table["envoy"]["placeholder"].as_bool(), Some(false));
        assert_eq!(table["certificates"][0]["domains"][1].as_str(), Some("www.b.test"));
        assert_eq!(table["certificates"][0]["name"].as_str(), Some("a"), "the rest of the entry stays");
        assert_eq!(table["resolvers"]["le"]["rate_limit"]["orders"].as_integer(), Some(50));
    }

    #[test]
    fn a_path_that_does_not_fit_names_the_variable() {
        let mut table: Table = "[listen]\nhttp = \"127.0.0.1:8555\"\n".parse().unwrap();
        let error = apply(&mut table, &overrides(vars(&[("PROXY_ACME_LISTEN__HTTP__PORT", "1")]))).unwrap_err();
        assert!(error.to_string().starts_with("PROXY_ACME_LISTEN__HTTP__PORT: http is a value"), "{error}");
        let error = apply(&mut table, &overrides(vars(&[("PROXY_ACME_LISTEN____HTTP", "1")]))).unwrap_err();
        assert!(error.to_string().contains("exactly two underscores"), "{error}");
    }
}
