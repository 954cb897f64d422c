//! .what = reading a resource's declaration again after each problem, with the problem set aside (an unknown
//! field removed or read under the name it was meant to have, a missing one or a wrong value replaced by a neutral
//! value), so that one run reports every problem of the resource, not only the first
//! .why = a user fixes a manifest in one edit, not one error per run

use std::sync::Arc;

use miette::NamedSource;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_path_to_error::Segment;

use super::de_error::ManifestDeError;
use super::error::ManifestError;
use super::node_de::NodeDeserializer;
use super::translate::{describe, meant_field, translate};
use super::yaml_tree::{Node, NodeValue, Step};

/// how many problems one resource reports at most: past that, the rest is noise
const PROBLEMS_PER_RESOURCE: usize = 20;

/// deserializes `node` (at `path` in the file, without its key `skip_key`), turning serde's errors into
/// diagnostics at the offending keys or values: every problem of the resource, not only the first
pub(super) fn deserialize_value<T: DeserializeOwned>(
    node: &Node,
    skip_key: Option<&str>,
    path: &[Step],
    source: &Arc<NamedSource<String>>,
) -> Result<T, Vec<ManifestError>> {
    // the common case costs no path bookkeeping and no copy: only a failure is read again, to learn where
    if let Ok(parsed) = T::deserialize(NodeDeserializer::new(node, skip_key)) {
        return Ok(parsed);
    }
    // each problem found is reported, then set aside in a copy of the resource (an unknown field removed, a
    // missing one or a wrong value replaced by a neutral value), and the copy is read again for the next
    let mut working = node.clone();
    let mut errors: Vec<ManifestError> = Vec::new();
    // each round either reports a problem or sets one aside for good: a bounded number of rounds, and a round that
    // changes nothing ends the search
    for _ in 0..PROBLEMS_PER_RESOURCE * 3 {
        if errors.len() >= PROBLEMS_PER_RESOURCE {
            break;
        }
        let Err(error) =
            serde_path_to_error::deserialize::<_, T>(NodeDeserializer::new(&working, skip_key))
        else {
            break;
        };
        let mut steps: Vec<Step> = Vec::new();
        for segment in error.path() {
            match segment {
                Segment::Seq { index } => steps.push(Step::Index(*index)),
                Segment::Map { key } => steps.push(Step::Key(key.clone())),
                Segment::Enum { .. } | Segment::Unknown => {}
            }
        }
        if working.reaches_reported(&steps) {
            // a consequence of a problem already reported
            break;
        }
        let failure = error.into_inner();
        let mut full_path = path.to_vec();
        full_path.extend(steps.iter().cloned());
        let problem = translate(&failure, &working, &steps, &full_path, source);
        let repeated = errors.iter().any(|seen| {
            seen.code == problem.code
                && seen.message == problem.message
                && seen.labels == problem.labels
        });
        let before = working.clone();
        set_aside(&mut working, &steps, &failure, repeated);
        if !repeated {
            errors.push(problem);
        } else if working == before {
            break;
        }
    }
    if errors.is_empty() {
        // unreachable in practice (the first read failed); say so rather than accept the resource
        errors.push(ManifestError::at(
            "declastruct::manifest::invalid_value",
            source,
            node.first_line_span(source.inner()),
            "here",
            format!("{}: cannot be read", describe(path)),
            "see `declastruct schema` for what this resource takes",
        ));
    }
    Err(errors)
}

/// sets the problem `failure` at `steps` aside in `working`, so that reading it again goes further
fn set_aside(working: &mut Node, steps: &[Step], failure: &ManifestDeError, repeated: bool) {
    if let ManifestDeError::UnknownField {
        field, expected, ..
    } = failure
    {
        let field = field.clone();
        // the path may end at the map that holds the field, or at the field itself
        let map_steps = if working.walk(steps).entry(&field).is_some() {
            steps
        } else {
            &steps[..steps.len().saturating_sub(1)]
        };
        let meant = meant_field(expected, &field, working.walk(map_steps));
        working.edit_at(map_steps, |map| {
            if let NodeValue::Mapping(entries) = &mut map.value {
                match meant {
                    // a misspelling: read the value under the name it was meant to have
                    Some(meant) => {
                        for (key, _) in entries.iter_mut() {
                            if key.key_str() == field {
                                key.value = NodeValue::Scalar(Value::String(meant.clone()));
                            }
                        }
                    }
                    None => entries.retain(|(key, _)| key.key_str() != field),
                }
            }
        });
        return;
    }
    if let ManifestDeError::MissingField { field, .. } = failure {
        let field = (*field).to_string();
        working.edit_at(steps, |map| {
            let span = map.span;
            if let NodeValue::Mapping(entries) = &mut map.value {
                entries.push((
                    Node {
                        value: NodeValue::Scalar(Value::String(field)),
                        span,
                    },
                    Node {
                        value: NodeValue::Reported,
                        span,
                    },
                ));
            } else {
                map.value = NodeValue::Reported;
            }
        });
        return;
    }
    working.edit_at(steps, |target| match &mut target.value {
        // a rule over several keys (`exid` or `instanceId`, one target of `into`): keep the first key, which
        // usually reads; when that does not help either, the whole value is set aside
        NodeValue::Mapping(entries) if entries.len() > 1 && !repeated => entries.truncate(1),
        _ => target.value = NodeValue::Reported,
    });
}
