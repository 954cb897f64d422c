use std::collections::BTreeMap;

use aws_sdk_rds::types::Filter;

use crate::domain_objects::{ContextAwsApi, RdsClusterRef};
use crate::domain_operations::filter_chunks::{ask_in_chunks, rds_identifiers};
use crate::error::AwsError;

/// how many endpoint identifiers one filter carries at most (conservative, as for clusters)
const ENDPOINT_FILTER_LIMIT: usize = 100;

/// .what = a custom endpoint of an Aurora cluster, as DescribeDBClusterEndpoints reports it
/// .why = a tunnel into a custom endpoint forwards to its address
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsClusterEndpoint {
    /// the endpoint's identifier, as the manifest names it
    pub name: String,
    /// the cluster it belongs to
    pub cluster: String,
    /// its DNS address
    pub address: String,
    /// its status, e.g. `available`
    pub status: Option<String>,
}

/// .what = the custom endpoints named by `(cluster, endpoint)` pairs, in one DescribeDBClusterEndpoints (the
/// `db-cluster-endpoint-id` filter, paginated), keyed by those pairs
/// .why = a plan over many tunnels into custom endpoints costs one more call, not one per tunnel
pub async fn get_rds_cluster_endpoints(
    wanted: &[(RdsClusterRef, String)],
    context: &ContextAwsApi,
) -> Result<BTreeMap<(RdsClusterRef, String), RdsClusterEndpoint>, AwsError> {
    let names = rds_identifiers(wanted.iter().map(|(_, endpoint)| endpoint.as_str()));
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    tracing::debug!(endpoints = names.len(), "rds:DescribeDBClusterEndpoints");
    let found = ask_in_chunks(
        Some(names.as_slice()),
        ENDPOINT_FILTER_LIMIT,
        |chunk| async move {
            let mut pages = context
                .rds
                .describe_db_cluster_endpoints()
                .filters(
                    Filter::builder()
                        .name("db-cluster-endpoint-id")
                        .set_values(chunk)
                        .build(),
                )
                .into_paginator()
                .send();
            let mut endpoints = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|error| {
                    AwsError::from_sdk(
                        "rds:DescribeDBClusterEndpoints",
                        &context.endpoint("rds"),
                        &error,
                    )
                })?;
                endpoints.extend(page.db_cluster_endpoints().iter().filter_map(|endpoint| {
                    Some(RdsClusterEndpoint {
                        name: endpoint.db_cluster_endpoint_identifier()?.to_string(),
                        cluster: endpoint.db_cluster_identifier()?.to_string(),
                        address: endpoint.endpoint()?.to_string(),
                        status: endpoint.status().map(str::to_string),
                    })
                }));
            }
            Ok(endpoints)
        },
    )
    .await?;
    Ok(wanted
        .iter()
        .filter_map(|(cluster, name)| {
            found
                .iter()
                .find(|endpoint| {
                    endpoint.name.eq_ignore_ascii_case(name)
                        && endpoint.cluster.eq_ignore_ascii_case(&cluster.name)
                })
                .map(|endpoint| ((cluster.clone(), name.clone()), endpoint.clone()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{action, bodies, filters, recording_context};

    /// DescribeDBClusterEndpoints as the RDS API answers it (moto does not serve it): a custom endpoint and the
    /// cluster's own writer and reader, which a filter by identifier would not return but a server might
    fn recorded(_action: &str, _body: &str) -> (u16, String) {
        (
            200,
            r#"<DescribeDBClusterEndpointsResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBClusterEndpointsResult><DBClusterEndpoints><DBClusterEndpointList><DBClusterEndpointIdentifier>analytics</DBClusterEndpointIdentifier><DBClusterIdentifier>ahbodedb</DBClusterIdentifier><DBClusterEndpointResourceIdentifier>cluster-endpoint-ABCDEFGHIJKL</DBClusterEndpointResourceIdentifier><Endpoint>analytics.cluster-custom-abc.us-east-1.rds.amazonaws.com</Endpoint><Status>available</Status><EndpointType>CUSTOM</EndpointType><CustomEndpointType>READER</CustomEndpointType><StaticMembers><member>ahbodedb-2</member></StaticMembers><ExcludedMembers/><DBClusterEndpointArn>arn:aws:rds:us-east-1:123456789012:cluster-endpoint:analytics</DBClusterEndpointArn></DBClusterEndpointList><DBClusterEndpointList><DBClusterEndpointIdentifier>analytics</DBClusterEndpointIdentifier><DBClusterIdentifier>otherdb</DBClusterIdentifier><Endpoint>analytics.cluster-custom-def.us-east-1.rds.amazonaws.com</Endpoint><Status>available</Status><EndpointType>CUSTOM</EndpointType></DBClusterEndpointList></DBClusterEndpoints></DescribeDBClusterEndpointsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeDBClusterEndpointsResponse>"#.to_string(),
        )
    }

    #[tokio::test]
    async fn custom_endpoints_cost_one_call_and_match_their_cluster() {
        let (context, recorded_bodies, _folder) = recording_context(recorded);
        let wanted = [
            (RdsClusterRef::by_name("ahbodedb"), "analytics".to_string()),
            (RdsClusterRef::by_name("ahbodedb"), "missing".to_string()),
        ];
        let found = get_rds_cluster_endpoints(&wanted, &context)
            .await
            .expect("answered");
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[&wanted[0]].address, "analytics.cluster-custom-abc.us-east-1.rds.amazonaws.com",
            "the endpoint of the named cluster, not of another with the same endpoint name"
        );
        let sent = bodies(&recorded_bodies);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            action(&sent[0]),
            "DescribeDBClusterEndpoints",
            "{}",
            sent[0]
        );
        assert_eq!(
            filters(&sent[0]),
            vec![(
                "db-cluster-endpoint-id".to_string(),
                vec!["analytics".to_string(), "missing".to_string()]
            )]
        );
    }
}
