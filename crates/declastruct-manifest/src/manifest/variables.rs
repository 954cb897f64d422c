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
use crate::input_file::{InputFileError, VAR_FILE_LIMIT, read_input_file};

/// .what = where variables' values come from: `--var NAME=VALUE` first, then `--var-file` files (the later
/// file first), then the environment
/// .why = a command line wins over a file, and a file over what the shell happens to export
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    /// the `--var` values, as given
    given: Vec<(String, String)>,
    /// the `--var-file` files, in the order given, each with its values
    files: Vec<(String, Vec<(String, String)>)>,
}

impl Variables {
    /// .what = the `--var NAME=VALUE` arguments and the `--var-file FILE` files, checked and read
    /// .why = a malformed one is an error, located in its file, before anything else is read
    pub fn from_arguments_and_files(
        arguments: &[String],
        files: &[std::path::PathBuf],
    ) -> Result<Self, ManifestError> {
        let mut variables = Self::from_arguments(arguments)?;
        for path in files {
            variables
                .files
                .push((path.display().to_string(), read_var_file(path)?));
        }
        Ok(variables)
    }

    /// .what = the `--var-file` files read, in the order given
    /// .why = a plan records which files its variables came from
    pub fn files(&self) -> Vec<String> {
        self.files.iter().map(|(path, _)| path.clone()).collect()
    }

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
        Ok(Self {
            given,
            files: Vec::new(),
        })
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
        if let Some((_, value)) = exact.or_else(loose) {
            return Some(value.clone());
        }
        // the later file wins, and within a file the later line
        let from_files = self
            .files
            .iter()
            .rev()
            .find_map(|(_, values)| values.iter().rev().find(|(known, _)| known == name));
        match from_files {
            Some((_, value)) => Some(value.clone()),
            None => std::env::var(name).ok(),
        }
    }
}

/// .what = reads a variables file in Compose's `--env-file` format: `NAME=VALUE` lines, `#` comments and blank
/// lines ignored, a value optionally in single or double quotes, an inline ` #` comment after an unquoted value
/// .why = prod needs four `--var` flags on every command without it; a file says them once
fn read_var_file(path: &std::path::Path) -> Result<Vec<(String, String)>, ManifestError> {
    let shown = path.display().to_string();
    let unreadable = |problem: String, help: &str| ManifestError {
        code: "declastruct::manifest::bad_var_file",
        message: format!("cannot read the variables file {shown}: {problem}"),
        help: help.to_string(),
        source: None,
        labels: Vec::new(),
    };
    let bytes = read_input_file(path, VAR_FILE_LIMIT).map_err(|error| match error {
        InputFileError::TooLarge { .. } => unreadable(
            error.to_string(),
            "a variables file holds NAME=VALUE lines; check that --var-file names the right file",
        ),
        InputFileError::Unreadable(_) => unreadable(
            error.to_string(),
            "check the path given to --var-file (relative to the folder the command runs in)",
        ),
    })?;
    let text = String::from_utf8(bytes).map_err(|error| {
        unreadable(
            format!("it is not UTF-8 text ({error})"),
            "save it as UTF-8 text of NAME=VALUE lines",
        )
    })?;
    let source = Arc::new(NamedSource::new(shown.clone(), text.clone()));
    let mut values = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_end_matches(['\n', '\r']);
        let trimmed = content.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let span = SourceSpan::from((start, content.len()));
        let bad = |message: String| {
            ManifestError::at(
                "declastruct::manifest::bad_var_file",
                &source,
                span,
                "not NAME=VALUE",
                message,
                "write one `NAME=VALUE` a line (a value may be quoted); `#` starts a comment line",
            )
        };
        let Some((name, value)) = trimmed.split_once('=') else {
            return Err(bad(format!("{shown}: a line without `=`")));
        };
        let name = name.trim_end();
        if !is_name(name) {
            return Err(bad(format!("{shown}: `{name}` is not a variable name")));
        }
        values.push((name.to_string(), unquote(value.trim_start())));
    }
    Ok(values)
}

/// a value as Compose reads it: the text inside matching quotes, or up to an inline ` #` comment
fn unquote(value: &str) -> String {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|rest| rest.rfind(quote).map(|end| &rest[..end]))
        {
            return inner.to_string();
        }
    }
    value
        .split_once(" #")
        .map_or(value, |(kept, _)| kept)
        .trim_end()
        .to_string()
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

/// .what = the variables a manifest's text refers to (`${NAME}`, `${NAME:-default}`, ...), each once in the order
/// of its first use, with its default when one is written; `$$` is a literal and refers to nothing
/// .why = `--var <TAB>` offers them: a user of a manifest built for several environments need not read it first
pub fn referenced_variables(text: &str) -> Vec<(String, Option<String>)> {
    let mut found: Vec<(String, Option<String>)> = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        let after = &rest[dollar + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            rest = stripped;
            continue;
        }
        rest = after;
        let Some(body) = after.strip_prefix('{') else {
            continue;
        };
        let Some(close) = body.find(['}', '\n']) else {
            break;
        };
        let inner = &body[..close];
        let name_end = inner
            .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
            .unwrap_or(inner.len());
        let (name, operator) = inner.split_at(name_end);
        if !is_name(name) || found.iter().any(|(known, _)| known == name) {
            continue;
        }
        let default = operator
            .strip_prefix(":-")
            .or_else(|| operator.strip_prefix('-'))
            .map(str::to_string);
        found.push((name.to_string(), default));
    }
    found
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

    #[test]
    fn lists_the_variables_a_text_refers_to_with_their_defaults() {
        let text = "name: orders-${env}\nport: ${PORT:-7775}\nhost: ${HOST?set it}\ncost: $$5 ${env} ${ bad}";
        assert_eq!(
            referenced_variables(text),
            vec![
                ("env".to_string(), None),
                ("PORT".to_string(), Some("7775".to_string())),
                ("HOST".to_string(), None),
            ]
        );
    }

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
