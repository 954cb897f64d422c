//! .what = dialling the data channel's websocket and sending the open message
//! .why = the plugin dials StreamUrl with gorilla's default dialer and sends the token as a text frame
//! (`src/websocketutil/websocketutil.go`, `src/datachannel/streaming.go` `Open`); here over tokio-tungstenite with
//! the rustls stack (aws-lc-rs, the system's roots) that the AWS SDK's HTTPS client uses; `ws://` works for a
//! simulator on loopback

use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::SsmError;
use crate::payloads::OpenDataChannelInput;
use crate::version::CLIENT_VERSION;

/// .what = the websocket of a data channel
/// .why = one name for the stream type
pub type DataChannelSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// .what = the schema version of the open message
/// .why = config.go `MessageSchemaVersion`
pub const MESSAGE_SCHEMA_VERSION: &str = "1.0";

/// .what = the TLS configuration for `wss://`: rustls with aws-lc-rs and the system's root certificates
/// .why = the same provider and roots as the SDK's default HTTPS client (aws-smithy-http-client `rustls-aws-lc`
/// with rustls-native-certs), built once per process
fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let loaded = rustls_native_certs::load_native_certs();
            for certificate in loaded.certs {
                // a certificate the store rejects is skipped, as hyper-rustls does
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err(format!(
                    "no root certificates could be loaded from the system ({:?})",
                    loaded.errors
                ));
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|error| error.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// .what = the stream URL without its query string
/// .why = errors name the URL; the query may carry a role and nothing secret, but a URL is shown without it
pub fn displayable_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// .what = dials the stream URL and sends the open message with the token
/// .why = streaming.go `Open` then `FinalizeDataChannelHandshake`: the same after StartSession and after every
/// ResumeSession
pub async fn open_data_channel(
    stream_url: &str,
    token_value: &str,
    client_id: &str,
) -> Result<DataChannelSocket, SsmError> {
    let failed = |reason: String| SsmError::WebSocket {
        url: displayable_url(stream_url).to_owned(),
        reason,
    };
    let connector = if stream_url.starts_with("wss://") {
        Some(Connector::Rustls(tls_config().map_err(failed)?))
    } else {
        None
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(16 << 20);
    config.max_frame_size = Some(16 << 20);
    let (mut socket, _response) =
        tokio_tungstenite::connect_async_tls_with_config(stream_url, Some(config), true, connector)
            .await
            .map_err(|error| failed(error.to_string()))?;
    let open = OpenDataChannelInput {
        message_schema_version: MESSAGE_SCHEMA_VERSION.to_owned(),
        request_id: uuid::Uuid::new_v4().hyphenated().to_string(),
        token_value: token_value.to_owned(),
        client_id: client_id.to_owned(),
        client_version: CLIENT_VERSION.to_owned(),
    };
    let text = serde_json::to_string(&open).map_err(|error| failed(error.to_string()))?;
    futures::SinkExt::send(&mut socket, Message::text(text))
        .await
        .map_err(|error| failed(error.to_string()))?;
    Ok(socket)
}
