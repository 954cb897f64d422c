use serde_json::Value;
use similar::TextDiff;

/// .what = the part of `remote` that has the shape of `desired`
/// .why = a plan compares only what was declared; live metadata (instance ids, pids, ips) is not drift
pub fn project_onto(remote: &Value, desired: &Value) -> Value {
    match (remote, desired) {
        (Value::Object(remote_fields), Value::Object(desired_fields)) => Value::Object(
            desired_fields
                .iter()
                .map(|(key, desired_value)| {
                    let projected = remote_fields.get(key).map_or(Value::Null, |remote_value| {
                        project_onto(remote_value, desired_value)
                    });
                    (key.clone(), projected)
                })
                .collect(),
        ),
        _ => remote.clone(),
    }
}

/// .what = whether `project_onto(remote, desired) == *desired`, without building the projection
/// .why = every resource of every plan asks this; it should cost no allocation
pub fn projection_equals(remote: &Value, desired: &Value) -> bool {
    match (remote, desired) {
        (Value::Object(remote_fields), Value::Object(desired_fields)) => {
            desired_fields
                .iter()
                .all(|(key, desired_value)| match remote_fields.get(key) {
                    Some(remote_value) => projection_equals(remote_value, desired_value),
                    None => desired_value.is_null(),
                })
        }
        _ => remote == desired,
    }
}

/// .what = a value rendered as indented `key: value` lines, in the manifest's own YAML style
/// .why = plan diffs read like the manifest the user wrote, not like JSON
pub fn render_document(value: &Value) -> String {
    let mut out = String::new();
    render_into(value, 0, &mut out);
    out
}

fn push_scalar(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::String(text) => out.push_str(text),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number.to_string()),
        other => out.push_str(&other.to_string()),
    }
}

fn push_pad(indent: usize, out: &mut String) {
    for _ in 0..indent {
        out.push_str("  ");
    }
}

fn render_into(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields {
                push_pad(indent, out);
                out.push_str(key);
                match field {
                    Value::Object(inner) if !inner.is_empty() => {
                        out.push_str(":\n");
                        render_into(field, indent + 1, out);
                    }
                    Value::Array(items) if !items.is_empty() => {
                        out.push_str(":\n");
                        render_into(field, indent + 1, out);
                    }
                    _ => {
                        out.push_str(": ");
                        push_scalar(field, out);
                        out.push('\n');
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                push_pad(indent, out);
                out.push_str("-\n");
                render_into(item, indent + 1, out);
            }
        }
        scalar => {
            push_pad(indent, out);
            push_scalar(scalar, out);
            out.push('\n');
        }
    }
}

/// .what = a unified diff from the live resource (projected onto the wish) to the wish, or `None` when equal
/// .why = the plan shows exactly which declared fields apply will change
pub fn unified_difference(remote: Option<&Value>, desired: &Value) -> Option<String> {
    let remote_text = remote
        .map(|remote| render_document(&project_onto(remote, desired)))
        .unwrap_or_default();
    let desired_text = render_document(desired);
    if remote_text == desired_text {
        return None;
    }
    Some(
        TextDiff::from_lines(&remote_text, &desired_text)
            .unified_diff()
            .context_radius(3)
            .header("remote", "desired")
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn projection_drops_live_metadata_and_keeps_missing_fields_as_null() {
        let remote = json!({"exid": "b", "status": "stopped", "instanceId": "i-1"});
        let desired = json!({"exid": "b", "status": "running", "tags": {"a": 1}});
        assert_eq!(
            project_onto(&remote, &desired),
            json!({"exid": "b", "status": "stopped", "tags": null})
        );
    }

    #[test]
    fn projection_equals_agrees_with_the_projection() {
        let cases = [
            (json!({"a": 1, "b": 2}), json!({"a": 1})),
            (json!({"a": 1}), json!({"a": 1, "b": null})),
            (json!({"a": 1}), json!({"a": 1, "b": 2})),
            (json!({"a": {"x": 1, "y": 2}}), json!({"a": {"x": 1}})),
            (json!({"a": {"x": 1}}), json!({"a": {"x": 2}})),
            (json!({"a": [1, {"x": 1}]}), json!({"a": [1, {"x": 1}]})),
            (
                json!({"a": [1, {"x": 1, "y": 2}]}),
                json!({"a": [1, {"x": 1}]}),
            ),
            (json!("OPEN"), json!({"status": "OPEN"})),
            (json!(null), json!(null)),
        ];
        for (remote, desired) in cases {
            assert_eq!(
                projection_equals(&remote, &desired),
                project_onto(&remote, &desired) == desired,
                "{remote} onto {desired}"
            );
        }
    }

    #[test]
    fn difference_names_the_changed_line_only() {
        let remote = json!({"exid": "b", "status": "stopped", "instanceId": "i-1"});
        let desired = json!({"exid": "b", "status": "running"});
        let difference = unified_difference(Some(&remote), &desired).expect("they differ");
        assert!(difference.contains("-status: stopped"), "{difference}");
        assert!(difference.contains("+status: running"), "{difference}");
        assert!(!difference.contains("instanceId"), "{difference}");
    }

    #[test]
    fn no_difference_when_the_declared_fields_match() {
        let remote = json!({"exid": "b", "status": "running", "instanceId": "i-1"});
        let desired = json!({"exid": "b", "status": "running"});
        assert_eq!(unified_difference(Some(&remote), &desired), None);
    }

    #[test]
    fn nested_values_render_as_indented_lines() {
        let value = json!({"via": {"bastion": {"exid": "b"}}, "from": {"port": 7775}});
        assert_eq!(
            render_document(&value),
            "via:\n  bastion:\n    exid: b\nfrom:\n  port: 7775\n"
        );
    }
}
