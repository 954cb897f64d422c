//! .what = a deserialization failure (`ManifestDeError`, as data) turned into a located diagnostic: the key or
//! value it is about, what is wrong and what to do
//! .why = one place words every manifest type error; it matches on the failure's kind, never on its message

use std::sync::Arc;

use miette::NamedSource;
use serde_json::Value;

use super::de_error::ManifestDeError;
use super::error::ManifestError;
use super::yaml_tree::{Node, NodeValue, Step};

/// .what = the diagnostic for `failure` at `steps` within `node` (at `full_path` in the file)
/// .why = see the module
pub(super) fn translate(
    failure: &ManifestDeError,
    node: &Node,
    steps: &[Step],
    full_path: &[Step],
    source: &Arc<NamedSource<String>>,
) -> ManifestError {
    let text = source.inner();
    let target = node.walk(steps);
    let at_value = target.span;
    let where_ = describe(full_path);
    let message = failure.message();
    if let ManifestDeError::UnknownField {
        field, expected, ..
    } = failure
    {
        let field = field.as_str();
        // the path may end at the map that holds the field, or at the field itself
        let key_span = target
            .entry(field)
            .map(|(key, _)| key.span)
            .or_else(|| {
                let parent = node.walk(&steps[..steps.len().saturating_sub(1)]);
                parent.entry(field).map(|(key, _)| key.span)
            })
            .unwrap_or(at_value);
        let where_ = describe(&strip_key(full_path, field));
        let map = if target.entry(field).is_some() {
            target
        } else {
            node.walk(&steps[..steps.len().saturating_sub(1)])
        };
        let help = match meant_field(expected, field, map) {
            Some(meant) => format!("did you mean `{meant}`?"),
            None => format!(
                "remove `{field}` or fix its spelling; expected {}",
                one_of(expected)
            ),
        };
        return ManifestError::at(
            "declastruct::manifest::unknown_field",
            source,
            key_span,
            "unknown field",
            format!("{where_}: unknown field `{field}`"),
            help,
        );
    }
    if let ManifestDeError::MissingField { field, .. } = failure {
        // point at the key that owns the incomplete map, or at the resource's first line
        let span = match steps.last() {
            Some(Step::Key(owner)) => node
                .walk(&steps[..steps.len() - 1])
                .entry(owner)
                .map_or(target.first_line_span(text), |(key, _)| key.span),
            _ => target.first_line_span(text),
        };
        return ManifestError::at(
            "declastruct::manifest::missing_field",
            source,
            span,
            format!("`{field}` is missing here"),
            format!("{where_}: missing field `{field}`"),
            format!("add `{field}:` (see `declastruct schema` for what it takes)"),
        );
    }
    if let ManifestDeError::InvalidValue { expected, .. } = failure
        && expected == declastruct_aws::PORT_EXPECTED
    {
        let written = match &target.value {
            NodeValue::Scalar(Value::String(text)) => text.clone(),
            NodeValue::Scalar(value) => value.to_string(),
            _ => "?".to_string(),
        };
        return ManifestError::at(
            "declastruct::manifest::port_out_of_range",
            source,
            at_value,
            "not a TCP port",
            format!("{where_}: port {written} is outside 1..=65535"),
            "pick a free local port between 1 and 65535, e.g. 7775",
        );
    }
    if let ManifestDeError::UnknownVariant {
        variant, expected, ..
    } = failure
    {
        let expected = one_of(expected);
        let host_field = matches!(full_path.last(), Some(Step::Key(key)) if key == "host");
        let (code, help) = if host_field {
            (
                "declastruct::manifest::host_not_loopback",
                "a tunnel listens on this machine only: use `localhost` or `127.0.0.1`".to_string(),
            )
        } else {
            (
                "declastruct::manifest::invalid_value",
                format!("use {expected}"),
            )
        };
        return ManifestError::at(
            code,
            source,
            at_value,
            "not allowed here",
            format!("{where_}: `{variant}` is not allowed"),
            help,
        );
    }
    // a value of the right type that its type refuses (a name with a dot, a duration without a unit)
    if let ManifestDeError::InvalidValue { expected, .. } = failure {
        return ManifestError::at(
            "declastruct::manifest::invalid_value",
            source,
            at_value,
            "not allowed here",
            format!("{where_}: {message}"),
            format!("write {expected}"),
        );
    }
    if matches!(failure, ManifestDeError::InvalidType { .. }) {
        return ManifestError::at(
            "declastruct::manifest::wrong_type",
            source,
            at_value,
            "wrong type",
            format!("{where_}: {message}"),
            "change the value to the expected type (see `declastruct schema`)",
        );
    }
    ManifestError::at(
        "declastruct::manifest::invalid_value",
        source,
        target.first_line_span(text),
        "here",
        format!("{where_}: {message}"),
        "fix the value at the marked position (see `declastruct schema`)",
    )
}

/// the field that an unknown `field` was probably meant to be: an expected one within two edits of it that `map`
/// does not already have
pub(super) fn meant_field(expected: &[&str], field: &str, map: &Node) -> Option<String> {
    expected
        .iter()
        .copied()
        .filter(|candidate| map.get(candidate).is_none())
        .map(|candidate| (strsim::levenshtein(field, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.to_string())
}

fn strip_key(path: &[Step], field: &str) -> Vec<Step> {
    match path.last() {
        Some(Step::Key(key)) if key == field => path[..path.len() - 1].to_vec(),
        _ => path.to_vec(),
    }
}

/// the names a field or value may take, as serde words them: `a`, `a` or `b`, one of `a`, `b`, `c`; none
fn one_of(names: &[&str]) -> String {
    match names {
        [] => "none".to_string(),
        [one] => format!("`{one}`"),
        [one, two] => format!("`{one}` or `{two}`"),
        many => format!(
            "one of {}",
            many.iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// a path as `resources[2].from.port`
pub(super) fn describe(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    if out.is_empty() {
        "the manifest".into()
    } else {
        out
    }
}
