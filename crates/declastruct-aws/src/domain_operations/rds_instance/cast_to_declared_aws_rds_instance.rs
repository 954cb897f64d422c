use aws_sdk_rds::types::DbInstance;

use crate::domain_objects::DeclaredAwsRdsInstance;

/// .what = an RDS API DB instance as a `DeclaredAwsRdsInstance`
/// .why = the rest of the code speaks the blueprint's model, never the SDK's types
pub fn cast_to_declared_aws_rds_instance(instance: &DbInstance) -> DeclaredAwsRdsInstance {
    let endpoint = instance.endpoint();
    DeclaredAwsRdsInstance {
        name: instance
            .db_instance_identifier()
            .unwrap_or_default()
            .to_string(),
        arn: instance.db_instance_arn().map(str::to_string),
        host: endpoint
            .and_then(|endpoint| endpoint.address())
            .map(str::to_string),
        port: endpoint
            .and_then(aws_sdk_rds::types::Endpoint::port)
            .and_then(|port| u16::try_from(port).ok()),
        engine: instance.engine().map(str::to_string),
        status: instance.db_instance_status().map(str::to_string),
        cluster: instance.db_cluster_identifier().map(str::to_string),
        master_user_secret_arn: instance
            .master_user_secret()
            .and_then(|secret| secret.secret_arn())
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_rds::types::{Endpoint, MasterUserSecret};

    #[test]
    fn reads_endpoint_port_engine_status_cluster_and_secret() {
        let instance = DbInstance::builder()
            .db_instance_identifier("legacydb")
            .db_instance_arn("arn:aws:rds:us-east-1:123456789012:db:legacydb")
            .endpoint(
                Endpoint::builder()
                    .address("legacydb.abc.us-east-1.rds.amazonaws.com")
                    .port(5432)
                    .build(),
            )
            .engine("postgres")
            .db_instance_status("available")
            .master_user_secret(
                MasterUserSecret::builder()
                    .secret_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1")
                    .build(),
            )
            .build();
        let declared = cast_to_declared_aws_rds_instance(&instance);
        assert_eq!(declared.name, "legacydb");
        assert_eq!(
            declared.host.as_deref(),
            Some("legacydb.abc.us-east-1.rds.amazonaws.com")
        );
        assert_eq!(declared.port, Some(5432));
        assert_eq!(declared.engine.as_deref(), Some("postgres"));
        assert_eq!(declared.cluster, None);
        assert!(declared.master_user_secret_arn.is_some());
    }
}
