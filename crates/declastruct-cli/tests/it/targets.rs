//! "Beyond Aurora writers": tunnels into a plain RDS DB instance, a cluster's reader endpoint and any host and
//! port, through the real binary against moto, PostgreSQL and the session stand-in.

use declastruct_test_support::{Moto, Postgres, free_port};

use crate::apply::{World, assert_success};
use crate::assert_shown;
use crate::support::{REGION, Sandbox, stderr, stdout};

fn tunnel(port: u16, into: &str) -> String {
    format!(
        "  - kind: DeclaredAwsVpcTunnel
    via:
      mechanism: aws.ssm
      bastion: {{ exid: vpc-main-bastion }}
    into:
{into}
    from:
      host: localhost
      port: {port}
    status: OPEN
"
    )
}

/// the StartSession requests the simulator received, as `{"parameters": …}` per session
fn sessions(world: &World) -> Vec<serde_json::Value> {
    world
        .sim
        .sessions()
        .into_iter()
        .map(|session| serde_json::json!({"parameters": session.parameters}))
        .collect()
}

/// must-show 1: a DB instance, a cluster's reader endpoint and a host:port each open; the session is asked for
/// the right host and port; `select 1` answers through each
#[test]
fn an_instance_a_reader_endpoint_and_a_host_each_open_and_answer() {
    let world = World::new(true);
    let (instance_host, instance_port) = world.moto.seed_instance(REGION, "legacydb", None);
    let reader = world.moto.reader_endpoint(REGION, "ahbodedb");
    assert!(!reader.is_empty() && !instance_host.is_empty());
    let cache_host = "cache.internal.example";
    let database = std::net::SocketAddr::from(([127, 0, 0, 1], world.postgres.port));
    for destination in [
        format!("{instance_host}:{instance_port}"),
        format!("{reader}:5432"),
        format!("{cache_host}:6543"),
    ] {
        world.sim.set_route(&destination, database);
    }
    let (into_instance, into_reader, into_host) = (free_port(), free_port(), free_port());
    let text = format!(
        "resources:
  - kind: DeclaredAwsEc2Instance
    exid: vpc-main-bastion
    status: running
  - kind: DeclaredAwsRdsInstance
    name: legacydb
{}{}{}",
        tunnel(into_instance, "      instance: { name: legacydb }"),
        tunnel(
            into_reader,
            "      cluster: { name: ahbodedb }\n      endpoint: reader"
        ),
        tunnel(
            into_host,
            &format!("      host: {cache_host}\n      port: 6543\n      engine: postgres")
        ),
    );
    world.sandbox.write("declastruct.yml", &text);
    let plan = world.sandbox.run(&["plan"]);
    assert_shown!(
        "plan_into_an_instance_a_reader_and_a_host",
        plan,
        &[into_instance, into_reader, into_host]
    );

    assert_success(&world.apply());
    for port in [into_instance, into_reader, into_host] {
        assert_eq!(
            Postgres::psql(port, "select 1").as_deref(),
            Ok("1"),
            "port {port}"
        );
    }
    let asked: Vec<(String, String, String)> = sessions(&world)
        .iter()
        .map(|session| {
            let first = |key: &str| {
                session["parameters"][key][0]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            (first("host"), first("portNumber"), first("localPortNumber"))
        })
        .collect();
    for expected in [
        (
            instance_host.clone(),
            instance_port.to_string(),
            into_instance.to_string(),
        ),
        (reader.clone(), "5432".to_string(), into_reader.to_string()),
        (
            cache_host.to_string(),
            "6543".to_string(),
            into_host.to_string(),
        ),
    ] {
        assert!(asked.contains(&expected), "{expected:?} in {asked:?}");
    }
    let in_sync = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(in_sync.status.code(), Some(0), "{}", stdout(&in_sync));
}

/// a host target that the bastion cannot reach is not healthy: the plugin says the destination failed
#[test]
fn a_host_the_bastion_cannot_reach_fails_the_open() {
    let world = World::new(true);
    let port = free_port();
    let text = format!(
        "resources:\n{}",
        tunnel(port, "      host: nowhere.internal\n      port: 6379")
    );
    world.sandbox.write("declastruct.yml", &text);
    let output = world.apply();
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("closed the connection at once"),
        "{message}"
    );
    assert!(
        message.contains("Connection to destination port failed"),
        "the plugin's own words in the log tail: {message}"
    );
}

/// must-show 2: 10 instances, 10 clusters and 100 tunnels of mixed targets cost at most 4 AWS requests
#[test]
fn a_plan_of_mixed_targets_makes_at_most_four_requests() {
    let moto = Moto::start();
    moto.seed_bastion(REGION, "bastion-0", true);
    let mut text =
        String::from("resources:\n  - kind: DeclaredAwsEc2Instance\n    exid: bastion-0\n");
    for number in 0..10 {
        moto.seed_cluster(REGION, &format!("cluster-{number}"));
        moto.seed_instance(REGION, &format!("instance-{number}"), None);
        text.push_str(&format!(
            "  - kind: DeclaredAwsRdsCluster\n    name: cluster-{number}\n  - kind: DeclaredAwsRdsInstance\n    name: instance-{number}\n"
        ));
    }
    for number in 0..100u16 {
        let into = match number % 4 {
            0 => format!("      cluster: {{ name: cluster-{} }}", number % 10),
            1 => format!(
                "      cluster: {{ name: cluster-{} }}\n      endpoint: reader",
                number % 10
            ),
            2 => format!("      instance: {{ name: instance-{} }}", number % 10),
            _ => format!("      host: service-{number}.internal\n      port: 443"),
        };
        text.push_str(
            &tunnel(20_000 + number, &into)
                .replace("vpc-main-bastion", "bastion-0")
                .replace("status: OPEN", "status: CLOSED"),
        );
    }
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write("declastruct.yml", &text);
    moto.start_counting();
    let output = sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let mut calls = moto.counted_requests();
    calls.sort();
    assert!(calls.len() <= 4, "{calls:?}");
    assert_eq!(
        calls,
        vec![
            "DescribeDBClusters",
            "DescribeDBInstances",
            "DescribeInstances"
        ],
        "no custom endpoint named: no DescribeDBClusterEndpoints"
    );
}

/// must-show 3: an instance that does not exist names the closest identifiers; one that belongs to a cluster
/// points to the cluster
#[test]
fn a_missing_instance_and_a_cluster_member_are_named_where_declared() {
    let moto = Moto::start();
    moto.seed_bastion(REGION, "vpc-main-bastion", true);
    moto.seed_cluster(REGION, "ahbodedb");
    moto.seed_instance(REGION, "legacydb", None);
    moto.seed_instance(REGION, "ahbodedb-1", Some("ahbodedb"));
    let sandbox = Sandbox::new(Some(&moto));
    let port = free_port();
    let text = format!(
        "resources:\n  - kind: DeclaredAwsRdsInstance\n    name: legacydv\n{}",
        tunnel(port, "      instance: { name: ahbodedb-1 }")
    );
    sandbox.write("declastruct.yml", &text);
    let output = sandbox.run(&["plan"]);
    assert_shown!("plan_missing_instance_and_cluster_member", output, &[port]);
}
