//! .what = variables in the manifest's values: `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
//! `${NAME:?message}`, `${NAME?message}` (Compose semantics), `$$` for a literal `$`
//! .why = one manifest for dev, staging and prod: the same tunnels with another profile, region, bastion, cluster
//! and port, chosen with `--var NAME=VALUE` or the environment, instead of copies that drift

use std::collections::BTreeMap;
use std::sync::Arc;

use miette::{NamedSource, SourceSpan};
use serde_json::Value;

use super::error::ManifestError;
use super::yaml_tree::{Node, NodeValue};

/// .what = where variables' values come from: `--var NAME=VALUE` first, then the environment
/// .why = a command line wins over what the shell happens to export
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    /// the `--var` values, as given
    given: Vec<(String, String)>,
}

impl Variables {
    /// .what = the `--var NAME=VALUE` arguments, checked
    /// .why = a malformed one is an error before anything is read
    pub fn from_arguments(arguments: &[String]) -> Result<Self, ManifestError> {
        let mut given = Vec::new();
        for argument in arguments {
            match argument.split_once('=') {
                Some((name, value)) if is_name(name) => {
                    given.push((name.to_string(), value.to_string()));
                }
                _ => {
                    return Err(ManifestError {
                        code: "declastruct::manifest::bad_var",
                        message: format!("--var `{argument}` is not NAME=VALUE"),
                        help: "write `--var NAME=VALUE`, e.g. `--var env=prod`; a name is letters, digits and `_`, not starting with a digit".into(),
                        source: None,
                        labels: Vec::new(),
                    });
                }
            }
        }
        Ok(Self { given })
    }

    /// .what = the value of `name`: the last `--var` of that name (its case ignored when no exact match), else the
    /// environment's; `None` when unset
    /// .why = `--var env=prod` sets `${ENV}` as `ENV=prod` in the environment would
    fn lookup(&self, name: &str) -> Option<String> {
        let exact = self.given.iter().rev().find(|(known, _)| known == name);
        let loose = || {
            self.given
                .iter()
                .rev()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
        };
        match exact.or_else(loose) {
            Some((_, value)) => Some(value.clone()),
            None => std::env::var(name).ok(),
        }
    }
}

fn is_name(name: &str) -> bool {
    let mut characters = name.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

/// .what = replaces every variable in the tree's string values (never in keys, never in `kind`), and returns the
/// values used, by name
/// .why = interpolation happens on values only and never re-reads its output: a value that holds YAML syntax
/// stays a plain string; a value that is one whole variable takes the type its field expects
pub fn interpolate(
    root: &mut Node,
    variables: &Variables,
    source: &Arc<NamedSource<String>>,
) -> Result<BTreeMap<String, String>, Vec<ManifestError>> {
    let mut used = BTreeMap::new();
    let mut errors = Vec::new();
    visit(root, variables, source, &mut used, &mut errors);
    if errors.is_empty() {
        Ok(used)
    } else {
        Err(errors)
    }
}

fn visit(
    node: &mut Node,
    variables: &Variables,
    source: &Arc<NamedSource<String>>,
    used: &mut BTreeMap<String, String>,
    errors: &mut Vec<ManifestError>,
) {
    match &mut node.value {
        NodeValue::Mapping(entries) => {
            for (key, value) in entries {
                if key.key_str() != "kind" {
                    visit(value, variables, source, used, errors);
                }
            }
        }
        NodeValue::Sequence(items) => {
            for item in items {
                visit(item, variables, source, used, errors);
            }
        }
        NodeValue::Scalar(Value::String(text)) if text.contains('$') => {
            match substitute(text, variables, used) {
                Ok(Substituted::Text(replaced)) => *text = replaced,
                Ok(Substituted::Whole(replaced)) => node.value = NodeValue::variable(replaced),
                Err(problem) => errors.push(problem.locate(node.span, source)),
            }
        }
        NodeValue::Scalar(_) | NodeValue::Variable { .. } | NodeValue::Reported => {}
    }
}

/// what a string became
enum Substituted {
    /// text with variables replaced in it
    Text(String),
    /// the value of one variable that was the whole string: it takes the type its field expects
    Whole(String),
}

/// a problem with one variable of a string, with the text to point at
struct Problem {
    code: &'static str,
    message: String,
    help: String,
    /// the `${...}` as written, found again in the file to point at it
    written: String,
}

impl Problem {
    fn locate(self, span: SourceSpan, source: &Arc<NamedSource<String>>) -> ManifestError {
        let text = source.inner();
        let start = span.offset().min(text.len());
        let end = (start + span.len()).min(text.len());
        // the variable inside the value (the value may be quoted or escaped, so it is found, not computed)
        let at = text
            .get(start..end)
            .and_then(|value| value.find(&self.written))
            .map_or(span, |position| {
                (start + position, self.written.len()).into()
            });
        ManifestError::at(self.code, source, at, "here", self.message, self.help)
    }
}

fn substitute(
    text: &str,
    variables: &Variables,
    used: &mut BTreeMap<String, String>,
) -> Result<Substituted, Problem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut whole = None;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            // a `$` not followed by `{` or `$` stays as it is
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = body.find('}') else {
            return Err(Problem {
                code: "declastruct::manifest::bad_variable",
                message: format!(
                    "`{}` is not closed: a variable is `${{NAME}}`",
                    &rest[dollar..]
                ),
                help: "close it with `}`, or write `$$` for a literal `$`".into(),
                written: rest[dollar..].to_string(),
            });
        };
        let inner = &body[..close];
        let written = format!("${{{inner}}}");
        let value = resolve(inner, &written, variables, used)?;
        if dollar == 0 && text.len() == written.len() {
            whole = Some(value.clone());
        }
        out.push_str(&value);
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    Ok(match whole {
        Some(value) => Substituted::Whole(value),
        None => Substituted::Text(out),
    })
}

/// the value of `NAME`, `NAME:-default`, `NAME-default`, `NAME:?message` or `NAME?message`
fn resolve(
    inner: &str,
    written: &str,
    variables: &Variables,
    used: &mut BTreeMap<String, String>,
) -> Result<String, Problem> {
    let name_end = inner
        .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
        .unwrap_or(inner.len());
    let (name, operator) = inner.split_at(name_end);
    if !is_name(name) {
        return Err(Problem {
            code: "declastruct::manifest::bad_variable",
            message: format!("`{written}` names no variable"),
            help: "a variable is `${NAME}`, `${NAME:-default}` or `${NAME:?message}`; a name is letters, digits and `_`, not starting with a digit".into(),
            written: written.to_string(),
        });
    }
    let value = variables.lookup(name);
    let unset_or_empty = value.as_deref().is_none_or(str::is_empty);
    let resolved = match operator {
        "" => value.ok_or_else(|| Problem {
            code: "declastruct::manifest::unset_variable",
            message: format!("the variable `{name}` is not set"),
            help: format!(
                "set it with `--var {name}=VALUE` or in the environment, or give a default: `${{{name}:-default}}`"
            ),
            written: written.to_string(),
        })?,
        _ if operator.starts_with(":-") => {
            if unset_or_empty {
                operator[2..].to_string()
            } else {
                value.unwrap_or_default()
            }
        }
        _ if operator.starts_with('-') => value.unwrap_or_else(|| operator[1..].to_string()),
        _ if operator.starts_with(":?") || operator.starts_with('?') => {
            let empty_counts = operator.starts_with(':');
            let message = operator.trim_start_matches(':')[1..].to_string();
            match value {
                Some(value) if !(empty_counts && value.is_empty()) => value,
                _ => {
                    return Err(Problem {
                        code: "declastruct::manifest::required_variable",
                        message: if message.is_empty() {
                            format!("the variable `{name}` is required")
                        } else {
                            format!("`{name}`: {message}")
                        },
                        help: format!("set it with `--var {name}=VALUE` or in the environment"),
                        written: written.to_string(),
                    });
                }
            }
        }
        _ => {
            return Err(Problem {
                code: "declastruct::manifest::bad_variable",
                message: format!("`{written}` is not a variable form declastruct knows"),
                help: "use `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?message}` or `${NAME?message}`".into(),
                written: written.to_string(),
            });
        }
    };
    used.insert(name.to_string(), resolved.clone());
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, given: &[&str]) -> Result<(String, bool), String> {
        let variables = Variables::from_arguments(
            &given
                .iter()
                .map(|given| (*given).to_string())
                .collect::<Vec<_>>(),
        )
        .map_err(|error| error.message)?;
        let mut used = BTreeMap::new();
        match substitute(text, &variables, &mut used) {
            Ok(Substituted::Text(text)) => Ok((text, false)),
            Ok(Substituted::Whole(text)) => Ok((text, true)),
            Err(problem) => Err(problem.message),
        }
    }

    #[test]
    fn compose_forms() {
        let unset = "DECLASTRUCT_TEST_SURELY_UNSET";
        assert_eq!(run("${A}", &["A=1"]), Ok(("1".into(), true)));
        assert_eq!(run("db-${A}", &["A=prod"]), Ok(("db-prod".into(), false)));
        assert_eq!(
            run("${a}", &["A=1"]),
            Ok(("1".into(), true)),
            "--var's case is ignored"
        );
        assert_eq!(
            run(&format!("${{{unset}:-7775}}"), &[]),
            Ok(("7775".into(), true))
        );
        assert_eq!(run("${A:-d}", &["A="]), Ok(("d".into(), true)));
        assert_eq!(run("${A-d}", &["A="]), Ok((String::new(), true)));
        assert_eq!(run("$$ and $5", &[]), Ok(("$ and $5".into(), false)));
        assert!(
            run(&format!("${{{unset}}}"), &[])
                .err()
                .unwrap_or_default()
                .contains("is not set")
        );
        assert_eq!(
            run(&format!("${{{unset}:?pick an environment}}"), &[]),
            Err(format!("`{unset}`: pick an environment"))
        );
        assert!(
            run("${A", &[])
                .err()
                .unwrap_or_default()
                .contains("is not closed")
        );
        assert!(
            run("${9}", &[])
                .err()
                .unwrap_or_default()
                .contains("names no variable")
        );
        assert!(Variables::from_arguments(&["noequals".into()]).is_err());
        assert!(Variables::from_arguments(&["9x=1".into()]).is_err());
    }

    #[test]
    fn a_value_is_never_read_again() {
        assert_eq!(
            run("${A}", &["A=x: y\n[${B}"]),
            Ok(("x: y\n[${B}".into(), true))
        );
    }
}
