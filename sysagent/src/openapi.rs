//! The API's description (sysagent/openapi.json), served at
//! `/v1/openapi.json` and checked here against the route table, so the
//! document cannot drift from what the agent answers: every route with its
//! methods and roles, and nothing else.

pub const DOCUMENT: &str = include_str!("../openapi.json");

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::routes::ROUTES;
    use serde_json::Value;
    use std::collections::BTreeMap;

    /// `/v1/services/{name}/logs` as the route table writes it: `/v1/services/{}/logs`.
    fn table_path(doc_path: &str) -> String {
        doc_path.split('/').map(|s| if s.starts_with('{') && s.ends_with('}') { "{}" } else { s }).collect::<Vec<_>>().join("/")
    }

    fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
        let mut out = BTreeMap::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                out.insert((method.to_uppercase(), table_path(path)), op.clone());
            }
        }
        out
    }

    #[test]
    fn the_document_describes_every_route_and_nothing_else() {
        let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut ops = operations(&doc);
        for route in ROUTES {
            let key = (route.method.to_string(), route.path.to_string());
            let op = ops.remove(&key).unwrap_or_else(|| panic!("{} {} is not in openapi.json", route.method, route.path));
            let roles: Vec<&str> = op["x-cairn-roles"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
            let want: Vec<&str> = route.roles.iter().map(|r| r.as_str()).collect();
            assert_eq!(roles, want, "{} {}: x-cairn-roles", route.method, route.path);
            assert_eq!(op["x-cairn-mutating"], route.mutating, "{} {}: x-cairn-mutating", route.method, route.path);
            assert!(op["responses"]["403"].is_object(), "{} {}: a role may be refused", route.method, route.path);
            if route.mutating {
                assert!(op["responses"]["409"].is_object(), "{} {}: one mutating action at a time", route.method, route.path);
            }
        }
        assert!(ops.is_empty(), "openapi.json describes routes the agent does not have: {:?}", ops.keys().collect::<Vec<_>>());
    }

    #[test]
    fn every_reference_resolves_and_the_error_kinds_are_the_agents() {
        let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::String(r)) = map.get("$ref") {
                        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
                        assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
                    }
                    map.values().for_each(|x| walk(x, doc));
                }
                Value::Array(items) => items.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        walk(&doc, &doc);
        let kinds: Vec<String> =
            doc["components"]["schemas"]["Error"]["properties"]["kind"]["enum"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
        for kind in crate::error::Kind::ALL {
            let name = serde_json::to_value(kind).unwrap();
            assert!(kinds.iter().any(|k| k == name.as_str().unwrap()), "{name} is not in the Error schema");
        }
        assert_eq!(kinds.len(), crate::error::Kind::ALL.len());
    }
}
