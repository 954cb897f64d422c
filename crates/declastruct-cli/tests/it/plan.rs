use declastruct_test_support::{Moto, large_manifest};
use serde_json::Value;

use crate::support::{REGION, Sandbox, manifest, stable_settings, stderr, stdout};

fn seeded(bastion_running: bool) -> (Moto, String) {
    let moto = Moto::start();
    let bastion = moto.seed_bastion(REGION, "vpc-main-bastion", bastion_running);
    moto.seed_cluster(REGION, "ahbodedb");
    (moto, bastion.instance_id)
}

#[test]
fn plan_shows_what_apply_would_change() {
    let (moto, _) = seeded(false);
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", 7775));

    let output = sandbox.run(&["plan"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(!text.contains('\u{1b}'), "no ANSI codes when piped");
    stable_settings().bind(|| insta::assert_snapshot!("plan_stopped_bastion", text));

    let detailed = sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(detailed.status.code(), Some(2));
}

#[test]
fn plan_json_is_the_contract_document() {
    let (moto, instance_id) = seeded(false);
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", 7775));

    let output = sandbox.run(&["plan", "--json", "--out", "saved.json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let document: Value = serde_json::from_slice(&output.stdout).expect("stdout is only JSON");
    let hash = document["hash"].as_str().expect("hash");
    assert_eq!(hash.len(), 64);
    assert!(hash.chars().all(|character| character.is_ascii_hexdigit()));
    assert!(
        document["createdAt"]
            .as_str()
            .expect("createdAt")
            .ends_with('Z')
    );
    // the manifest's absolute path: `apply --plan` finds it again from any folder
    let uri = document["wish"]["uri"].as_str().expect("uri");
    assert!(
        std::path::Path::new(uri).is_absolute() && uri.ends_with("/declastruct.yml"),
        "{uri}"
    );

    let changes = document["changes"].as_array().expect("changes");
    let summary: Vec<(String, String)> = changes
        .iter()
        .map(|change| {
            (
                change["forResource"]["class"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                change["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("DeclaredAwsEc2Instance".to_string(), "UPDATE".to_string()),
            ("DeclaredAwsRdsCluster".to_string(), "KEEP".to_string()),
            ("DeclaredAwsVpcTunnel".to_string(), "UPDATE".to_string()),
        ]
    );
    assert_eq!(changes[0]["state"]["desired"]["status"], "running");
    assert_eq!(changes[0]["state"]["remote"]["status"], "stopped");
    assert_eq!(
        changes[0]["state"]["remote"]["instanceId"],
        instance_id.as_str()
    );
    assert!(
        changes[0]["state"]["difference"]
            .as_str()
            .expect("diff")
            .contains("+status: running")
    );
    assert_eq!(changes[1]["state"]["difference"], Value::Null);
    assert_eq!(changes[2]["state"]["remote"]["status"], "CLOSED");
    assert_eq!(
        changes[2]["forResource"]["slug"],
        "vpc-main-bastion.ahbodedb.7775"
    );

    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox.path("saved.json")).expect("saved"))
            .expect("saved plan is JSON");
    assert_eq!(saved, document, "--out writes the same document");

    // the hash is over meaning, not display: a human-format plan saves the same hash
    let human = sandbox.run(&["plan", "--out", "human.json"]);
    assert!(human.status.success());
    let again: Value =
        serde_json::from_str(&std::fs::read_to_string(sandbox.path("human.json")).expect("saved"))
            .expect("JSON");
    assert_eq!(again["hash"], document["hash"]);
}

#[test]
fn detailed_exitcode_is_zero_once_nothing_differs() {
    let (moto, _) = seeded(true);
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write("declastruct.yml", &manifest("running", "CLOSED", 7775));

    let output = sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    crate::assert_shown!("plan_no_changes", output);
}

#[test]
fn a_tunnel_closed_before_its_bastion_stops() {
    let (moto, _) = seeded(true);
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write("declastruct.yml", &manifest("stopped", "CLOSED", 7775));
    let output = sandbox.run(&["plan", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let document: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let order: Vec<&str> = document["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|change| change["forResource"]["class"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        order,
        vec![
            "DeclaredAwsRdsCluster",
            "DeclaredAwsVpcTunnel",
            "DeclaredAwsEc2Instance"
        ]
    );
}

#[test]
fn a_bastion_that_does_not_exist_is_named_at_its_reference() {
    let (moto, _) = seeded(false);
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write(
        "declastruct.yml",
        &manifest("running", "OPEN", 7775)
            .replace("exid: vpc-main-bastion", "exid: vpc-main-bastoin"),
    );
    moto.start_counting();
    let output = sandbox.run(&["plan"]);
    crate::assert_shown!("plan_missing_bastion", output);
    assert_only_reads(&moto.counted_requests());
}

#[test]
fn a_cluster_that_does_not_exist_suggests_the_closest_names() {
    let (moto, _) = seeded(true);
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write(
        "declastruct.yml",
        &manifest("running", "OPEN", 7775).replace("name: ahbodedb", "name: ahbodeb"),
    );
    let output = sandbox.run(&["plan"]);
    crate::assert_shown!("plan_missing_cluster_closest", output);
}

#[test]
fn two_instances_with_one_exid_are_both_named() {
    let (moto, first) = seeded(true);
    let second = moto
        .seed_bastion(REGION, "vpc-main-bastion", false)
        .instance_id;
    let sandbox = Sandbox::new(Some(&moto));
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", 7775));
    moto.start_counting();
    let output = sandbox.run(&["plan"]);
    crate::assert_shown!("plan_ambiguous_exid", output);
    // the snapshot hides ids: both are named
    let diagnostic = stderr(&output);
    assert!(
        diagnostic.contains(&first) && diagnostic.contains(&second),
        "{diagnostic}"
    );
    assert_only_reads(&moto.counted_requests());
}

#[test]
fn no_credentials_is_a_clear_error() {
    let (moto, _) = seeded(true);
    let mut sandbox = Sandbox::new(Some(&moto));
    sandbox.remove_env("AWS_ACCESS_KEY_ID");
    sandbox.remove_env("AWS_SECRET_ACCESS_KEY");
    sandbox.write("declastruct.yml", &manifest("running", "OPEN", 7775));
    let output = sandbox.run(&["plan"]);
    crate::assert_shown!("plan_no_credentials", output);
}

fn assert_only_reads(requests: &[String]) {
    assert!(!requests.is_empty());
    for request in requests {
        assert!(
            request.starts_with("Describe"),
            "only reads, got {requests:?}"
        );
    }
}

#[test]
fn plan_requests_do_not_grow_with_the_manifest() {
    let moto = Moto::start();
    for group in 0..10 {
        moto.seed_bastion(REGION, &format!("bastion-{group}"), true);
        moto.seed_cluster(REGION, &format!("cluster-{group}"));
    }
    let sandbox = Sandbox::new(Some(&moto));
    let mut counts = Vec::new();
    for (tunnels, groups) in [(1, 1), (100, 10)] {
        sandbox.write("declastruct.yml", &large_manifest(tunnels, groups, 20000));
        moto.start_counting();
        let output = sandbox.run(&["plan", "--json"]);
        assert!(output.status.success(), "{}", stderr(&output));
        let requests = moto.counted_requests();
        assert!(
            requests.len() <= 4,
            "{tunnels} tunnels made {} requests: {requests:?}",
            requests.len()
        );
        counts.push(requests.len());
        let document: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(
            document["changes"].as_array().map(Vec::len),
            Some(tunnels + 2 * groups)
        );
    }
    assert_eq!(
        counts[0], counts[1],
        "the same number of requests for 1 and 100 tunnels"
    );
}

#[test]
fn the_basic_example_plans_against_moto() {
    let (moto, _) = seeded(false);
    let sandbox = Sandbox::new(Some(&moto));
    let example = crate::support::workspace_root().join("examples/basic.yml");
    let example = example.display().to_string();

    let output = sandbox.run(&["plan", "-f", &example, "--detailed-exitcode"]);
    // what does not change is counted, not listed, unless -v asks for it
    crate::assert_shown!("plan_basic_example", output);
    let verbose = sandbox.run(&["plan", "-v", "-f", &example]);
    crate::assert_shown!("plan_basic_example_verbose", verbose);

    let json = sandbox.run(&["plan", "-f", &example, "--json"]);
    let document: Value = serde_json::from_slice(&json.stdout).expect("only JSON");
    assert_eq!(document["wish"]["uri"], example.as_str());
    assert_eq!(document["changes"].as_array().map(Vec::len), Some(3));
}
