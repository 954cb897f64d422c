use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::{Ec2InstanceRef, RdsClusterRef};

/// .what = a declarative structure representing a VPC tunnel
/// .why = enables declarative control of SSM port-forwarding tunnels to private resources
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredAwsVpcTunnel {
    /// the bastion instance to tunnel through and the mechanism
    pub via: VpcTunnelVia,
    /// the target resource to tunnel into
    pub into: VpcTunnelInto,
    /// the local binding for the tunnel
    pub from: VpcTunnelFrom,
    /// OPEN when the tunnel is active, CLOSED when not
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<VpcTunnelStatus>,
    /// the process id of the tunnel's process; metadata, only present when OPEN
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pid: Option<u32>,
}

impl DeclaredAwsVpcTunnel {
    /// .what = the same tunnel with another status and pid
    /// .why = get and set operations report the tunnel they observed
    pub fn with_status(&self, status: VpcTunnelStatus, pid: Option<u32>) -> Self {
        Self {
            status: Some(status),
            pid,
            ..self.clone()
        }
    }
}

/// .what = how the tunnel reaches the VPC
/// .why = today only through AWS Session Manager on a bastion
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcTunnelVia {
    /// the tunnel mechanism
    pub mechanism: TunnelMechanism,
    /// the bastion, by `{ exid }` or `{ instanceId }`
    pub bastion: Ec2InstanceRef,
}

/// .what = the mechanisms a tunnel can use
/// .why = spelled as the manifest spells them
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TunnelMechanism {
    /// AWS Systems Manager Session Manager port forwarding
    #[serde(rename = "aws.ssm")]
    AwsSsm,
}

/// .what = what the tunnel leads into
/// .why = today an RDS cluster's writer endpoint
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcTunnelInto {
    /// the cluster, by `{ name }`
    pub cluster: RdsClusterRef,
}

/// .what = the local end of the tunnel
/// .why = the address a database client connects to
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcTunnelFrom {
    /// the loopback host the tunnel listens on
    pub host: LoopbackHost,
    /// the local port, 1..=65535
    #[serde(deserialize_with = "deserialize_local_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

fn deserialize_local_port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    let port = i128::deserialize(deserializer)?;
    match u16::try_from(port) {
        Ok(port) if port >= 1 => Ok(port),
        _ => Err(serde::de::Error::custom(format!(
            "port {port} is outside 1..=65535"
        ))),
    }
}

/// .what = the loopback hosts a tunnel may listen on
/// .why = a tunnel into a private database must never listen beyond this machine
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LoopbackHost {
    /// `localhost`
    #[serde(rename = "localhost")]
    Localhost,
    /// `127.0.0.1`
    #[serde(rename = "127.0.0.1")]
    Ipv4Loopback,
}

impl LoopbackHost {
    /// .what = the host as written in the manifest
    /// .why = slugs and messages
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Localhost => "localhost",
            Self::Ipv4Loopback => "127.0.0.1",
        }
    }
}

/// .what = whether a tunnel is open
/// .why = the manifest's `status` of a tunnel
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum VpcTunnelStatus {
    /// open: our process is alive and the database answers through the local port
    Open,
    /// closed
    Closed,
}

impl VpcTunnelStatus {
    /// .what = the status as written in the manifest
    /// .why = messages and tables
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Closed => "CLOSED",
        }
    }
}
