//! A context whose AWS clients answer from canned responses and record every request, for request-shape tests.

use std::sync::{Arc, Mutex};

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_smithy_types::body::SdkBody;

use crate::ContextAwsApi;

/// the bodies of the requests sent, in order
pub type Recorded = Arc<Mutex<Vec<String>>>;

/// a context whose clients answer each request with `respond(action, body)` (a status and an XML body),
/// recording it
pub fn recording_context(
    respond: fn(&str, &str) -> (u16, String),
) -> (ContextAwsApi, Recorded, tempfile::TempDir) {
    let recorded: Recorded = Arc::new(Mutex::new(Vec::new()));
    let sink = recorded.clone();
    let http_client = aws_smithy_http_client::test_util::infallible_client_fn(
        move |request: http::Request<SdkBody>| {
            let body =
                String::from_utf8_lossy(request.body().bytes().unwrap_or_default()).into_owned();
            let action = body
                .split('&')
                .find_map(|pair| pair.strip_prefix("Action="))
                .unwrap_or_default()
                .to_string();
            let (status, answer) = respond(&action, &body);
            if let Ok(mut sink) = sink.lock() {
                sink.push(body);
            }
            http::Response::builder()
                .status(status)
                .body(SdkBody::from(answer))
                .unwrap_or_else(|_| http::Response::new(SdkBody::empty()))
        },
    );
    let config = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "a", "b", None, None, "test",
        )))
        .http_client(http_client)
        .build();
    let folder = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
    let mut context = ContextAwsApi::from_sdk_config(&config);
    context.state_dir = folder.path().to_path_buf();
    (context, recorded, folder)
}

/// the recorded request bodies
pub fn bodies(recorded: &Recorded) -> Vec<String> {
    recorded
        .lock()
        .map(|bodies| bodies.clone())
        .unwrap_or_default()
}

/// the `Action=` of a query body, e.g. `DescribeInstances`
pub fn action(body: &str) -> &str {
    body.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or_default()
}

/// a DescribeInstances answer with one instance in `state`
pub fn describe_instances_xml(instance_id: &str, exid: &str, state: &str) -> String {
    format!(
        r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>{instance_id}</instanceId><privateIpAddress>10.0.0.5</privateIpAddress><instanceState><code>16</code><name>{state}</name></instanceState><tagSet><item><key>exid</key><value>{exid}</value></item></tagSet></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#
    )
}

/// a DescribeDBClusters answer with one available aurora-postgresql cluster
pub fn describe_clusters_xml(name: &str) -> String {
    format!(
        r#"<DescribeDBClustersResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBClustersResult><DBClusters><DBCluster><DBClusterIdentifier>{name}</DBClusterIdentifier><Endpoint>{name}.cluster-abc.us-east-1.rds.amazonaws.com</Endpoint><ReaderEndpoint>{name}.cluster-ro-abc.us-east-1.rds.amazonaws.com</ReaderEndpoint><Port>5432</Port><Status>available</Status><Engine>aurora-postgresql</Engine></DBCluster></DBClusters></DescribeDBClustersResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeDBClustersResponse>"#
    )
}

/// a DescribeDBInstances answer with one available postgres instance, in `cluster` when given
pub fn describe_db_instances_xml(name: &str, cluster: Option<&str>) -> String {
    let cluster = cluster
        .map(|cluster| format!("<DBClusterIdentifier>{cluster}</DBClusterIdentifier>"))
        .unwrap_or_default();
    format!(
        r#"<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>{name}</DBInstanceIdentifier><Endpoint><Address>{name}.abc.us-east-1.rds.amazonaws.com</Address><Port>5432</Port></Endpoint><Engine>postgres</Engine><DBInstanceStatus>available</DBInstanceStatus>{cluster}</DBInstance></DBInstances></DescribeDBInstancesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeDBInstancesResponse>"#
    )
}

/// the `Name=`/`Value.N=` pairs of a query body, decoded: `[("tag:exid", ["a", "b"]), ...]`
pub fn filters(body: &str) -> Vec<(String, Vec<String>)> {
    let decode = |text: &str| text.replace("%3A", ":").replace("%2C", ",");
    let pairs: Vec<(&str, &str)> = body
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let mut found: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in &pairs {
        // EC2: Filter.1.Name / Filter.1.Value.1; RDS: Filters.Filter.1.Name / Filters.Filter.1.Values.Value.1
        if key.ends_with(".Name") && key.contains("Filter.") {
            let prefix = &key[..key.len() - ".Name".len()];
            let values = pairs
                .iter()
                .filter(|(candidate, _)| {
                    candidate.starts_with(&format!("{prefix}.Value"))
                        && !candidate.ends_with(".Name")
                })
                .map(|(_, value)| decode(value))
                .collect();
            found.push((decode(value), values));
        }
    }
    found
}
