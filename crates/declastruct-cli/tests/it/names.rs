//! "The second day", item 1 and 2: a tunnel's `name:` is its address everywhere (plan, apply, status, exec, env,
//! logs, connect, --target, --replace, completions, JSON), and a port change is one REPLACE of the tunnel, named or
//! not, through the real binary and the real chain.

use std::time::Duration;

use declastruct_test_support::{Postgres, free_port};
use declastruct_tunnel::is_port_in_use;

use crate::apply::{World, assert_success};
use crate::holders::{Running, kill, status_json};
use crate::support::{complete_words, manifest, stderr, stdout};

const NAME: &str = "orders-dev";

/// the contract's manifest with its tunnel on `port`, named `name` when given, logging in as the test
/// PostgreSQL's superuser
fn declare(world: &World, name: Option<&str>, port: u16) {
    let mut text = manifest("running", "OPEN", port);
    if let Some(name) = name {
        text = text.replace(
            "  - kind: DeclaredAwsVpcTunnel\n",
            &format!("  - kind: DeclaredAwsVpcTunnel\n    name: {name}\n"),
        );
    }
    text.push_str("    connect:\n      database: postgres\n      user: postgres\n");
    world.sandbox.write("declastruct.yml", &text);
}

/// each change of a plan document as (slug, action)
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

/// the tunnel's changes of a plan document, without the bastion and cluster it keeps
fn tunnel_actions(world: &World) -> Vec<(String, String)> {
    let plan = world.sandbox.run(&["plan", "--json"]);
    assert_success(&plan);
    actions(&plan)
        .into_iter()
        .filter(|(slug, _)| slug != "vpc-main-bastion" && slug != "ahbodedb")
        .collect()
}

/// item 1: with `name:`, the name is what plan, apply, status (and --all), JSON, exec's variables, env, logs,
/// connect, --target, --replace and completions show and take; the long address is not the tunnel's any more
#[test]
fn a_named_tunnel_is_addressed_by_its_name_everywhere() {
    let world = World::new(true);
    declare(&world, Some(NAME), world.port);

    assert_eq!(
        tunnel_actions(&world),
        vec![(NAME.to_string(), "UPDATE".to_string())]
    );
    let targeted = world
        .sandbox
        .run(&["apply", "--auto-approve", "--target", NAME]);
    assert_success(&targeted);
    assert!(
        stdout(&targeted).contains(&format!("Connect: {NAME}")) || stdout(&targeted).contains(NAME),
        "{}",
        stdout(&targeted)
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));

    let rows = status_json(&world, &[]);
    let slugs: Vec<&str> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["slug"].as_str())
        .collect();
    assert!(slugs.contains(&NAME), "{rows}");
    assert_eq!(status_json(&world, &["--all"])[0]["slug"], NAME);
    let status = world.sandbox.run(&["status"]);
    assert!(stdout(&status).contains(NAME), "{}", stdout(&status));

    let exec = world.sandbox.run(&[
        "exec",
        NAME,
        "--",
        "sh",
        "-c",
        "echo $DECLASTRUCT_ORDERS_DEV_URL; psql -tAc 'select 7'",
    ]);
    assert_success(&exec);
    assert_eq!(
        stdout(&exec).lines().collect::<Vec<_>>(),
        vec![
            format!("postgresql://postgres@127.0.0.1:{}/postgres", world.port).as_str(),
            "7"
        ],
        "{}",
        stderr(&exec)
    );
    let env = world.sandbox.run(&["env", NAME, "--format", "json"]);
    assert_success(&env);
    let variables: serde_json::Value = serde_json::from_slice(&env.stdout).expect("env JSON");
    assert_eq!(variables["PGPORT"], world.port.to_string());
    let logs = world.sandbox.run(&["logs", NAME]);
    assert_success(&logs);

    // the long address names nothing now: the error lists the name
    let long = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let refused = world.sandbox.run(&["env", &long]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains(NAME), "{}", stderr(&refused));

    for words in [
        "declastruct logs ''",
        "declastruct env ''",
        "declastruct exec ''",
        "declastruct connect ''",
        "declastruct apply --replace ''",
        "declastruct plan --target ''",
    ] {
        let offered = complete_words(&world.sandbox, words);
        assert!(offered.contains(&NAME.to_string()), "{words}: {offered:?}");
        assert!(!offered.contains(&long), "{words}: {offered:?}");
    }

    let supervisor = world.only_meta().pid;
    let replaced = world
        .sandbox
        .run(&["apply", "--auto-approve", "--replace", NAME]);
    assert_success(&replaced);
    assert_ne!(world.only_meta().pid, supervisor, "a new session");
    assert_eq!(world.only_meta().tunnel.address_slug(), NAME);

    // connect holds it by name, beside the manifest
    let connect = connected(&world, NAME);
    let holders = status_json(&world, &["--all"])[0]["holders"].to_string();
    assert!(holders.contains(&format!("(connect {NAME})")), "{holders}");
    kill(connect.pid(), nix::sys::signal::Signal::SIGINT);
    let ended = connect.finish(Duration::from_secs(30));
    assert_eq!(ended.status.code(), Some(0), "{}", stderr(&ended));
    assert!(is_port_in_use(world.port), "the manifest still holds it");
}

/// item 1 and 2: a named tunnel moved to another port is one REPLACE of its name, showing the old and new port
/// and that the port forces a new session; apply closes the old port and serves the new one
#[test]
fn a_named_tunnels_port_change_is_one_replace() {
    let world = World::new(true);
    declare(&world, Some(NAME), world.port);
    assert_success(&world.apply());
    let new_port = free_port();
    declare(&world, Some(NAME), new_port);

    assert_eq!(
        tunnel_actions(&world),
        vec![(NAME.to_string(), "REPLACE".to_string())]
    );
    let plan = world.sandbox.run(&["plan"]);
    let mut settings = crate::support::settings_for_ports(&[world.port]);
    settings.add_filter(&format!(r"\b{new_port}\b"), "[NEW_PORT]");
    settings.bind(|| {
        insta::assert_snapshot!("names_port_change_plan", crate::support::shown(&plan));
    });

    assert_success(&world.apply());
    assert!(!is_port_in_use(world.port), "the old port is free");
    assert_eq!(Postgres::psql(new_port, "select 1").as_deref(), Ok("1"));
    let meta = world.only_meta();
    assert_eq!(meta.local_port, new_port);
    assert_eq!(meta.tunnel.address_slug(), NAME);
    assert_eq!(
        tunnel_actions(&world),
        vec![(NAME.to_string(), "KEEP".to_string())]
    );
}

/// item 2: without a name, a port change through the same bastion into the same target is one REPLACE too (of
/// the new address), not an UPDATE of a new address beside a DESTROY of the old one
#[test]
fn an_unnamed_tunnels_port_change_is_one_replace() {
    let world = World::new(true);
    declare(&world, None, world.port);
    assert_success(&world.apply());
    let new_port = free_port();
    declare(&world, None, new_port);

    let new_address = format!("vpc-main-bastion.ahbodedb.{new_port}");
    assert_eq!(
        tunnel_actions(&world),
        vec![(new_address, "REPLACE".to_string())]
    );
    assert_success(&world.apply());
    assert!(!is_port_in_use(world.port), "the old port is free");
    assert_eq!(Postgres::psql(new_port, "select 1").as_deref(), Ok("1"));
    assert_eq!(world.only_meta().local_port, new_port);
}

/// item 1: naming (then renaming) a tunnel that is already open keeps its session: an UPDATE that records the
/// name, after which `status --all` and `logs` know the tunnel by it, and the plan keeps it
#[test]
fn naming_an_open_tunnel_keeps_its_session() {
    let world = World::new(true);
    declare(&world, None, world.port);
    assert_success(&world.apply());
    let supervisor = world.only_meta().pid;
    for name in [NAME, "orders-main"] {
        declare(&world, Some(name), world.port);
        assert_eq!(
            tunnel_actions(&world),
            vec![(name.to_string(), "UPDATE".to_string())]
        );
        let plan = world.sandbox.run(&["plan"]);
        assert!(
            stdout(&plan).contains("the session stays"),
            "{}",
            stdout(&plan)
        );
        assert_success(&world.apply());
        assert_eq!(world.only_meta().pid, supervisor, "the same session");
        assert_eq!(world.only_meta().tunnel.address_slug(), name);
        assert_eq!(status_json(&world, &["--all"])[0]["slug"], name);
        assert_success(&world.sandbox.run(&["logs", name]));
        assert_eq!(
            tunnel_actions(&world),
            vec![(name.to_string(), "KEEP".to_string())]
        );
    }
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

/// item 2: a named tunnel closed and moved in one edit frees the port it listened on, not the one it now declares:
/// a tunnel declared (first) on that old port, into another target, is ordered after the close, and opens
#[test]
fn a_tunnel_closed_while_moved_frees_its_old_port_for_another() {
    let world = World::new(true);
    route_reader(&world);
    write_tunnels(&world, &[("old", world.port, "OPEN", WRITER)]);
    assert_success(&world.apply());
    let elsewhere = free_port();
    write_tunnels(
        &world,
        &[
            ("new", world.port, "OPEN", READER),
            ("old", elsewhere, "CLOSED", WRITER),
        ],
    );

    let order: Vec<String> = tunnel_actions(&world)
        .into_iter()
        .map(|(slug, _)| slug)
        .collect();
    assert_eq!(
        order,
        vec!["old".to_string(), "new".to_string()],
        "the close goes first"
    );
    assert_success(&world.apply());
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    assert_eq!(world.only_meta().tunnel.address_slug(), "new");
    assert!(!is_port_in_use(elsewhere));
}

/// item 1: names rotated over the same sessions (a takes b's port, b c's, c a's, all into one target) rename the
/// sessions: three UPDATEs, no session closed or opened
#[test]
fn names_rotated_over_the_same_sessions_rename_them() {
    let world = World::new(true);
    let ports = [world.port, free_port(), free_port()];
    let names = ["a", "b", "c"];
    let declared = |shift: usize| {
        (0..3)
            .map(|index| (names[index], ports[(index + shift) % 3], "OPEN", WRITER))
            .collect::<Vec<_>>()
    };
    write_tunnels(&world, &declared(0));
    assert_success(&world.apply());
    let sessions = world.sim.sessions().len();
    write_tunnels(&world, &declared(1));
    assert_eq!(
        tunnel_actions(&world),
        names
            .iter()
            .map(|name| (name.to_string(), "UPDATE".to_string()))
            .collect::<Vec<_>>()
    );
    assert_success(&world.apply());
    assert_eq!(world.sim.sessions().len(), sessions, "no session opened");
    assert!(
        tunnel_actions(&world)
            .iter()
            .all(|(_, action)| action == "KEEP")
    );
    let rows = status_json(&world, &["--all"]);
    for (name, port, _, _) in declared(1) {
        assert!(
            rows.as_array()
                .expect("rows")
                .iter()
                .any(|row| row["slug"] == name && row["port"].as_u64() == Some(u64::from(port))),
            "{name} on {port}: {rows}"
        );
    }
}

/// item 2: four tunnels whose port moves form a ring of new sessions (each port passes between the writer and the
/// reader) plan as four REPLACEs, not as an ordering cycle; apply, run again where an open found its port not yet
/// let go, ends with each serving on its new port
#[test]
fn a_ring_of_port_moves_plans_and_converges() {
    let world = World::new(true);
    route_reader(&world);
    let ports = [world.port, free_port(), free_port(), free_port()];
    let names = ["a", "b", "c", "d"];
    let declared = |shift: usize| {
        (0..4)
            .map(|index| {
                let into = if index % 2 == 0 { WRITER } else { READER };
                (names[index], ports[(index + shift) % 4], "OPEN", into)
            })
            .collect::<Vec<_>>()
    };
    write_tunnels(&world, &declared(0));
    assert_success(&world.apply());
    write_tunnels(&world, &declared(1));
    let mut planned = tunnel_actions(&world);
    planned.sort();
    assert_eq!(
        planned,
        names
            .iter()
            .map(|name| (name.to_string(), "REPLACE".to_string()))
            .collect::<Vec<_>>()
    );
    for _ in 0..3 {
        if tunnel_actions(&world)
            .iter()
            .all(|(_, action)| action == "KEEP")
        {
            break;
        }
        let _ = world.apply();
    }
    for (name, port, _, _) in declared(1) {
        assert_eq!(
            Postgres::psql(port, "select 1").as_deref(),
            Ok("1"),
            "{name} on {port}"
        );
    }
}

const WRITER: &str = "{ cluster: { name: ahbodedb } }";
const READER: &str = "{ cluster: { name: ahbodedb }, endpoint: reader }";

/// routes the cluster's reader endpoint to the test PostgreSQL, as its writer is
fn route_reader(world: &World) {
    let reader = world
        .moto
        .reader_endpoint(crate::support::REGION, "ahbodedb");
    world.sim.set_route(
        &format!("{reader}:5432"),
        std::net::SocketAddr::from(([127, 0, 0, 1], world.postgres.port)),
    );
}

/// writes the contract's bastion and cluster with one named tunnel per (name, port, status, into), logging in as
/// the test PostgreSQL's superuser
fn write_tunnels(world: &World, tunnels: &[(&str, u16, &str, &str)]) {
    let base = manifest("running", "OPEN", 0);
    let mut text = base[..base
        .find("  - kind: DeclaredAwsVpcTunnel")
        .expect("a tunnel")]
        .to_string();
    for (name, port, status, into) in tunnels {
        text.push_str(&format!(
            "  - kind: DeclaredAwsVpcTunnel\n    name: {name}\n    via: {{ mechanism: aws.ssm, bastion: {{ exid: vpc-main-bastion }} }}\n    into: {into}\n    from: {{ host: localhost, port: {port} }}\n    status: {status}\n    connect:\n      database: postgres\n      user: postgres\n"
        ));
    }
    world.sandbox.write("declastruct.yml", &text);
}

/// item 2: a named tunnel moved while a `connect` still holds its old session: the REPLACE says before apply that
/// the old session is only let go of and stays open for that holder; apply opens the new port and leaves the old
#[test]
fn a_replace_says_when_its_old_session_stays_open_for_others() {
    let world = World::new(true);
    declare(&world, Some(NAME), world.port);
    assert_success(&world.apply());
    let connect = connected(&world, NAME);

    let new_port = free_port();
    declare(&world, Some(NAME), new_port);
    let plan = world.sandbox.run(&["plan"]);
    let shown = stdout(&plan);
    assert!(
        shown.contains(&format!(
            "the old session (local port {}): released; stays open for",
            world.port
        )) && shown.contains(&format!("(connect {NAME})")),
        "{shown}"
    );
    assert_success(&world.apply());
    assert_eq!(Postgres::psql(new_port, "select 1").as_deref(), Ok("1"));
    assert!(
        is_port_in_use(world.port),
        "the connect still holds the old one"
    );

    kill(connect.pid(), nix::sys::signal::Signal::SIGINT);
    let ended = connect.finish(Duration::from_secs(30));
    assert_eq!(ended.status.code(), Some(0), "{}", stderr(&ended));
}

/// `declastruct connect NAME`, running, once it printed its first line (`Connected: …`)
fn connected(world: &World, name: &str) -> Running {
    let mut connect = Running::spawn(world.sandbox.command(&["connect", name]));
    let out = connect.0.stdout.take().expect("stdout");
    let first = std::io::BufRead::lines(std::io::BufReader::new(out))
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    assert!(first.starts_with("Connected: "), "{first}");
    connect
}
