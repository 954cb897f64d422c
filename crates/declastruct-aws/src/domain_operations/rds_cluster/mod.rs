mod cast_to_declared_aws_rds_cluster;
mod get_rds_cluster;
mod get_rds_cluster_endpoints;

pub use cast_to_declared_aws_rds_cluster::cast_to_declared_aws_rds_cluster;
pub use get_rds_cluster::{closest_cluster_names, get_rds_cluster, get_rds_clusters};
pub use get_rds_cluster_endpoints::{RdsClusterEndpoint, get_rds_cluster_endpoints};
