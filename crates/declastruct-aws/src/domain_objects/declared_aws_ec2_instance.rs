use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// .what = a declarative structure which represents an AWS EC2 instance (the bastion)
/// .why = enables declarative control of AWS EC2 instances
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredAwsEc2Instance {
    /// the instance id (primary key); metadata when looked up by tag
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub instance_id: Option<String>,
    /// the value of the instance's `exid` tag (unique key); empty when an instance found by id has no such tag
    pub exid: String,
    /// the current status of the instance; metadata, may be absent
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<Ec2InstanceStatus>,
    /// the private IP address; metadata, may be absent
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub private_ip: Option<String>,
    /// the last time a declastruct on any machine said it used the instance (its `declastruct:in-use` tag, UTC);
    /// metadata, absent when never tagged
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub in_use_at: Option<String>,
}

/// the tag each declastruct that uses a bastion renews, for `idleStop`: a UTC time, RFC 3339
pub const IN_USE_TAG: &str = "declastruct:in-use";

/// .what = the lifecycle states EC2 reports for an instance
/// .why = a bastion must be `running` before a tunnel can open through it
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Ec2InstanceStatus {
    /// starting
    Pending,
    /// running
    Running,
    /// stopping
    Stopping,
    /// stopped
    Stopped,
    /// terminating
    ShuttingDown,
    /// terminated
    Terminated,
}

impl Ec2InstanceStatus {
    /// .what = the state's name as EC2 spells it
    /// .why = messages and plans use AWS's own words
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::ShuttingDown => "shutting-down",
            Self::Terminated => "terminated",
        }
    }
}

impl std::fmt::Display for Ec2InstanceStatus {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// .what = a reference to an EC2 instance: by its unique `exid` tag or by its primary `instanceId`
/// .why = a tunnel names its bastion either way, as the blueprint's `RefByUnique` / `RefByPrimary`
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(untagged)]
#[schemars(deny_unknown_fields)]
pub enum Ec2InstanceRef {
    /// by the `exid` tag
    #[schemars(title = "by exid tag")]
    ByUnique {
        /// the value of the instance's `exid` tag
        exid: String,
    },
    /// by instance id
    #[schemars(title = "by instance id")]
    ByPrimary {
        /// the instance id, `i-...`
        #[serde(rename = "instanceId")]
        instance_id: String,
    },
}

impl Ec2InstanceRef {
    /// .what = a reference by the `exid` tag
    /// .why = the usual way to name a bastion
    pub fn by_exid(exid: impl Into<String>) -> Self {
        Self::ByUnique { exid: exid.into() }
    }

    /// .what = a reference by instance id
    /// .why = for bastions that carry no `exid` tag
    pub fn by_instance_id(instance_id: impl Into<String>) -> Self {
        Self::ByPrimary {
            instance_id: instance_id.into(),
        }
    }

    /// .what = the key's value, `exid` or instance id
    /// .why = slugs and messages name the bastion by it
    pub fn key(&self) -> &str {
        match self {
            Self::ByUnique { exid } => exid,
            Self::ByPrimary { instance_id } => instance_id,
        }
    }

    /// .what = whether `instance` is the one this reference names
    /// .why = matches batched lookups back to their references
    pub fn matches(&self, instance: &DeclaredAwsEc2Instance) -> bool {
        match self {
            Self::ByUnique { exid } => &instance.exid == exid,
            Self::ByPrimary { instance_id } => instance.instance_id.as_deref() == Some(instance_id),
        }
    }
}

impl std::fmt::Display for Ec2InstanceRef {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ByUnique { exid } => write!(formatter, "{{ exid: {exid} }}"),
            Self::ByPrimary { instance_id } => write!(formatter, "{{ instanceId: {instance_id} }}"),
        }
    }
}

impl<'de> Deserialize<'de> for Ec2InstanceRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        struct Either {
            exid: Option<String>,
            instance_id: Option<String>,
        }
        match Either::deserialize(deserializer)? {
            Either {
                exid: Some(exid),
                instance_id: None,
            } => Ok(Self::ByUnique { exid }),
            Either {
                exid: None,
                instance_id: Some(instance_id),
            } => Ok(Self::ByPrimary { instance_id }),
            _ => Err(serde::de::Error::custom(
                "a bastion reference takes exactly one of `exid` or `instanceId`",
            )),
        }
    }
}
