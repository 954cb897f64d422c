//! .what = the variables `exec` and `env` give to connect through tunnels (the line `apply` and `status` print, and
//! the client command, are the tunnel kind's: `declastruct_manifest::kinds::vpc_tunnel`)
//! .why = a tunnel is half the job; the user should never have to work out the other half

use declastruct_aws::{ContextAwsApi, get_connection_variables};
use declastruct_manifest::kinds::{Kind, ObservedTunnel};

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
