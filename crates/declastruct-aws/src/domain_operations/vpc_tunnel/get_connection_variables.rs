//! .what = the connection variables of a tunnel: `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `DATABASE_URL` and
//! their MySQL counterparts, with the password fetched from where `connect` says
//! .why = `exec` runs a command with them and `env` prints them; a secret is fetched when needed, kept in memory,
//! and never written to disk, logged or planned

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::get_tunnel_target::TunnelTarget;
use crate::error::AwsError;
use crate::{ContextAwsApi, DeclaredAwsVpcTunnel, PasswordSource};

/// the characters a URL's user or password keeps as they are (RFC 3986 unreserved); every other is encoded
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// .what = the variables that log a client in through one tunnel, in the order they are printed
/// .why = `exec` passes them to its command, `env` prints them in the format asked for
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionVariables {
    /// name and value, e.g. `("PGPORT", "7775")`
    pub variables: Vec<(String, String)>,
    /// the connection URL, also given as `DATABASE_URL` for PostgreSQL and MySQL targets
    pub url: String,
}

impl std::fmt::Debug for ConnectionVariables {
    /// the names only: a password must never reach a log through a debug print
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ConnectionVariables")
            .field(
                "variables",
                &self
                    .variables
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ConnectionVariables {
    /// .what = the value of one variable
    /// .why = tests and the SDK read single values
    pub fn get(&self, name: &str) -> Option<&str> {
        self.variables
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }
}

/// the user and password a secret holds; RDS writes more keys (engine, host, port, dbname)
struct SecretCredentials {
    username: Option<String>,
    password: Option<String>,
}

/// .what = the address `plan` prints for `tunnel`
/// .why = an error about a tunnel's secret names the tunnel as the user knows it
fn tunnel_address(tunnel: &DeclaredAwsVpcTunnel) -> String {
    tunnel.address_slug()
}

/// .what = the region in a Secrets Manager ARN (`arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME`), `None`
/// for a name
/// .why = a secret is read in the context's region; an ARN of another region is said to be so, not "not found"
fn region_of_arn(secret_id: &str) -> Option<&str> {
    let mut parts = secret_id.splitn(6, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("secretsmanager"), Some(region)) if !region.is_empty() => {
            Some(region)
        }
        _ => None,
    }
}

/// .what = the username and password in a secret's text, or the error that names the secret and its keys
/// .why = a secret without `password` must not silently give a client no password
fn parse_secret(
    text: &str,
    secret: &str,
    tunnel: &DeclaredAwsVpcTunnel,
) -> Result<SecretCredentials, AwsError> {
    // the secret's text is never put in an error message: only its name, and the names of its keys
    let shape = || AwsError::SecretShape {
        secret: secret.to_string(),
    };
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Err(shape());
    };
    let text_of = |key: &str| match object.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(shape()),
    };
    let username = text_of("username")?;
    let Some(password) = text_of("password")? else {
        let mut keys: Vec<String> = object.keys().cloned().collect();
        keys.sort();
        return Err(AwsError::SecretWithoutPassword {
            secret: secret.to_string(),
            keys,
            tunnel: tunnel_address(tunnel),
        });
    };
    Ok(SecretCredentials {
        username,
        password: Some(password),
    })
}

/// .what = the user and password `connect` leads to: from a Secrets Manager secret, the RDS-managed master user
/// secret, an RDS IAM auth token, or an environment variable
/// .why = each source is fetched only here, when a command needs it
async fn credentials(
    tunnel: &DeclaredAwsVpcTunnel,
    target: &TunnelTarget,
    context: &ContextAwsApi,
) -> Result<(Option<String>, Option<String>), AwsError> {
    let connect = tunnel.connect.clone().unwrap_or_default();
    let declared_user = connect.user.clone();
    let region = context
        .region
        .clone()
        .unwrap_or_else(|| "the configured region".to_string());
    let from_secret = |secret_id: String| async move {
        if let Some(secret_region) = region_of_arn(&secret_id)
            && secret_region != region
        {
            return Err(AwsError::SecretInAnotherRegion {
                secret_region: secret_region.to_string(),
                secret: secret_id,
                region,
                tunnel: tunnel_address(tunnel),
            });
        }
        let answer = context
            .secrets
            .get_secret_value()
            .secret_id(&secret_id)
            .send()
            .await
            .map_err(|error| {
                let missing = error
                    .as_service_error()
                    .is_some_and(aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError::is_resource_not_found_exception);
                if missing {
                    return AwsError::SecretNotFound {
                        secret: secret_id.clone(),
                        region: region.clone(),
                        tunnel: tunnel_address(tunnel),
                    };
                }
                AwsError::from_sdk(
                    "secretsmanager:GetSecretValue",
                    &context.endpoint("secretsmanager"),
                    &error,
                )
            })?;
        parse_secret(
            answer.secret_string().unwrap_or_default(),
            &secret_id,
            tunnel,
        )
    };
    match connect.password {
        None => Ok((declared_user, None)),
        Some(PasswordSource::Secret { secret }) => {
            let parsed = from_secret(secret).await?;
            Ok((declared_user.or(parsed.username), parsed.password))
        }
        Some(PasswordSource::Managed { .. }) => {
            let arn =
                target
                    .master_user_secret_arn
                    .clone()
                    .ok_or_else(|| AwsError::NoManagedSecret {
                        target: target.label.clone(),
                    })?;
            let parsed = from_secret(arn).await?;
            Ok((declared_user.or(parsed.username), parsed.password))
        }
        Some(PasswordSource::Iam { .. }) => {
            let user = declared_user.ok_or(AwsError::IamNeedsUser)?;
            let token = iam_auth_token(target, &user, context).await?;
            Ok((Some(user), Some(token)))
        }
        Some(PasswordSource::Env { env }) => {
            let password = std::env::var(&env).map_err(|_| AwsError::PasswordVariableUnset {
                variable: env.clone(),
            })?;
            Ok((declared_user, Some(password)))
        }
    }
}

/// .what = an RDS IAM auth token for `user`, signed for the real endpoint's host and port (never 127.0.0.1),
/// valid 15 minutes, by the AWS SDK's own token generator
/// .why = what `aws rds generate-db-auth-token` prints: the database checks the signature against its own name
pub async fn iam_auth_token(
    target: &TunnelTarget,
    user: &str,
    context: &ContextAwsApi,
) -> Result<String, AwsError> {
    let mut config = aws_sdk_rds::auth_token::Config::builder()
        .hostname(&target.host)
        .port(u64::from(target.port))
        .username(user)
        .expires_in(900);
    if let Some(region) = &context.region {
        config = config.region(aws_config::Region::new(region.clone()));
    }
    let failed = |error: aws_sdk_rds::error::BoxError| AwsError::Call {
        operation: "rds-db:connect (auth token)",
        message: error.to_string(),
        help: "the token is signed with your AWS credentials: check AWS_PROFILE or `aws.profile`"
            .into(),
    };
    let generator =
        aws_sdk_rds::auth_token::AuthTokenGenerator::new(config.build().map_err(failed)?);
    let token = generator
        .auth_token(&context.sdk_config)
        .await
        .map_err(failed)?;
    Ok(token.as_str().to_string())
}

/// .what = the connection variables of a tunnel whose far end resolved to `target`: `PG*` or `MYSQL_*`, and the
/// URL (`DATABASE_URL` for PostgreSQL and MySQL), with the password fetched from where `connect` says
/// .why = the one place that decides what a client is given; the CLI's `exec` and `env` and SDK users call it
pub async fn get_connection_variables(
    tunnel: &DeclaredAwsVpcTunnel,
    target: &TunnelTarget,
    context: &ContextAwsApi,
) -> Result<ConnectionVariables, AwsError> {
    let (user, password) = credentials(tunnel, target, context).await?;
    let connect = tunnel.connect.clone().unwrap_or_default();
    let iam = matches!(connect.password, Some(PasswordSource::Iam { .. }));
    let port = tunnel.from.port.to_string();
    let engine = target.engine.clone().unwrap_or_default();
    let userinfo = match (&user, &password) {
        (Some(user), Some(password)) => format!(
            "{}:{}@",
            utf8_percent_encode(user, USERINFO),
            utf8_percent_encode(password, USERINFO)
        ),
        (Some(user), None) => format!("{}@", utf8_percent_encode(user, USERINFO)),
        _ => String::new(),
    };
    let database = connect
        .database
        .as_deref()
        .map(|database| format!("/{}", utf8_percent_encode(database, USERINFO)))
        .unwrap_or_default();
    let mut variables: Vec<(String, String)> = Vec::new();
    let mut push = |name: &str, value: &str| variables.push((name.to_string(), value.to_string()));
    let url = if engine.contains("postgres") {
        // verify-full checks the certificate against the name it was issued for: the real endpoint, reached at
        // the tunnel's address (libpq's host + hostaddr)
        let (host, mut query) = match &connect.ca_bundle {
            Some(bundle) => {
                push("PGHOST", &target.host);
                push("PGHOSTADDR", "127.0.0.1");
                push("PGSSLMODE", "verify-full");
                push("PGSSLROOTCERT", bundle);
                (
                    target.host.clone(),
                    vec![
                        "hostaddr=127.0.0.1".to_string(),
                        "sslmode=verify-full".to_string(),
                        format!("sslrootcert={}", utf8_percent_encode(bundle, USERINFO)),
                    ],
                )
            }
            None => {
                push("PGHOST", "127.0.0.1");
                (String::from("127.0.0.1"), Vec::new())
            }
        };
        push("PGPORT", &port);
        if let Some(user) = &user {
            push("PGUSER", user);
        }
        if let Some(password) = &password {
            push("PGPASSWORD", password);
        }
        if let Some(database) = &connect.database {
            push("PGDATABASE", database);
        }
        if iam && connect.ca_bundle.is_none() {
            push("PGSSLMODE", "require");
            query.push("sslmode=require".into());
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        let url = format!("postgresql://{userinfo}{host}:{port}{database}{query}");
        push("DATABASE_URL", &url);
        url
    } else if engine.contains("mysql") || engine.contains("mariadb") {
        push("MYSQL_HOST", "127.0.0.1");
        push("MYSQL_TCP_PORT", &port);
        if let Some(password) = &password {
            push("MYSQL_PWD", password);
        }
        let url = format!(
            "mysql://{userinfo}127.0.0.1:{port}{database}{}",
            if iam { "?ssl-mode=REQUIRED" } else { "" }
        );
        push("DATABASE_URL", &url);
        url
    } else if engine.contains("redis") {
        let userinfo = match &password {
            Some(password) => format!(
                "{}:{}@",
                user.as_deref()
                    .map(|user| utf8_percent_encode(user, USERINFO).to_string())
                    .unwrap_or_default(),
                utf8_percent_encode(password, USERINFO)
            ),
            None => String::new(),
        };
        format!("redis://{userinfo}127.0.0.1:{port}")
    } else {
        format!("tcp://127.0.0.1:{port}")
    };
    Ok(ConnectionVariables { variables, url })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain_operations::vpc_tunnel::get_tunnel_target::TargetKind;
    use crate::test_support::recording_context;
    use crate::{VpcTunnelConnect, VpcTunnelStatus};

    fn target(engine: &str) -> TunnelTarget {
        TunnelTarget {
            host: "ahbodedb.cluster-abc.us-east-1.rds.amazonaws.com".into(),
            port: 5432,
            engine: Some(engine.into()),
            status: Some("available".into()),
            label: "ahbodedb (writer)".into(),
            kind: TargetKind::Cluster("ahbodedb".into()),
            master_user_secret_arn: None,
        }
    }

    fn tunnel(connect: VpcTunnelConnect) -> DeclaredAwsVpcTunnel {
        let mut tunnel = crate::domain_operations::vpc_tunnel::get_vpc_tunnel::tests::tunnel()
            .with_status(VpcTunnelStatus::Open, None);
        tunnel.connect = Some(connect);
        tunnel
    }

    #[tokio::test]
    async fn a_password_from_the_environment_is_percent_encoded_in_the_url() {
        let (context, _recorded, _folder) = recording_context(|_, _| (500, String::new()));
        // SAFETY-free: a variable only this test reads
        let name = format!("DECLASTRUCT_TEST_PASSWORD_{}", std::process::id());
        #[allow(unsafe_code)]
        // SAFETY: tests in this process read no other variable of this name
        unsafe {
            std::env::set_var(&name, "p@ss/w%rd");
        }
        let variables = get_connection_variables(
            &tunnel(VpcTunnelConnect {
                database: Some("appdb".into()),
                user: Some("app".into()),
                password: Some(PasswordSource::Env { env: name }),
                ca_bundle: None,
            }),
            &target("aurora-postgresql"),
            &context,
        )
        .await
        .expect("variables");
        assert_eq!(variables.get("PGPASSWORD"), Some("p@ss/w%rd"));
        assert_eq!(
            variables.get("DATABASE_URL"),
            Some("postgresql://app:p%40ss%2Fw%25rd@127.0.0.1:7775/appdb")
        );
        assert_eq!(variables.get("PGHOST"), Some("127.0.0.1"));
        assert!(
            !format!("{variables:?}").contains("w%rd"),
            "no secret in a debug print"
        );
    }

    #[tokio::test]
    async fn verify_full_names_the_real_endpoint_reached_at_the_tunnel() {
        let (context, _recorded, _folder) = recording_context(|_, _| (500, String::new()));
        let variables = get_connection_variables(
            &tunnel(VpcTunnelConnect {
                database: None,
                user: Some("app".into()),
                password: None,
                ca_bundle: Some("/etc/ssl/rds-global-bundle.pem".into()),
            }),
            &target("postgres"),
            &context,
        )
        .await
        .expect("variables");
        assert_eq!(
            variables.get("PGHOST"),
            Some("ahbodedb.cluster-abc.us-east-1.rds.amazonaws.com")
        );
        assert_eq!(variables.get("PGHOSTADDR"), Some("127.0.0.1"));
        assert_eq!(variables.get("PGSSLMODE"), Some("verify-full"));
    }

    /// a MySQL target gets MySQL's client variables and a `mysql://` URL
    #[tokio::test]
    async fn a_mysql_target_gets_the_mysql_variables() {
        let (context, _recorded, _folder) = recording_context(|_, _| (500, String::new()));
        let name = format!("DECLASTRUCT_TEST_MYSQL_PASSWORD_{}", std::process::id());
        #[allow(unsafe_code)]
        // SAFETY: tests in this process read no other variable of this name
        unsafe {
            std::env::set_var(&name, "s3cret");
        }
        let variables = get_connection_variables(
            &tunnel(VpcTunnelConnect {
                database: Some("shop".into()),
                user: Some("app".into()),
                password: Some(PasswordSource::Env { env: name }),
                ca_bundle: None,
            }),
            &target("aurora-mysql"),
            &context,
        )
        .await
        .expect("variables");
        assert_eq!(variables.get("MYSQL_HOST"), Some("127.0.0.1"));
        assert_eq!(variables.get("MYSQL_TCP_PORT"), Some("7775"));
        assert_eq!(variables.get("MYSQL_PWD"), Some("s3cret"));
        assert_eq!(
            variables.get("DATABASE_URL"),
            Some("mysql://app:s3cret@127.0.0.1:7775/shop")
        );
        assert_eq!(variables.get("PGHOST"), None, "no PostgreSQL variables");
    }

    /// a secret without `password` is an error naming its keys, never their values; a secret's region is read
    /// from its ARN only
    #[test]
    fn a_secret_without_a_password_names_its_keys_only() {
        let tunnel = tunnel(VpcTunnelConnect::default());
        let missing = parse_secret(
            r#"{"username": "app", "pass": "hunter2", "host": "db"}"#,
            "prod/app-db",
            &tunnel,
        )
        .err()
        .expect("no password");
        let message = missing.to_string();
        assert_eq!(
            message,
            "the secret `prod/app-db` of the tunnel vpc-main-bastion.ahbodedb.7775 has no `password` key; its keys are: host, pass, username"
        );
        assert!(!message.contains("hunter2"));
        assert!(matches!(
            parse_secret(r#"{"password": 42}"#, "prod/app-db", &tunnel),
            Err(AwsError::SecretShape { .. })
        ));
        assert_eq!(
            region_of_arn("arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf"),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of_arn("arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:x"),
            Some("cn-north-1")
        );
        assert_eq!(region_of_arn("prod/app-db"), None);
    }

    /// `managed: true` reads the RDS-managed master user secret that the describe call named: its user and
    /// password; without one, an error naming the target
    #[tokio::test]
    async fn a_managed_password_comes_from_the_master_user_secret() {
        let (context, recorded, _folder) = recording_context(|_, _| {
            (
                200,
                r#"{"ARN":"arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-abc","Name":"rds!cluster-abc","SecretString":"{\"username\":\"admin\",\"password\":\"m@naged\"}","VersionId":"v1","VersionStages":["AWSCURRENT"],"CreatedDate":1.7e9}"#.to_string(),
            )
        });
        let connect = VpcTunnelConnect {
            database: Some("postgres".into()),
            user: None,
            password: Some(PasswordSource::Managed { managed: true }),
            ca_bundle: None,
        };
        let mut managed = target("aurora-postgresql");
        managed.master_user_secret_arn =
            Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-abc".into());
        let variables = get_connection_variables(&tunnel(connect.clone()), &managed, &context)
            .await
            .expect("variables");
        assert_eq!(variables.get("PGUSER"), Some("admin"));
        assert_eq!(variables.get("PGPASSWORD"), Some("m@naged"));
        let asked = crate::test_support::bodies(&recorded);
        assert_eq!(asked.len(), 1, "one GetSecretValue: {asked:?}");
        assert!(asked[0].contains("rds!cluster-abc"), "{asked:?}");

        let missing =
            get_connection_variables(&tunnel(connect), &target("aurora-postgresql"), &context)
                .await
                .expect_err("no managed secret");
        assert!(
            matches!(&missing, AwsError::NoManagedSecret { target } if target == "ahbodedb (writer)"),
            "{missing:?}"
        );
    }
}
