use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::args::{Cli, StatusArgs};
use crate::commands::observe_or_report;
use crate::resources::PlannedResource;

/// .what = `declastruct status`: the live state of every declared resource; tunnels with pid, port, uptime, health
/// .why = one look tells whether the database is reachable, and if not, why
pub async fn run(cli: &Cli, args: &StatusArgs) -> ExitCode {
    let (_manifest, _context, resources) = match observe_or_report(cli).await {
        Ok(observed) => observed,
        Err(code) => return code,
    };
    let rows: Vec<Value> = resources.iter().map(row).collect();
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
fn row(resource: &PlannedResource) -> Value {
    let address = declastruct_engine::Resource::address(resource);
    let base = json!({"class": address.class, "slug": address.slug});
    let mut row = match resource {
        PlannedResource::Bastion { live, .. } => json!({
            "status": live.status.map(|status| status.as_str()),
            "instanceId": live.instance_id,
            "privateIp": live.private_ip,
        }),
        PlannedResource::Cluster { live, .. } => json!({
            "status": live.status,
            "writer": live.host.as_ref().map(|host| host.writer.clone()),
            "port": live.port,
            "engine": live.engine,
        }),
        PlannedResource::Tunnel { observation, .. } => {
            let uptime = observation.meta.as_ref().and_then(|meta| {
                chrono::DateTime::parse_from_rfc3339(&meta.opened_at)
                    .ok()
                    .map(|opened| {
                        (chrono::Utc::now() - opened.with_timezone(&chrono::Utc))
                            .num_seconds()
                            .max(0)
                    })
            });
            json!({
                "status": match (&observation.tunnel.status, &observation.tunnel.health) {
                    (Some(declastruct_aws::VpcTunnelStatus::Open), Some(health)) if !health.healthy => {
                        Some("OPEN (unhealthy)")
                    }
                    (status, _) => status.map(|status| status.as_str()),
                },
                "pid": observation.tunnel.pid,
                "port": observation.tunnel.from.port,
                "host": observation.tunnel.from.host.as_str(),
                "hash": observation.hash,
                "openedAt": observation.meta.as_ref().map(|meta| meta.opened_at.clone()),
                "uptimeSeconds": uptime,
                "restarts": observation.restarts,
                "lastRestart": observation.last_restart,
                "healthy": observation.tunnel.health.as_ref().map(|health| health.healthy),
                "healthReason": observation.tunnel.health.as_ref().and_then(|health| health.reason.clone()),
            })
        }
    };
    if let (Value::Object(row), Value::Object(base)) = (&mut row, base) {
        for (key, value) in base.into_iter().rev() {
            row.shift_insert(0, key, value);
        }
    }
    row
}
