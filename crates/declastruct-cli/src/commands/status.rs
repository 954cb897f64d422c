use std::io::Write;
use std::process::ExitCode;

use declastruct_aws::internal::utils::{TunnelFiles, TunnelProcesses};
use declastruct_aws::internal::{VpcTunnelObservation, inspect_local_tunnel};
use declastruct_aws::{ContextAwsApi, VpcTunnelStatus};
use serde_json::{Value, json};

use crate::args::{Cli, StatusArgs};
use crate::commands::{EXIT_FAILURE, load_or_report, report};
use crate::manifest::{Manifest, ResourceDeclaration, VpcTunnelDeclaration};
use crate::progress::Progress;
use crate::resources::{Observed, observe};

/// .what = `declastruct status`: the live state of every declared resource; tunnels with pid, port, uptime, health
/// .why = one look tells whether the database is reachable, and if not, why; what runs on this machine is shown
/// even when AWS cannot be read, with the AWS reads that failed named
pub async fn run(cli: &Cli, args: &StatusArgs) -> ExitCode {
    let Some(manifest) = load_or_report(cli) else {
        return ExitCode::from(EXIT_FAILURE);
    };
    let progress = Progress::for_terminal(!args.json && !cli.quiet);
    let observed = match ContextAwsApi::load(&manifest.aws).await {
        Ok(context) => {
            let reading = progress.start(format!(
                "reading live state: ec2:DescribeInstances, rds:DescribeDBClusters at {}",
                context.endpoint("ec2")
            ));
            let observed = observe(&manifest, &context).await;
            drop(reading);
            observed
        }
        Err(error) => Err(vec![miette::Report::new(error)]),
    };
    let rows: Vec<Value> = match observed {
        Ok(resources) => resources.iter().map(row).collect(),
        Err(errors) => {
            for error in errors {
                eprintln!("{error:?}");
            }
            match local_rows(&manifest).await {
                Ok(rows) => {
                    eprintln!(
                        "warning: AWS could not be read (above); bastions and clusters are unknown, tunnels are shown from this machine"
                    );
                    rows
                }
                Err(error) => {
                    report(error);
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        }
    };
    let mut stdout = anstream::stdout();
    if args.json {
        let _ = writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let text = |value: &Value| match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            [
                format!("{} {}", text(&row["class"]), text(&row["slug"])),
                text(&row["status"]),
                text(&row["pid"]),
                text(&row["port"]),
                row["uptimeSeconds"]
                    .as_i64()
                    .map_or("-".into(), format_uptime),
                text(&row["restarts"]),
                match (&row["healthy"], &row["healthReason"]) {
                    (Value::Bool(true), Value::String(note)) => format!("healthy ({note})"),
                    (Value::Bool(true), _) => "healthy".into(),
                    (Value::Bool(false), reason) => format!("unhealthy: {}", text(reason)),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    let headers = [
        "RESOURCE", "STATUS", "PID", "PORT", "UPTIME", "RESTARTS", "HEALTH",
    ]
    .map(String::from);
    let widths: Vec<usize> = (0..7)
        .map(|column| {
            std::iter::once(&headers)
                .chain(&table)
                .map(|line| line[column].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in std::iter::once(&headers).chain(&table) {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                if column == 6 {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[column])
                }
            })
            .collect();
        let _ = writeln!(stdout, "{}", cells.join("  ").trim_end());
    }
    ExitCode::SUCCESS
}

fn format_uptime(seconds: i64) -> String {
    match seconds {
        seconds if seconds < 60 => format!("{seconds}s"),
        seconds if seconds < 3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        seconds => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
    }
}

/// one resource as a status row
fn row(resource: &Observed) -> Value {
    let address = declastruct_engine::Resource::address(resource);
    let base = json!({"class": address.class, "slug": address.slug});
    let row = match resource {
        Observed::Bastion(bastion) => json!({
            "status": bastion.live.status.map(declastruct_aws::Ec2InstanceStatus::as_str),
            "instanceId": bastion.live.instance_id,
            "privateIp": bastion.live.private_ip,
        }),
        Observed::Cluster(cluster) => json!({
            "status": cluster.live.status,
            "writer": cluster.live.host.as_ref().map(|host| host.writer.clone()),
            "port": cluster.live.port,
            "engine": cluster.live.engine,
        }),
        Observed::Tunnel(tunnel) => tunnel_fields(&tunnel.observation),
    };
    with_address(base, row)
}

fn with_address(base: Value, mut row: Value) -> Value {
    if let (Value::Object(row), Value::Object(base)) = (&mut row, base) {
        for (key, value) in base.into_iter().rev() {
            row.shift_insert(0, key, value);
        }
    }
    row
}

/// a tunnel's status fields: OPEN (unhealthy) when its process lives but it does not serve
fn tunnel_fields(observation: &VpcTunnelObservation) -> Value {
    let uptime = observation.meta.as_ref().and_then(|meta| {
        chrono::DateTime::parse_from_rfc3339(&meta.opened_at)
            .ok()
            .map(|opened| {
                (chrono::Utc::now() - opened.with_timezone(&chrono::Utc))
                    .num_seconds()
                    .max(0)
            })
    });
    let health = observation.tunnel.health.as_ref();
    json!({
        "status": match (&observation.tunnel.status, health) {
            (Some(VpcTunnelStatus::Open), Some(health)) if !health.healthy => Some("OPEN (unhealthy)"),
            (status, _) => status.map(declastruct_aws::VpcTunnelStatus::as_str),
        },
        "pid": observation.tunnel.pid,
        "port": observation.tunnel.from.port,
        "host": observation.tunnel.from.host.as_str(),
        "hash": observation.hash,
        "openedAt": observation.meta.as_ref().map(|meta| meta.opened_at.clone()),
        "uptimeSeconds": uptime,
        "restarts": observation.restarts,
        "lastRestart": observation.last_restart,
        "healthy": health.map(|health| health.healthy),
        "healthReason": health.and_then(|health| health.reason.clone()),
    })
}

/// .what = the rows `status` can give without AWS: each declared tunnel from its record or its processes on this
/// machine, bastions and clusters as unknown
/// .why = AWS down, expired credentials or a wrong endpoint never hide a tunnel that serves a port here
async fn local_rows(manifest: &Manifest) -> Result<Vec<Value>, declastruct_aws::AwsError> {
    let tunnels_dir = ContextAwsApi::default_state_dir()?.join("tunnels");
    let recorded = TunnelFiles::recorded_in(&tunnels_dir)?;
    let processes = TunnelProcesses::scan(&tunnels_dir);
    let mut rows = Vec::new();
    for declared in &manifest.resources {
        let address = declared.declaration.address();
        let base = json!({"class": address.class, "slug": address.slug});
        let ResourceDeclaration::DeclaredAwsVpcTunnel(tunnel) = &declared.declaration else {
            rows.push(with_address(
                base,
                json!({"status": "unknown: AWS could not be read"}),
            ));
            continue;
        };
        let hash = local_hash_of(tunnel, &recorded, &processes);
        let observation = match &hash {
            Some(hash) => {
                let files = TunnelFiles::new(&tunnels_dir, hash);
                let engine = files
                    .read_meta()
                    .ok()
                    .flatten()
                    .and_then(|meta| meta.engine);
                inspect_local_tunnel(&tunnel.to_domain(), &files, &processes, engine.as_deref())
                    .await
            }
            None => VpcTunnelObservation::closed(&tunnel.to_domain(), None),
        };
        rows.push(with_address(base, tunnel_fields(&observation)));
    }
    Ok(rows)
}

/// the tunnel on this machine that serves `tunnel`: by its record, else by a process whose session command
/// names the tunnel's local port
fn local_hash_of(
    tunnel: &VpcTunnelDeclaration,
    recorded: &[declastruct_aws::internal::utils::RecordedTunnel],
    processes: &TunnelProcesses,
) -> Option<String> {
    let by_record = recorded.iter().find_map(|(files, meta)| {
        let meta = meta.as_ref().ok()?;
        (meta.tunnel.via == tunnel.via
            && meta.tunnel.into == tunnel.into
            && meta.tunnel.from == tunnel.from)
            .then(|| files.hash.clone())
    });
    by_record.or_else(|| {
        let port_argument = format!("\"localPortNumber\":[\"{}\"]", tunnel.from.port);
        processes.hashes().find_map(|hash| {
            processes
                .of(hash)
                .iter()
                .any(|process| {
                    process
                        .command
                        .iter()
                        .any(|word| word.contains(&port_argument))
                })
                .then(|| hash.to_string())
        })
    })
}
