//! "Faithful to the real plugin and AWS APIs, and a plan that tells the whole truth": the plugin's two modes,
//! the manifest's profile in the session, the plan's hidden changes, status without AWS, deadlines and setup
//! errors, each through the real binary.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use declastruct_test_support::ssm_sim::Mode;
use declastruct_test_support::{Moto, Postgres, free_port};
use declastruct_tunnel::is_port_in_use;

use crate::apply::{World, assert_success};
use crate::support::{REGION, Sandbox, manifest, stderr, stdout};

fn plan_document(sandbox: &Sandbox) -> (Option<i32>, serde_json::Value, String) {
    let output = sandbox.run(&["plan", "--json", "--detailed-exitcode"]);
    let document = serde_json::from_slice(&output.stdout).unwrap_or_default();
    (output.status.code(), document, stderr(&output))
}

fn change<'a>(document: &'a serde_json::Value, slug: &str) -> &'a serde_json::Value {
    document["changes"]
        .as_array()
        .and_then(|changes| {
            changes
                .iter()
                .find(|change| change["forResource"]["slug"] == slug)
        })
        .unwrap_or_else(|| panic!("no change for {slug}: {document}"))
}

/// 1: through a basic-mode bastion (older agents print no `Waiting for connections...`) the tunnel opens, serves,
/// and a client holding the one connection basic mode serves does not make the tunnel look broken
#[test]
fn a_basic_mode_session_opens_and_a_busy_one_is_not_broken() {
    // an agent older than 3.0.196.0 forwards in basic mode (the simulator advertises such a version)
    let world = World::with_sim(true, Postgres::start(), |config| config.mode = Mode::Basic);
    world.declare("running", "OPEN");
    let started = Instant::now();
    let opened = world.apply();
    assert_success(&opened);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "ready on the port line, not after the 30 s readiness limit"
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    let log = world
        .sandbox
        .run(&["logs", &format!("vpc-main-bastion.ahbodedb.{}", world.port)]);
    assert!(
        stdout(&log).contains(&format!("Port {} opened for sessionId ", world.port)),
        "{}",
        stdout(&log)
    );
    assert!(!stdout(&log).contains("Waiting for connections..."));

    // a client holds the session's one connection: the probe waits behind it, which is not a failure
    let mut client = TcpStream::connect((Ipv4Addr::LOCALHOST, world.port)).expect("connect");
    client
        .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .expect("SSLRequest");
    let mut answer = [0u8; 1];
    client
        .read_exact(&mut answer)
        .expect("the database answers");
    let in_sync = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(in_sync.status.code(), Some(0), "{}", stdout(&in_sync));
    let status = world.sandbox.run(&["status"]);
    assert!(
        stdout(&status).contains("one client at a time"),
        "{}",
        stdout(&status)
    );
    drop(client);
}

/// 2: credentials that exist only in the manifest's profile reach the session too
#[test]
fn the_manifests_profile_reaches_the_session() {
    let mut world = World::new(true);
    for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        world.sandbox.remove_env(key);
    }
    let aws = world.sandbox.dir.path().join(".aws");
    std::fs::create_dir_all(&aws).expect("~/.aws");
    std::fs::write(
        aws.join("credentials"),
        "[dev]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .expect("credentials");
    std::fs::write(
        aws.join("config"),
        format!("[profile dev]\nregion = {REGION}\n"),
    )
    .expect("config");
    let text = manifest("running", "OPEN", world.port)
        .replace("resources:", "aws:\n  profile: dev\nresources:");
    world.sandbox.write("declastruct.yml", &text);
    let opened = world.apply();
    assert_success(&opened);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    // the real AWS CLI serving the session was given the manifest's profile and the region
    let sessions = crate::support::processes_mentioning("start-session");
    let ours: Vec<&String> = sessions
        .iter()
        .map(|(_, command)| command)
        .filter(|command| {
            command.contains(&format!("\"localPortNumber\":[\"{}\"]", world.port))
                && !command.contains("__declastruct_supervise")
        })
        .collect();
    assert_eq!(ours.len(), 1, "{sessions:?}");
    assert!(ours[0].contains(" --profile dev"), "{}", ours[0]);
    assert!(
        ours[0].contains(&format!(" --region {REGION}")),
        "{}",
        ours[0]
    );
}

/// 3: a missing session-manager-plugin is a fast, clear error that says how to install it
#[test]
fn a_missing_plugin_fails_fast_and_says_how_to_install_it() {
    let mut world = World::new(true);
    // the real AWS CLI without the plugin on PATH, and the plugin transport asked for (`auto` would go native)
    let path = std::env::var("PATH").unwrap_or_default();
    world.sandbox.set_env(
        "PATH",
        &format!("{}:{path}", crate::support::venv_bin().display()),
    );
    world.sandbox.set_env("DECLASTRUCT_TRANSPORT", "plugin");
    world.declare("running", "OPEN");
    let started = Instant::now();
    let output = world.apply();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "not the 30 s limit"
    );
    let message = stderr(&output);
    assert!(
        message.contains("the Session Manager plugin is not installed"),
        "{message}"
    );
    assert!(
        message.contains("session-manager-working-with-install-plugin"),
        "{message}"
    );
    assert!(world.metas().is_empty());
}

/// 5: a bastion declared without `status` (a reference) and stopped is planned as the UPDATE that the OPEN tunnel
/// will cause, and so is a bastion the manifest does not declare at all
#[test]
fn a_bastion_that_a_tunnel_will_start_is_an_update_in_the_plan() {
    let world = World::new(false);
    let text = manifest("running", "OPEN", world.port).replace("    status: running\n", "");
    world.sandbox.write("declastruct.yml", &text);
    let (code, document, message) = plan_document(&world.sandbox);
    assert_eq!(code, Some(2), "{message}");
    let bastion = change(&document, "vpc-main-bastion");
    assert_eq!(bastion["action"], "UPDATE", "{bastion}");
    assert_eq!(bastion["state"]["desired"]["status"], "running");
    assert!(
        bastion["state"]["difference"]
            .as_str()
            .is_some_and(|difference| difference.contains("+status: running")),
        "{bastion}"
    );
    assert_eq!(
        document["changes"][0]["forResource"]["slug"], "vpc-main-bastion",
        "the bastion starts first"
    );

    // not declared at all: the plan still shows the start, before the tunnel
    let only_tunnel = &text[text.find("  - kind: DeclaredAwsVpcTunnel").expect("tunnel")..];
    world
        .sandbox
        .write("declastruct.yml", &format!("resources:\n{only_tunnel}"));
    let (code, document, message) = plan_document(&world.sandbox);
    assert_eq!(code, Some(2), "{message}");
    let bastion = change(&document, "vpc-main-bastion");
    assert_eq!(bastion["action"], "UPDATE", "{document}");
    assert_eq!(
        document["changes"][0]["forResource"]["class"],
        "DeclaredAwsEc2Instance"
    );
    assert_success(&world.apply());
    assert_eq!(
        world.moto.instance_state(REGION, &world.instance_id),
        "running"
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

/// 6: a tunnel naming its bastion by `instanceId` while the bastion is declared by `exid` is the same resource:
/// declared stopped, the plan refuses the contradiction at both lines; declared running, they are ordered
#[test]
fn a_bastion_named_by_instance_id_is_the_declared_one() {
    let world = World::new(false);
    let by_id = manifest("stopped", "OPEN", world.port).replace(
        "bastion: { exid: vpc-main-bastion }",
        &format!("bastion: {{ instanceId: {} }}", world.instance_id),
    );
    world.sandbox.write("declastruct.yml", &by_id);
    let validate = world.sandbox.run(&["validate"]);
    assert_success(&validate);
    let refused = world.sandbox.run(&["plan"]);
    crate::assert_shown!(
        "faithful_open_through_stopped_instance_id",
        refused,
        &[world.port]
    );

    world.sandbox.write(
        "declastruct.yml",
        &by_id.replace("status: stopped", "status: running"),
    );
    let (code, document, message) = plan_document(&world.sandbox);
    assert_eq!(code, Some(2), "{message}");
    let slugs: Vec<&str> = document["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|change| change["forResource"]["slug"].as_str())
        .collect();
    let bastion = slugs
        .iter()
        .position(|slug| *slug == "vpc-main-bastion")
        .expect("bastion");
    let tunnel = slugs
        .iter()
        .position(|slug| slug.starts_with(&world.instance_id))
        .expect("tunnel");
    assert!(
        bastion < tunnel,
        "the bastion starts before the tunnel: {slugs:?}"
    );
    assert_eq!(slugs.len(), 3, "one bastion, not two: {slugs:?}");
}

/// 8: `status` without AWS still shows what lives on this machine, and says which AWS reads failed
#[test]
fn status_works_without_aws_for_the_tunnels_of_this_machine() {
    let mut world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let closed_port = free_port();
    world.sandbox.set_env(
        "AWS_ENDPOINT_URL",
        &format!("http://127.0.0.1:{closed_port}"),
    );
    let status = world.sandbox.run(&["status", "--json"]);
    assert_eq!(status.status.code(), Some(0), "{}", stderr(&status));
    let message = stderr(&status);
    assert!(
        message.contains("ec2:DescribeInstances") || message.contains("rds:DescribeDBClusters"),
        "{message}"
    );
    assert!(message.contains(&closed_port.to_string()), "{message}");
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    let tunnel = rows
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|row| row["class"] == "DeclaredAwsVpcTunnel")
        })
        .expect("tunnel row");
    assert_eq!(tunnel["status"], "OPEN", "{tunnel}");
    assert!(tunnel["pid"].is_u64(), "{tunnel}");
    assert!(
        rows[0]["status"]
            .as_str()
            .is_some_and(|status| status.starts_with("unknown")),
        "{rows}"
    );
}

/// 9: an endpoint that accepts and never answers is an error naming the call and the endpoint within 30 s
#[test]
fn a_silent_endpoint_is_an_error_within_30_seconds() {
    let silent = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = silent.local_addr().expect("address").port();
    let held = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten().take(16) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(40));
    });
    let moto = Moto::start();
    let mut sandbox = Sandbox::new(Some(&moto));
    sandbox.set_env("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{port}"));
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", free_port()));
    let started = Instant::now();
    let output = sandbox.run(&["plan"]);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(1));
    assert!(took < Duration::from_secs(30), "{took:?}");
    let message = stderr(&output);
    assert!(
        message.contains("ec2:DescribeInstances") || message.contains("rds:DescribeDBClusters"),
        "{message}"
    );
    assert!(
        message.contains(&format!("http://127.0.0.1:{port}")),
        "{message}"
    );
    drop(held);
}

/// 10: setup errors say what is wrong: no region, an unknown profile, an instance metadata service that errors
#[test]
fn setup_errors_say_what_is_wrong() {
    let moto = Moto::start();
    let mut sandbox = Sandbox::new(Some(&moto));
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", free_port()));

    sandbox.remove_env("AWS_REGION");
    let output = sandbox.run(&["plan"]);
    crate::assert_shown!("faithful_no_region", output);
    sandbox.set_env("AWS_REGION", REGION);

    sandbox.set_env("AWS_PROFILE", "nope");
    let output = sandbox.run(&["plan"]);
    crate::assert_shown!("faithful_unknown_profile", output);
    sandbox.remove_env("AWS_PROFILE");

    // no keys, and an instance metadata service that answers errors
    let imds = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let imds_port = imds.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut stream in imds.incoming().flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_EC2_METADATA_DISABLED",
    ] {
        sandbox.remove_env(key);
    }
    sandbox.set_env(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        &format!("http://127.0.0.1:{imds_port}"),
    );
    let output = sandbox.run(&["plan"]);
    // no SDK warnings, only the diagnostic
    crate::assert_shown!("faithful_no_credentials_imds_errors", output);
}

/// 12: a stopped Aurora cluster is named as such, with how to start it
#[test]
fn a_stopped_cluster_is_named_with_how_to_start_it() {
    let world = World::new(true);
    let rds = world.moto.rds(REGION);
    world.moto.block_on(async {
        rds.stop_db_cluster()
            .db_cluster_identifier("ahbodedb")
            .send()
            .await
            .expect("stop the cluster");
    });
    world.declare("running", "OPEN");
    let output = world.apply();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("RDS cluster `ahbodedb` is stopped"),
        "{message}"
    );
    assert!(message.contains("aws rds start-db-cluster"), "{message}");
    assert!(!message.contains("security group"), "{message}");
    assert!(!is_port_in_use(world.port));
}

/// 14: a saved plan whose changes were edited after saving (hash kept) is refused before any AWS write
#[test]
fn an_edited_saved_plan_is_refused_before_any_write() {
    let world = World::new(false);
    world.declare("running", "CLOSED");
    assert_success(&world.sandbox.run(&["plan", "--out", "plan.json"]));
    let saved = std::fs::read_to_string(world.sandbox.path("plan.json")).expect("plan");
    let mut document: serde_json::Value = serde_json::from_str(&saved).expect("JSON");
    document["changes"] = serde_json::json!([]);
    std::fs::write(world.sandbox.path("plan.json"), document.to_string()).expect("edit");
    world.moto.start_counting();
    let output = world.sandbox.run(&["apply", "--plan", "plan.json"]);
    crate::assert_shown!("faithful_edited_saved_plan", output, &[world.port]);
    let calls = world.moto.counted_requests();
    assert!(
        calls.iter().all(|call| call.starts_with("Describe")),
        "only reads: {calls:?}"
    );
    assert_eq!(
        world.moto.instance_state(REGION, &world.instance_id),
        "stopped"
    );
}
