mod cast_to_declared_aws_ec2_instance;
mod get_ec2_instance;
mod set_ec2_instance_status;

pub use cast_to_declared_aws_ec2_instance::cast_to_declared_aws_ec2_instance;
pub use get_ec2_instance::{Ec2InstanceLookup, closest_exids, get_ec2_instance, get_ec2_instances};
pub use set_ec2_instance_status::{DesiredInstanceStatus, set_ec2_instance_status};
