//! .what = the manifest deserializer's own error: what went wrong as data (an unknown field and the expected
//! ones, a missing field, an unknown variant, a wrong type or value), with serde's usual message
//! .why = the loader turns each into a located diagnostic by matching on the kind, never by parsing the message;
//! the messages stay word for word those of `serde_json` (they are built by it), so diagnostics do not change

use std::fmt;

use serde::de::{self, Expected, Unexpected};

/// .what = one deserialization failure of a manifest value
/// .why = see the module
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestDeError {
    /// a key the type does not take
    UnknownField {
        /// the key as written
        field: String,
        /// the keys the type takes
        expected: &'static [&'static str],
        /// serde's message
        message: String,
    },
    /// a key the type needs is absent
    MissingField {
        /// the key
        field: &'static str,
        /// serde's message
        message: String,
    },
    /// a value that is none of an enum's names
    UnknownVariant {
        /// the value as written
        variant: String,
        /// the names the enum takes
        expected: &'static [&'static str],
        /// serde's message
        message: String,
    },
    /// a value of the wrong type (a list for a string, …)
    InvalidType {
        /// serde's message
        message: String,
    },
    /// a value of the right type that is not allowed
    InvalidValue {
        /// what the type expects, in the words of its visitor (e.g. `declastruct_aws::PORT_EXPECTED`)
        expected: String,
        /// serde's message
        message: String,
    },
    /// anything else, in the type's own words
    Other {
        /// the message
        message: String,
    },
}

impl ManifestDeError {
    /// .what = the message, as serde would word it
    /// .why = diagnostics quote it after the value's path
    pub fn message(&self) -> &str {
        match self {
            Self::UnknownField { message, .. }
            | Self::MissingField { message, .. }
            | Self::UnknownVariant { message, .. }
            | Self::InvalidType { message }
            | Self::InvalidValue { message, .. }
            | Self::Other { message } => message,
        }
    }
}

impl fmt::Display for ManifestDeError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.message())
    }
}

impl std::error::Error for ManifestDeError {}

impl de::Error for ManifestDeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Other {
            message: message.to_string(),
        }
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::InvalidType {
            message: <serde_json::Error as de::Error>::invalid_type(unexpected, expected)
                .to_string(),
        }
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn Expected) -> Self {
        Self::InvalidValue {
            expected: expected.to_string(),
            message: <serde_json::Error as de::Error>::invalid_value(unexpected, expected)
                .to_string(),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::UnknownVariant {
            variant: variant.to_string(),
            expected,
            message: <serde_json::Error as de::Error>::unknown_variant(variant, expected)
                .to_string(),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::UnknownField {
            field: field.to_string(),
            expected,
            message: <serde_json::Error as de::Error>::unknown_field(field, expected).to_string(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::MissingField {
            field,
            message: <serde_json::Error as de::Error>::missing_field(field).to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde::de::IntoDeserializer;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        kind: Choice,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    enum Choice {
        One,
        Two,
    }

    fn read(pairs: &[(&str, &str)]) -> ManifestDeError {
        let map: std::collections::BTreeMap<String, String> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_string(), (*value).to_string()))
            .collect();
        let deserializer: serde::de::value::MapDeserializer<'_, _, ManifestDeError> =
            map.into_deserializer();
        Sample::deserialize(deserializer).expect_err("an error")
    }

    #[test]
    fn each_failure_is_data_with_serdes_message() {
        assert_eq!(
            read(&[("name", "x"), ("kind", "One"), ("colour", "red")]),
            ManifestDeError::UnknownField {
                field: "colour".into(),
                expected: &["name", "kind"],
                message: "unknown field `colour`, expected `name` or `kind`".into(),
            }
        );
        assert_eq!(
            read(&[("name", "x")]),
            ManifestDeError::MissingField {
                field: "kind",
                message: "missing field `kind`".into(),
            }
        );
        assert_eq!(
            read(&[("name", "x"), ("kind", "Three")]),
            ManifestDeError::UnknownVariant {
                variant: "Three".into(),
                expected: &["One", "Two"],
                message: "unknown variant `Three`, expected `One` or `Two`".into(),
            }
        );
    }
}
