use std::collections::BTreeMap;

use aws_sdk_rds::operation::describe_db_clusters::DescribeDBClustersError;
use aws_sdk_rds::types::Filter;

use super::cast_to_declared_aws_rds_cluster;
use crate::domain_objects::{ContextAwsApi, DeclaredAwsRdsCluster, RdsClusterRef};
use crate::domain_operations::closest_names::closest_names_of_each;
use crate::domain_operations::filter_chunks::{ask_in_chunks, rds_identifiers};
use crate::error::AwsError;

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
            .find(|cluster| names_cluster(by, cluster))),
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(DescribeDBClustersError::DbClusterNotFoundFault(_))
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(AwsError::from_sdk(
            "rds:DescribeDBClusters",
            &context.endpoint("rds"),
            &error,
        )),
    }
}

/// .what = gets many RDS clusters with one DescribeDBClusters call (the `db-cluster-id` filter)
/// .why = a plan over a hundred tunnels must cost a handful of AWS calls, not hundreds
pub async fn get_rds_clusters(
    references: &[RdsClusterRef],
    context: &ContextAwsApi,
) -> Result<BTreeMap<RdsClusterRef, DeclaredAwsRdsCluster>, AwsError> {
    let names = rds_identifiers(references.iter().map(|reference| reference.name.as_str()));
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let clusters = describe_clusters(Some(names), context).await?;
    Ok(references
        .iter()
        .filter_map(|reference| {
            clusters
                .iter()
                .find(|cluster| names_cluster(reference, cluster))
                .map(|cluster| (reference.clone(), cluster.clone()))
        })
        .collect())
}

/// .what = for each of `names`, the existing cluster identifiers closest to it, best first (in the order of `names`)
/// .why = "cluster not found" says what the user probably meant; only called on that error path, with one listing
/// however many are missing
pub async fn closest_cluster_names(
    names: &[&str],
    context: &ContextAwsApi,
) -> Result<Vec<Vec<String>>, AwsError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let candidates: Vec<String> = describe_clusters(None, context)
        .await?
        .into_iter()
        .map(|cluster| cluster.name)
        .collect();
    Ok(closest_names_of_each(names, &candidates))
}

/// how many values one `db-cluster-id` filter carries at most; more names are asked for in several calls
/// (conservative: the API documents no higher limit for this filter)
pub(crate) const CLUSTER_FILTER_LIMIT: usize = 100;

/// .what = DescribeDBClusters through the SDK's paginator (following `Marker`), filtered to `names` when given,
/// in chunks of at most `CLUSTER_FILTER_LIMIT` names, the chunks concurrently
/// .why = any number of clusters, in as few calls as the API allows
async fn describe_clusters(
    names: Option<Vec<String>>,
    context: &ContextAwsApi,
) -> Result<Vec<DeclaredAwsRdsCluster>, AwsError> {
    tracing::debug!(
        filtered = names.as_ref().map(Vec::len),
        "rds:DescribeDBClusters"
    );
    ask_in_chunks(names.as_deref(), CLUSTER_FILTER_LIMIT, |chunk| async move {
        let mut request = context.rds.describe_db_clusters();
        if let Some(names) = chunk {
            request = request.filters(
                Filter::builder()
                    .name("db-cluster-id")
                    .set_values(Some(names))
                    .build(),
            );
        }
        let mut pages = request.into_paginator().send();
        let mut clusters = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| {
                AwsError::from_sdk("rds:DescribeDBClusters", &context.endpoint("rds"), &error)
            })?;
            clusters.extend(
                page.db_clusters()
                    .iter()
                    .map(cast_to_declared_aws_rds_cluster),
            );
        }
        Ok(clusters)
    })
    .await
}

/// .what = whether a cluster found is the one a reference names
/// .why = RDS stores identifiers in lower case and compares them without case: `AhBodeDB` names `ahbodedb`
pub(crate) fn names_cluster(reference: &RdsClusterRef, cluster: &DeclaredAwsRdsCluster) -> bool {
    reference.name.eq_ignore_ascii_case(&cluster.name)
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

    /// two pages, as RDS answers with a `Marker` when more clusters match than `MaxRecords`
    fn paged(_action: &str, body: &str) -> (u16, String) {
        if body.contains("Marker=page-two") {
            (200, describe_clusters_xml("second"))
        } else {
            (
                200,
                describe_clusters_xml("first")
                    .replace("</DBClusters>", "</DBClusters><Marker>page-two</Marker>"),
            )
        }
    }

    #[tokio::test]
    async fn every_page_is_read() {
        let (context, recorded, _folder) = recording_context(paged);
        let found = get_rds_clusters(
            &[
                RdsClusterRef::by_name("first"),
                RdsClusterRef::by_name("second"),
            ],
            &context,
        )
        .await
        .expect("answered");
        assert_eq!(found.len(), 2, "{found:?}");
        let sent = bodies(&recorded);
        assert_eq!(sent.len(), 2);
        assert!(sent[1].contains("Marker=page-two"), "{}", sent[1]);
    }

    #[tokio::test]
    async fn filter_values_are_chunked_and_identifiers_match_without_case() {
        let (context, recorded, _folder) =
            recording_context(|_, _| (200, describe_clusters_xml("ahbodedb")));
        let mut references: Vec<RdsClusterRef> = (0..CLUSTER_FILTER_LIMIT + 20)
            .map(|number| RdsClusterRef::by_name(format!("cluster-{number:03}")))
            .collect();
        references.push(RdsClusterRef::by_name("AhBodeDB"));
        let found = get_rds_clusters(&references, &context)
            .await
            .expect("answered");
        assert_eq!(
            found
                .get(&RdsClusterRef::by_name("AhBodeDB"))
                .map(|cluster| cluster.name.as_str()),
            Some("ahbodedb"),
            "RDS stores identifiers in lower case"
        );
        let mut sizes: Vec<usize> = bodies(&recorded)
            .iter()
            .map(|body| filters(body)[0].1.len())
            .collect();
        sizes.sort();
        assert_eq!(sizes, vec![21, CLUSTER_FILTER_LIMIT]);
    }
}
