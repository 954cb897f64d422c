//! The blueprint's usage example, in Rust: declare the bastion and cluster references, open a tunnel, run
//! `select 1` through it, read its status, close it.
//!
//! ```sh
//! cargo run --example sdk_tunnel
//! ```
//!
//! It uses the standard AWS configuration (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL, ...) and these
//! variables: DECLASTRUCT_EXAMPLE_BASTION (the bastion's `exid`, default `vpc-main-bastion`),
//! DECLASTRUCT_EXAMPLE_CLUSTER (default `ahbodedb`), DECLASTRUCT_EXAMPLE_PORT (default 7775), and PGUSER,
//! PGPASSWORD, PGDATABASE for the database (default user and database `postgres`).

use declastruct_aws::{
    AwsSettings, ContextAwsApi, DeclaredAwsVpcTunnel, Ec2InstanceRef, LoopbackHost, RdsClusterRef,
    TunnelMechanism, VpcTunnelFrom, VpcTunnelInto, VpcTunnelStatus, VpcTunnelVia, get_vpc_tunnel,
    run_supervisor_if_requested, set_vpc_tunnel,
};

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn setting(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Failure> {
    // the tunnel's supervisor is this program, started again: dispatch it before anything else
    run_supervisor_if_requested();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Failure> {
    // declare references
    let bastion =
        Ec2InstanceRef::by_exid(setting("DECLASTRUCT_EXAMPLE_BASTION", "vpc-main-bastion"));
    let cluster = RdsClusterRef::by_name(setting("DECLASTRUCT_EXAMPLE_CLUSTER", "ahbodedb"));
    let port: u16 = setting("DECLASTRUCT_EXAMPLE_PORT", "7775").parse()?;

    let tunnel = DeclaredAwsVpcTunnel {
        name: None,
        via: VpcTunnelVia {
            mechanism: TunnelMechanism::AwsSsm,
            bastion,
            transport: None,
        },
        into: VpcTunnelInto::cluster(cluster),
        from: VpcTunnelFrom {
            host: LoopbackHost::Localhost,
            port,
            expose: false,
        },
        status: None,
        pid: None,
        health: None,
        connect: None,
        idle_close: None,
    };
    let context = ContextAwsApi::load(&AwsSettings::default()).await?;

    // open the tunnel (starts the bastion if needed, waits until the database answers)
    let opened = set_vpc_tunnel(&tunnel.with_status(VpcTunnelStatus::Open, None), &context).await?;
    println!(
        "opened localhost:{port} (pid {})",
        opened.pid.unwrap_or_default()
    );

    // use the database at localhost:port; the tunnel persists even after this process exits
    let connection_string = format!(
        "host=127.0.0.1 port={port} user={} dbname={} password={} connect_timeout=5",
        setting("PGUSER", "postgres"),
        setting("PGDATABASE", "postgres"),
        setting("PGPASSWORD", "")
    );
    let (client, connection) =
        tokio_postgres::connect(&connection_string, tokio_postgres::NoTls).await?;
    let driver = tokio::spawn(connection);
    let one: i32 = client.query_one("select 1", &[]).await?.get(0);
    println!("select 1 -> {one}");
    drop(client);
    let _ = driver.await;

    // check the tunnel's status later
    let current = get_vpc_tunnel(&tunnel, &context).await?;
    println!(
        "status: {}",
        current.status.map_or("unknown", VpcTunnelStatus::as_str)
    );

    // close the tunnel
    let closed =
        set_vpc_tunnel(&tunnel.with_status(VpcTunnelStatus::Closed, None), &context).await?;
    println!(
        "status: {}",
        closed.status.map_or("unknown", VpcTunnelStatus::as_str)
    );
    Ok(())
}
