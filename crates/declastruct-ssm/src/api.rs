//! .what = the three SSM calls a session needs (StartSession, ResumeSession, TerminateSession), behind a trait
//! .why = the session is driven the same way by the AWS SDK (production, the simulator) and by a fake in unit tests

use std::collections::HashMap;

use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata};
use futures::future::BoxFuture;

use crate::SsmError;

/// .what = what StartSession is asked
/// .why = the document and its parameters decide where the agent forwards
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartSessionInput {
    /// the instance id
    pub target: String,
    /// the SSM document
    pub document_name: String,
    /// the document's parameters, each a one-element list as the CLI sends them
    pub parameters: HashMap<String, Vec<String>>,
}

/// .what = the document for forwarding to a remote host through the target
/// .why = the plugin-facts: `AWS-StartPortForwardingSessionToRemoteHost` with host, portNumber, localPortNumber
pub const REMOTE_HOST_DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";
/// .what = the document for forwarding to a port of the target itself
/// .why = without a host the agent forwards to the instance's own port
pub const LOCAL_DOCUMENT: &str = "AWS-StartPortForwardingSession";

impl StartSessionInput {
    /// .what = the StartSession input of a port-forwarding session
    /// .why = one place builds the document name and parameters
    pub fn port_forwarding(
        target: &str,
        remote_host: Option<&str>,
        remote_port: u16,
        local_port: u16,
    ) -> Self {
        let mut parameters = HashMap::new();
        parameters.insert("portNumber".to_owned(), vec![remote_port.to_string()]);
        parameters.insert("localPortNumber".to_owned(), vec![local_port.to_string()]);
        let document_name = match remote_host {
            Some(host) => {
                parameters.insert("host".to_owned(), vec![host.to_owned()]);
                REMOTE_HOST_DOCUMENT
            }
            None => LOCAL_DOCUMENT,
        };
        Self {
            target: target.to_owned(),
            document_name: document_name.to_owned(),
            parameters,
        }
    }
}

/// .what = StartSession's answer
/// .why = the websocket's URL and the token that opens it
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedSession {
    /// the session id
    pub session_id: String,
    /// the websocket URL
    pub stream_url: String,
    /// the token for the open message
    pub token_value: String,
}

/// .what = ResumeSession's answer
/// .why = no token means the session is over (sessionhandler.go `ResumeSessionHandler` prints "timed out")
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResumedSession {
    /// the websocket URL, when the service gives one
    pub stream_url: Option<String>,
    /// the new token, or None when the session has ended
    pub token_value: Option<String>,
}

/// .what = the SSM calls of a session
/// .why = see the module
pub trait SessionApi: Send + Sync {
    /// .what = StartSession
    /// .why = opens the session
    fn start_session<'a>(
        &'a self,
        input: &'a StartSessionInput,
    ) -> BoxFuture<'a, Result<StartedSession, SsmError>>;
    /// .what = ResumeSession
    /// .why = a new token after the websocket was lost
    fn resume_session<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<ResumedSession, SsmError>>;
    /// .what = TerminateSession
    /// .why = ends the session on the service's side at once
    fn terminate_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<(), SsmError>>;
}

/// .what = the SSM calls through `aws-sdk-ssm`
/// .why = the endpoint, credentials and region follow the SDK's rules (`AWS_ENDPOINT_URL_SSM`, then
/// `AWS_ENDPOINT_URL`, as loaded into the [`aws_types::SdkConfig`] by `aws-config`)
#[derive(Debug, Clone)]
pub struct SdkSessionApi {
    client: aws_sdk_ssm::Client,
}

impl SdkSessionApi {
    /// .what = the SSM client of a loaded SDK configuration
    /// .why = `Client::new` reads the service-specific endpoint the configuration carries
    pub fn new(config: &aws_types::SdkConfig) -> Self {
        Self {
            client: aws_sdk_ssm::Client::new(config),
        }
    }

    /// .what = the SSM client as given
    /// .why = a caller that built its own client (tests with a stub HTTP client)
    pub fn from_client(client: aws_sdk_ssm::Client) -> Self {
        Self { client }
    }
}

fn code_and_message<E: ProvideErrorMetadata + std::error::Error + 'static>(
    error: &aws_sdk_ssm::error::SdkError<E, aws_sdk_ssm::config::http::HttpResponse>,
) -> (String, String) {
    match error.as_service_error() {
        Some(service) => (
            service.code().unwrap_or("Unknown").to_owned(),
            service
                .message()
                .map_or_else(|| DisplayErrorContext(error).to_string(), str::to_owned),
        ),
        None => ("Unknown".to_owned(), DisplayErrorContext(error).to_string()),
    }
}

impl SessionApi for SdkSessionApi {
    fn start_session<'a>(
        &'a self,
        input: &'a StartSessionInput,
    ) -> BoxFuture<'a, Result<StartedSession, SsmError>> {
        Box::pin(async move {
            let output = self
                .client
                .start_session()
                .target(&input.target)
                .document_name(&input.document_name)
                .set_parameters(Some(input.parameters.clone()))
                .send()
                .await
                .map_err(|error| {
                    let (code, message) = code_and_message(&error);
                    SsmError::StartSession { code, message }
                })?;
            let missing = |field: &str| SsmError::StartSession {
                code: "InvalidResponse".to_owned(),
                message: format!("the answer has no {field}"),
            };
            Ok(StartedSession {
                session_id: output.session_id.ok_or_else(|| missing("SessionId"))?,
                stream_url: output.stream_url.ok_or_else(|| missing("StreamUrl"))?,
                token_value: output.token_value.ok_or_else(|| missing("TokenValue"))?,
            })
        })
    }

    fn resume_session<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<ResumedSession, SsmError>> {
        Box::pin(async move {
            let output = self
                .client
                .resume_session()
                .session_id(session_id)
                .send()
                .await
                .map_err(|error| {
                    let (code, message) = code_and_message(&error);
                    SsmError::ResumeSession {
                        session_id: session_id.to_owned(),
                        code,
                        message,
                    }
                })?;
            Ok(ResumedSession {
                stream_url: output.stream_url.filter(|url| !url.is_empty()),
                token_value: output.token_value.filter(|token| !token.is_empty()),
            })
        })
    }

    fn terminate_session<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<(), SsmError>> {
        Box::pin(async move {
            self.client
                .terminate_session()
                .session_id(session_id)
                .send()
                .await
                .map_err(|error| {
                    let (code, message) = code_and_message(&error);
                    SsmError::TerminateSession {
                        session_id: session_id.to_owned(),
                        code,
                        message,
                    }
                })?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_host_uses_the_remote_host_document() {
        let input = StartSessionInput::port_forwarding("i-1", Some("db.internal"), 5432, 7775);
        assert_eq!(input.document_name, REMOTE_HOST_DOCUMENT);
        assert_eq!(input.parameters["host"], ["db.internal"]);
        assert_eq!(input.parameters["portNumber"], ["5432"]);
        assert_eq!(input.parameters["localPortNumber"], ["7775"]);
        let input = StartSessionInput::port_forwarding("i-1", None, 22, 2222);
        assert_eq!(input.document_name, LOCAL_DOCUMENT);
        assert!(!input.parameters.contains_key("host"));
    }
}
