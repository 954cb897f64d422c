use std::collections::BTreeMap;

use aws_sdk_rds::operation::describe_db_clusters::DescribeDBClustersError;
use aws_sdk_rds::types::Filter;

use super::cast_to_declared_aws_rds_cluster;
use crate::error::AwsError;
use crate::{ContextAwsApi, DeclaredAwsRdsCluster, RdsClusterRef};

/// .what = gets an RDS cluster from AWS, or `None` when there is none
/// .why = enables lookup of RDS cluster endpoints and metadata
pub async fn get_rds_cluster(
    by: &RdsClusterRef,
    context: &ContextAwsApi,
) -> Result<Option<DeclaredAwsRdsCluster>, AwsError> {
    let response = context
        .rds
        .describe_db_clusters()
        .db_cluster_identifier(&by.name)
        .send()
        .await;
    match response {
        Ok(response) => Ok(response
            .db_clusters()
            .iter()
            .map(cast_to_declared_aws_rds_cluster)
            .find(|cluster| cluster.name == by.name)),
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(DescribeDBClustersError::DbClusterNotFoundFault(_))
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(AwsError::from_sdk("rds:DescribeDBClusters", error)),
    }
}

/// .what = gets many RDS clusters with one DescribeDBClusters call (the `db-cluster-id` filter)
/// .why = a plan over a hundred tunnels must cost a handful of AWS calls, not hundreds
pub async fn get_rds_clusters(
    references: &[RdsClusterRef],
    context: &ContextAwsApi,
) -> Result<BTreeMap<RdsClusterRef, DeclaredAwsRdsCluster>, AwsError> {
    let mut names: Vec<String> = references
        .iter()
        .map(|reference| reference.name.clone())
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let clusters = describe_clusters(Some(names), context).await?;
    Ok(references
        .iter()
        .filter_map(|reference| {
            clusters
                .iter()
                .find(|cluster| cluster.name == reference.name)
                .map(|cluster| (reference.clone(), cluster.clone()))
        })
        .collect())
}

/// .what = the existing cluster identifiers closest to `name`, best first
/// .why = "cluster not found" says what the user probably meant; only called on that error path
pub async fn closest_cluster_names(
    name: &str,
    context: &ContextAwsApi,
) -> Result<Vec<String>, AwsError> {
    let clusters = describe_clusters(None, context).await?;
    let mut scored: Vec<(usize, String)> = clusters
        .into_iter()
        .map(|cluster| (strsim::levenshtein(name, &cluster.name), cluster.name))
        .filter(|(distance, candidate)| *distance <= (candidate.len().max(name.len()) / 2).max(2))
        .collect();
    scored.sort();
    Ok(scored
        .into_iter()
        .take(3)
        .map(|(_, candidate)| candidate)
        .collect())
}

/// one paginated DescribeDBClusters, filtered to `names` when given
async fn describe_clusters(
    names: Option<Vec<String>>,
    context: &ContextAwsApi,
) -> Result<Vec<DeclaredAwsRdsCluster>, AwsError> {
    tracing::debug!(
        filtered = names.as_ref().map(Vec::len),
        "rds:DescribeDBClusters"
    );
    let mut clusters = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut request = context.rds.describe_db_clusters().set_marker(marker);
        if let Some(names) = &names {
            request = request.filters(
                Filter::builder()
                    .name("db-cluster-id")
                    .set_values(Some(names.clone()))
                    .build(),
            );
        }
        let response = request
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("rds:DescribeDBClusters", error))?;
        clusters.extend(
            response
                .db_clusters()
                .iter()
                .map(cast_to_declared_aws_rds_cluster),
        );
        marker = response
            .marker()
            .filter(|marker| !marker.is_empty())
            .map(str::to_string);
        if marker.is_none() {
            return Ok(clusters);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{action, bodies, describe_clusters_xml, filters, recording_context};

    #[tokio::test]
    async fn asks_for_the_cluster_identifier() {
        let (context, recorded, _folder) =
            recording_context(|_, _| (200, describe_clusters_xml("ahbodedb")));
        let cluster = get_rds_cluster(&RdsClusterRef::by_name("ahbodedb"), &context)
            .await
            .expect("answered")
            .expect("found");
        assert_eq!(cluster.port, Some(5432));
        let sent = bodies(&recorded);
        assert_eq!(sent.len(), 1);
        assert_eq!(action(&sent[0]), "DescribeDBClusters", "{}", sent[0]);
        assert!(
            sent[0].contains("&DBClusterIdentifier=ahbodedb"),
            "{}",
            sent[0]
        );
    }

    #[tokio::test]
    async fn cluster_not_found_is_none() {
        let (context, _recorded, _folder) = recording_context(|_, _| {
            (
                404,
                r#"<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>DBClusterNotFoundFault</Code><Message>DBCluster nope not found.</Message></Error><RequestId>r</RequestId></ErrorResponse>"#.to_string(),
            )
        });
        let cluster = get_rds_cluster(&RdsClusterRef::by_name("nope"), &context)
            .await
            .expect("answered");
        assert_eq!(cluster, None);
    }

    #[tokio::test]
    async fn many_clusters_cost_one_call_with_the_db_cluster_id_filter() {
        let (context, recorded, _folder) =
            recording_context(|_, _| (200, describe_clusters_xml("b")));
        let references = [
            RdsClusterRef::by_name("b"),
            RdsClusterRef::by_name("a"),
            RdsClusterRef::by_name("b"),
        ];
        let found = get_rds_clusters(&references, &context)
            .await
            .expect("answered");
        assert_eq!(found.len(), 1);
        let sent = bodies(&recorded);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            filters(&sent[0]),
            vec![(
                "db-cluster-id".to_string(),
                vec!["a".to_string(), "b".to_string()]
            )]
        );
    }
}
