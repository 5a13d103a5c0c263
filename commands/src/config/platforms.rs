//! Chat platforms as the configuration sees them, without naming one: their sections are
//! kept as written for each platform's adapter to read and check, and the identity kinds
//! they own (`PLATFORM:ID` for a person, `PLATFORM-group:ID` for many) are handed in by the
//! code that wires platforms, so `[people]` and `[roles]` are checked against what runs.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value of a platform's section, as the configuration sources gave it. It holds secrets
/// (tokens), so `Debug` shows no text.
#[derive(Clone, PartialEq)]
pub enum RawValue {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    String(String),
    Array(Vec<RawValue>),
    Table(BTreeMap<String, RawValue>),
    None,
}

impl fmt::Debug for RawValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawValue::Bool(b) => write!(f, "{b}"),
            RawValue::Int(n) => write!(f, "{n}"),
            RawValue::UInt(n) => write!(f, "{n}"),
            RawValue::Float(n) => write!(f, "{n}"),
            RawValue::String(s) if s.is_empty() => f.write_str("\"\""),
            RawValue::String(_) => f.write_str("\"[redacted]\""),
            RawValue::Array(items) => f.debug_list().entries(items).finish(),
            RawValue::Table(table) => f.debug_map().entries(table).finish(),
            RawValue::None => f.write_str("none"),
        }
    }
}

impl Serialize for RawValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RawValue::Bool(b) => s.serialize_bool(*b),
            RawValue::Int(n) => s.serialize_i64(*n),
            RawValue::UInt(n) => s.serialize_u64(*n),
            RawValue::Float(n) => s.serialize_f64(*n),
            RawValue::String(v) => s.serialize_str(v),
            RawValue::Array(items) => items.serialize(s),
            RawValue::Table(table) => table.serialize(s),
            RawValue::None => s.serialize_none(),
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a configuration value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<RawValue, E> {
        Ok(RawValue::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::String(v))
    }
    fn visit_none<E>(self) -> Result<RawValue, E> {
        Ok(RawValue::None)
    }
    fn visit_unit<E>(self) -> Result<RawValue, E> {
        Ok(RawValue::None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawValue::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut table = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, RawValue>()? {
            table.insert(key, value);
        }
        Ok(RawValue::Table(table))
    }
}

/// The chat platforms' sections (`[NAME]` tables no other key of the configuration claims),
/// by name. Each platform's adapter reads and checks its own; a name no platform claims is
/// reported by the wiring as an unknown key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlatformSections(BTreeMap<String, RawValue>);

impl PlatformSections {
    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.0.get(name)
    }

    pub fn insert(&mut self, name: impl Into<String>, value: RawValue) {
        self.0.insert(name.into(), value);
    }

    pub fn remove(&mut self, name: &str) -> Option<RawValue> {
        self.0.remove(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether an identity stands for one person or for any number of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// `PLATFORM:ID`: one account of one person.
    Person,
    /// A group or role on the platform: whoever is in it.
    Group,
}

/// One kind of identity a platform owns: the prefix before the `:` and what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityKind {
    pub prefix: &'static str,
    pub holds: Holds,
}

impl IdentityKind {
    pub const fn person(prefix: &'static str) -> IdentityKind {
        IdentityKind {
            prefix,
            holds: Holds::Person,
        }
    }

    pub const fn group(prefix: &'static str) -> IdentityKind {
        IdentityKind {
            prefix,
            holds: Holds::Group,
        }
    }
}

/// Every identity kind of the platforms this binary wires, in their order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityKinds(Vec<IdentityKind>);

impl IdentityKinds {
    pub fn new(kinds: impl IntoIterator<Item = IdentityKind>) -> IdentityKinds {
        IdentityKinds(kinds.into_iter().collect())
    }

    /// The kind of a normalised identity (`PLATFORM:ID`); `None` when its prefix is not
    /// one of these or the id is empty.
    pub fn of(&self, identity: &str) -> Option<IdentityKind> {
        let (prefix, id) = identity.split_once(':')?;
        if id.is_empty() {
            return None;
        }
        self.0.iter().copied().find(|k| k.prefix == prefix)
    }

    pub fn is_group(&self, identity: &str) -> bool {
        self.of(identity).is_some_and(|k| k.holds == Holds::Group)
    }

    /// The prefixes, all or only those holding `holds`, as a list for a message.
    pub fn prefixes(&self, holds: Option<Holds>) -> String {
        self.0
            .iter()
            .filter(|k| holds.is_none_or(|h| k.holds == h))
            .map(|k| k.prefix)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_kinds_name_people_and_groups() {
        let kinds = IdentityKinds::new([
            IdentityKind::person("chat"),
            IdentityKind::group("chat-team"),
        ]);
        assert_eq!(kinds.of("chat:U1"), Some(IdentityKind::person("chat")));
        assert!(kinds.is_group("chat-team:T1"));
        assert!(!kinds.is_group("chat:U1"));
        for bad in ["chat:", "other:U1", "U1", ":U1"] {
            assert_eq!(kinds.of(bad), None, "{bad}");
        }
        assert_eq!(kinds.prefixes(None), "chat, chat-team");
        assert_eq!(kinds.prefixes(Some(Holds::Person)), "chat");
    }

    #[test]
    fn raw_values_never_show_text() {
        let mut table = BTreeMap::new();
        table.insert("token".to_string(), RawValue::String("s3cret".into()));
        table.insert("unset".to_string(), RawValue::String(String::new()));
        table.insert("enabled".to_string(), RawValue::Bool(true));
        let shown = format!("{:?}", RawValue::Table(table));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(shown.contains("true"), "{shown}");
    }
}
