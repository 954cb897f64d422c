use declastruct_aws::AwsSettings;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::ResourceDeclaration;

/// .what = the manifest file, `declastruct.yml`
/// .why = one type is both the deserialization target and the source of the JSON Schema, so they cannot drift
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "declastruct manifest",
    description = "Declares EC2 bastions, RDS clusters and SSM port-forwarding tunnels for `declastruct plan` and `declastruct apply`."
)]
pub struct ManifestDocument {
    /// AWS settings; otherwise the standard AWS chain (AWS_REGION, AWS_PROFILE, ~/.aws/config, SSO)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsSettings>,
    /// the declared resources
    pub resources: Vec<ResourceDeclaration>,
}

/// .what = the manifest's JSON Schema, as checked in at `schemas/declastruct.schema.json`
/// .why = editors complete and check manifests with it; `declastruct schema` prints it
pub fn manifest_schema() -> String {
    let schema = schemars::schema_for!(ManifestDocument);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
