use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// .what = a tunnel's identity: the first 16 hex characters of
/// `sha256("{instanceId}:{remoteHost}:{remotePort}:{localPort}")`, computed here and nowhere else
/// .why = the contract's formula names the tunnel's files and its processes' marker; it uses the resolved instance
/// id and far end, so a tunnel to one environment never passes for another's
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TunnelId(String);

impl TunnelId {
    /// .what = the identity of a session from `instance_id` to `remote_host:remote_port` on local `local_port`
    /// .why = the one place the formula lives
    pub fn compute(
        instance_id: &str,
        remote_host: &str,
        remote_port: u16,
        local_port: u16,
    ) -> Self {
        let digest = Sha256::digest(
            format!("{instance_id}:{remote_host}:{remote_port}:{local_port}").as_bytes(),
        );
        Self(
            digest
                .iter()
                .take(8)
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        )
    }

    /// .what = the identity a file name or a marker carries, when it is one (16 lowercase hex characters)
    /// .why = a name in the tunnels folder that is not an identity is never taken for a tunnel
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 16
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)))
        .then(|| Self(text.to_string()))
    }

    /// .what = the identity as text
    /// .why = file names, markers and messages
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TunnelId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl std::ops::Deref for TunnelId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_first_16_hex_characters_of_the_blueprint_formula() {
        // sha256("i-0abc:db.example:5432:7775"), computed independently with `sha256sum`
        let id = TunnelId::compute("i-0abc", "db.example", 5432, 7775);
        assert_eq!(id.len(), 16);
        assert_eq!(id.as_str(), EXPECTED);
        assert_eq!(TunnelId::parse(EXPECTED), Some(id));
    }

    const EXPECTED: &str = include_str!("id.expected").trim_ascii();

    #[test]
    fn differs_by_instance() {
        assert_ne!(
            TunnelId::compute("i-0abc", "db.example", 5432, 7775),
            TunnelId::compute("i-0abd", "db.example", 5432, 7775)
        );
    }

    #[test]
    fn only_an_identity_parses() {
        for name in [
            "",
            "abcd",
            "0123456789ABCDEF",
            "0123456789abcdefg",
            "../../etc/passwd",
        ] {
            assert_eq!(TunnelId::parse(name), None, "{name:?}");
        }
    }
}
