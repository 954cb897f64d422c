use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// .what = what a manifest names a tunnel: letters, digits, `-` and `_`, not starting with `-`
/// .why = a named tunnel's address is its name everywhere (exec, env, logs, connect, --target, plan, status), so
/// a port or bastion change neither renames it nor breaks the scripts that use it
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TunnelName(String);

/// what a tunnel's name may hold, in words: said by every error about one
pub const TUNNEL_NAME_EXPECTED: &str = "a tunnel name: letters, digits, `-` and `_`, not starting with `-` (at most 64), e.g. orders-dev";

impl TunnelName {
    /// the longest name: an address must fit a status row and an environment variable's name
    pub const MAX_LEN: usize = 64;

    /// .what = reads a name; `None` when it is empty, too long, holds anything but letters, digits, `-`, `_`,
    /// or starts with `-`
    /// .why = one grammar for the manifest and for SDK users; a name starting with `-` would read as a flag
    /// (`exec -orders`)
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.bytes().next().is_some_and(|first| first != b'-')
            && text.len() <= Self::MAX_LEN
            && text
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        valid.then(|| Self(text.to_string()))
    }

    /// .what = the name
    /// .why = addresses and messages
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TunnelName {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl Serialize for TunnelName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TunnelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&text),
                &TUNNEL_NAME_EXPECTED,
            )
        })
    }
}

impl JsonSchema for TunnelName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TunnelName".into()
    }

    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            // a name, or one built from variables (`orders-${env}`), resolved before it is checked
            "pattern": "^([A-Za-z0-9_]|\\$\\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\\})([A-Za-z0-9_-]|\\$\\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\\})*$",
            "maxLength": 64,
            "description": "the tunnel's address everywhere (exec, env, logs, connect, --target, plan, status): letters, digits, `-` and `_`, not starting with `-`"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_letters_digits_dashes_and_underscores_only() {
        for good in ["orders-dev", "a", "A_1", "_orders", &"x".repeat(64)] {
            assert_eq!(
                TunnelName::parse(good).map(|name| name.to_string()),
                Some(good.to_string())
            );
        }
        for bad in [
            "",
            "orders.dev",
            "orders dev",
            "ördérs",
            "a/b",
            &"x".repeat(65),
            "${env}",
            "-orders",
        ] {
            assert_eq!(TunnelName::parse(bad), None, "{bad:?}");
        }
    }
}
