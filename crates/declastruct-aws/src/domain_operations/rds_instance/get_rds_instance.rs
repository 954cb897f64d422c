use std::collections::BTreeMap;

use aws_sdk_rds::operation::describe_db_instances::DescribeDBInstancesError;
use aws_sdk_rds::types::Filter;

use super::cast_to_declared_aws_rds_instance;
use crate::domain_objects::{ContextAwsApi, DeclaredAwsRdsInstance, RdsInstanceRef};
use crate::domain_operations::closest_names::closest_names_of_each;
use crate::domain_operations::filter_chunks::{ask_in_chunks, rds_identifiers};
use crate::error::AwsError;

/// how many values one `db-instance-id` filter carries at most; more names are asked for in several calls
/// (conservative, as for clusters)
pub(crate) const INSTANCE_FILTER_LIMIT: usize = 100;

/// .what = gets an RDS DB instance from AWS, or `None` when there is none
/// .why = enables lookup of a plain (non-Aurora) database's endpoint and metadata
pub async fn get_rds_instance(
    by: &RdsInstanceRef,
    context: &ContextAwsApi,
) -> Result<Option<DeclaredAwsRdsInstance>, AwsError> {
    let response = context
        .rds
        .describe_db_instances()
        .db_instance_identifier(&by.name)
        .send()
        .await;
    match response {
        Ok(response) => Ok(response
            .db_instances()
            .iter()
            .map(cast_to_declared_aws_rds_instance)
            .find(|instance| names_instance(by, instance))),
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(DescribeDBInstancesError::DbInstanceNotFoundFault(_))
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(AwsError::from_sdk(
            "rds:DescribeDBInstances",
            &context.endpoint("rds"),
            &error,
        )),
    }
}

/// .what = gets many RDS DB instances in one DescribeDBInstances (the `db-instance-id` filter, paginated)
/// .why = a plan over a hundred tunnels must cost a handful of AWS calls, not hundreds
pub async fn get_rds_instances(
    references: &[RdsInstanceRef],
    context: &ContextAwsApi,
) -> Result<BTreeMap<RdsInstanceRef, DeclaredAwsRdsInstance>, AwsError> {
    let names = rds_identifiers(references.iter().map(|reference| reference.name.as_str()));
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let instances = describe_instances(Some(names), context).await?;
    Ok(references
        .iter()
        .filter_map(|reference| {
            instances
                .iter()
                .find(|instance| names_instance(reference, instance))
                .map(|instance| (reference.clone(), instance.clone()))
        })
        .collect())
}

/// .what = for each of `names`, the existing DB instance identifiers closest to it, best first (in the order of `names`)
/// .why = "instance not found" says what the user probably meant; only called on that error path, with one listing
/// however many are missing
pub async fn closest_instance_names(
    names: &[&str],
    context: &ContextAwsApi,
) -> Result<Vec<Vec<String>>, AwsError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let candidates: Vec<String> = describe_instances(None, context)
        .await?
        .into_iter()
        .map(|instance| instance.name)
        .collect();
    Ok(closest_names_of_each(names, &candidates))
}

/// .what = DescribeDBInstances through the SDK's paginator, filtered to `names` when given, in chunks of at most
/// `INSTANCE_FILTER_LIMIT` names, the chunks concurrently
/// .why = any number of instances, in as few calls as the API allows
async fn describe_instances(
    names: Option<Vec<String>>,
    context: &ContextAwsApi,
) -> Result<Vec<DeclaredAwsRdsInstance>, AwsError> {
    tracing::debug!(
        filtered = names.as_ref().map(Vec::len),
        "rds:DescribeDBInstances"
    );
    ask_in_chunks(
        names.as_deref(),
        INSTANCE_FILTER_LIMIT,
        |chunk| async move {
            let mut request = context.rds.describe_db_instances();
            if let Some(names) = chunk {
                request = request.filters(
                    Filter::builder()
                        .name("db-instance-id")
                        .set_values(Some(names))
                        .build(),
                );
            }
            let mut pages = request.into_paginator().send();
            let mut instances = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|error| {
                    AwsError::from_sdk("rds:DescribeDBInstances", &context.endpoint("rds"), &error)
                })?;
                instances.extend(
                    page.db_instances()
                        .iter()
                        .map(cast_to_declared_aws_rds_instance),
                );
            }
            Ok(instances)
        },
    )
    .await
}

/// .what = whether an instance found is the one a reference names
/// .why = RDS stores identifiers in lower case and compares them without case
fn names_instance(reference: &RdsInstanceRef, instance: &DeclaredAwsRdsInstance) -> bool {
    reference.name.eq_ignore_ascii_case(&instance.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{
        action, bodies, describe_db_instances_xml, filters, recording_context,
    };

    #[tokio::test]
    async fn many_instances_cost_one_call_with_the_db_instance_id_filter() {
        let (context, recorded, _folder) =
            recording_context(|_, _| (200, describe_db_instances_xml("legacydb", None)));
        let references = [
            RdsInstanceRef::by_name("legacydb"),
            RdsInstanceRef::by_name("other"),
            RdsInstanceRef::by_name("LegacyDB"),
        ];
        let found = get_rds_instances(&references, &context)
            .await
            .expect("answered");
        assert_eq!(found.len(), 2, "both spellings name the one instance");
        let sent = bodies(&recorded);
        assert_eq!(sent.len(), 1);
        assert_eq!(action(&sent[0]), "DescribeDBInstances", "{}", sent[0]);
        assert_eq!(
            filters(&sent[0]),
            vec![(
                "db-instance-id".to_string(),
                vec!["legacydb".to_string(), "other".to_string()]
            )]
        );
        let instance = &found[&RdsInstanceRef::by_name("legacydb")];
        assert_eq!(instance.port, Some(5432));
        assert_eq!(instance.engine.as_deref(), Some("postgres"));
    }

    /// two pages, as RDS answers with a `Marker`
    fn paged(_action: &str, body: &str) -> (u16, String) {
        if body.contains("Marker=page-two") {
            (200, describe_db_instances_xml("second", None))
        } else {
            (
                200,
                describe_db_instances_xml("first", None)
                    .replace("</DBInstances>", "</DBInstances><Marker>page-two</Marker>"),
            )
        }
    }

    #[tokio::test]
    async fn every_page_is_read() {
        let (context, recorded, _folder) = recording_context(paged);
        let found = get_rds_instances(
            &[
                RdsInstanceRef::by_name("first"),
                RdsInstanceRef::by_name("second"),
            ],
            &context,
        )
        .await
        .expect("answered");
        assert_eq!(found.len(), 2);
        assert_eq!(bodies(&recorded).len(), 2);
    }

    #[tokio::test]
    async fn instance_not_found_is_none() {
        let (context, _recorded, _folder) = recording_context(|_, _| {
            (
                404,
                r#"<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error><Type>Sender</Type><Code>DBInstanceNotFound</Code><Message>DBInstance nope not found.</Message></Error><RequestId>r</RequestId></ErrorResponse>"#.to_string(),
            )
        });
        let instance = get_rds_instance(&RdsInstanceRef::by_name("nope"), &context)
            .await
            .expect("answered");
        assert_eq!(instance, None);
    }
}
