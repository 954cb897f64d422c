use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Action;
use crate::diff::{projection_equals, unified_difference};

/// .what = the address of one resource in a plan: its class and a stable slug
/// .why = changes, dependencies and `declastruct logs ADDRESS` all name resources by it
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceAddress {
    /// the resource's kind, e.g. `DeclaredAwsVpcTunnel`
    pub class: String,
    /// a stable, human-readable id, unique within a manifest
    pub slug: String,
}

impl std::fmt::Display for ResourceAddress {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}", self.slug)
    }
}

/// .what = an ordering constraint: `before` must be applied before `after`
/// .why = a bastion starts before its tunnel opens, and a tunnel closes before its bastion stops
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// the resource applied first
    pub before: ResourceAddress,
    /// the resource applied second
    pub after: ResourceAddress,
}

/// .what = one declared resource together with what was observed of it live
/// .why = the engine plans any kind of resource through this trait, so a new kind needs no engine change
pub trait Resource {
    /// the resource's address
    fn address(&self) -> ResourceAddress;

    /// the declared resource, as the plan document shows it
    fn desired(&self) -> Value;

    /// the live resource, or `None` when it does not exist
    fn remote(&self) -> Option<Value>;

    /// the ordering constraints this resource brings, given the whole wish
    fn edges(&self) -> Vec<Edge> {
        Vec::new()
    }

    /// .what = the action that brings `remote` to `desired` (this resource's own documents, computed once)
    /// .why = the default compares only what was declared, so live metadata (ids, pids) never shows as drift
    fn action(&self, desired: &Value, remote: Option<&Value>) -> Action {
        declared_action(desired, remote)
    }

    /// .what = a note the change carries beside its action, e.g. why a tunnel declared CLOSED stays open
    /// .why = a KEEP that is not the declared state (another holder keeps a tunnel open) says so in the plan and in
    /// its document, never silently
    fn note(&self, _action: Action) -> Option<String> {
        None
    }

    /// .what = the difference a change shows: a unified diff from `remote` to `desired`, `None` for KEEP
    /// .why = the default diffs the declared fields; a resource whose change lies outside them (a tunnel that
    /// is open but does not serve) overrides it to say what will change
    fn difference(
        &self,
        action: Action,
        desired: &Value,
        remote: Option<&Value>,
    ) -> Option<String> {
        if action == Action::Keep {
            None
        } else {
            unified_difference(remote, desired)
        }
    }
}

/// .what = the action that brings `remote` to `desired`, comparing only the declared fields: CREATE when there is
/// nothing live, KEEP when what was declared holds, UPDATE otherwise
/// .why = `Resource::action`'s default, and what an override falls back to once its own cases are decided
pub fn declared_action(desired: &Value, remote: Option<&Value>) -> Action {
    match remote {
        None => Action::Create,
        Some(remote) if projection_equals(remote, desired) => Action::Keep,
        Some(_) => Action::Update,
    }
}
