//! "Connect, not just tunnel": credentials from Secrets Manager, the environment and RDS IAM, `exec` and `env`,
//! through the real binary against moto, a PostgreSQL that asks for passwords, and the session stand-in.

use std::io::Write;
use std::process::Stdio;

use declastruct_test_support::Postgres;
use declastruct_tunnel::is_port_in_use;

use crate::apply::{World, assert_success};
use crate::support::{REGION, stderr, stdout};

const SUPERUSER_PASSWORD: &str = "superuser-secret-1";
/// a password with the characters a URL must encode
const APP_PASSWORD: &str = "p@ss/w%rd-7Qx";

/// a world whose PostgreSQL asks for passwords, with a role `app` and a Secrets Manager secret holding it
fn world_with_passwords() -> World {
    let postgres = Postgres::start_with_passwords(SUPERUSER_PASSWORD);
    Postgres::psql_as(
        postgres.port,
        "postgres",
        Some(SUPERUSER_PASSWORD),
        &format!("create role app login password '{APP_PASSWORD}'"),
    )
    .expect("create role app");
    let world = World::with_postgres(true, postgres);
    world.moto.seed_secret(
        REGION,
        "prod/app-db",
        &serde_json::json!({"username": "app", "password": APP_PASSWORD, "engine": "postgres"})
            .to_string(),
    );
    world
}

/// the contract's manifest, its tunnel with `connect`
fn declare(world: &World, status: &str, connect: &str) {
    let text = crate::support::manifest("running", status, world.port);
    world
        .sandbox
        .write("declastruct.yml", &format!("{text}    connect:\n{connect}"));
}

fn address(world: &World) -> String {
    format!("vpc-main-bastion.ahbodedb.{}", world.port)
}

const FROM_SECRET: &str = "      database: postgres\n      password: { secret: prod/app-db }\n";

/// must-show 1: `exec` logs in with the secret's user and password; a tunnel closed before is closed after, one
/// open before stays open
#[test]
fn exec_logs_in_with_the_secret_and_leaves_tunnels_as_they_were() {
    let world = world_with_passwords();
    declare(&world, "CLOSED", FROM_SECRET);
    let output = world
        .sandbox
        .run(&["exec", "--", "psql", "-tAc", "select current_user"]);
    assert_success(&output);
    assert_eq!(stdout(&output).trim(), "app");
    assert!(!is_port_in_use(world.port), "closed again");
    assert!(world.metas().is_empty());

    declare(&world, "OPEN", FROM_SECRET);
    assert_success(&world.apply());
    let supervisor = world.only_meta().pid;
    let output = world.sandbox.run(&[
        "exec",
        &address(&world),
        "--",
        "psql",
        "-tAc",
        "select current_user",
    ]);
    assert_success(&output);
    assert_eq!(stdout(&output).trim(), "app");
    assert_eq!(world.only_meta().pid, supervisor, "left open, untouched");
    assert_eq!(
        Postgres::psql_as(world.port, "app", Some(APP_PASSWORD), "select 1").as_deref(),
        Ok("1")
    );
}

/// must-show 2: exec exits with the command's status; when the tunnel cannot open, it exits 1 and the command
/// does not run
#[test]
fn exec_passes_the_status_and_never_runs_without_its_tunnel() {
    let mut world = World::new(true);
    world.declare("running", "CLOSED");
    let seven = world.sandbox.run(&["exec", "--", "sh", "-c", "exit 7"]);
    assert_eq!(seven.status.code(), Some(7), "{}", stderr(&seven));

    world.refuse_first_sessions(100_000);
    world
        .sandbox
        .set_env("DECLASTRUCT_AGENT_TIMEOUT_SECONDS", "2");
    let marker = world.sandbox.path("ran");
    let refused = world
        .sandbox
        .run(&["exec", "--", "touch", &marker.display().to_string()]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(!marker.exists(), "the command did not run");
    assert!(
        stderr(&refused).contains("the command was not run"),
        "{}",
        stderr(&refused)
    );
    assert!(world.metas().is_empty());
}

/// with several tunnels, the command gets each one's URL as `DECLASTRUCT_<SLUG>_URL`, and every tunnel opened for
/// it is closed afterwards
#[test]
fn exec_with_several_tunnels_names_each_ones_url() {
    let world = World::new(true);
    let second = declastruct_test_support::free_port();
    world.sandbox.write(
        "declastruct.yml",
        &crate::support::manifest_with_ports("running", "CLOSED", &[world.port, second]),
    );
    let output = world.sandbox.run(&["exec", "--", "env"]);
    assert_success(&output);
    for port in [world.port, second] {
        let line = format!(
            "DECLASTRUCT_VPC_MAIN_BASTION_AHBODEDB_{port}_URL=postgresql://127.0.0.1:{port}"
        );
        assert!(
            stdout(&output).lines().any(|seen| seen.starts_with(&line)),
            "{line} in:\n{}",
            stdout(&output)
        );
        assert!(!is_port_in_use(port), "{port} closed again");
    }
    assert!(world.metas().is_empty());
}

/// a signal to `exec` (a cancelled CI job's SIGTERM) reaches the command, whose own exit status `exec` returns; the
/// tunnel opened for it is closed afterwards
#[test]
fn exec_forwards_a_signal_to_the_command_and_returns_its_status() {
    let world = World::new(true);
    world.declare("running", "CLOSED");
    let started = world.sandbox.path("started");
    let script = format!(
        // at most 30 s: a signal that never arrives ends it with 0, which fails the test instead of hanging it
        "trap 'echo got TERM; exit 5' TERM; touch {}; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done",
        started.display()
    );
    let child = world
        .sandbox
        .command(&["exec", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("declastruct exec");
    assert!(
        crate::support::wait_for(std::time::Duration::from_secs(60), || started.exists()),
        "the command started within 60 s"
    );
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM to exec");
    let output = child.wait_with_output().expect("exec ends");
    assert_eq!(output.status.code(), Some(5), "{}", stderr(&output));
    assert!(stdout(&output).contains("got TERM"), "{}", stdout(&output));
    assert!(
        !is_port_in_use(world.port),
        "the tunnel opened for it is closed"
    );
    assert!(world.metas().is_empty());
}

/// must-show 3: `env --format json` gives DATABASE_URL with the password percent-encoded; the shell format
/// evaluates back to the same values
#[test]
fn env_prints_the_variables_of_an_open_tunnel() {
    let mut world = world_with_passwords();
    world.sandbox.set_env("APP_DB_PASSWORD", APP_PASSWORD);
    declare(
        &world,
        "OPEN",
        "      database: postgres\n      user: app\n      password: { env: APP_DB_PASSWORD }\n",
    );
    let closed = world.sandbox.run(&["env", &address(&world)]);
    assert_eq!(closed.status.code(), Some(1), "not open yet");
    assert_success(&world.apply());
    let json = world
        .sandbox
        .run(&["env", &address(&world), "--format", "json"]);
    assert_success(&json);
    let variables: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(
        variables["DATABASE_URL"],
        format!(
            "postgresql://app:p%40ss%2Fw%25rd-7Qx@127.0.0.1:{}/postgres",
            world.port
        )
    );
    assert_eq!(variables["PGPASSWORD"], APP_PASSWORD);
    assert_eq!(variables["PGHOST"], "127.0.0.1");
    assert_eq!(variables["PGPORT"], world.port.to_string());

    let shell = world.sandbox.run(&["env", &address(&world)]);
    assert_success(&shell);
    let script = format!("{}\npsql -tAc 'select current_user'\n", stdout(&shell));
    let output = std::process::Command::new("sh")
        .args(["-c", &script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("sh");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "app",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// a password read from the environment reaches `env` (here as a dotenv file) but not the tunnel's long-lived
/// processes, which never need it: their environment is left without that variable
#[test]
fn an_environment_password_stays_out_of_the_tunnels_processes() {
    let mut world = world_with_passwords();
    world.sandbox.set_env("APP_DB_PASSWORD", APP_PASSWORD);
    declare(
        &world,
        "OPEN",
        "      database: postgres\n      user: app\n      password: { env: APP_DB_PASSWORD }\n",
    );
    assert_success(&world.apply());
    let dotenv = world
        .sandbox
        .run(&["env", &address(&world), "--format", "dotenv"]);
    assert_success(&dotenv);
    assert!(
        stdout(&dotenv).contains(&format!("PGPASSWORD=\"{APP_PASSWORD}\"\n")),
        "{}",
        stdout(&dotenv)
    );
    assert!(
        stdout(&dotenv).contains(&format!("PGPORT=\"{}\"\n", world.port)),
        "{}",
        stdout(&dotenv)
    );
    let supervisor = world.only_meta().pid;
    let environ =
        std::fs::read(format!("/proc/{supervisor}/environ")).expect("the supervisor's environment");
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("DECLASTRUCT_TUNNEL="),
        "it is the supervisor's"
    );
    assert!(
        !environ.contains("APP_DB_PASSWORD="),
        "withheld from the supervisor"
    );
    assert!(
        !environ.contains(APP_PASSWORD),
        "the password is nowhere in it"
    );
}

/// the python that moto runs under, which has botocore: read from moto_server's own first line
fn python_with_botocore() -> String {
    let path = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|folder| folder.join("moto_server"))
                .find(|candidate| candidate.exists())
        })
        .expect("moto_server on PATH");
    let script = std::fs::read_to_string(&path).unwrap_or_default();
    match script
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("#!"))
    {
        Some(interpreter) if !interpreter.contains("/env") && !interpreter.contains("bash") => {
            interpreter.trim().to_string()
        }
        // a shim (pyenv) or `env python3`: the python on PATH
        _ => "python3".to_string(),
    }
}

/// must-show 4: the IAM token is the one botocore computes for the same time, credentials, region, host, port
/// and user, signed for the real endpoint (never 127.0.0.1)
#[test]
fn the_iam_token_is_what_botocore_signs() {
    let world = World::new(true);
    declare(
        &world,
        "OPEN",
        "      user: iam_app\n      database: postgres\n      password: { iam: true }\n",
    );
    assert_success(&world.apply());
    let json = world
        .sandbox
        .run(&["env", &address(&world), "--format", "json"]);
    assert_success(&json);
    let variables: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let token = variables["PGPASSWORD"].as_str().expect("a token");
    assert_eq!(variables["PGSSLMODE"], "require");
    let writer = world.only_meta().remote_host;
    assert!(
        token.starts_with(&format!("{writer}:5432/?Action=connect")),
        "{token}"
    );
    let date = token
        .split('&')
        .find_map(|pair| pair.strip_prefix("X-Amz-Date="))
        .expect("X-Amz-Date");
    let script = format!(
        r#"
import datetime, botocore.session, botocore.auth
when = datetime.datetime.strptime("{date}", "%Y%m%dT%H%M%SZ")
class Frozen(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return when
    @classmethod
    def now(cls, tz=None):
        return when.replace(tzinfo=tz) if tz else when
botocore.auth.datetime.datetime = Frozen
session = botocore.session.get_session()
session.set_credentials("testing", "testing")
client = session.create_client("rds", region_name="{REGION}")
print(client.generate_db_auth_token(DBHostname="{writer}", Port=5432, DBUsername="iam_app"))
"#
    );
    let mut python = std::process::Command::new(python_with_botocore())
        .arg("-")
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    let output = python.wait_with_output().expect("python");
    let expected = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(token, expected);
}

/// must-show 5: no secret appears in any log, tunnel record, plan document or `-v` output
#[test]
fn no_secret_is_written_or_printed_unless_asked_for() {
    let world = world_with_passwords();
    declare(&world, "OPEN", FROM_SECRET);
    let plan = world.sandbox.run(&["plan", "--json", "--out", "plan.json"]);
    assert_success(&plan);
    assert_success(&world.apply());
    let verbose = world
        .sandbox
        .run(&["-vvv", "exec", "--", "psql", "-tAc", "select current_user"]);
    assert_success(&verbose);
    assert_eq!(stdout(&verbose).trim(), "app");
    let status = world.sandbox.run(&["-vv", "status", "--json"]);
    let mut everything = format!(
        "{}{}{}{}{}",
        stdout(&plan),
        stderr(&plan),
        stderr(&verbose),
        stdout(&status),
        stderr(&status)
    );
    for entry in walk(&world.sandbox.home()) {
        everything.push_str(&String::from_utf8_lossy(
            &std::fs::read(&entry).unwrap_or_default(),
        ));
    }
    everything
        .push_str(&std::fs::read_to_string(world.sandbox.path("plan.json")).unwrap_or_default());
    assert!(
        everything.contains("prod/app-db"),
        "the secret's name is there, for context"
    );
    for secret in [APP_PASSWORD, "p%40ss%2Fw%25rd"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

/// every file under `folder`
fn walk(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// apply and status say how to connect
#[test]
fn apply_and_status_say_how_to_connect() {
    let world = World::new(true);
    declare(&world, "OPEN", "      user: app\n      database: appdb\n");
    let applied = world.apply();
    assert_success(&applied);
    let line = format!(
        "localhost:{} -> ahbodedb (writer) via {}: psql -h 127.0.0.1 -p {} -U app appdb",
        world.port, world.instance_id, world.port
    );
    assert!(stdout(&applied).contains(&line), "{}", stdout(&applied));
    let status = world.sandbox.run(&["status"]);
    assert!(stdout(&status).contains(&line), "{}", stdout(&status));
}
