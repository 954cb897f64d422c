//! Issue 24 through the real binary: the transport a tunnel uses (`via.transport`, `DECLASTRUCT_TRANSPORT`, `auto`),
//! the native one serving the port from the tunnel's own process, against the SSM simulator and PostgreSQL.

use std::time::Duration;

use declastruct_test_support::Postgres;
use declastruct_tunnel::{find_port_holder, is_port_in_use, read_process};

use crate::apply::{World, assert_success};
use crate::support::{manifest, stderr, stdout, venv_bin, wait_for};

/// the tunnel's row of `status --json`
fn tunnel_row(world: &World) -> serde_json::Value {
    let status = world.sandbox.run(&["status", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    rows[2].clone()
}

/// `auto` on a machine without the session-manager-plugin is the native transport (not "install the plugin"):
/// the tunnel's supervisor itself serves the port, on both loopback families for `localhost`, `select 1` answers,
/// `status` says `native`, and closing it ends the session with TerminateSession
#[test]
fn auto_without_the_plugin_opens_a_native_tunnel() {
    let mut world = World::new(true);
    // the real AWS CLI is there, the plugin is not
    let path = std::env::var("PATH").unwrap_or_default();
    world
        .sandbox
        .set_env("PATH", &format!("{}:{path}", venv_bin().display()));
    world.declare("running", "OPEN");
    let applied = world.apply();
    assert_success(&applied);
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    let row = tunnel_row(&world);
    assert_eq!(row["transport"], "native", "{row}");
    let holder = find_port_holder(world.port).expect("the port's holder");
    let process = read_process(holder.pid).expect("its process");
    assert!(
        process.is_supervisor(),
        "the supervisor holds the websocket and the listener itself: {holder}"
    );
    assert!(
        std::net::TcpStream::connect(("::1", world.port)).is_ok()
            || std::net::TcpListener::bind(("::1", 0)).is_err(),
        "localhost listens on ::1 too (where the machine has IPv6)"
    );
    let sessions = world.sim.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");

    world.declare("running", "CLOSED");
    assert_success(&world.apply());
    assert!(!is_port_in_use(world.port));
    assert!(
        wait_for(Duration::from_secs(10), || world
            .sim
            .sessions()
            .iter()
            .all(|session| !session.status.is_active())),
        "the session ended: {:?}",
        world.sim.sessions()
    );
    assert!(
        world.sim.counts().terminations_by_api >= 1,
        "closed with TerminateSession: {:?}",
        world.sim.counts()
    );
}

/// `via.transport: native` in the manifest wins over an installed plugin; `via.transport: plugin` uses it; the
/// plan shows the change of transport and `--replace` reopens the tunnel with the other one
#[test]
fn the_manifest_chooses_the_transport() {
    let world = World::new(true);
    let with = |transport: &str| {
        manifest("running", "OPEN", world.port).replace(
            "      bastion: { exid: vpc-main-bastion }\n",
            &format!("      bastion: {{ exid: vpc-main-bastion }}\n      transport: {transport}\n"),
        )
    };
    world.sandbox.write("declastruct.yml", &with("native"));
    assert_success(&world.apply());
    assert_eq!(tunnel_row(&world)["transport"], "native");
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));

    world.sandbox.write("declastruct.yml", &with("plugin"));
    let plan = world.sandbox.run(&["plan"]);
    let shown = stdout(&plan);
    assert!(
        shown.contains("REPLACE")
            && shown.contains("-transport: native")
            && shown.contains("+transport: plugin (forces a new session)"),
        "the plan shows the transport change as a replacement:\n{shown}{}",
        stderr(&plan)
    );
    assert_success(&world.apply());
    assert_eq!(tunnel_row(&world)["transport"], "plugin");
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
}

/// `from.host` beyond loopback only with `from.expose: true` (native transport), which the plan warns about:
/// without it (or with `via.transport: plugin`) validate refuses naming the fix; with it the tunnel listens on the
/// wildcard address and answers there
#[test]
fn an_exposed_tunnel_needs_expose_and_the_native_transport_and_is_warned_about() {
    let world = World::new(true);
    let on = |host: &str, extra: &str| {
        manifest("running", "OPEN", world.port).replace(
            "      host: localhost\n",
            &format!("      host: {host}\n{extra}"),
        )
    };
    world.sandbox.write("declastruct.yml", &on("0.0.0.0", ""));
    let refused = world.sandbox.run(&["validate"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("`0.0.0.0` is not a loopback address")
            && stderr(&refused).contains("add `expose: true` under `from:`"),
        "{}",
        stderr(&refused)
    );
    world.sandbox.write(
        "declastruct.yml",
        &on("0.0.0.0", "      expose: true\n").replace(
            "      bastion: { exid: vpc-main-bastion }\n",
            "      bastion: { exid: vpc-main-bastion }\n      transport: plugin\n",
        ),
    );
    let plugin = world.sandbox.run(&["validate"]);
    assert_eq!(plugin.status.code(), Some(1));
    assert!(
        stderr(&plugin).contains("needs the native transport"),
        "{}",
        stderr(&plugin)
    );

    world
        .sandbox
        .write("declastruct.yml", &on("0.0.0.0", "      expose: true\n"));
    let plan = world.sandbox.run(&["plan"]);
    assert!(
        stdout(&plan).contains(&format!(
            "warning: from.expose: listens on 0.0.0.0:{}, reachable by anyone who reaches that address",
            world.port
        )),
        "{}",
        stdout(&plan)
    );
    assert_success(&world.apply());
    assert_eq!(tunnel_row(&world)["transport"], "native");
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    let in_sync = world.sandbox.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(in_sync.status.code(), Some(0), "{}", stdout(&in_sync));
}
