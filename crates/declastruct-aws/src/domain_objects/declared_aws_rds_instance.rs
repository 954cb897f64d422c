use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// .what = a declarative structure which represents an AWS RDS DB instance (not part of an Aurora cluster)
/// .why = most RDS databases are plain instances; a tunnel needs their endpoint and port, resolved live
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredAwsRdsInstance {
    /// the DB instance identifier (unique key)
    pub name: String,
    /// the instance ARN; metadata
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub arn: Option<String>,
    /// the endpoint's address; metadata, resolved from AWS
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host: Option<String>,
    /// the database port; metadata
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub port: Option<u16>,
    /// the database engine, e.g. `postgres`; metadata, picks the health probe
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub engine: Option<String>,
    /// the instance status, e.g. `available`; metadata
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<String>,
    /// the Aurora cluster the instance belongs to, if any; metadata
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cluster: Option<String>,
    /// the ARN of the RDS-managed master user secret, when RDS manages it; metadata
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub master_user_secret_arn: Option<String>,
}

/// .what = a reference to an RDS DB instance by its unique identifier
/// .why = the blueprint's `RefByUnique<typeof DeclaredAwsRdsInstance>`
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RdsInstanceRef {
    /// the DB instance identifier
    pub name: String,
}

impl RdsInstanceRef {
    /// .what = a reference by DB instance identifier
    /// .why = the one way to name an instance
    pub fn by_name(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl std::fmt::Display for RdsInstanceRef {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{{ name: {} }}", self.name)
    }
}
