use std::path::Path;
use std::sync::Arc;

use declastruct_aws::AwsSettings;
use miette::{NamedSource, SourceSpan};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde::de::IgnoredAny;
use serde_json::Value;

use super::error::ManifestError;
use super::relations::check_relations;
use super::reread::deserialize_value;
use super::translate::describe;
use super::variables::{Variables, interpolate};
use super::yaml_tree::{Node, NodeValue, Step, parse};
use crate::input_file::{InputFileError, MANIFEST_LIMIT, read_input_file};
use crate::kinds::{KINDS, ReadDeclaration, ResourceDeclaration};

/// .what = a loaded, valid manifest: its settings and resources, each with the YAML it came from
/// .why = later errors (a bastion that does not exist) still point at the line that declared it
#[derive(Debug, Clone)]
pub struct Manifest {
    /// the path as the user gave it
    pub uri: String,
    /// the file's absolute path (symbolic links resolved), `None` for text that came from no file
    /// .why = each tunnel records the manifest that opened it, the same whatever folder a command runs in
    pub path: Option<std::path::PathBuf>,
    /// the file's text, for diagnostics
    pub source: Arc<NamedSource<String>>,
    /// the `aws` block, empty when absent
    pub aws: AwsSettings,
    /// the resources in declaration order
    pub resources: Vec<DeclaredResource>,
    /// the variables the manifest used, with their values
    pub variables: std::collections::BTreeMap<String, String>,
    /// the `--var-file` files read, in the order given
    pub var_files: Vec<String>,
}

/// .what = one declared resource and its YAML node
/// .why = spans for diagnostics after loading
#[derive(Debug, Clone)]
pub struct DeclaredResource {
    /// the declaration
    pub declaration: ResourceDeclaration,
    /// where it stands in the file
    pub node: Node,
}

impl Manifest {
    /// .what = the span of a field of resource `index` (e.g. `via.bastion`), or the resource's first line
    /// .why = errors found while planning point at the declaration that caused them
    pub fn span_of(&self, index: usize, path: &[&str]) -> SourceSpan {
        let node = &self.resources[index].node;
        let steps: Vec<Step> = path
            .iter()
            .map(|key| Step::Key((*key).to_string()))
            .collect();
        let found = node.walk(&steps);
        if std::ptr::eq(found, node) {
            node.first_line_span(self.source.inner())
        } else {
            found.first_line_span(self.source.inner())
        }
    }
}

/// .what = reads and validates a manifest file, with no AWS call
/// .why = `validate`, `plan`, `apply` and `status` all start here, and every problem is reported at once
pub fn load_manifest(path: &Path, variables: &Variables) -> Result<Manifest, Vec<ManifestError>> {
    let uri = path.display().to_string();
    let bytes = match read_input_file(path, MANIFEST_LIMIT) {
        Ok(bytes) => bytes,
        Err(error) => {
            let (code, help) = match &error {
                InputFileError::TooLarge { .. } => (
                    "declastruct::manifest::too_large",
                    format!(
                        "a manifest holds at most {} MiB; check that -f names the manifest",
                        MANIFEST_LIMIT / (1024 * 1024)
                    ),
                ),
                _ if error.is_not_found() => (
                    "declastruct::manifest::unreadable",
                    "create declastruct.yml here (see `declastruct schema` and the examples/ folder), or pass `-f PATH`".into(),
                ),
                InputFileError::Unreadable(_) => (
                    "declastruct::manifest::unreadable",
                    "check that the file is readable".into(),
                ),
            };
            return Err(vec![ManifestError {
                code,
                message: format!("cannot read the manifest {uri}: {error}"),
                help,
                source: None,
                labels: Vec::new(),
            }]);
        }
    };
    let text = utf8_or_located(&uri, bytes)?;
    parse_manifest_with(&uri, text, variables).map(|mut manifest| {
        manifest.path = std::fs::canonicalize(path).ok();
        manifest
    })
}

/// .what = the manifest's bytes as text, or an error at the line and column of the first byte that is not UTF-8
/// .why = "stream did not contain valid UTF-8" leaves the user searching a file for an invisible byte
fn utf8_or_located(uri: &str, bytes: Vec<u8>) -> Result<String, Vec<ManifestError>> {
    let error = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(error) => error,
    };
    let offset = error.utf8_error().valid_up_to();
    let bytes = error.into_bytes();
    let bad: Vec<String> = bytes[offset..]
        .iter()
        .take(4)
        .take_while(|byte| !byte.is_ascii())
        .map(|byte| format!("0x{byte:02x}"))
        .collect();
    // the text before the byte is valid: its lines and characters are counted as an editor counts them
    let before = String::from_utf8_lossy(&bytes[..offset]);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |start| start.chars().count())
        + 1;
    // shown with each bad sequence replaced by U+FFFD, which starts at the same byte
    let shown = String::from_utf8_lossy(&bytes).into_owned();
    let source = Arc::new(NamedSource::new(uri, shown).with_language("yaml"));
    let span = SourceSpan::new(offset.into(), '\u{fffd}'.len_utf8());
    Err(vec![ManifestError::at(
        "declastruct::manifest::not_utf8",
        &source,
        span,
        "not UTF-8",
        format!(
            "the manifest {uri} is not UTF-8 text: byte {} at line {line}, column {column}",
            bad.first().map_or("?", String::as_str)
        ),
        "save the manifest as UTF-8 (YAML is read as UTF-8); a file in Latin-1 converts with `iconv -f latin1 -t utf-8`",
    )])
}

/// .what = validates manifest text, as `load_manifest` does for a file
/// .why = the same checks for files and for tests
pub fn parse_manifest(uri: &str, text: String) -> Result<Manifest, Vec<ManifestError>> {
    parse_manifest_with(uri, text, &Variables::default())
}

/// .what = validates manifest text with the variables of the command line (and the environment)
/// .why = `--var NAME=VALUE` fills `${NAME}` before anything is read
pub fn parse_manifest_with(
    uri: &str,
    text: String,
    variables: &Variables,
) -> Result<Manifest, Vec<ManifestError>> {
    let source = Arc::new(NamedSource::new(uri, text).with_language("yaml"));
    let mut root = match parse(source.inner()) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(vec![ManifestError {
                code: "declastruct::manifest::empty",
                message: format!("the manifest {uri} is empty"),
                help: "declare `resources:` (see `declastruct schema` and the examples/ folder)"
                    .into(),
                source: None,
                labels: Vec::new(),
            }]);
        }
        Err(problem) => {
            return Err(vec![ManifestError::at(
                problem.code,
                &source,
                problem.span,
                "here",
                problem.message,
                problem.help,
            )]);
        }
    };

    let used = interpolate(&mut root, variables, &source)?;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TopLevel {
        #[serde(default)]
        aws: Option<AwsSettings>,
        // each resource is read on its own below, where its errors can point into it
        #[allow(dead_code)]
        resources: Vec<IgnoredAny>,
    }
    let top: TopLevel = deserialize_at(&root, &[], &source)?;

    let mut errors = Vec::new();
    let mut resources = Vec::new();
    for (index, node) in root.into_entry("resources").into_items().enumerate() {
        let path = [Step::Key("resources".into()), Step::Index(index)];
        match declaration_at(&node, &path, &source) {
            Ok(declaration) => resources.push(DeclaredResource { declaration, node }),
            Err(problems) => errors.extend(problems),
        }
    }
    if errors.is_empty() {
        errors.extend(check_relations(&resources, &source));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Manifest {
        uri: uri.to_string(),
        path: None,
        source,
        aws: top.aws.unwrap_or_default(),
        resources,
        variables: used,
        var_files: variables.files(),
    })
}

fn declaration_at(
    node: &Node,
    path: &[Step],
    source: &Arc<NamedSource<String>>,
) -> Result<ResourceDeclaration, Vec<ManifestError>> {
    if !matches!(node.value, NodeValue::Mapping(_)) {
        return Err(vec![ManifestError::at(
            "declastruct::manifest::wrong_type",
            source,
            node.first_line_span(source.inner()),
            "expected a map with `kind:`",
            format!("{}: a resource must be a map", describe(path)),
            format!(
                "write each resource as a map starting with `kind:` ({})",
                KINDS.join(", ")
            ),
        )]);
    }
    let Some(kind_node) = node.get("kind") else {
        return Err(vec![ManifestError::at(
            "declastruct::manifest::missing_kind",
            source,
            node.first_line_span(source.inner()),
            "this resource has no `kind`",
            format!("{}: missing field `kind`", describe(path)),
            format!("add `kind:` with one of {}", KINDS.join(", ")),
        )]);
    };
    let kind = match &kind_node.value {
        NodeValue::Scalar(Value::String(kind)) => kind.as_str(),
        _ => "",
    };
    let reader = DeclarationAt { node, path, source };
    let declaration = match ResourceDeclaration::read(kind, reader) {
        Some(declaration) => declaration?,
        None => {
            let closest = KINDS
                .iter()
                .min_by_key(|candidate| strsim::levenshtein(kind, candidate))
                .copied()
                .unwrap_or(KINDS[0]);
            let shown = match &kind_node.value {
                NodeValue::Scalar(Value::String(kind)) => kind.clone(),
                _ => kind_node.to_json().to_string(),
            };
            return Err(vec![ManifestError::at(
                "declastruct::manifest::unknown_kind",
                source,
                kind_node.span,
                "unknown kind",
                format!("{}: unknown kind `{shown}`", describe(path)),
                format!("use one of {}; did you mean `{closest}`?", KINDS.join(", ")),
            )]);
        }
    };
    Ok(declaration)
}

/// a resource's node, read as the declaration of its kind without its `kind` key, with located diagnostics
struct DeclarationAt<'a> {
    node: &'a Node,
    path: &'a [Step],
    source: &'a Arc<NamedSource<String>>,
}

impl ReadDeclaration for DeclarationAt<'_> {
    type Error = Vec<ManifestError>;

    fn read<T: DeserializeOwned>(self) -> Result<T, Vec<ManifestError>> {
        deserialize_value(self.node, Some("kind"), self.path, self.source)
    }
}

fn deserialize_at<T: DeserializeOwned>(
    node: &Node,
    path: &[Step],
    source: &Arc<NamedSource<String>>,
) -> Result<T, Vec<ManifestError>> {
    deserialize_value(node, None, path, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "aws:\n  region: us-east-1\nresources:\n  - kind: DeclaredAwsEc2Instance\n    exid: vpc-main-bastion\n    status: running\n  - kind: DeclaredAwsRdsCluster\n    name: ahbodedb\n  - kind: DeclaredAwsVpcTunnel\n    via:\n      mechanism: aws.ssm\n      bastion: { exid: vpc-main-bastion }\n    into:\n      cluster: { name: ahbodedb }\n    from:\n      host: localhost\n      port: 7775\n    status: OPEN\n";

    fn first_error(text: &str) -> ManifestError {
        parse_manifest("declastruct.yml", text.to_string())
            .expect_err("invalid")
            .remove(0)
    }

    fn pointed_at(text: &str, error: &ManifestError) -> String {
        let span = error.labels[0].1;
        text[span.offset()..span.offset() + span.len()].to_string()
    }

    #[test]
    fn loads_the_contract_example() {
        let manifest = parse_manifest("declastruct.yml", VALID.to_string()).expect("valid");
        assert_eq!(manifest.aws.region.as_deref(), Some("us-east-1"));
        let slugs: Vec<String> = manifest
            .resources
            .iter()
            .map(|resource| resource.declaration.address().slug)
            .collect();
        assert_eq!(
            slugs,
            vec![
                "vpc-main-bastion",
                "ahbodedb",
                "vpc-main-bastion.ahbodedb.7775"
            ]
        );
    }

    #[test]
    fn port_out_of_range_points_at_the_port() {
        let text = VALID.replace("port: 7775", "port: 7775432");
        let error = first_error(&text);
        assert_eq!(error.code, "declastruct::manifest::port_out_of_range");
        assert_eq!(pointed_at(&text, &error), "7775432");
        assert!(
            error.message.contains("resources[2].from.port"),
            "{}",
            error.message
        );
    }

    #[test]
    fn unknown_field_points_at_the_key() {
        let text = VALID.replace(
            "    name: ahbodedb\n",
            "    name: ahbodedb\n    engine: postgres\n",
        );
        let error = first_error(&text);
        assert_eq!(error.code, "declastruct::manifest::unknown_field");
        assert_eq!(pointed_at(&text, &error), "engine");
    }

    #[test]
    fn unknown_field_in_a_reference_points_at_the_key() {
        let text = VALID.replace(
            "cluster: { name: ahbodedb }",
            "cluster: { name: ahbodedb, arn: x }",
        );
        let error = first_error(&text);
        assert_eq!(error.code, "declastruct::manifest::unknown_field");
        assert_eq!(pointed_at(&text, &error), "arn");
    }

    #[test]
    fn non_loopback_host_is_rejected() {
        let text = VALID.replace("host: localhost", "host: 0.0.0.0");
        let error = first_error(&text);
        assert_eq!(error.code, "declastruct::manifest::host_not_loopback");
        assert_eq!(pointed_at(&text, &error), "0.0.0.0");
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let text = VALID.replace("port: 7775", "port: seven");
        let error = first_error(&text);
        assert_eq!(error.code, "declastruct::manifest::wrong_type");
        assert_eq!(pointed_at(&text, &error), "seven");
    }

    #[test]
    fn unknown_kind_suggests_the_closest() {
        let text = VALID.replace("kind: DeclaredAwsRdsCluster", "kind: DeclaredAwsRdsClustr");
        let error = first_error(&text);
        assert_eq!(error.code, "declastruct::manifest::unknown_kind");
        assert_eq!(pointed_at(&text, &error), "DeclaredAwsRdsClustr");
        assert!(error.help.contains("did you mean `DeclaredAwsRdsCluster`"));
    }

    #[test]
    fn open_tunnel_through_a_stopped_bastion_is_rejected() {
        let text = VALID.replace("status: running", "status: stopped");
        let error = first_error(&text);
        assert_eq!(
            error.code,
            "declastruct::manifest::open_through_stopped_bastion"
        );
        assert_eq!(pointed_at(&text, &error), "OPEN");
        assert_eq!(error.labels.len(), 2);
    }

    #[test]
    fn a_reference_needs_exactly_one_key() {
        let text = VALID.replace(
            "bastion: { exid: vpc-main-bastion }",
            "bastion: { exid: a, instanceId: i-1 }",
        );
        let error = first_error(&text);
        assert!(
            error
                .message
                .contains("exactly one of `exid` or `instanceId`"),
            "{}",
            error.message
        );
    }

    mod never_panics {
        use super::super::parse_manifest;
        use proptest::prelude::*;

        /// renders every diagnostic too, so a bad span cannot panic later in miette
        fn load_and_render(text: String) {
            if let Err(errors) = parse_manifest("fuzz.yml", text) {
                for error in errors {
                    let mut rendered = String::new();
                    let handler = miette::GraphicalReportHandler::new_themed(
                        miette::GraphicalTheme::unicode_nocolor(),
                    );
                    let _ = handler.render_report(&mut rendered, &error);
                }
            }
        }

        fn fragment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("resources:".to_string()),
                Just("aws: { region: us-east-1 }".to_string()),
                Just("  - kind: DeclaredAwsVpcTunnel".to_string()),
                Just("  - kind: DeclaredAwsEc2Instance".to_string()),
                Just("    exid: é-bastion".to_string()),
                Just("    via: { mechanism: aws.ssm, bastion: { exid: b } }".to_string()),
                Just("    into: { cluster: { name: c } }".to_string()),
                Just("    from: { host: localhost, port: 99999999999999999999999 }".to_string()),
                Just("    status: OPEN".to_string()),
                Just("    - &anchor [*anchor, ]".to_string()),
                "[ a-z:{}\\[\\],'\"#&*!|>-]{0,30}",
                "\\PC{0,20}",
            ]
        }

        /// miette panics on a label at column 65,536 or later; the diagnostic is rendered without the drawing
        #[test]
        fn a_problem_far_along_one_line_renders() {
            load_and_render(format!("resources: [{{kind: {}}}]", "x".repeat(70_000)));
            load_and_render(format!("{}: 1\nresources: []\n", "k".repeat(100_000)));
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]

            #[test]
            fn arbitrary_text(text in "\\PC*") {
                load_and_render(text);
            }

            #[test]
            fn manifest_shaped_text(lines in proptest::collection::vec(fragment(), 0..24)) {
                load_and_render(lines.join("\n"));
            }
        }
    }
}
