use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// .what = a duration as a manifest writes it: a whole number and a unit, `90s`, `30m`, `2h`
/// .why = `idleClose` and `idleStop` read the way people say them, and plans show them back the same way
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdleDuration {
    seconds: u64,
}

impl IdleDuration {
    /// .what = a duration of `seconds`
    /// .why = tests and SDK users build one without text
    pub fn from_secs(seconds: u64) -> Self {
        Self { seconds }
    }

    /// .what = the duration
    /// .why = the supervisor and the idle checks count with it
    pub fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }

    /// .what = reads `90s`, `30m`, `2h`; `None` for anything else (zero included)
    /// .why = one grammar, for the manifest and for messages
    pub fn parse(text: &str) -> Option<Self> {
        let split = text.len().checked_sub(1)?;
        let (number, unit) = text.split_at(split);
        if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let number: u64 = number.parse().ok()?;
        let seconds = match unit {
            "s" => number,
            "m" => number.checked_mul(60)?,
            "h" => number.checked_mul(3600)?,
            _ => return None,
        };
        (seconds > 0).then_some(Self { seconds })
    }
}

impl std::fmt::Display for IdleDuration {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seconds {
            seconds if seconds % 3600 == 0 => write!(formatter, "{}h", seconds / 3600),
            seconds if seconds % 60 == 0 => write!(formatter, "{}m", seconds / 60),
            seconds => write!(formatter, "{seconds}s"),
        }
    }
}

impl Serialize for IdleDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IdleDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::invalid_value(
                serde::de::Unexpected::Str(&text),
                &"a duration: a whole number and s, m or h, e.g. 90s, 30m, 2h",
            )
        })
    }
}

impl JsonSchema for IdleDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IdleDuration".into()
    }

    fn json_schema(_generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([1-9][0-9]*[smh]|\\$\\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\\})$",
            "description": "a whole number and a unit: 90s, 30m, 2h"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_shows_the_manifests_words() {
        for (text, seconds) in [("90s", 90), ("30m", 1800), ("2h", 7200), ("120s", 120)] {
            let duration = IdleDuration::parse(text).expect(text);
            assert_eq!(duration.as_duration().as_secs(), seconds);
        }
        assert_eq!(IdleDuration::from_secs(120).to_string(), "2m");
        assert_eq!(IdleDuration::from_secs(90).to_string(), "90s");
        for bad in [
            "",
            "s",
            "0s",
            "5",
            "5d",
            "-5s",
            "1.5h",
            "5 s",
            "99999999999999999999h",
        ] {
            assert_eq!(IdleDuration::parse(bad), None, "{bad:?}");
        }
    }
}
