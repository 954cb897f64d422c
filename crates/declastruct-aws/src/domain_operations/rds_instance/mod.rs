mod cast_to_declared_aws_rds_instance;
mod get_rds_instance;

pub use cast_to_declared_aws_rds_instance::cast_to_declared_aws_rds_instance;
pub use get_rds_instance::{closest_instance_names, get_rds_instance, get_rds_instances};
