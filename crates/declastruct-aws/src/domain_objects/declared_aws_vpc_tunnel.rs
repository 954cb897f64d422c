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
    /// whether the database answers through an OPEN tunnel, and if not, why; metadata, only present when OPEN
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub health: Option<TunnelHealth>,
}

/// .what = whether the database answers through a tunnel whose process is alive, and if not, why
/// .why = a live process that does not serve is reported as OPEN and unhealthy, with its cause: a CLOSED
/// manifest closes it, an OPEN one heals it; it is never taken for CLOSED
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelHealth {
    /// the database answered (or, without a protocol probe, the listener did)
    pub healthy: bool,
    /// why not, when not; what was not verified, when healthy without a protocol probe
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

impl TunnelHealth {
    /// .what = healthy, with nothing to add
    /// .why = the database answered its protocol's probe
    pub fn ok() -> Self {
        Self {
            healthy: true,
            reason: None,
        }
    }

    /// .what = unhealthy, with the cause
    /// .why = every failed check says why
    pub fn failed(reason: impl Into<String>) -> Self {
        Self {
            healthy: false,
            reason: Some(reason.into()),
        }
    }

    /// .what = the health in a few words: `healthy`, or `unhealthy: cause`
    /// .why = tables and plan differences show it the same way
    pub fn describe(&self) -> String {
        match (self.healthy, &self.reason) {
            (true, None) => "healthy".into(),
            (true, Some(note)) => format!("healthy ({note})"),
            (false, reason) => format!(
                "unhealthy: {}",
                reason.as_deref().unwrap_or("no reason given")
            ),
        }
    }
}

impl DeclaredAwsVpcTunnel {
    /// .what = the same tunnel with another status and pid
    /// .why = get and set operations report the tunnel they observed
    pub fn with_status(&self, status: VpcTunnelStatus, pid: Option<u32>) -> Self {
        Self {
            status: Some(status),
            pid,
            health: None,
            ..self.clone()
        }
    }

    /// .what = the same tunnel observed OPEN, with its pid and health
    /// .why = an open tunnel always says whether it serves
    pub fn observed_open(&self, pid: u32, health: TunnelHealth) -> Self {
        Self {
            status: Some(VpcTunnelStatus::Open),
            pid: Some(pid),
            health: Some(health),
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
    deserializer.deserialize_any(PortVisitor)
}

/// reads a TCP port, and says "expected a port number" in its errors rather than a Rust type's name
struct PortVisitor;

impl PortVisitor {
    fn port<E: serde::de::Error>(number: i128) -> Result<u16, E> {
        match u16::try_from(number) {
            Ok(port) if port >= 1 => Ok(port),
            _ => Err(E::custom(format!("port {number} is outside 1..=65535"))),
        }
    }
}

impl serde::de::Visitor<'_> for PortVisitor {
    type Value = u16;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a port number between 1 and 65535")
    }

    fn visit_i64<E: serde::de::Error>(self, number: i64) -> Result<u16, E> {
        Self::port(i128::from(number))
    }

    fn visit_u64<E: serde::de::Error>(self, number: u64) -> Result<u16, E> {
        Self::port(i128::from(number))
    }

    fn visit_i128<E: serde::de::Error>(self, number: i128) -> Result<u16, E> {
        Self::port(number)
    }

    fn visit_u128<E: serde::de::Error>(self, number: u128) -> Result<u16, E> {
        Self::port(i128::try_from(number).unwrap_or(i128::MAX))
    }

    /// YAML reads an integer too large for 64 bits as a float
    fn visit_f64<E: serde::de::Error>(self, number: f64) -> Result<u16, E> {
        if number.fract() == 0.0 && number.is_finite() {
            Err(E::custom("the port is outside 1..=65535"))
        } else {
            Err(E::invalid_value(
                serde::de::Unexpected::Float(number),
                &self,
            ))
        }
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
