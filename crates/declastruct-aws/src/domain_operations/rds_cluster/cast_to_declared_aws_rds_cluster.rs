use aws_sdk_rds::types::DbCluster;

use crate::domain_objects::{DeclaredAwsRdsCluster, RdsClusterHost};

/// .what = an RDS API cluster as a `DeclaredAwsRdsCluster`
/// .why = the rest of the code speaks the blueprint's model, never the SDK's types
pub fn cast_to_declared_aws_rds_cluster(cluster: &DbCluster) -> DeclaredAwsRdsCluster {
    let host = cluster.endpoint().map(|writer| RdsClusterHost {
        writer: writer.to_string(),
        reader: cluster.reader_endpoint().unwrap_or(writer).to_string(),
    });
    DeclaredAwsRdsCluster {
        name: cluster
            .db_cluster_identifier()
            .unwrap_or_default()
            .to_string(),
        arn: cluster.db_cluster_arn().map(str::to_string),
        host,
        port: cluster.port().and_then(|port| u16::try_from(port).ok()),
        status: cluster.status().map(str::to_string),
        engine: cluster.engine().map(str::to_string),
        master_user_secret_arn: cluster
            .master_user_secret()
            .and_then(|secret| secret.secret_arn())
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_endpoints_port_status_and_engine() {
        let cluster = DbCluster::builder()
            .db_cluster_identifier("ahbodedb")
            .db_cluster_arn("arn:aws:rds:us-east-1:123456789012:cluster:ahbodedb")
            .endpoint("ahbodedb.cluster-abc.us-east-1.rds.amazonaws.com")
            .reader_endpoint("ahbodedb.cluster-ro-abc.us-east-1.rds.amazonaws.com")
            .port(5432)
            .status("available")
            .engine("aurora-postgresql")
            .build();
        let declared = cast_to_declared_aws_rds_cluster(&cluster);
        assert_eq!(declared.name, "ahbodedb");
        assert_eq!(declared.port, Some(5432));
        assert_eq!(
            declared.host.map(|host| host.reader),
            Some("ahbodedb.cluster-ro-abc.us-east-1.rds.amazonaws.com".to_string())
        );
        assert_eq!(declared.engine.as_deref(), Some("aurora-postgresql"));
    }
}
