use declastruct_aws::{
    AwsSettings, DeclaredAwsVpcTunnel, DesiredInstanceStatus, Ec2InstanceRef, IdleDuration,
    RdsClusterRef, RdsInstanceRef, VpcTunnelConnect, VpcTunnelFrom, VpcTunnelInto, VpcTunnelStatus,
    VpcTunnelVia,
};
use declastruct_engine::ResourceAddress;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// .what = one declared resource, told apart by `kind`
/// .why = unknown kinds are errors, never ignored
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind")]
pub enum ResourceDeclaration {
    /// an EC2 instance used as a bastion, referenced by its `exid` tag
    DeclaredAwsEc2Instance(Ec2InstanceDeclaration),
    /// a read-only reference to an RDS cluster, by cluster identifier
    DeclaredAwsRdsCluster(RdsClusterDeclaration),
    /// a read-only reference to a plain (non-Aurora) RDS DB instance, by DB instance identifier
    DeclaredAwsRdsInstance(RdsInstanceDeclaration),
    /// an SSM port-forwarding tunnel from a local port through a bastion into a cluster
    DeclaredAwsVpcTunnel(VpcTunnelDeclaration),
}

/// .what = a declared bastion
/// .why = apply starts or stops it to match `status`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ec2InstanceDeclaration {
    /// the value of the instance's `exid` tag
    pub exid: String,
    /// the desired status; when absent, the instance is only referenced, never started or stopped
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DesiredInstanceStatus>,
    /// stop the bastion once it has been idle this long (`90s`, `30m`, `2h`): no Active SSM session targets it
    /// (anyone's), its `declastruct:in-use` tag is older than this, and no tunnel of this machine uses it
    #[serde(rename = "idleStop", default, skip_serializing_if = "Option::is_none")]
    pub idle_stop: Option<IdleDuration>,
}

/// .what = a declared cluster
/// .why = a read-only reference: declastruct never creates or changes clusters
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RdsClusterDeclaration {
    /// the cluster identifier
    pub name: String,
}

/// .what = a declared DB instance
/// .why = a read-only reference: declastruct never creates or changes databases
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RdsInstanceDeclaration {
    /// the DB instance identifier
    pub name: String,
}

impl RdsInstanceDeclaration {
    /// .what = the instance's address: its name
    /// .why = see `ResourceDeclaration::address`
    pub fn address(&self) -> ResourceAddress {
        instance_address(&RdsInstanceRef::by_name(&self.name))
    }
}

/// .what = a declared tunnel
/// .why = apply opens or closes it to match `status`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcTunnelDeclaration {
    /// the mechanism and the bastion to tunnel through
    pub via: VpcTunnelVia,
    /// what to tunnel into: a cluster (and which endpoint), an instance, or a host and port
    pub into: VpcTunnelInto,
    /// the local end: a loopback host and a port
    pub from: VpcTunnelFrom,
    /// OPEN or CLOSED
    pub status: VpcTunnelStatus,
    /// how `exec` and `env` log in through the tunnel: database, user, where the password comes from
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<VpcTunnelConnect>,
    /// close the tunnel after this long without a client connection (and without a running `exec` or `connect`):
    /// `90s`, `30m`, `2h`; the next OPEN apply opens it again
    #[serde(rename = "idleClose", default, skip_serializing_if = "Option::is_none")]
    pub idle_close: Option<IdleDuration>,
}

impl VpcTunnelDeclaration {
    /// .what = the declaration as the AWS crate's domain object
    /// .why = the operations take domain objects
    pub fn to_domain(&self) -> DeclaredAwsVpcTunnel {
        DeclaredAwsVpcTunnel {
            via: self.via.clone(),
            into: self.into.clone(),
            from: self.from.clone(),
            status: Some(self.status),
            pid: None,
            health: None,
            connect: self.connect.clone(),
            idle_close: self.idle_close,
        }
    }
}

/// .what = the class name of each kind
/// .why = plans and slugs use the TypeScript declastruct's class names
pub const EC2_INSTANCE_CLASS: &str = "DeclaredAwsEc2Instance";
/// the class of clusters
pub const RDS_CLUSTER_CLASS: &str = "DeclaredAwsRdsCluster";
/// the class of DB instances
pub const RDS_INSTANCE_CLASS: &str = "DeclaredAwsRdsInstance";
/// the class of tunnels
pub const VPC_TUNNEL_CLASS: &str = "DeclaredAwsVpcTunnel";

/// .what = the address of a bastion reference
/// .why = tunnels depend on declared bastions by address
pub fn bastion_address(reference: &Ec2InstanceRef) -> ResourceAddress {
    ResourceAddress {
        class: EC2_INSTANCE_CLASS.into(),
        slug: reference.key().to_string(),
    }
}

/// .what = the address of a DB instance reference
/// .why = tunnels depend on declared instances by address
pub fn instance_address(reference: &RdsInstanceRef) -> ResourceAddress {
    ResourceAddress {
        class: RDS_INSTANCE_CLASS.into(),
        slug: reference.name.clone(),
    }
}

/// .what = the address of a cluster reference
/// .why = tunnels depend on declared clusters by address
pub fn cluster_address(reference: &RdsClusterRef) -> ResourceAddress {
    ResourceAddress {
        class: RDS_CLUSTER_CLASS.into(),
        slug: reference.name.clone(),
    }
}

impl ResourceDeclaration {
    /// .what = the resource's class and slug
    /// .why = the slug is what `plan` prints and `logs ADDRESS` takes: `{exid}`, `{name}`,
    /// or `{bastion}.{cluster}.{port}` for a tunnel
    pub fn address(&self) -> ResourceAddress {
        match self {
            Self::DeclaredAwsEc2Instance(instance) => instance.address(),
            Self::DeclaredAwsRdsCluster(cluster) => cluster.address(),
            Self::DeclaredAwsRdsInstance(instance) => instance.address(),
            Self::DeclaredAwsVpcTunnel(tunnel) => tunnel.address(),
        }
    }
}

impl Ec2InstanceDeclaration {
    /// .what = the bastion's address: its exid
    /// .why = see `ResourceDeclaration::address`
    pub fn address(&self) -> ResourceAddress {
        ResourceAddress {
            class: EC2_INSTANCE_CLASS.into(),
            slug: self.exid.clone(),
        }
    }
}

impl RdsClusterDeclaration {
    /// .what = the cluster's address: its name
    /// .why = see `ResourceDeclaration::address`
    pub fn address(&self) -> ResourceAddress {
        ResourceAddress {
            class: RDS_CLUSTER_CLASS.into(),
            slug: self.name.clone(),
        }
    }
}

impl VpcTunnelDeclaration {
    /// .what = the tunnel's address: `{bastion}.{target}.{port}` (the cluster's, the instance's name, or the host)
    /// .why = see `ResourceDeclaration::address`
    pub fn address(&self) -> ResourceAddress {
        tunnel_address(&self.via, &self.into, &self.from)
    }
}

/// .what = a tunnel's address from its three ends: `{bastion}.{cluster}.{port}`
/// .why = a declared tunnel and a recorded one (whose manifest may no longer declare it) are named alike
pub fn tunnel_address(
    via: &VpcTunnelVia,
    into: &VpcTunnelInto,
    from: &VpcTunnelFrom,
) -> ResourceAddress {
    ResourceAddress {
        class: VPC_TUNNEL_CLASS.into(),
        slug: format!("{}.{}.{}", via.bastion.key(), into.target_name(), from.port),
    }
}

/// .what = the manifest's JSON Schema, as checked in at `schemas/declastruct.schema.json`
/// .why = editors complete and check manifests with it; `declastruct schema` prints it
pub fn manifest_schema() -> String {
    let schema = schemars::schema_for!(ManifestDocument);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}
