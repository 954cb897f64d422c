use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use super::cast_to_declared_aws_ec2_instance;
use crate::domain_objects::{
    ContextAwsApi, DeclaredAwsEc2Instance, Ec2InstanceRef, Ec2InstanceStatus,
};
use crate::domain_operations::closest_names::closest_names_of_each;
use crate::domain_operations::filter_chunks::ask_in_chunks;
use crate::error::AwsError;

/// the states in which an instance can serve as a bastion; terminated and shutting-down ones are left out
const LIVE_STATES: [&str; 4] = ["pending", "running", "stopping", "stopped"];

/// .what = how to look an instance up: by primary key, unique key, or either
/// .why = the blueprint's `PickOne<{ primary, unique, ref }>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ec2InstanceLookup {
    /// by instance id
    Primary {
        /// the instance id
        instance_id: String,
    },
    /// by the `exid` tag
    Unique {
        /// the tag value
        exid: String,
    },
    /// by a reference of either kind
    Ref(Ec2InstanceRef),
}

impl Ec2InstanceLookup {
    fn into_ref(self) -> Ec2InstanceRef {
        match self {
            Self::Primary { instance_id } => Ec2InstanceRef::ByPrimary { instance_id },
            Self::Unique { exid } => Ec2InstanceRef::ByUnique { exid },
            Self::Ref(reference) => reference,
        }
    }
}

/// .what = gets an EC2 instance from AWS, or `None` when there is none
/// .why = enables lookup of EC2 instances by tag or instance id
pub async fn get_ec2_instance(
    by: Ec2InstanceLookup,
    context: &ContextAwsApi,
) -> Result<Option<DeclaredAwsEc2Instance>, AwsError> {
    let reference = by.into_ref();
    let mut found = get_ec2_instances(std::slice::from_ref(&reference), context).await?;
    Ok(found.remove(&reference))
}

/// .what = gets many EC2 instances in at most two DescribeInstances calls (one for exids, one for ids)
/// .why = a plan over a hundred tunnels must cost a handful of AWS calls, not hundreds
pub async fn get_ec2_instances(
    references: &[Ec2InstanceRef],
    context: &ContextAwsApi,
) -> Result<BTreeMap<Ec2InstanceRef, DeclaredAwsEc2Instance>, AwsError> {
    let mut exids: Vec<String> = Vec::new();
    let mut instance_ids: Vec<String> = Vec::new();
    for reference in references {
        match reference {
            Ec2InstanceRef::ByUnique { exid } if !exids.contains(exid) => exids.push(exid.clone()),
            Ec2InstanceRef::ByPrimary { instance_id } if !instance_ids.contains(instance_id) => {
                instance_ids.push(instance_id.clone());
            }
            _ => {}
        }
    }

    let (by_exid, by_id) = futures::future::try_join(
        describe_instances("tag:exid", exids, context),
        describe_instances("instance-id", instance_ids, context),
    )
    .await?;

    let mut found = BTreeMap::new();
    for reference in references {
        let pool = match reference {
            Ec2InstanceRef::ByUnique { .. } => &by_exid,
            Ec2InstanceRef::ByPrimary { .. } => &by_id,
        };
        let matches: Vec<&DeclaredAwsEc2Instance> = pool
            .iter()
            .filter(|instance| reference.matches(instance))
            .collect();
        match matches.as_slice() {
            [] => {}
            [instance] => {
                found.insert(reference.clone(), (*instance).clone());
            }
            many => {
                return Err(AwsError::AmbiguousExid {
                    exid: reference.key().to_string(),
                    instance_ids: many
                        .iter()
                        .filter_map(|instance| instance.instance_id.clone())
                        .collect(),
                });
            }
        }
    }
    Ok(found)
}

/// .what = for each of `exids`, the `exid` tags of live instances closest to it, best first (in the order of
/// `exids`)
/// .why = "bastion not found" says what the user probably meant, as "cluster not found" does; only called on that
/// error path, with one DescribeInstances call for every instance that has the tag, however many are missing
pub async fn closest_exids(
    exids: &[&str],
    context: &ContextAwsApi,
) -> Result<Vec<Vec<String>>, AwsError> {
    if exids.is_empty() {
        return Ok(Vec::new());
    }
    let tagged = describe_instances("tag-key", vec!["exid".to_string()], context).await?;
    let candidates: Vec<String> = tagged
        .into_iter()
        .map(|instance| instance.exid)
        .filter(|candidate| !candidate.is_empty())
        .collect();
    Ok(closest_names_of_each(exids, &candidates))
}

/// how many values one DescribeInstances filter carries at most (EC2 refuses more: "The maximum number of filter
/// values specified on a single call is 200"); more are asked for in several calls
pub(crate) const INSTANCE_FILTER_LIMIT: usize = 200;

/// .what = DescribeInstances through the SDK's paginator (following `NextToken`) with `filter_name` in `values`,
/// live states only, in chunks of at most `INSTANCE_FILTER_LIMIT` values, the chunks concurrently
/// .why = any number of bastions, in as few calls as the API allows
async fn describe_instances(
    filter_name: &str,
    values: Vec<String>,
    context: &ContextAwsApi,
) -> Result<Vec<DeclaredAwsEc2Instance>, AwsError> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    tracing::debug!(
        filter = filter_name,
        values = values.len(),
        "ec2:DescribeInstances"
    );
    ask_in_chunks(
        Some(values.as_slice()),
        INSTANCE_FILTER_LIMIT,
        |chunk| async move {
            let mut pages = context
                .ec2
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name(filter_name)
                        .set_values(chunk)
                        .build(),
                )
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .set_values(Some(
                            LIVE_STATES
                                .iter()
                                .map(std::string::ToString::to_string)
                                .collect(),
                        ))
                        .build(),
                )
                .into_paginator()
                .send();
            let mut instances = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|error| {
                    AwsError::from_sdk("ec2:DescribeInstances", &context.endpoint("ec2"), &error)
                })?;
                instances.extend(
                    page.reservations()
                        .iter()
                        .flat_map(aws_sdk_ec2::types::Reservation::instances)
                        .map(cast_to_declared_aws_ec2_instance)
                        // the filter already leaves these out; a server that ignores it must not change the
                        // answer
                        .filter(|instance| {
                            !matches!(
                                instance.status,
                                Some(
                                    Ec2InstanceStatus::Terminated | Ec2InstanceStatus::ShuttingDown
                                )
                            )
                        }),
                );
            }
            Ok(instances)
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{action, bodies, describe_instances_xml, filters, recording_context};

    fn live_states() -> (String, Vec<String>) {
        (
            "instance-state-name".into(),
            LIVE_STATES
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
        )
    }

    #[tokio::test]
    async fn by_exid_sends_one_describe_instances_filtered_by_tag_and_live_states() {
        let (context, recorded, _folder) = recording_context(|_, _| {
            (
                200,
                describe_instances_xml("i-0abc", "vpc-main-bastion", "stopped"),
            )
        });
        let found = get_ec2_instance(
            Ec2InstanceLookup::Unique {
                exid: "vpc-main-bastion".into(),
            },
            &context,
        )
        .await
        .expect("answered");
        assert_eq!(
            found.and_then(|instance| instance.instance_id).as_deref(),
            Some("i-0abc")
        );
        let sent = bodies(&recorded);
        assert_eq!(sent.len(), 1);
        assert_eq!(action(&sent[0]), "DescribeInstances", "{}", sent[0]);
        assert_eq!(
            filters(&sent[0]),
            vec![
                ("tag:exid".to_string(), vec!["vpc-main-bastion".to_string()]),
                live_states()
            ]
        );
    }

    #[tokio::test]
    async fn by_instance_id_filters_by_instance_id() {
        let (context, recorded, _folder) = recording_context(|_, _| {
            (
                200,
                describe_instances_xml("i-0abc", "vpc-main-bastion", "running"),
            )
        });
        let found = get_ec2_instance(
            Ec2InstanceLookup::Primary {
                instance_id: "i-0abc".into(),
            },
            &context,
        )
        .await
        .expect("answered");
        assert!(found.is_some());
        let sent = bodies(&recorded);
        assert_eq!(
            filters(&sent[0]),
            vec![
                ("instance-id".to_string(), vec!["i-0abc".to_string()]),
                live_states()
            ]
        );
    }

    #[tokio::test]
    async fn many_references_cost_one_call_per_kind_of_key() {
        let (context, recorded, _folder) =
            recording_context(|_, _| (200, describe_instances_xml("i-0abc", "a", "running")));
        let references = [
            Ec2InstanceRef::by_exid("a"),
            Ec2InstanceRef::by_exid("b"),
            Ec2InstanceRef::by_exid("a"),
            Ec2InstanceRef::by_instance_id("i-0abc"),
        ];
        let found = get_ec2_instances(&references, &context)
            .await
            .expect("answered");
        assert_eq!(found.len(), 2, "a and i-0abc are found, b is not");
        let mut sent: Vec<Vec<(String, Vec<String>)>> =
            bodies(&recorded).iter().map(|body| filters(body)).collect();
        sent.sort();
        assert_eq!(
            sent,
            vec![
                vec![
                    ("instance-id".to_string(), vec!["i-0abc".to_string()]),
                    live_states()
                ],
                vec![
                    (
                        "tag:exid".to_string(),
                        vec!["a".to_string(), "b".to_string()]
                    ),
                    live_states()
                ],
            ]
        );
    }

    #[tokio::test]
    async fn two_instances_with_one_exid_are_an_error_naming_both() {
        let (context, _recorded, _folder) = recording_context(|_, _| {
            let one = describe_instances_xml("i-0001", "shared", "running");
            let two = describe_instances_xml("i-0002", "shared", "stopped");
            let item = |xml: &str| {
                let start = xml.find("<item><reservationId>").unwrap_or(0);
                let end = xml.rfind("</reservationSet>").unwrap_or(xml.len());
                xml[start..end].to_string()
            };
            (200, one.replace(&item(&one), &(item(&one) + &item(&two))))
        });
        let error = get_ec2_instance(
            Ec2InstanceLookup::Unique {
                exid: "shared".into(),
            },
            &context,
        )
        .await
        .expect_err("ambiguous");
        assert_eq!(
            error.to_string(),
            "2 instances carry the tag exid=shared: i-0001, i-0002"
        );
    }

    /// two pages, as EC2 answers when more instances match than fit one response: the second asked for with
    /// the first's `nextToken`
    fn paged(_action: &str, body: &str) -> (u16, String) {
        if body.contains("NextToken=page-two") {
            (200, describe_instances_xml("i-0002", "second", "running"))
        } else {
            let first = describe_instances_xml("i-0001", "first", "stopped");
            (
                200,
                first.replace(
                    "</reservationSet>",
                    "</reservationSet><nextToken>page-two</nextToken>",
                ),
            )
        }
    }

    #[tokio::test]
    async fn every_page_is_read() {
        let (context, recorded, _folder) = recording_context(paged);
        let found = get_ec2_instances(
            &[
                Ec2InstanceRef::by_exid("first"),
                Ec2InstanceRef::by_exid("second"),
            ],
            &context,
        )
        .await
        .expect("answered");
        assert_eq!(found.len(), 2, "{found:?}");
        let sent = bodies(&recorded);
        assert_eq!(sent.len(), 2);
        assert!(!sent[0].contains("NextToken"), "{}", sent[0]);
        assert!(sent[1].contains("NextToken=page-two"), "{}", sent[1]);
    }

    #[tokio::test]
    async fn filter_values_are_chunked_to_the_apis_limit() {
        let (context, recorded, _folder) = recording_context(|_, _| {
            (
                200,
                describe_instances_xml("i-0abc", "unrelated", "running"),
            )
        });
        let references: Vec<Ec2InstanceRef> = (0..INSTANCE_FILTER_LIMIT + 50)
            .map(|number| Ec2InstanceRef::by_exid(format!("exid-{number}")))
            .collect();
        get_ec2_instances(&references, &context)
            .await
            .expect("answered");
        let mut sizes: Vec<usize> = bodies(&recorded)
            .iter()
            .map(|body| filters(body)[0].1.len())
            .collect();
        sizes.sort();
        assert_eq!(sizes, vec![50, INSTANCE_FILTER_LIMIT]);
    }
}
