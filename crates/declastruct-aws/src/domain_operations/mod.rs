pub(crate) mod closest_names;
pub mod ec2_instance;
pub(crate) mod filter_chunks;
pub mod rds_cluster;
pub mod rds_instance;
pub mod vpc_tunnel;
