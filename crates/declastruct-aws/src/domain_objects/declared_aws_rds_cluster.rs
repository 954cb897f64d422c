use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// .what = a declarative structure which represents an AWS RDS cluster
/// .why = a tunnel needs the cluster's writer endpoint and port, resolved live
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredAwsRdsCluster {
    /// the cluster identifier (unique key)
    pub name: String,
    /// the cluster ARN; metadata
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub arn: Option<String>,
    /// the cluster hostnames; metadata, resolved from AWS
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host: Option<RdsClusterHost>,
    /// the database port; metadata, typically 5432 for postgres
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub port: Option<u16>,
    /// the cluster status, e.g. `available`; metadata
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<String>,
    /// the database engine, e.g. `aurora-postgresql`; metadata, picks the health probe
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub engine: Option<String>,
    /// the ARN of the RDS-managed master user secret, when RDS manages it; metadata
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub master_user_secret_arn: Option<String>,
}

/// .what = the cluster's writer and reader endpoints
/// .why = tunnels forward to the writer, or to the reader when they say `endpoint: reader`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdsClusterHost {
    /// the writer endpoint
    pub writer: String,
    /// the reader endpoint
    pub reader: String,
}

/// .what = a reference to an RDS cluster by its unique identifier
/// .why = the blueprint's `RefByUnique<typeof DeclaredAwsRdsCluster>`
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct RdsClusterRef {
    /// the cluster identifier
    pub name: String,
}

impl RdsClusterRef {
    /// .what = a reference by cluster identifier
    /// .why = the one way to name a cluster
    pub fn by_name(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

impl std::fmt::Display for RdsClusterRef {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{{ name: {} }}", self.name)
    }
}
