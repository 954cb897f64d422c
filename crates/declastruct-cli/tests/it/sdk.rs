use std::path::PathBuf;

use declastruct_tunnel::is_port_in_use;

use crate::apply::World;
use crate::support::{stderr, stdout};

/// target/debug/examples/sdk_tunnel, built by `cargo test --workspace` beside the test binaries
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|folder| folder.join("examples").join(name))
        .expect("target folder");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `scripts/test`",
        path.display()
    );
    path
}

#[test]
fn the_sdk_example_opens_queries_and_closes_a_tunnel() {
    let world = World::new(false);
    let command = world.sandbox.command(&[]);
    let output = std::process::Command::new(example("sdk_tunnel"))
        .current_dir(world.sandbox.dir.path())
        .env_clear()
        .envs(
            command
                .get_envs()
                .filter_map(|(key, value)| value.map(|value| (key.to_owned(), value.to_owned()))),
        )
        .env("DECLASTRUCT_EXAMPLE_PORT", world.port.to_string())
        .env("PGUSER", "postgres")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the example");
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let text = stdout(&output);
    assert!(
        text.contains(&format!("opened localhost:{}", world.port)),
        "{text}"
    );
    assert!(text.contains("select 1 -> 1"), "{text}");
    assert!(text.contains("status: OPEN\nstatus: CLOSED"), "{text}");
    assert_eq!(
        world
            .moto
            .instance_state(crate::support::REGION, &world.instance_id),
        "running"
    );
    assert!(!is_port_in_use(world.port));
    assert!(world.metas().is_empty());
}
