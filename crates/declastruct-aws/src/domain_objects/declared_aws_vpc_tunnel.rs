use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::{
    Ec2InstanceRef, IdleDuration, RdsClusterRef, RdsInstanceRef, TunnelName, VpcTunnelConnect,
};
pub use declastruct_tunnel::TunnelHealth;

/// .what = a declarative structure representing a VPC tunnel
/// .why = enables declarative control of SSM port-forwarding tunnels to private resources
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredAwsVpcTunnel {
    /// the tunnel's name, its address where given
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<TunnelName>,
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
    /// how `exec` and `env` log in through the tunnel
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub connect: Option<VpcTunnelConnect>,
    /// the tunnel closes after this long without a client connection (and without a running `exec` or
    /// `connect`); the next OPEN apply opens it again
    #[serde(rename = "idleClose", skip_serializing_if = "Option::is_none", default)]
    pub idle_close: Option<IdleDuration>,
}

impl DeclaredAwsVpcTunnel {
    /// .what = the address `plan` prints for the tunnel: its name, or `{bastion}.{target}.{local port}`
    /// .why = a declared tunnel, its record and every message about it name it alike
    pub fn address_slug(&self) -> String {
        tunnel_slug(self.name.as_ref(), &self.via, &self.into, &self.from)
    }

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

/// .what = a tunnel's address from its name, or else from its three ends: `{bastion}.{target}.{local port}`
/// .why = a declared tunnel and a recorded one (whose manifest may no longer declare it) are named alike
pub fn tunnel_slug(
    name: Option<&TunnelName>,
    via: &VpcTunnelVia,
    into: &VpcTunnelInto,
    from: &VpcTunnelFrom,
) -> String {
    match name {
        Some(name) => name.to_string(),
        None => format!("{}.{}.{}", via.bastion.key(), into.target_name(), from.port),
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
    /// how the session is carried: `auto` (the default, also `DECLASTRUCT_TRANSPORT`): the Session Manager plugin
    /// where it is installed, native where it is not; `plugin`: the AWS CLI and the plugin; `native`: declastruct
    /// speaks the data channel itself and needs neither
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<TransportChoice>,
}

/// .what = how a tunnel's session is carried
/// .why = the plugin is what AWS ships and tests; the native transport needs nothing installed
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransportChoice {
    /// the plugin where it is installed, native where it is not
    Auto,
    /// the AWS CLI's `ssm start-session` and the Session Manager plugin
    Plugin,
    /// declastruct's own data channel: no AWS CLI, no plugin
    Native,
}

impl TransportChoice {
    /// .what = the choice as the manifest spells it
    /// .why = messages, status and plans
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Plugin => "plugin",
            Self::Native => "native",
        }
    }

    /// .what = reads `auto`, `plugin` or `native`
    /// .why = `DECLASTRUCT_TRANSPORT`
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "plugin" => Some(Self::Plugin),
            "native" => Some(Self::Native),
            _ => None,
        }
    }
}

/// .what = the mechanisms a tunnel can use
/// .why = spelled as the manifest spells them
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TunnelMechanism {
    /// AWS Systems Manager Session Manager port forwarding
    #[serde(rename = "aws.ssm")]
    AwsSsm,
}

/// .what = what the tunnel leads into: exactly one of an RDS cluster (and which of its endpoints), an RDS DB
/// instance, or any host and port the bastion can reach
/// .why = most RDS users run plain instances, analytics users want the reader, and teams reach caches and private
/// services through the same bastion
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(deny_unknown_fields)]
pub enum VpcTunnelInto {
    /// an Aurora cluster's writer, reader or custom endpoint
    #[schemars(title = "an RDS cluster")]
    Cluster {
        /// the cluster, by `{ name }`
        cluster: RdsClusterRef,
        /// which endpoint: `writer` (the default), `reader`, or the name of a custom endpoint
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<ClusterEndpoint>,
    },
    /// a plain (non-Aurora) RDS DB instance
    #[schemars(title = "an RDS DB instance")]
    Instance {
        /// the instance, by `{ name }` (its DB instance identifier)
        instance: RdsInstanceRef,
    },
    /// any host and port the bastion can reach (ElastiCache, OpenSearch, a private service)
    #[schemars(title = "a host and port")]
    Host {
        /// the host, as the bastion resolves it
        host: String,
        /// the port, 1..=65535
        #[schemars(schema_with = "port_or_variable")]
        port: u16,
        /// what speaks there, for the health probe: `postgres`, `mysql` or `redis`; without it the probe is a
        /// TCP connect through the tunnel ("listener only")
        #[serde(default, skip_serializing_if = "Option::is_none")]
        engine: Option<HostEngine>,
    },
}

impl VpcTunnelInto {
    /// .what = a tunnel into a cluster's writer
    /// .why = the usual target, and the blueprint's only one
    pub fn cluster(reference: RdsClusterRef) -> Self {
        Self::Cluster {
            cluster: reference,
            endpoint: None,
        }
    }

    /// .what = the name a tunnel's address uses for its target: the cluster's, the instance's, or the host
    /// .why = addresses read `{bastion}.{target}.{port}`
    pub fn target_name(&self) -> &str {
        match self {
            Self::Cluster { cluster, .. } => &cluster.name,
            Self::Instance { instance } => &instance.name,
            Self::Host { host, .. } => host,
        }
    }

    /// .what = the target in words, e.g. `ahbodedb (reader)`, `legacydb`, `cache.internal:6379`
    /// .why = status lines and messages say where a tunnel leads
    pub fn describe(&self) -> String {
        match self {
            Self::Cluster { cluster, endpoint } => format!(
                "{} ({})",
                cluster.name,
                endpoint.as_ref().map_or("writer", ClusterEndpoint::as_str)
            ),
            Self::Instance { instance } => instance.name.clone(),
            Self::Host { host, port, .. } => format!("{host}:{port}"),
        }
    }
}

impl<'de> Deserialize<'de> for VpcTunnelInto {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct AnyTarget {
            cluster: Option<RdsClusterRef>,
            endpoint: Option<ClusterEndpoint>,
            instance: Option<RdsInstanceRef>,
            host: Option<String>,
            #[serde(default, deserialize_with = "deserialize_some_port")]
            port: Option<u16>,
            engine: Option<HostEngine>,
        }
        let any = AnyTarget::deserialize(deserializer)?;
        let named = [
            any.cluster.is_some(),
            any.instance.is_some(),
            any.host.is_some(),
        ]
        .iter()
        .filter(|named| **named)
        .count();
        let fail = |message: &str| Err(serde::de::Error::custom(message));
        if named > 1 {
            return fail(
                "`into` takes exactly one of `cluster`, `instance`, or `host` with `port`",
            );
        }
        match any {
            AnyTarget {
                cluster: Some(cluster),
                endpoint,
                port: None,
                engine: None,
                ..
            } => Ok(Self::Cluster { cluster, endpoint }),
            AnyTarget {
                instance: Some(instance),
                endpoint: None,
                port: None,
                engine: None,
                ..
            } => Ok(Self::Instance { instance }),
            AnyTarget {
                host: Some(host),
                port: Some(port),
                endpoint: None,
                engine,
                ..
            } => Ok(Self::Host { host, port, engine }),
            AnyTarget {
                host: Some(_),
                port: None,
                ..
            } => fail("`into.host` needs `port`: the port the bastion reaches it on"),
            AnyTarget {
                endpoint: Some(_), ..
            } => fail("`endpoint` chooses one of a cluster's endpoints: it goes with `cluster`"),
            AnyTarget { port: Some(_), .. } => {
                fail("`port` goes with `host` (a cluster's or an instance's port is read from AWS)")
            }
            AnyTarget {
                engine: Some(_), ..
            } => fail(
                "`engine` describes a `host` target (a cluster's or an instance's is read from AWS)",
            ),
            _ => fail("`into` names no target: give `cluster`, `instance`, or `host` with `port`"),
        }
    }
}

fn deserialize_some_port<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u16>, D::Error> {
    deserialize_local_port(deserializer).map(Some)
}

/// .what = which endpoint of a cluster a tunnel forwards to
/// .why = the writer for migrations, the reader for analytics, a custom endpoint for a chosen set of instances
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(untagged)]
pub enum ClusterEndpoint {
    /// the writer or the reader endpoint
    Role(EndpointRole),
    /// a custom endpoint, by its identifier (DescribeDBClusterEndpoints)
    Custom(String),
}

/// .what = the endpoints every Aurora cluster has
/// .why = spelled as the manifest spells them
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EndpointRole {
    /// the cluster endpoint: the current writer
    Writer,
    /// the reader endpoint: load-balanced over the replicas
    Reader,
}

impl ClusterEndpoint {
    /// .what = the endpoint as written in the manifest
    /// .why = messages and status lines
    pub fn as_str(&self) -> &str {
        match self {
            Self::Role(EndpointRole::Writer) => "writer",
            Self::Role(EndpointRole::Reader) => "reader",
            Self::Custom(name) => name,
        }
    }
}

/// .what = the protocols a host target can be probed in
/// .why = a protocol probe proves the service answers; a TCP connect only proves a listener
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HostEngine {
    /// PostgreSQL (SSLRequest)
    Postgres,
    /// MySQL or MariaDB (the server greeting)
    Mysql,
    /// Redis or Valkey (`PING`)
    Redis,
}

impl HostEngine {
    /// .what = the engine as the health probe names it
    /// .why = host targets are probed like clusters and instances of the same engine
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
        }
    }
}

/// .what = the local end of the tunnel
/// .why = the address a database client connects to
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend(
    "if" = { "properties": { "host": { "not": { "enum": ["localhost", "127.0.0.1", "::1"] } } }, "required": ["host"] },
    "then" = { "properties": { "expose": { "const": true } }, "required": ["expose"] }
))]
pub struct VpcTunnelFrom {
    /// the host the tunnel listens on: loopback, or another address of this machine with `expose`
    pub host: LoopbackHost,
    /// the local port, 1..=65535
    #[serde(deserialize_with = "deserialize_local_port")]
    #[schemars(schema_with = "port_or_variable")]
    pub port: u16,
    /// listen on `host` even though it is not loopback (e.g. `0.0.0.0` or a Docker bridge's address): anyone who
    /// reaches that address reaches the database; the native transport only, and the plan warns
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expose: bool,
}

impl VpcTunnelFrom {
    /// .what = whether the tunnel listens beyond this machine's loopback
    /// .why = only the native transport can, and the plan warns about it
    pub fn is_exposed(&self) -> bool {
        matches!(self.host, LoopbackHost::Address(address) if !address.is_loopback())
    }

    /// .what = the address a health probe or a client on this machine connects to
    /// .why = an exposed tunnel on a wildcard address answers on loopback; one on a given address answers there
    pub fn connect_address(&self) -> std::net::IpAddr {
        match self.host {
            LoopbackHost::Address(address) if address.is_unspecified() => match address {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            },
            LoopbackHost::Address(address) => address,
            LoopbackHost::Localhost | LoopbackHost::Ipv4Loopback => {
                std::net::Ipv4Addr::LOCALHOST.into()
            }
        }
    }
}

/// .what = the schema of a port: a number 1..=65535, or a string that is one manifest variable (`${PORT:-7775}`)
/// .why = editors do not flag `port: ${PORT}`, which the manifest reads as the variable's number
fn port_or_variable(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [
            { "type": "integer", "format": "uint16", "minimum": 1, "maximum": 65535 },
            {
                "type": "string",
                "pattern": "^\\$\\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\\}$",
                "description": "a manifest variable whose value is the port, e.g. ${PORT:-7775}"
            }
        ]
    })
}

fn deserialize_local_port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    deserializer.deserialize_any(PortVisitor)
}

/// .what = what a local port's deserializer expects, as its errors say it (`invalid value: …, expected {this}`)
/// .why = a manifest reader recognises a port out of range by this, as data (the expectation of an
/// `invalid_value` error), and words its own diagnostic
pub const PORT_EXPECTED: &str = "a port number between 1 and 65535";

/// reads a TCP port, and says "expected a port number" in its errors rather than a Rust type's name
struct PortVisitor;

impl PortVisitor {
    fn port<E: serde::de::Error>(number: i128) -> Result<u16, E> {
        match u16::try_from(number) {
            Ok(port) if port >= 1 => Ok(port),
            _ => Err(match i64::try_from(number) {
                Ok(signed) => E::invalid_value(serde::de::Unexpected::Signed(signed), &PortVisitor),
                Err(_) => E::invalid_value(
                    serde::de::Unexpected::Other("an integer beyond 64 bits"),
                    &PortVisitor,
                ),
            }),
        }
    }
}

impl serde::de::Visitor<'_> for PortVisitor {
    type Value = u16;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(PORT_EXPECTED)
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
            Err(E::invalid_value(
                serde::de::Unexpected::Other("an integer beyond 64 bits"),
                &self,
            ))
        } else {
            Err(E::invalid_value(
                serde::de::Unexpected::Float(number),
                &self,
            ))
        }
    }
}

/// .what = the hosts a tunnel may listen on: `localhost`, `127.0.0.1`, or (with `from.expose: true`) another
/// address of this machine
/// .why = a tunnel into a private database listens beyond this machine only when the manifest says so
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopbackHost {
    /// `localhost`: 127.0.0.1, and ::1 too with the native transport
    Localhost,
    /// `127.0.0.1`
    Ipv4Loopback,
    /// any other IP address (`0.0.0.0`, `::1`, a Docker bridge's address); beyond loopback only with `expose`
    Address(std::net::IpAddr),
}

impl LoopbackHost {
    /// .what = the host as written in the manifest
    /// .why = slugs and messages
    pub fn as_str(self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Localhost => "localhost".into(),
            Self::Ipv4Loopback => "127.0.0.1".into(),
            Self::Address(address) => address.to_string().into(),
        }
    }
}

impl Serialize for LoopbackHost {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for LoopbackHost {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HostVisitor;
        impl<'de> serde::de::Visitor<'de> for HostVisitor {
            type Value = LoopbackHost;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("`localhost`, `127.0.0.1` or an IP address of this machine")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<LoopbackHost, E> {
                match text {
                    "localhost" => Ok(LoopbackHost::Localhost),
                    "127.0.0.1" => Ok(LoopbackHost::Ipv4Loopback),
                    other => other.parse().map(LoopbackHost::Address).map_err(|_| {
                        // a name (a host elsewhere) is never a listening address
                        E::unknown_variant(other, &["localhost", "127.0.0.1"])
                    }),
                }
            }
            /// read as an enum, so that a reader that stands in a neutral value for a wrong one (the manifest's,
            /// to report every problem at once) picks `localhost`
            fn visit_enum<A: serde::de::EnumAccess<'de>>(
                self,
                data: A,
            ) -> Result<LoopbackHost, A::Error> {
                use serde::de::VariantAccess;
                let (name, variant): (String, _) = data.variant()?;
                variant.unit_variant()?;
                self.visit_str(&name)
            }
        }
        deserializer.deserialize_enum("LoopbackHost", &["localhost", "127.0.0.1"], HostVisitor)
    }
}

impl JsonSchema for LoopbackHost {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "LoopbackHost".into()
    }

    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "the host the tunnel listens on: `localhost` (127.0.0.1, and ::1 with the native transport), `127.0.0.1`, or another IP address of this machine with `expose: true`",
            "anyOf": [
                { "type": "string", "enum": ["localhost", "127.0.0.1"] },
                { "type": "string", "anyOf": [{ "format": "ipv4" }, { "format": "ipv6" }] }
            ]
        })
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
