use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for_port};

/// .what = a real PostgreSQL server on a free loopback port, in a temporary folder, stopped when dropped
/// .why = a tunnel is OPEN only when the database answers through it: tests need a real database behind it
pub struct Postgres {
    /// the port it listens on (127.0.0.1)
    pub port: u16,
    folder: tempfile::TempDir,
    bin: PathBuf,
}

/// the newest /usr/lib/postgresql/*/bin, or the PATH
fn postgres_bin() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    candidates.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|version| version.to_str())
            .and_then(|version| version.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.pop().unwrap_or_default()
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

impl Postgres {
    /// .what = initdb and pg_ctl start, as the `postgres` user when running as root (PostgreSQL refuses root)
    /// .why = the database behind the tunnel in end-to-end tests
    pub fn start() -> Self {
        Self::start_with_auth(None)
    }

    /// .what = a server that asks every client for a password (scram-sha-256); the superuser `postgres` has
    /// `superuser_password`
    /// .why = tests of the credentials `connect` fetches: a wrong or missing password is refused, as in RDS
    pub fn start_with_passwords(superuser_password: &str) -> Self {
        Self::start_with_auth(Some(superuser_password))
    }

    fn start_with_auth(superuser_password: Option<&str>) -> Self {
        let bin = postgres_bin();
        let folder = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
        if running_as_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .unwrap_or_else(|| {
                    panic!("no `postgres` user: run `scripts/test`, which installs PostgreSQL")
                });
            nix::unistd::chown(folder.path(), Some(user.uid), Some(user.gid))
                .unwrap_or_else(|error| panic!("chown: {error}"));
        }
        let port = free_port();
        let postgres = Self { port, folder, bin };
        let data = postgres.data();
        let password_file = postgres.folder.path().join("superuser.password");
        let mut initdb: Vec<String> = ["-D", &data, "-U", "postgres", "--no-sync", "-E", "UTF8"]
            .iter()
            .map(|word| (*word).to_string())
            .collect();
        match superuser_password {
            None => initdb.extend(["-A".to_string(), "trust".to_string()]),
            Some(password) => {
                std::fs::write(&password_file, password)
                    .unwrap_or_else(|error| panic!("password file: {error}"));
                if running_as_root()
                    && let Ok(Some(user)) = nix::unistd::User::from_name("postgres")
                {
                    let _ = nix::unistd::chown(&password_file, Some(user.uid), Some(user.gid));
                }
                initdb.extend([
                    "-A".to_string(),
                    "scram-sha-256".to_string(),
                    format!("--pwfile={}", password_file.display()),
                ]);
            }
        }
        let initdb: Vec<&str> = initdb.iter().map(String::as_str).collect();
        postgres.run_checked("initdb", &initdb);
        let _ = std::fs::remove_file(&password_file);
        postgres.run_checked(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &postgres
                    .folder
                    .path()
                    .join("server.log")
                    .display()
                    .to_string(),
                "-o",
                &format!(
                    "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                    postgres.folder.path().display()
                ),
                "-w",
                "start",
            ],
        );
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "PostgreSQL did not start on port {port}"
        );
        postgres
    }

    /// .what = stops the server (fast shutdown); the folder stays until the fixture is dropped
    /// .why = tests of a tunnel whose database stops answering
    pub fn stop(&self) {
        let data = self.data();
        self.run_checked("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    fn data(&self) -> String {
        self.folder.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::io::Result<Output> {
        let program = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .current_dir(self.folder.path())
            .output()
    }

    fn run_checked(&self, tool: &str, args: &[&str]) {
        let output = self.run(tool, args).unwrap_or_else(|error| {
            panic!("{tool}: {error}: run `scripts/test`, which installs PostgreSQL")
        });
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// .what = runs `psql -c QUERY` against 127.0.0.1:`port` and returns its trimmed output, or its error
    /// .why = a real PostgreSQL client proves the database answers through a tunnel
    pub fn psql(port: u16, query: &str) -> Result<String, String> {
        Self::psql_as(port, "postgres", None, query)
    }

    /// .what = `psql` as `user` with `password`
    /// .why = servers started with passwords refuse the password-less `psql`
    pub fn psql_as(
        port: u16,
        user: &str,
        password: Option<&str>,
        query: &str,
    ) -> Result<String, String> {
        let mut command = Command::new("psql");
        if let Some(password) = password {
            command.env("PGPASSWORD", password);
        }
        let output = command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-tAc",
                query,
            ])
            .env("PGCONNECT_TIMEOUT", "5")
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("psql: {error}"))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}
