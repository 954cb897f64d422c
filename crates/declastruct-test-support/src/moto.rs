use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};

use crate::{free_port, wait_for_port};

/// .what = a moto server on a free loopback port, stopped when dropped
/// .why = EC2 and RDS as a user's AWS would answer, without an AWS account
pub struct Moto {
    /// the port it listens on
    pub port: u16,
    child: Child,
    /// holds moto's request recording, away from any working tree
    _folder: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

/// .what = an instance seeded into moto
/// .why = tests need its id to check what apply did
#[derive(Debug, Clone)]
pub struct SeededBastion {
    /// the instance id
    pub instance_id: String,
}

impl Moto {
    /// .what = starts `moto_server` and waits until it answers
    /// .why = every integration test gets its own, so none sees another's state
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// .what = starts `moto_server` with extra environment, e.g. `INITIAL_NO_AUTH_ACTION_COUNT`
    /// .why = tests of AWS failures make moto enforce credentials after some requests
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let folder = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
        let child = Command::new(moto_server_program())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_RECORDER_FILEPATH", folder.path().join("recording"))
            .current_dir(folder.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start moto_server ({error}): run `scripts/setup`, which installs it into .venv, or `scripts/test`")
            });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("runtime: {error}"));
        let moto = Self {
            port,
            child,
            _folder: folder,
            runtime,
        };
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "moto_server did not start on port {port}"
        );
        moto
    }

    /// .what = the endpoint for AWS_ENDPOINT_URL
    /// .why = the binary and the session stand-in reach moto through it
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// .what = the environment a process needs to talk to this moto in `region`
    /// .why = fake credentials, the endpoint, and no instance-metadata lookups
    pub fn env(&self, region: &str) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", region.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect()
    }

    /// .what = an SDK configuration for this moto in `region`, with test credentials
    /// .why = tests that call the SDK directly
    pub fn sdk_config(&self, region: &str) -> aws_config::SdkConfig {
        self.runtime.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new(region.to_string()))
                .endpoint_url(self.endpoint())
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    "testing", "testing", None, None, "test",
                ))
                .load(),
        )
    }

    /// .what = an EC2 client on this moto
    /// .why = seeding and checking instances
    pub fn ec2(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config(region))
    }

    /// .what = an RDS client on this moto
    /// .why = seeding clusters
    pub fn rds(&self, region: &str) -> aws_sdk_rds::Client {
        aws_sdk_rds::Client::new(&self.sdk_config(region))
    }

    /// .what = runs a future on the fixture's runtime
    /// .why = tests stay synchronous while seeding through the async SDK
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// .what = seeds an instance tagged `exid`, in state running or stopped
    /// .why = the bastion a manifest references
    pub fn seed_bastion(&self, region: &str, exid: &str, running: bool) -> SeededBastion {
        let ec2 = self.ec2(region);
        self.block_on(async {
            let response = ec2
                .run_instances()
                .image_id("ami-12c6146b")
                .instance_type(InstanceType::T3Micro)
                .min_count(1)
                .max_count(1)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Instance)
                        .tags(Tag::builder().key("exid").value(exid).build())
                        .build(),
                )
                .send()
                .await
                .unwrap_or_else(|error| panic!("run_instances: {error:?}"));
            let instance_id = response
                .instances()
                .first()
                .and_then(|instance| instance.instance_id())
                .unwrap_or_else(|| panic!("run_instances returned no instance"))
                .to_string();
            if !running {
                ec2.stop_instances()
                    .instance_ids(&instance_id)
                    .send()
                    .await
                    .unwrap_or_else(|error| panic!("stop_instances: {error:?}"));
            }
            SeededBastion { instance_id }
        })
    }

    /// .what = terminates an instance
    /// .why = a bastion that is gone: a tunnel through it declared CLOSED must still close
    pub fn terminate_instance(&self, region: &str, instance_id: &str) {
        let ec2 = self.ec2(region);
        self.block_on(async {
            ec2.terminate_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .unwrap_or_else(|error| panic!("terminate_instances: {error:?}"));
        });
    }

    /// .what = deletes a cluster
    /// .why = a far end that is gone: a tunnel into it declared CLOSED must still close
    pub fn delete_cluster(&self, region: &str, name: &str) {
        let rds = self.rds(region);
        self.block_on(async {
            rds.delete_db_cluster()
                .db_cluster_identifier(name)
                .skip_final_snapshot(true)
                .send()
                .await
                .unwrap_or_else(|error| panic!("delete_db_cluster: {error:?}"));
        });
    }

    /// .what = sets tag `key` = `value` on an instance
    /// .why = tests stand in for another machine's declastruct (its `declastruct:in-use` heartbeat)
    pub fn tag_instance(&self, region: &str, instance_id: &str, key: &str, value: &str) {
        let ec2 = self.ec2(region);
        self.block_on(async {
            ec2.create_tags()
                .resources(instance_id)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(key)
                        .value(value)
                        .build(),
                )
                .send()
                .await
                .expect("create tags");
        });
    }

    /// .what = the state name of an instance, e.g. `running`
    /// .why = tests check that apply started or stopped the bastion
    pub fn instance_state(&self, region: &str, instance_id: &str) -> String {
        let ec2 = self.ec2(region);
        self.block_on(async {
            ec2.describe_instances()
                .instance_ids(instance_id)
                .send()
                .await
                .ok()
                .and_then(|response| {
                    response
                        .reservations()
                        .iter()
                        .flat_map(aws_sdk_ec2::types::Reservation::instances)
                        .next()
                        .and_then(|instance| instance.state())
                        .and_then(|state| state.name())
                        .map(|name| name.as_str().to_string())
                })
                .unwrap_or_default()
        })
    }

    /// .what = seeds an aurora-postgresql cluster and returns its writer endpoint and port
    /// .why = the cluster a manifest references
    pub fn seed_cluster(&self, region: &str, name: &str) -> (String, u16) {
        let rds = self.rds(region);
        self.block_on(async {
            let response = rds
                .create_db_cluster()
                .db_cluster_identifier(name)
                .engine("aurora-postgresql")
                .master_username("declastruct")
                .master_user_password("password123")
                .send()
                .await
                .unwrap_or_else(|error| panic!("create_db_cluster: {error:?}"));
            let cluster = response
                .db_cluster()
                .unwrap_or_else(|| panic!("no cluster returned"));
            (
                cluster.endpoint().unwrap_or_default().to_string(),
                cluster
                    .port()
                    .and_then(|port| u16::try_from(port).ok())
                    .unwrap_or(5432),
            )
        })
    }

    /// .what = seeds a plain postgres DB instance (in `cluster` when given) and returns its endpoint and port
    /// .why = the instance a manifest references
    pub fn seed_instance(&self, region: &str, name: &str, cluster: Option<&str>) -> (String, u16) {
        let rds = self.rds(region);
        self.block_on(async {
            let mut request = rds
                .create_db_instance()
                .db_instance_identifier(name)
                .db_instance_class("db.t3.micro")
                .engine(if cluster.is_some() {
                    "aurora-postgresql"
                } else {
                    "postgres"
                })
                .allocated_storage(20)
                .master_username("declastruct")
                .master_user_password("password123");
            if let Some(cluster) = cluster {
                request = request.db_cluster_identifier(cluster);
            }
            let response = request
                .send()
                .await
                .unwrap_or_else(|error| panic!("create_db_instance: {error:?}"));
            let instance = response
                .db_instance()
                .unwrap_or_else(|| panic!("no instance returned"));
            let endpoint = instance.endpoint();
            (
                endpoint
                    .and_then(|endpoint| endpoint.address())
                    .unwrap_or_default()
                    .to_string(),
                endpoint
                    .and_then(aws_sdk_rds::types::Endpoint::port)
                    .and_then(|port| u16::try_from(port).ok())
                    .unwrap_or(5432),
            )
        })
    }

    /// .what = stores a Secrets Manager secret and returns its ARN
    /// .why = the secret `connect.password.secret` names
    pub fn seed_secret(&self, region: &str, name: &str, text: &str) -> String {
        let secrets = aws_sdk_secretsmanager::Client::new(&self.sdk_config(region));
        self.block_on(async {
            secrets
                .create_secret()
                .name(name)
                .secret_string(text)
                .send()
                .await
                .unwrap_or_else(|error| panic!("create_secret: {error:?}"))
                .arn()
                .unwrap_or_default()
                .to_string()
        })
    }

    /// .what = a cluster's reader endpoint
    /// .why = tests of tunnels into `endpoint: reader`
    pub fn reader_endpoint(&self, region: &str, name: &str) -> String {
        let rds = self.rds(region);
        self.block_on(async {
            rds.describe_db_clusters()
                .db_cluster_identifier(name)
                .send()
                .await
                .ok()
                .and_then(|response| {
                    response
                        .db_clusters()
                        .first()
                        .and_then(|cluster| cluster.reader_endpoint())
                        .map(str::to_string)
                })
                .unwrap_or_default()
        })
    }

    /// .what = starts counting requests at moto (its recorder), from zero
    /// .why = request counts are measured where AWS would see them, not in our own client
    pub fn start_counting(&self) {
        self.http("POST", "/moto-api/recorder/reset-recording");
        self.http("POST", "/moto-api/recorder/start-recording");
    }

    /// .what = the AWS requests moto received since `start_counting`, as their `Action`s
    /// .why = proves how many calls a command made, and which
    pub fn counted_requests(&self) -> Vec<String> {
        self.recorded_bodies()
            .iter()
            .map(|body| {
                body.split('&')
                    .find_map(|pair| pair.strip_prefix("Action="))
                    .unwrap_or("(unknown)")
                    .to_string()
            })
            .collect()
    }

    /// .what = the bodies of the AWS requests moto received since `start_counting`
    /// .why = request-shape checks read the filters and identifiers that were sent
    pub fn recorded_bodies(&self) -> Vec<String> {
        use base64::Engine;
        let body = self.http("GET", "/moto-api/recorder/download-recording");
        body.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let record: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
                let body = record["body"].as_str().unwrap_or_default();
                if record["body_encoded"].as_bool() == Some(true) {
                    base64::engine::general_purpose::STANDARD
                        .decode(body)
                        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                        .unwrap_or_default()
                } else {
                    body.to_string()
                }
            })
            .collect()
    }

    fn http(&self, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .unwrap_or_else(|error| panic!("connect to moto: {error}"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|error| panic!("write to moto: {error}"));
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        if response.contains("Transfer-Encoding: chunked")
            || response.contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        }
    }
}

/// .what = the `moto_server` to start: the one on PATH, else the workspace's `.venv/bin/moto_server`
/// .why = `scripts/setup` installs moto into the project's own virtual environment, so that `cargo test` finds it
/// after setup even in a shell that did not source it
fn moto_server_program() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|folder| folder.join("moto_server"))
            .find(|candidate| candidate.is_file())
    });
    let in_venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    on_path
        .or_else(|| in_venv.is_file().then_some(in_venv))
        .unwrap_or_else(|| PathBuf::from("moto_server"))
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
