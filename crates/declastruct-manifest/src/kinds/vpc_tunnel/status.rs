//! .what = a tunnel in `status`: its row (its process, port, uptime, restarts, holders, health), and how to connect
//! through it in words: the line `apply` and `status` print, and the client command
//! .why = a tunnel is half the job; the user should never have to work out the other half

use declastruct_aws::VpcTunnelStatus;
use declastruct_aws::internal::VpcTunnelObservation;
use serde_json::{Value, json};

use super::{ObservedTunnel, RemovedTunnel};
use crate::kinds::Kind;

/// .what = a declared tunnel's status fields, with how to connect when it is open, and its far end
/// .why = see `Kind::status_row`
pub(super) fn tunnel_row(tunnel: &ObservedTunnel) -> Value {
    let mut fields = tunnel_fields(&tunnel.observation);
    if let Value::Object(fields) = &mut fields {
        if tunnel.observation.tunnel.status == Some(VpcTunnelStatus::Open) {
            fields.insert("connection".into(), json!(connection_line(tunnel)));
            fields.insert("client".into(), json!(client_command(tunnel)));
        }
        fields.insert("target".into(), json!(tunnel.target.label));
        fields.insert(
            "farEnd".into(),
            json!(format!("{}:{}", tunnel.target.host, tunnel.target.port)),
        );
    }
    fields
}

/// .what = the status fields of a tunnel this manifest holds and no longer declares, or declares CLOSED while its
/// ends are gone: open, and what apply does about it
/// .why = `status` shows what apply will close
pub fn removed_status_row(removed: &RemovedTunnel) -> Value {
    let (status, reason) = match &removed.stranded {
        Some(stranded) => (
            "OPEN (declared CLOSED)".to_string(),
            format!("{}: apply closes it by its record", stranded.reason),
        ),
        None => (
            "OPEN (no longer declared)".to_string(),
            "this manifest holds it and no longer declares it: apply lets go of it".to_string(),
        ),
    };
    json!({
        "status": status,
        "pid": removed.meta.pid,
        "port": removed.meta.local_port,
        "host": removed.meta.tunnel.from.host.as_str(),
        "hash": removed.hash,
        "openedAt": removed.meta.opened_at,
        "healthReason": reason,
        "holders": removed.meta.holders().iter().filter(|holder| holder.is_alive()).map(declastruct_aws::TunnelHolder::describe).collect::<Vec<_>>(),
    })
}

/// .what = a tunnel's status fields from its observation: OPEN (unhealthy) when its process lives but it does not
/// serve
/// .why = a declared tunnel, a tunnel of `status --all` and one seen without AWS are shown alike
pub fn tunnel_fields(observation: &VpcTunnelObservation) -> Value {
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
        // recorded by the open; a tunnel opened before transports existed ran the plugin
        "transport": observation.meta.as_ref().map(|meta| meta.transport.clone().unwrap_or_else(|| "plugin".into())),
        "uptimeSeconds": uptime,
        "restarts": observation.restarts,
        "lastRestart": observation.last_restart,
        "healthy": health.map(|health| health.healthy),
        "healthReason": health.and_then(|health| health.reason.clone()).or_else(|| {
            // a tunnel that closed by itself says why
            observation
                .meta
                .as_ref()
                .filter(|_| observation.tunnel.status != Some(VpcTunnelStatus::Open))
                .and_then(|meta| meta.closed.as_ref())
                .map(|closed| format!("{} at {}", closed.reason, closed.at))
        }),
        "holders": observation.holders.iter().map(declastruct_aws::TunnelHolder::describe).collect::<Vec<_>>(),
    })
}

/// .what = `localhost:7775 -> ahbodedb (writer) via i-0abc`
/// .why = where a tunnel leads, in one line
pub fn connection_line(tunnel: &ObservedTunnel) -> String {
    format!(
        "{}:{} -> {} via {}",
        tunnel.declaration.from.host.as_str(),
        tunnel.declaration.from.port,
        tunnel.target.label,
        tunnel
            .bastion
            .instance_id
            .as_deref()
            .unwrap_or(tunnel.declaration.via.bastion.key())
    )
}

/// .what = the client command to use: `psql -h 127.0.0.1 -p 7775 -U app appdb`, or `declastruct exec ADDRESS --
/// psql` when the password comes from somewhere declastruct fetches it
/// .why = the user copies one line, whatever the engine
pub fn client_command(tunnel: &ObservedTunnel) -> String {
    let connect = tunnel.declaration.connect.clone().unwrap_or_default();
    let port = tunnel.declaration.from.port;
    let engine = tunnel.target.engine.clone().unwrap_or_default();
    let with = |flag: &str, value: &Option<String>| {
        value
            .as_ref()
            .map(|value| format!(" {flag}{value}"))
            .unwrap_or_default()
    };
    let client = if engine.contains("postgres") {
        Some("psql")
    } else if engine.contains("mysql") || engine.contains("mariadb") {
        Some("mysql")
    } else if engine.contains("redis") {
        Some("redis-cli")
    } else {
        None
    };
    match (client, &connect.password) {
        (Some(client), Some(_)) => format!(
            "declastruct exec {} -- {client}",
            tunnel.declaration.address().slug
        ),
        (Some("psql"), None) => format!(
            "psql -h 127.0.0.1 -p {port}{}{}",
            with("-U ", &connect.user),
            with("", &connect.database)
        ),
        (Some("mysql"), None) => format!(
            "mysql -h 127.0.0.1 -P {port}{}{}",
            with("-u ", &connect.user),
            with("", &connect.database)
        ),
        (Some(client), None) => format!("{client} -p {port}"),
        (None, _) => format!("127.0.0.1:{port}"),
    }
}
