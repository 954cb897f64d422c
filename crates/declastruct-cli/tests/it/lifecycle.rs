//! "Lifecycle like Terraform": removed tunnels destroyed, moved ends replaced, tunnels of other manifests left
//! alone, `status --all`, `--target`, `--replace`, `show`, saved plans that remember their manifest, and the CI
//! contracts, through the real binary.

use std::path::Path;

use declastruct_test_support::{Postgres, free_port};
use declastruct_tunnel::{is_port_in_use, is_process_alive};

use crate::apply::{World, assert_success};
use crate::assert_shown;
use crate::support::{REGION, manifest, manifest_with_ports, stderr, stdout};

fn write(world: &World, path: &str, text: &str) {
    let path = world.sandbox.path(path);
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).expect("folder");
    }
    std::fs::write(path, text).expect("write");
}

fn apply_file(world: &World, file: &str) -> std::process::Output {
    world.sandbox.run(&["apply", "-f", file, "--auto-approve"])
}

fn actions(output: &std::process::Output) -> Vec<(String, String)> {
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    document["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|change| {
            (
                change["forResource"]["slug"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                change["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// must-show 1: a tunnel removed from its manifest is a DESTROY, and apply closes it; a tunnel of another
/// manifest on the same machine is untouched throughout
#[test]
fn a_removed_tunnel_is_destroyed_and_another_manifests_is_untouched() {
    let world = World::new(true);
    let other_port = free_port();
    write(
        &world,
        "a/declastruct.yml",
        &manifest_with_ports("running", "OPEN", &[world.port, other_port]),
    );
    write(
        &world,
        "b/declastruct.yml",
        &manifest("running", "OPEN", free_port()),
    );
    let b_port = {
        let text = std::fs::read_to_string(world.sandbox.path("b/declastruct.yml")).expect("b");
        text.lines()
            .find_map(|line| line.trim().strip_prefix("port: ")?.parse::<u16>().ok())
            .expect("b's port")
    };
    assert_success(&apply_file(&world, "a/declastruct.yml"));
    assert_success(&apply_file(&world, "b/declastruct.yml"));
    let b_supervisor = world
        .metas()
        .into_iter()
        .find(|meta| meta.local_port == b_port)
        .expect("b's tunnel")
        .pid;

    // a drops its second tunnel
    write(
        &world,
        "a/declastruct.yml",
        &manifest("running", "OPEN", world.port),
    );
    let plan = world.sandbox.run(&[
        "plan",
        "-f",
        "a/declastruct.yml",
        "--json",
        "--detailed-exitcode",
    ]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    let removed = format!("vpc-main-bastion.ahbodedb.{other_port}");
    assert!(
        actions(&plan).contains(&(removed.clone(), "DESTROY".to_string())),
        "{:?}",
        actions(&plan)
    );
    assert!(
        !actions(&plan)
            .iter()
            .any(|(slug, _)| slug.ends_with(&format!(".{b_port}"))),
        "b's tunnel is not a's business: {:?}",
        actions(&plan)
    );
    let human = world.sandbox.run(&["plan", "-f", "a/declastruct.yml"]);
    assert_shown!("plan_with_a_destroy", human, &[world.port, other_port]);

    assert_success(&apply_file(&world, "a/declastruct.yml"));
    assert!(
        !is_port_in_use(other_port),
        "the removed tunnel's port is free"
    );
    assert!(
        world
            .metas()
            .iter()
            .all(|meta| meta.local_port != other_port),
        "its files are gone"
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    assert_eq!(
        Postgres::psql(b_port, "select 1").as_deref(),
        Ok("1"),
        "b serves"
    );
    assert!(
        is_process_alive(b_supervisor),
        "b's supervisor was never touched"
    );
    let again = world
        .sandbox
        .run(&["plan", "-f", "a/declastruct.yml", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", stdout(&again));

    // b's manifest deleted: `status --all` still finds its tunnel, with AWS unreachable; an empty manifest at
    // that path closes it
    std::fs::remove_file(world.sandbox.path("b/declastruct.yml")).expect("delete b");
    let mut offline = world.sandbox.command(&["status", "--all", "--json"]);
    offline.env(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", free_port()),
    );
    let listed = offline.output().expect("status --all");
    assert_success(&listed);
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let owners: Vec<(u64, String)> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row["port"].as_u64().unwrap_or_default(),
                row["manifest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let a_path = std::fs::canonicalize(world.sandbox.path("a/declastruct.yml")).expect("a");
    assert!(
        owners.contains(&(u64::from(world.port), a_path.display().to_string())),
        "{owners:?}"
    );
    assert!(
        owners
            .iter()
            .any(|(port, owner)| *port == u64::from(b_port) && owner.ends_with("b/declastruct.yml")),
        "{owners:?}"
    );
    let table = world.sandbox.run(&["status", "--all"]);
    assert!(stdout(&table).contains("MANIFEST"), "{}", stdout(&table));
    write(&world, "b/declastruct.yml", "resources: []\n");
    assert_success(&apply_file(&world, "b/declastruct.yml"));
    assert!(!is_port_in_use(b_port));
    assert_eq!(
        Postgres::psql(world.port, "select 1").as_deref(),
        Ok("1"),
        "a serves"
    );
}

/// must-show 2: a bastion replaced under the same `exid` is a REPLACE; apply leaves exactly one tunnel, on the
/// new instance, and no orphan
#[test]
fn a_replaced_bastion_replaces_the_tunnel() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let old = world.only_meta();
    let ec2 = world.moto.ec2(REGION);
    world.moto.block_on(async {
        ec2.terminate_instances()
            .instance_ids(&world.instance_id)
            .send()
            .await
            .expect("terminate");
    });
    let new_instance = world
        .moto
        .seed_bastion(REGION, "vpc-main-bastion", true)
        .instance_id;

    let plan = world
        .sandbox
        .run(&["plan", "--json", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "{}", stderr(&plan));
    let slug = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    assert!(
        actions(&plan).contains(&(slug, "REPLACE".to_string())),
        "{:?}",
        actions(&plan)
    );
    let human = world.sandbox.run(&["plan"]);
    assert_shown!("plan_with_a_replace", human, &[world.port]);

    assert_success(&world.apply());
    let metas = world.metas();
    assert_eq!(metas.len(), 1, "exactly one tunnel");
    assert_eq!(metas[0].instance_id, new_instance);
    assert!(
        !is_process_alive(old.pid),
        "the old session's supervisor is gone"
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

/// must-show 4: a saved plan remembers its manifest: applied from another folder it applies that manifest, and
/// `show` prints it as `plan` did
#[test]
fn a_saved_plan_remembers_its_manifest() {
    let world = World::new(true);
    write(
        &world,
        "sub/declastruct.yml",
        &manifest("running", "OPEN", world.port),
    );
    let saved = world
        .sandbox
        .run(&["plan", "-f", "sub/declastruct.yml", "--out", "p.json"]);
    assert_success(&saved);
    assert!(
        stdout(&saved)
            .contains("apply it with `declastruct apply -f sub/declastruct.yml --plan p.json`"),
        "{}",
        stdout(&saved)
    );
    let shown = world.sandbox.run(&["show", "p.json"]);
    assert_success(&shown);
    let rendered: String = stdout(&saved)
        .lines()
        .take_while(|line| !line.starts_with("Saved the plan"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        stdout(&shown),
        rendered,
        "show renders it exactly as plan did"
    );
    let shown_json = world.sandbox.run(&["show", "p.json", "--json"]);
    let document: serde_json::Value = serde_json::from_slice(&shown_json.stdout).expect("JSON");
    assert_eq!(document["changes"].as_array().map(Vec::len), Some(3));

    let elsewhere = world.sandbox.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("elsewhere");
    let plan_file = world.sandbox.path("p.json");
    let applied = world
        .sandbox
        .command(&["apply", "--plan", &plan_file.display().to_string()])
        .current_dir(&elsewhere)
        .output()
        .expect("apply");
    assert_success(&applied);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    assert!(!Path::new(&elsewhere.join("declastruct.yml")).exists());

    let unreadable = world.sandbox.run(&["show", "nothing.json"]);
    assert_eq!(unreadable.status.code(), Some(1));
}

/// `show` needs no AWS (the endpoint is a closed port), and `apply --plan` takes the manifest `-f` names over the
/// one the plan recorded (here deleted since)
#[test]
fn show_needs_no_aws_and_apply_takes_f_over_the_recorded_manifest() {
    let world = World::new(true);
    let text = manifest("running", "OPEN", world.port);
    write(&world, "sub/declastruct.yml", &text);
    write(&world, "other/declastruct.yml", &text);
    let saved = world
        .sandbox
        .run(&["plan", "-f", "sub/declastruct.yml", "--out", "p.json"]);
    assert_success(&saved);
    let mut offline = world.sandbox.command(&["show", "p.json"]);
    offline.env(
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", free_port()),
    );
    let shown = offline.output().expect("show");
    assert_success(&shown);
    assert!(
        stdout(&saved).starts_with(&stdout(&shown)),
        "the same plan, without AWS:\n{}",
        stdout(&shown)
    );

    std::fs::remove_file(world.sandbox.path("sub/declastruct.yml")).expect("delete sub");
    let without_f = world.sandbox.run(&["apply", "--plan", "p.json"]);
    assert_eq!(without_f.status.code(), Some(1), "{}", stderr(&without_f));
    assert!(
        stderr(&without_f).contains("sub/declastruct.yml"),
        "it looked for the recorded manifest: {}",
        stderr(&without_f)
    );
    assert!(!is_port_in_use(world.port));
    let with_f = world
        .sandbox
        .run(&["apply", "-f", "other/declastruct.yml", "--plan", "p.json"]);
    assert_success(&with_f);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

/// must-show 5: CI contracts: under --detailed-exitcode every error exits 1; apply --json never prompts
#[test]
fn ci_contracts_hold() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    let usage = world
        .sandbox
        .run(&["plan", "--detailed-exitcode", "--no-such-flag"]);
    assert_eq!(usage.status.code(), Some(1), "{}", stderr(&usage));
    let json = world.sandbox.run(&["apply", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    assert!(
        stderr(&json).contains("needs --auto-approve or --plan"),
        "{}",
        stderr(&json)
    );
    assert!(!stderr(&json).contains("Enter a value"));
    assert!(world.metas().is_empty(), "nothing applied");
}

/// must-show 6: --target plans and applies one tunnel and what it depends on; --replace reopens a healthy one
#[test]
fn target_and_replace() {
    let world = World::new(false);
    let second = free_port();
    world.sandbox.write(
        "declastruct.yml",
        &manifest_with_ports("running", "OPEN", &[world.port, second]),
    );
    let slug = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let plan = world.sandbox.run(&["plan", "--json", "--target", &slug]);
    assert_success(&plan);
    let mut slugs: Vec<String> = actions(&plan).into_iter().map(|(slug, _)| slug).collect();
    slugs.sort();
    let mut expected = vec![
        "ahbodedb".to_string(),
        "vpc-main-bastion".to_string(),
        slug.clone(),
    ];
    expected.sort();
    assert_eq!(
        slugs, expected,
        "the tunnel, its bastion and its cluster; not the other tunnel"
    );
    assert_success(
        &world
            .sandbox
            .run(&["apply", "--auto-approve", "--target", &slug]),
    );
    assert!(is_port_in_use(world.port));
    assert!(!is_port_in_use(second), "the other tunnel was not opened");
    let unknown = world.sandbox.run(&["plan", "--target", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown).contains("names no resource"),
        "{}",
        stderr(&unknown)
    );

    let before = world.only_meta();
    let replaced = world.sandbox.run(&[
        "apply",
        "--auto-approve",
        "--target",
        &slug,
        "--replace",
        &slug,
    ]);
    assert_success(&replaced);
    assert!(
        stdout(&replaced).contains("REPLACE"),
        "{}",
        stdout(&replaced)
    );
    let after = world.only_meta();
    assert_ne!(after.pid, before.pid, "a new session");
    assert!(!is_process_alive(before.pid));
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}
