//! .what = how to connect through a tunnel, in words: the line `apply` and `status` print, the client command,
//! and the variables `exec` and `env` give
//! .why = a tunnel is half the job; the user should never have to work out the other half

use declastruct_aws::{ContextAwsApi, get_connection_variables};

use declastruct_manifest::resources::ObservedTunnel;

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

/// .what = `DECLASTRUCT_<ADDRESS>_URL`: the address upper-cased, every other character than a letter or a digit
/// as `_`
/// .why = with several tunnels, each one's URL under its own name
pub fn url_variable(address: &str) -> String {
    let name: String = address
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("DECLASTRUCT_{name}_URL")
}

/// .what = the variables of several tunnels: the first one's `PG*`/`MYSQL_*` and `DATABASE_URL`, and each one's
/// `DECLASTRUCT_<ADDRESS>_URL`
/// .why = `exec` gives one command everything it needs to reach every tunnel it asked for
pub async fn variables_of(
    tunnels: &[&ObservedTunnel],
    context: &ContextAwsApi,
) -> Result<Vec<(String, String)>, declastruct_aws::AwsError> {
    let mut variables = Vec::new();
    for (position, tunnel) in tunnels.iter().enumerate() {
        let found =
            get_connection_variables(&tunnel.declaration.to_domain(), &tunnel.target, context)
                .await?;
        if position == 0 {
            variables.extend(found.variables.iter().cloned());
        }
        variables.push((
            url_variable(&tunnel.declaration.address().slug),
            found.url.clone(),
        ));
    }
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variables_are_named_after_the_address() {
        assert_eq!(
            url_variable("vpc-main-bastion.ahbodedb.7775"),
            "DECLASTRUCT_VPC_MAIN_BASTION_AHBODEDB_7775_URL"
        );
    }
}
