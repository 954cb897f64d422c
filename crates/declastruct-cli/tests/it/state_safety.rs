//! "State and inputs that cannot be turned against the user", the tunnel-state half: private state folders, links
//! never followed, bounded reads of records and logs, a log bounded by bytes written, a full disk named, session
//! output read as bytes, and a port taken during `--replace` named; through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use declastruct_test_support::Postgres;
use declastruct_tunnel::{find_port_holder, is_port_in_use};

use crate::apply::{World, assert_success};
use crate::assert_shown;
use crate::support::{fake_aws_cli, stderr, stdout, wait_for};

/// a program of the test's own as `DECLASTRUCT_AWS_CLI`: a shell script that ends by running the session
/// stand-in with its arguments (the user's override, which may be any program)
fn wrap_the_session(world: &mut World, script: &str) {
    world.use_fake_aws_cli();
    let path = world.sandbox.path("aws-wrapper");
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    world.sandbox.set_env(
        "DECLASTRUCT_REAL_AWS_CLI",
        &fake_aws_cli().display().to_string(),
    );
    world
        .sandbox
        .set_env("DECLASTRUCT_AWS_CLI", &path.display().to_string());
}

fn the_only(folder: &Path, extension: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(folder)
        .expect("tunnels folder")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().and_then(|found| found.to_str()) == Some(extension))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().expect("one")
}

fn tunnels(world: &World) -> PathBuf {
    world.sandbox.home().join("tunnels")
}

/// item 1: a symlink planted at `{hash}.log` (or `.meta`) is never followed: its victim survives byte for byte
/// every command and the supervisor's log cuts
#[test]
fn a_link_planted_in_the_state_folder_never_touches_its_target() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let victim = world.sandbox.path("victim.bin");
    let contents: Vec<u8> = (0..2_280_000u32).map(|index| (index % 251) as u8).collect();
    std::fs::write(&victim, &contents).expect("victim");
    let log = the_only(&tunnels(&world), "log");
    std::fs::remove_file(&log).expect("remove the log");
    std::os::unix::fs::symlink(&victim, &log).expect("plant the link");

    // the supervisor cuts its log every second, through its own descriptor
    std::thread::sleep(Duration::from_secs(3));
    let address = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let logs = world.sandbox.run(&["logs", &address]);
    assert_eq!(logs.status.code(), Some(1), "{}", stderr(&logs));
    assert!(
        stderr(&logs).contains("a symbolic link"),
        "{}",
        stderr(&logs)
    );
    assert_success(&world.sandbox.run(&["status"]));
    world.declare("running", "CLOSED");
    assert_success(&world.apply());
    assert_eq!(
        std::fs::read(&victim).expect("victim"),
        contents,
        "byte for byte"
    );
}

/// item 1: a state folder another user owns, or others can write, is refused by every command that reads it,
/// naming the folder and the fix; it is never chmod'ed
#[test]
fn a_state_folder_that_is_not_private_is_refused_and_left_alone() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    let tunnels = tunnels(&world);
    std::fs::create_dir_all(&tunnels).expect("tunnels");
    std::fs::set_permissions(&tunnels, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    for command in [
        &["plan"][..],
        &["status", "--all"],
        &["apply", "--auto-approve"],
    ] {
        let refused = world.sandbox.run(command);
        assert_shown!("state_not_private", refused);
    }
    let mode = std::fs::metadata(&tunnels)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o777, "left as it was");
    assert!(!is_port_in_use(world.port), "nothing was opened");

    // a link to a folder of another user
    std::fs::remove_dir(&tunnels).expect("remove");
    let foreign = world.sandbox.path("foreign");
    std::fs::create_dir(&foreign).expect("foreign");
    nix::unistd::chown(&foreign, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
    std::fs::set_permissions(&foreign, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink(&foreign, &tunnels).expect("link");
    let refused = world.sandbox.run(&["status", "--all"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("belongs to another user (uid 65534"),
        "{}",
        stderr(&refused)
    );
    let mode = std::fs::metadata(&foreign)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o755, "the foreign folder is never chmod'ed");
}

/// item 2: a `.meta` or `.log` that is `/dev/zero`, a FIFO, or a 2 GB sparse file is refused at once, under a
/// memory limit that reading it whole would break
#[test]
fn records_and_logs_are_read_within_bounds() {
    let world = World::new(true);
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let meta = the_only(&tunnels(&world), "meta");
    let log = the_only(&tunnels(&world), "log");
    let run_limited = |args: &str| {
        world
            .sandbox
            .shell(&format!("ulimit -v 2000000; exec \"$DECLASTRUCT\" {args}"))
            .output()
            .expect("run")
    };
    for (name, plant) in [
        ("a link to /dev/zero", 0),
        ("a FIFO", 1),
        ("a 2 GB sparse file", 2),
    ] {
        std::fs::remove_file(&meta).expect("remove the record");
        match plant {
            0 => std::os::unix::fs::symlink("/dev/zero", &meta).expect("link"),
            1 => nix::unistd::mkfifo(
                &meta,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .expect("fifo"),
            _ => std::fs::File::create(&meta)
                .and_then(|file| file.set_len(2 << 30))
                .expect("sparse"),
        }
        let status = run_limited("status --all --json");
        assert_success(&status);
        let rows: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
        let reason = rows[0]["healthReason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(reason.contains("its record is damaged"), "{name}: {reason}");
    }
    std::fs::remove_file(&log).expect("remove the log");
    std::os::unix::fs::symlink("/dev/zero", &log).expect("link");
    assert_success(&run_limited("status --all"));
    world.declare("running", "CLOSED");
    assert_success(&world.apply());
}

/// item 3: a session that prints as fast as it can never grows its log past its bound (1 MiB) by more than one
/// of declastruct's own lines, and the tunnel keeps serving
#[test]
fn a_chatty_session_never_grows_its_log_past_its_bound() {
    let mut world = World::new(true);
    wrap_the_session(
        &mut world,
        "\"$DECLASTRUCT_REAL_AWS_CLI\" \"$@\" &\n\
         sleep 1\n\
         while :; do yes 'a chatty session prints this line again and again and again' | head -c 400000; done",
    );
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    let log = the_only(&tunnels(&world), "log");
    let mut largest = 0;
    for _ in 0..400 {
        largest = largest.max(std::fs::metadata(&log).map_or(0, |metadata| metadata.len()));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        largest <= 1024 * 1024 + 1024,
        "the log reached {largest} bytes"
    );
    assert!(largest > 256 * 1024, "the session did print: {largest}");
    let tail = String::from_utf8_lossy(&std::fs::read(&log).expect("log")).into_owned();
    assert!(
        tail.contains("earlier lines were dropped"),
        "the supervisor cut it back"
    );
    assert_eq!(Postgres::psql(world.port, "select 1").as_deref(), Ok("1"));
    let status = world.sandbox.run(&["status"]);
    assert_success(&status);
    world.declare("running", "CLOSED");
    assert_success(&world.apply());
}

/// item 8: with the state folder on a full filesystem, the open fails naming the full disk, and no temporary file
/// is left behind
#[test]
fn a_full_disk_is_named_and_leaves_no_temporary_file() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting a small filesystem needs root");
        return;
    }
    let mut world = World::new(true);
    let home = world.sandbox.path("small");
    std::fs::create_dir(&home).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs"])
        .arg(&home)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(home.clone());
    std::fs::create_dir(home.join("tunnels")).expect("tunnels");
    std::fs::set_permissions(home.join("tunnels"), std::fs::Permissions::from_mode(0o700))
        .expect("chmod");
    // fill it
    let _ = std::fs::write(home.join("filler"), vec![0u8; 256 * 1024]);
    world
        .sandbox
        .set_env("DECLASTRUCT_HOME", &home.display().to_string());
    world.declare("running", "OPEN");
    let failed = world.apply();
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    assert!(
        stderr(&failed).contains("declastruct::state::disk_full")
            || stderr(&failed).contains("is full (ENOSPC)"),
        "{}",
        stderr(&failed)
    );
    let left: Vec<String> = std::fs::read_dir(home.join("tunnels"))
        .expect("tunnels")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    assert!(!is_port_in_use(world.port));
    drop(world);
}

/// item 9: bytes that are not UTF-8 before and after the plugin's lines hide neither its port line nor the
/// restart count
#[test]
fn session_output_that_is_not_utf8_hides_nothing() {
    let mut world = World::new(true);
    wrap_the_session(
        &mut world,
        "printf '\\377\\376 not text\\n'\n\"$DECLASTRUCT_REAL_AWS_CLI\" \"$@\"\nstatus=$?\nprintf '\\377\\376\\n'\nexit $status",
    );
    // each session ends after 2 s, and is restarted
    world
        .sandbox
        .set_env("DECLASTRUCT_FAKE_SSM_TIMEOUT_SECONDS", "2");
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    assert!(
        wait_for(Duration::from_secs(20), || {
            let output = world.sandbox.run(&["status", "--json"]);
            let rows: serde_json::Value =
                serde_json::from_slice(&output.stdout).unwrap_or_default();
            rows[2]["restarts"].as_u64().unwrap_or(0) >= 1
        }),
        "the restart is counted"
    );
    world.declare("running", "CLOSED");
    assert_success(&world.apply());
}

/// item 10: another program takes the port while `--replace` restarts the tunnel: the error names it and says
/// the earlier session was closed
#[test]
fn a_port_taken_during_replace_is_named() {
    let mut world = World::new(true);
    let grab = world.sandbox.path("grab");
    let script = format!(
        "if [ -e {grab} ]; then rm -f {grab}; env -u DECLASTRUCT_TUNNEL setsid python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 & i=0; while ! (echo > /dev/tcp/127.0.0.1/{port}) 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; fi\nexec \"$DECLASTRUCT_REAL_AWS_CLI\" \"$@\"",
        grab = grab.display(),
        port = world.port
    );
    wrap_the_session(&mut world, &script);
    world.sandbox.set_env("DECLASTRUCT_FAKE_SSM_MODE", "basic");
    world.declare("running", "OPEN");
    assert_success(&world.apply());
    std::fs::write(&grab, "").expect("grab");
    let address = format!("vpc-main-bastion.ahbodedb.{}", world.port);
    let replaced = world
        .sandbox
        .run(&["apply", "--auto-approve", "--replace", &address]);
    let taker = find_port_holder(world.port).map(|holder| holder.pid);
    struct KillAtEnd(Option<u32>);
    impl Drop for KillAtEnd {
        fn drop(&mut self) {
            if let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let _taker = KillAtEnd(taker);
    assert_eq!(replaced.status.code(), Some(1), "{}", stdout(&replaced));
    let text = stderr(&replaced);
    assert!(
        text.contains("was taken meanwhile by pid")
            && text.contains("python3")
            && text.contains("earlier session had been closed first"),
        "{text}"
    );
}
