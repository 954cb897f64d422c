//! What people read, snapshotted whole through `assert_shown!`: plans (with every action and an unhealthy
//! tunnel), apply, status, and the errors a user meets while reading live state.

use declastruct_test_support::{Moto, free_port};

use crate::apply::World;
use crate::assert_shown;
use crate::support::{REGION, Sandbox, hold_port, manifest, without_padding};

#[test]
fn apply_and_status_as_a_person_reads_them() {
    let world = World::new(false);
    world.declare("running", "OPEN");
    let plan = world.sandbox.run(&["plan"]);
    assert_shown!("plan_open_through_a_stopped_bastion", plan, &[world.port]);
    let apply = world.apply();
    assert_shown!("apply_open", apply, &[world.port]);
    let mut status = world.sandbox.run(&["status"]);
    without_padding(&mut status);
    assert_shown!("status_open", status, &[world.port]);
    // every line of the narrow table fits 100 columns; --wide has every column
    let narrow = world.sandbox.run(&["status"]);
    assert!(
        crate::support::stdout(&narrow)
            .lines()
            .all(|line| line.chars().count() <= 100),
        "{}",
        crate::support::stdout(&narrow)
    );
    let mut wide = world.sandbox.run(&["status", "--wide"]);
    without_padding(&mut wide);
    assert_shown!("status_open_wide", wide, &[world.port]);
    let status_json = world.sandbox.run(&["status", "--json"]);
    assert_shown!("status_open_json", status_json, &[world.port]);

    world.postgres.stop();
    let unhealthy = world.sandbox.run(&["plan"]);
    assert_shown!("plan_unhealthy_tunnel", unhealthy, &[world.port]);
    world.declare("running", "CLOSED");
    let close = world.apply();
    assert_shown!("apply_close", close, &[world.port]);
}

#[test]
fn errors_while_reading_live_state() {
    let moto = Moto::start();
    moto.seed_bastion(REGION, "vpc-main-bastion", true);
    moto.seed_cluster(REGION, "ahbodedb");
    let sandbox = Sandbox::new(Some(&moto));
    let port = free_port();
    let text = manifest("running", "OPEN", port)
        .replace("exid: vpc-main-bastion", "exid: vpc-main-bastoin")
        .replace("name: ahbodedb", "name: ahbodedc");
    sandbox.write("declastruct.yml", &text);
    let output = sandbox.run(&["plan"]);
    assert_shown!("plan_bastion_and_cluster_not_found", output, &[port]);
}

#[test]
fn a_port_held_by_another_program() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    let mut holder = hold_port(world.port);
    let output = world.apply();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(output.status.code(), Some(1));
    assert_shown!("apply_port_held", output, &[world.port]);
}

/// `apply --json` outcomes carry each open tunnel's connection (address, local port, far end), opened now or
/// kept; a human `apply` lists every open tunnel under `Connect:`, not only the ones it opened; `status --all` on a
/// machine without tunnels says so in a sentence
#[test]
fn apply_tells_how_to_reach_every_open_tunnel() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    for round in ["opened", "kept"] {
        let applied = world.sandbox.run(&["apply", "--auto-approve", "--json"]);
        assert_eq!(
            applied.status.code(),
            Some(0),
            "{round}: {}",
            crate::support::stderr(&applied)
        );
        let document: serde_json::Value = serde_json::from_slice(&applied.stdout).expect("JSON");
        let tunnel = &document["outcomes"][2];
        assert_eq!(
            tunnel["connection"]["localPort"], world.port,
            "{round}: {tunnel}"
        );
        assert_eq!(
            tunnel["connection"]["address"],
            format!("vpc-main-bastion.ahbodedb.{}", world.port),
            "{round}: {tunnel}"
        );
        assert!(
            tunnel["connection"]["farEnd"]
                .as_str()
                .is_some_and(|far| far.contains("ahbodedb")),
            "{round}: {tunnel}"
        );
        assert!(tunnel["detail"].is_string(), "{round}: {tunnel}");
    }
    let again = world.apply();
    assert!(
        crate::support::stdout(&again)
            .contains(&format!("Connect:\n  localhost:{} -> ahbodedb", world.port)),
        "{}",
        crate::support::stdout(&again)
    );

    let empty = Sandbox::new(None);
    let none = empty.run(&["status", "--all"]);
    assert_eq!(none.status.code(), Some(0));
    assert_eq!(
        crate::support::stdout(&none),
        "No tunnel on this machine: none is open, and none has a record in the state folder.\n"
    );
}
