use aws_sdk_ec2::client::Waiters;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain_objects::{
    ContextAwsApi, DeclaredAwsEc2Instance, Ec2InstanceRef, Ec2InstanceStatus,
};
use crate::domain_operations::ec2_instance::{Ec2InstanceLookup, get_ec2_instance};
use crate::error::AwsError;

/// .what = the statuses a bastion may be declared in
/// .why = only these two are states one can ask EC2 for
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DesiredInstanceStatus {
    /// started
    Running,
    /// stopped
    Stopped,
}

impl DesiredInstanceStatus {
    /// .what = the matching live status
    /// .why = compares a wish with what EC2 reports
    pub fn as_status(self) -> Ec2InstanceStatus {
        match self {
            Self::Running => Ec2InstanceStatus::Running,
            Self::Stopped => Ec2InstanceStatus::Stopped,
        }
    }
}

/// .what = sets an EC2 instance status (running/stopped) and waits until it is there
/// .why = enables declarative control of EC2 instance lifecycle; a tunnel needs a running bastion
pub async fn set_ec2_instance_status(
    instance: &Ec2InstanceRef,
    to: DesiredInstanceStatus,
    context: &ContextAwsApi,
) -> Result<DeclaredAwsEc2Instance, AwsError> {
    let lookup = || get_ec2_instance(Ec2InstanceLookup::Ref(instance.clone()), context);
    let not_found = || AwsError::BastionNotFound {
        reference: instance.to_string(),
        region: context
            .region
            .clone()
            .unwrap_or_else(|| "the configured region".into()),
        closest: Vec::new(),
    };
    let found = lookup().await?.ok_or_else(not_found)?;
    let Some(instance_id) = found.instance_id.clone() else {
        return Err(AwsError::Unexpected(format!(
            "instance {instance} has no instance id"
        )));
    };
    if found.status == Some(to.as_status()) {
        return Ok(found);
    }

    tracing::info!(instance_id, from = ?found.status, to = ?to, "setting the instance status");
    context.report_progress(&format!(
        "{} instance {instance_id} ({}) and waiting until it is {}",
        if to == DesiredInstanceStatus::Running {
            "starting"
        } else {
            "stopping"
        },
        instance,
        to.as_status()
    ));
    match to {
        DesiredInstanceStatus::Running => {
            if found.status == Some(Ec2InstanceStatus::Stopping) {
                wait_for(&instance_id, DesiredInstanceStatus::Stopped, context).await?;
            }
            if found.status != Some(Ec2InstanceStatus::Pending) {
                context
                    .ec2
                    .start_instances()
                    .instance_ids(&instance_id)
                    .send()
                    .await
                    .map_err(|error| {
                        AwsError::from_sdk("ec2:StartInstances", &context.endpoint("ec2"), &error)
                    })?;
            }
        }
        DesiredInstanceStatus::Stopped => {
            if found.status == Some(Ec2InstanceStatus::Pending) {
                wait_for(&instance_id, DesiredInstanceStatus::Running, context).await?;
            }
            if found.status != Some(Ec2InstanceStatus::Stopping) {
                context
                    .ec2
                    .stop_instances()
                    .instance_ids(&instance_id)
                    .send()
                    .await
                    .map_err(|error| {
                        AwsError::from_sdk("ec2:StopInstances", &context.endpoint("ec2"), &error)
                    })?;
            }
        }
    }
    wait_for(&instance_id, to, context).await?;
    lookup().await?.ok_or_else(not_found)
}

/// waits with the SDK's waiter until the instance reaches `status`
async fn wait_for(
    instance_id: &str,
    status: DesiredInstanceStatus,
    context: &ContextAwsApi,
) -> Result<(), AwsError> {
    let limit = context.instance_wait_timeout;
    let timed_out = || AwsError::WaitTimeout {
        instance_id: instance_id.to_string(),
        status: status.as_status().to_string(),
        seconds: limit.as_secs(),
    };
    let waiting = async {
        match status {
            DesiredInstanceStatus::Running => context
                .ec2
                .wait_until_instance_running()
                .instance_ids(instance_id)
                .wait(limit)
                .await
                .map(|_| ()),
            DesiredInstanceStatus::Stopped => context
                .ec2
                .wait_until_instance_stopped()
                .instance_ids(instance_id)
                .wait(limit)
                .await
                .map(|_| ()),
        }
    };
    // an interrupted `apply` stops waiting at once; the instance keeps changing state on its own
    let result = tokio::select! {
        result = waiting => result,
        () = context.cancel.cancelled() => {
            return Err(AwsError::Interrupted {
                waiting_for: format!("waiting for instance {instance_id} to become {}", status.as_status()),
            });
        }
    };
    result.map_err(|error| match error {
        aws_sdk_ec2::waiters::instance_running::WaitUntilInstanceRunningError::ExceededMaxWait(
            _,
        ) => timed_out(),
        other => AwsError::Call {
            operation: "ec2:DescribeInstances (waiting)",
            message: aws_sdk_ec2::error::DisplayErrorContext(&other).to_string(),
            help: format!(
                "the instance did not reach `{}`; look at it in the EC2 console",
                status.as_status()
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::test_support::{action, bodies, describe_instances_xml, filters, recording_context};

    static STARTED: AtomicBool = AtomicBool::new(false);

    fn respond(action: &str, _body: &str) -> (u16, String) {
        match action {
            "StartInstances" => {
                STARTED.store(true, Ordering::SeqCst);
                (
                    200,
                    r#"<StartInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><instancesSet><item><instanceId>i-0abc</instanceId><currentState><code>0</code><name>pending</name></currentState><previousState><code>80</code><name>stopped</name></previousState></item></instancesSet></StartInstancesResponse>"#.to_string(),
                )
            }
            _ => {
                let state = if STARTED.load(Ordering::SeqCst) {
                    "running"
                } else {
                    "stopped"
                };
                (
                    200,
                    describe_instances_xml("i-0abc", "vpc-main-bastion", state),
                )
            }
        }
    }

    #[tokio::test]
    async fn starting_looks_up_by_tag_starts_by_id_and_waits() {
        let (context, recorded, _folder) = recording_context(respond);
        let instance = set_ec2_instance_status(
            &Ec2InstanceRef::by_exid("vpc-main-bastion"),
            DesiredInstanceStatus::Running,
            &context,
        )
        .await
        .expect("started");
        assert_eq!(instance.status, Some(Ec2InstanceStatus::Running));
        let sent = bodies(&recorded);
        let actions: Vec<&str> = sent.iter().map(|body| action(body)).collect();
        assert_eq!(
            actions,
            vec![
                "DescribeInstances",
                "StartInstances",
                "DescribeInstances",
                "DescribeInstances"
            ]
        );
        assert_eq!(
            filters(&sent[0])[0],
            ("tag:exid".to_string(), vec!["vpc-main-bastion".to_string()])
        );
        assert!(sent[1].contains("&InstanceId.1=i-0abc"), "{}", sent[1]);
        assert!(
            sent[2].contains("InstanceId.1=i-0abc"),
            "the waiter asks by id: {}",
            sent[2]
        );
    }

    #[tokio::test]
    async fn an_instance_already_there_is_left_alone() {
        let (context, recorded, _folder) = recording_context(|_, _| {
            (
                200,
                describe_instances_xml("i-0abc", "vpc-main-bastion", "stopped"),
            )
        });
        let instance = set_ec2_instance_status(
            &Ec2InstanceRef::by_exid("vpc-main-bastion"),
            DesiredInstanceStatus::Stopped,
            &context,
        )
        .await
        .expect("no-op");
        assert_eq!(instance.status, Some(Ec2InstanceStatus::Stopped));
        assert_eq!(bodies(&recorded).len(), 1, "one lookup, no StopInstances");
    }
}
