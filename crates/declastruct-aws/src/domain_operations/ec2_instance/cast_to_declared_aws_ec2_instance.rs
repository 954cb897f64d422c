use aws_sdk_ec2::types::{Instance, InstanceStateName};

use crate::domain_objects::{DeclaredAwsEc2Instance, Ec2InstanceStatus};

/// .what = an EC2 API instance as a `DeclaredAwsEc2Instance`
/// .why = the rest of the code speaks the blueprint's model, never the SDK's types
pub fn cast_to_declared_aws_ec2_instance(instance: &Instance) -> DeclaredAwsEc2Instance {
    let exid = instance
        .tags()
        .iter()
        .find(|tag| tag.key() == Some("exid"))
        .and_then(|tag| tag.value())
        .unwrap_or_default()
        .to_string();
    let status = instance
        .state()
        .and_then(|state| state.name())
        .and_then(|name| match name {
            InstanceStateName::Pending => Some(Ec2InstanceStatus::Pending),
            InstanceStateName::Running => Some(Ec2InstanceStatus::Running),
            InstanceStateName::Stopping => Some(Ec2InstanceStatus::Stopping),
            InstanceStateName::Stopped => Some(Ec2InstanceStatus::Stopped),
            InstanceStateName::ShuttingDown => Some(Ec2InstanceStatus::ShuttingDown),
            InstanceStateName::Terminated => Some(Ec2InstanceStatus::Terminated),
            _ => None,
        });
    DeclaredAwsEc2Instance {
        instance_id: instance.instance_id().map(str::to_string),
        exid,
        status,
        private_ip: instance.private_ip_address().map(str::to_string),
        in_use_at: instance
            .tags()
            .iter()
            .find(|tag| tag.key() == Some(crate::domain_objects::IN_USE_TAG))
            .and_then(|tag| tag.value())
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::{InstanceState, Tag};

    #[test]
    fn reads_id_tag_state_and_ip() {
        let instance = Instance::builder()
            .instance_id("i-0abc")
            .private_ip_address("10.0.0.5")
            .state(
                InstanceState::builder()
                    .name(InstanceStateName::Stopped)
                    .build(),
            )
            .tags(Tag::builder().key("Name").value("bastion").build())
            .tags(Tag::builder().key("exid").value("vpc-main-bastion").build())
            .build();
        assert_eq!(
            cast_to_declared_aws_ec2_instance(&instance),
            DeclaredAwsEc2Instance {
                instance_id: Some("i-0abc".into()),
                exid: "vpc-main-bastion".into(),
                status: Some(Ec2InstanceStatus::Stopped),
                private_ip: Some("10.0.0.5".into()),
                in_use_at: None,
            }
        );
    }
}
