//! The names in Envoy's routes, from its admin `/config_dump`: every
//! virtual host's `domains`, in static and dynamic route configurations
//! (RDS included) and in route configurations inline in listeners.

use serde_json::Value;

/// Each virtual host's `domains`, in the order Envoy lists them; the same
/// list seen twice (a route configuration used by two listeners) once.
pub fn virtual_hosts(config_dump: &Value) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    walk(config_dump, &mut found);
    let mut unique: Vec<Vec<String>> = Vec::new();
    for domains in found {
        if !unique.contains(&domains) {
            unique.push(domains);
        }
    }
    unique
}

fn walk(value: &Value, found: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(hosts)) = map.get("virtual_hosts") {
                for host in hosts {
                    if let Some(Value::Array(domains)) = host.get("domains") {
                        let domains: Vec<String> =
                            domains.iter().filter_map(Value::as_str).map(str::to_owned).collect();
                        if !domains.is_empty() {
                            found.push(domains);
                        }
                    }
                }
            }
            for (key, child) in map {
                if key != "virtual_hosts" {
                    walk(child, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_dynamic_and_inline_route_configs_are_all_read_once() {
        let dump = serde_json::json!({
          "configs": [
            {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
             "static_listeners": [{"listener": {"filter_chains": [{"filters": [{"typed_config": {
               "route_config": {"virtual_hosts": [{"name": "a", "domains": ["a.test", "www.a.test:80"]}]}}}]}]}}]},
            {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
             "static_route_configs": [{"route_config": {"virtual_hosts": [{"name": "a", "domains": ["a.test", "www.a.test:80"]}]}}],
             "dynamic_route_configs": [{"version_info": "2", "route_config": {"name": "rds",
               "virtual_hosts": [{"name": "all", "domains": ["*"]}, {"name": "new", "domains": ["new.test"]}]}}]}
          ]
        });
        assert_eq!(
            virtual_hosts(&dump),
            vec![
                vec!["a.test".to_owned(), "www.a.test:80".to_owned()],
                vec!["*".to_owned()],
                vec!["new.test".to_owned()],
            ]
        );
    }
}
