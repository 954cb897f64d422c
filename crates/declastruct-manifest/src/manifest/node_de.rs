//! .what = serde deserializes the manifest's types straight from the span-keeping YAML tree
//! .why = no intermediate JSON tree per resource: loading a manifest of 10,000 resources stays in milliseconds,
//! and serde's messages are the same as from `serde_json::Value`; the error is `ManifestDeError`, which carries
//! what went wrong as data

use super::de_error::ManifestDeError as Error;
use serde::de::value::CowStrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use super::yaml_tree::{Node, NodeValue};

/// .what = a deserializer over one node; `skip_key` hides one key of a map (a resource's `kind`)
/// .why = the loader reads `kind` itself, and the declaration types deny unknown fields
#[derive(Clone, Copy)]
pub struct NodeDeserializer<'a> {
    node: &'a Node,
    skip_key: Option<&'a str>,
}

impl<'a> NodeDeserializer<'a> {
    /// .what = a deserializer over `node`, hiding map key `skip_key` at the top level only
    /// .why = see the type
    pub fn new(node: &'a Node, skip_key: Option<&'a str>) -> Self {
        Self { node, skip_key }
    }

    fn nested(node: &'a Node) -> Self {
        Self {
            node,
            skip_key: None,
        }
    }
}

struct Items<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.items
            .next()
            .map(|item| seed.deserialize(NodeDeserializer::nested(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    skip_key: Option<&'a str>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (key, value) in self.entries.by_ref() {
            let text = key.key_str();
            if self.skip_key.is_some_and(|skip| skip == text) {
                continue;
            }
            self.value = Some(value);
            return seed
                .deserialize(CowStrDeserializer::<Error>::new(text))
                .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a map value was asked for before its key"))?;
        seed.deserialize(NodeDeserializer::nested(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

impl<'de> NodeDeserializer<'de> {
    fn visit_sequence<V: Visitor<'de>>(items: &'de [Node], visitor: V) -> Result<V::Value, Error> {
        let mut access = Items {
            items: items.iter(),
        };
        let value = visitor.visit_seq(&mut access)?;
        let left = access.items.len();
        if left == 0 {
            Ok(value)
        } else {
            Err(de::Error::invalid_length(
                items.len(),
                &"fewer elements in array",
            ))
        }
    }

    fn visit_mapping<V: Visitor<'de>>(
        entries: &'de [(Node, Node)],
        skip_key: Option<&'de str>,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let mut access = Entries {
            entries: entries.iter(),
            skip_key,
            value: None,
        };
        let value = visitor.visit_map(&mut access)?;
        if access.entries.len() == 0 {
            Ok(value)
        } else {
            Err(de::Error::invalid_length(
                entries.len(),
                &"fewer elements in map",
            ))
        }
    }
}

/// .what = a deserializer over one scalar (null, bool, number, string), with the manifest's error type
/// .why = a scalar reads as the same `serde_json::Value` would (the same visits, so the same messages), while a
/// visitor's failure arrives as `ManifestDeError` data rather than `serde_json::Error` text
#[derive(Clone, Copy)]
struct Scalar<'a>(&'a serde_json::Value);

impl<'de> Deserializer<'de> for Scalar<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            serde_json::Value::Null => visitor.visit_unit(),
            serde_json::Value::Bool(value) => visitor.visit_bool(*value),
            serde_json::Value::Number(number) => {
                if let Some(unsigned) = number.as_u64() {
                    visitor.visit_u64(unsigned)
                } else if let Some(signed) = number.as_i64() {
                    visitor.visit_i64(signed)
                } else {
                    visitor.visit_f64(number.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(text) => visitor.visit_borrowed_str(text),
            // the YAML tree keeps lists and maps as nodes: a scalar is never one
            other => Err(de::Error::invalid_type(
                de::Unexpected::Other(if other.is_array() { "a list" } else { "a map" }),
                &visitor,
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            serde_json::Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            serde_json::Value::Null => visitor.visit_unit(),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// a string names a unit variant (`serde_json`'s `Value` does the same)
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            serde_json::Value::String(text) => {
                visitor.visit_enum(de::value::BorrowedStrDeserializer::<Error>::new(text))
            }
            _ => self.deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// scalars behave exactly as the same `serde_json::Value` would; lists and maps are walked in place
macro_rules! forward_to_scalar_or_any {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match &self.node.value {
                    NodeValue::Scalar(value) | NodeValue::Variable { typed: value, .. } => {
                        Scalar(value).$method(visitor)
                    }
                    NodeValue::Reported => Neutral.$method(visitor),
                    _ => self.deserialize_any(visitor),
                }
            }
        )*
    };
}

impl<'de> Deserializer<'de> for NodeDeserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Scalar(value) | NodeValue::Variable { typed: value, .. } => {
                Scalar(value).deserialize_any(visitor)
            }
            NodeValue::Sequence(items) => Self::visit_sequence(items, visitor),
            NodeValue::Mapping(entries) => Self::visit_mapping(entries, self.skip_key, visitor),
            NodeValue::Reported => Neutral.deserialize_any(visitor),
        }
    }

    forward_to_scalar_or_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char
        deserialize_bytes deserialize_byte_buf deserialize_unit deserialize_identifier
        deserialize_seq deserialize_map
    }

    /// a variable is a string to a field that expects one, whatever its text looks like
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Scalar(value) => Scalar(value).deserialize_str(visitor),
            NodeValue::Variable { text, .. } => visitor.visit_str(text),
            NodeValue::Reported => Neutral.deserialize_str(visitor),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Scalar(value) => Scalar(value).deserialize_option(visitor),
            NodeValue::Reported => Neutral.deserialize_option(visitor),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Scalar(value) | NodeValue::Variable { typed: value, .. } => {
                Scalar(value).deserialize_unit_struct(name, visitor)
            }
            NodeValue::Reported => Neutral.deserialize_unit_struct(name, visitor),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Scalar(value) | NodeValue::Variable { typed: value, .. } => {
                Scalar(value).deserialize_struct(name, fields, visitor)
            }
            NodeValue::Reported => Neutral.deserialize_struct(name, fields, visitor),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Scalar(value) => Scalar(value).deserialize_enum(name, variants, visitor),
            NodeValue::Variable { text, .. } => {
                visitor.visit_enum(de::value::BorrowedStrDeserializer::<Error>::new(text))
            }
            NodeValue::Reported => Neutral.deserialize_enum(name, variants, visitor),
            NodeValue::Mapping(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                visitor.visit_enum(Variant {
                    name: key.key_str(),
                    value: NodeDeserializer::nested(value),
                })
            }
            _ => Err(de::Error::invalid_type(
                de::Unexpected::Other("a list or a map of more than one key"),
                &"a string or a map with a single key",
            )),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// .what = the value of a node already reported as wrong: the most neutral value of whatever is asked for (zero,
/// one, an empty string, no value, the first variant, a struct of such values)
/// .why = the rest of the resource is still read, so that every problem in it is reported at once; what this
/// value leads to is never reported (the loader drops errors that reach a reported node)
#[derive(Clone, Copy)]
struct Neutral;

impl<'de> Deserializer<'de> for Neutral {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        // one: a valid port, a valid count
        visitor.visit_u64(1)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bool(false)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_char('_')
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str("")
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bytes(&[])
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bytes(&[])
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_none()
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(serde::de::value::SeqDeserializer::<_, Error>::new(
            std::iter::empty::<Neutral>(),
        ))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(serde::de::value::MapDeserializer::<_, Error>::new(
            std::iter::empty::<(&str, Neutral)>(),
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(serde::de::value::MapDeserializer::<_, Error>::new(
            fields.iter().map(|field| (*field, Neutral)),
        ))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match variants.first() {
            Some(first) => visitor.visit_enum(CowStrDeserializer::<Error>::new((*first).into())),
            None => visitor.visit_unit(),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64
    }
}

impl<'de> IntoDeserializer<'de, Error> for Neutral {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// an externally tagged enum written as `{ Variant: value }`
struct Variant<'a> {
    name: std::borrow::Cow<'a, str>,
    value: NodeDeserializer<'a>,
}

impl<'de> de::EnumAccess<'de> for Variant<'de> {
    type Error = Error;
    type Variant = NodeDeserializer<'de>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), Error> {
        let name: CowStrDeserializer<'de, Error> = self.name.into_deserializer();
        Ok((seed.deserialize(name)?, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDeserializer<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        serde::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml_tree::parse;
    use serde::Deserialize;
    use serde_json::Value;

    fn both<T: for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug>(source: &str) {
        let root = parse(source).expect("valid").expect("a document");
        let from_node =
            T::deserialize(NodeDeserializer::new(&root, None)).map_err(|e| e.to_string());
        let from_json = serde_json::from_value::<T>(root.to_json()).map_err(|e| e.to_string());
        assert_eq!(from_node, from_json, "{source}");
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        name: String,
        port: u16,
        tags: Option<Vec<String>>,
        mode: Option<Mode>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum Mode {
        Fast,
        Slow,
    }

    #[test]
    fn reads_the_same_as_the_json_tree_would() {
        both::<Sample>("name: a\nport: 7775\ntags: [x, y]\nmode: Fast\n");
        both::<Sample>("name: a\nport: 77754321\n");
        both::<Sample>("name: a\nport: '7775'\n");
        both::<Sample>("name: a\nport: 1\nextra: 2\n");
        both::<Sample>("port: 1\n");
        both::<Sample>("name: [a]\nport: 1\n");
        both::<Sample>("name: a\nport: 1\nmode: Medium\n");
        both::<Sample>("name: a\nport: 1.5\n");
        both::<Sample>("- a\n- b\n");
        both::<Value>("a: {b: [1, 2.5, null, true, x]}\n");
        both::<Vec<u8>>("[1, 2, 300]\n");
        both::<(u8, u8)>("[1, 2, 3]\n");
    }

    #[test]
    fn hides_the_skipped_key_at_the_top_only() {
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Outer {
            inner: Value,
        }
        let root = parse("kind: X\ninner: {kind: Y}\n")
            .expect("valid")
            .expect("a document");
        let outer = Outer::deserialize(NodeDeserializer::new(&root, Some("kind"))).expect("valid");
        assert_eq!(outer.inner, serde_json::json!({"kind": "Y"}));
    }
}
