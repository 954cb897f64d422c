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
    render_into(View::Plain(value), 0, &mut out);
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

/// a value to render: as it is, or `project_onto(remote, desired)` without building it
#[derive(Clone, Copy)]
enum View<'a> {
    Plain(&'a Value),
    Projected(&'a Value, &'a Value),
}

impl<'a> View<'a> {
    /// the view's value when it is not a map seen through a projection
    fn plain(self) -> Option<&'a Value> {
        match self {
            View::Plain(value) => Some(value),
            View::Projected(remote, desired) => match (remote, desired) {
                (Value::Object(_), Value::Object(_)) => None,
                _ => Some(remote),
            },
        }
    }
}

static NULL: Value = Value::Null;

fn render_into(view: View<'_>, indent: usize, out: &mut String) {
    match view.plain() {
        // a map seen through the projection: the desired map's keys, each with the remote's value or null
        None => {
            let View::Projected(Value::Object(remote), Value::Object(desired)) = view else {
                return;
            };
            for (key, desired_field) in desired {
                let field = match remote.get(key) {
                    Some(remote_field) => View::Projected(remote_field, desired_field),
                    None => View::Plain(&NULL),
                };
                render_field(key, field, indent, out);
            }
        }
        Some(Value::Object(fields)) => {
            for (key, field) in fields {
                render_field(key, View::Plain(field), indent, out);
            }
        }
        Some(Value::Array(items)) => {
            for item in items {
                push_pad(indent, out);
                out.push_str("-\n");
                render_into(View::Plain(item), indent + 1, out);
            }
        }
        Some(scalar) => {
            push_pad(indent, out);
            push_scalar(scalar, out);
            out.push('\n');
        }
    }
}

fn render_field(key: &str, field: View<'_>, indent: usize, out: &mut String) {
    push_pad(indent, out);
    out.push_str(key);
    let nested = match field.plain() {
        // a projected map has the desired map's keys
        None => match field {
            View::Projected(_, Value::Object(desired)) => !desired.is_empty(),
            _ => false,
        },
        Some(Value::Object(inner)) => !inner.is_empty(),
        Some(Value::Array(items)) => !items.is_empty(),
        Some(_) => false,
    };
    if nested {
        out.push_str(":\n");
        render_into(field, indent + 1, out);
    } else {
        out.push_str(": ");
        match field.plain() {
            Some(value) => push_scalar(value, out),
            // an empty map, as JSON prints it
            None => out.push_str("{}"),
        }
        out.push('\n');
    }
}

/// .what = a unified diff from the live resource (projected onto the wish) to the wish, or `None` when equal
/// .why = the plan shows exactly which declared fields apply will change
pub fn unified_difference(remote: Option<&Value>, desired: &Value) -> Option<String> {
    let mut remote_text = String::new();
    if let Some(remote) = remote {
        render_into(View::Projected(remote, desired), 0, &mut remote_text);
    }
    let desired_text = render_document(desired);
    if remote_text == desired_text {
        return None;
    }
    Some(whole_block_hunks(&remote_text, &desired_text))
}

/// one line of a line diff: its tag, its number in the remote and desired texts (0-based), its text
struct DiffLine<'a> {
    tag: similar::ChangeTag,
    old: usize,
    new: usize,
    text: &'a str,
}

/// .what = a unified diff of two rendered documents whose hunks hold three lines of context and then whole
/// top-level blocks: a hunk never begins or ends inside a block (`password:` is shown with what it holds, a changed
/// `port:` with the `from:` it belongs to)
/// .why = a plan is read once: a hunk cut mid-block leaves the reader guessing what a line belongs to
fn whole_block_hunks(remote: &str, desired: &str) -> String {
    let diff = TextDiff::from_lines(remote, desired);
    let (mut old, mut new) = (0, 0);
    let lines: Vec<DiffLine<'_>> = diff
        .iter_all_changes()
        .map(|change| {
            let line = DiffLine {
                tag: change.tag(),
                old,
                new,
                text: change.value(),
            };
            match change.tag() {
                similar::ChangeTag::Equal => {
                    old += 1;
                    new += 1;
                }
                similar::ChangeTag::Delete => old += 1,
                similar::ChangeTag::Insert => new += 1,
            }
            line
        })
        .collect();
    // a line inside a block is indented (or a list item under a top-level key)
    let inside = |index: usize| lines[index].text.starts_with([' ', '-']);
    let mut shown = vec![false; lines.len()];
    for (index, line) in lines.iter().enumerate() {
        if line.tag != similar::ChangeTag::Equal {
            let from = index.saturating_sub(3);
            let to = (index + 3).min(lines.len() - 1);
            shown[from..=to].iter_mut().for_each(|shown| *shown = true);
        }
    }
    // widen each run to whole blocks: back to its block's key, on to the block's end
    let mut index = 0;
    while index < lines.len() {
        if !shown[index] {
            index += 1;
            continue;
        }
        let mut start = index;
        while start > 0 && inside(start) {
            start -= 1;
        }
        let mut end = index;
        while end + 1 < lines.len() && shown[end + 1] {
            end += 1;
        }
        while end + 1 < lines.len() && inside(end + 1) {
            end += 1;
        }
        shown[start..=end]
            .iter_mut()
            .for_each(|shown| *shown = true);
        index = end + 1;
    }
    let mut text = String::from("--- remote\n+++ desired\n");
    let mut index = 0;
    while index < lines.len() {
        if !shown[index] {
            index += 1;
            continue;
        }
        let mut end = index;
        while end + 1 < lines.len() && shown[end + 1] {
            end += 1;
        }
        let hunk = &lines[index..=end];
        let count = |tag: similar::ChangeTag| hunk.iter().filter(|line| line.tag != tag).count();
        let (old_len, new_len) = (
            count(similar::ChangeTag::Insert),
            count(similar::ChangeTag::Delete),
        );
        text.push_str(&format!(
            "@@ -{} +{} @@\n",
            hunk_range(hunk[0].old, old_len),
            hunk_range(hunk[0].new, new_len)
        ));
        for line in hunk {
            let sign = match line.tag {
                similar::ChangeTag::Equal => ' ',
                similar::ChangeTag::Delete => '-',
                similar::ChangeTag::Insert => '+',
            };
            text.push(sign);
            text.push_str(line.text);
            if !line.text.ends_with('\n') {
                text.push_str("\n\\ No newline at end of file\n");
            }
        }
        index = end + 1;
    }
    text
}

/// a hunk header's range as unified diffs write it: `start` (1-based) alone for one line, `start,len` otherwise,
/// the line before for none
fn hunk_range(start: usize, len: usize) -> String {
    match len {
        1 => format!("{}", start + 1),
        0 => format!("{start},0"),
        len => format!("{},{len}", start + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// a hunk begins at its block's key and ends where the block ends: `password:` is never left alone on a
    /// line, a changed `port:` shows the `from:` it belongs to
    #[test]
    fn hunks_hold_whole_blocks() {
        let remote = json!({
            "via": {"bastion": {"exid": "b"}},
            "from": {"host": "localhost", "port": 1},
            "status": "CLOSED",
            "connect": {"database": "d", "user": "u", "password": {"secret": "s"}},
            "idleClose": "5m",
        });
        let mut desired = remote.clone();
        desired["status"] = json!("OPEN");
        desired["connect"]["user"] = json!("v");
        let difference = unified_difference(Some(&remote), &desired).expect("a difference");
        assert_eq!(
            difference,
            "--- remote\n+++ desired\n@@ -4,10 +4,10 @@\n from:\n   host: localhost\n   port: 1\n-status: CLOSED\n+status: OPEN\n connect:\n   database: d\n-  user: u\n+  user: v\n   password:\n     secret: s\n idleClose: 5m\n"
        );
        // a change at the top level between top-level lines needs no widening
        let bastion = unified_difference(
            Some(&json!({"exid": "b", "status": "stopped"})),
            &json!({"exid": "b", "status": "running"}),
        );
        assert_eq!(
            bastion.as_deref(),
            Some(
                "--- remote\n+++ desired\n@@ -1,2 +1,2 @@\n exid: b\n-status: stopped\n+status: running\n"
            )
        );
        // a whole document against nothing
        let created = unified_difference(None, &json!({"exid": "b"}));
        assert_eq!(
            created.as_deref(),
            Some("--- remote\n+++ desired\n@@ -0,0 +1 @@\n+exid: b\n")
        );
    }

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

    /// documents of the shapes plans carry, and the edge cases of projection (missing keys, empty maps, lists,
    /// a scalar where a map is declared)
    fn shapes() -> Vec<Value> {
        vec![
            json!(null),
            json!("OPEN"),
            json!({}),
            json!({"exid": "b", "status": "running"}),
            json!({"exid": "b", "status": "stopped", "instanceId": "i-1"}),
            json!({"exid": "b"}),
            json!({"via": {"bastion": {"exid": "b"}, "mechanism": "aws.ssm"}, "from": {"port": 7775}, "status": "OPEN"}),
            json!({"via": {"bastion": {"exid": "c"}, "mechanism": "aws.ssm"}, "from": {"port": 7776, "host": "localhost"}, "status": "CLOSED", "pid": 5}),
            json!({"via": "gone", "from": {}, "status": null}),
            json!({"via": {}, "from": {"port": [1, 2, {"x": 1}]}, "status": true}),
            json!({"tags": [], "from": {"port": 1.5}}),
            json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 10}),
            json!({"a": 0, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 11}),
            json!({"j": 10, "i": 9, "h": 8, "g": 7, "f": 6, "e": 5, "d": 4, "c": 3, "b": 2, "a": 1}),
        ]
    }

    #[test]
    fn the_projection_renders_as_the_built_projection_would() {
        for remote in shapes() {
            for desired in shapes() {
                let mut direct = String::new();
                render_into(View::Projected(&remote, &desired), 0, &mut direct);
                assert_eq!(
                    direct,
                    render_document(&project_onto(&remote, &desired)),
                    "{remote} onto {desired}"
                );
            }
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
