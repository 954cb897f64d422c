use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write;

use crate::{Action, EngineError, Resource, ResourceAddress, order_by_dependencies};

/// .what = where the wish came from
/// .why = the plan document names its manifest, as the TypeScript declastruct does
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wish {
    /// the manifest's path
    pub uri: String,
    /// the values of the manifest's variables the plan was made with, by name
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vars: std::collections::BTreeMap<String, String>,
    /// the `--var-file` files read, in the order given
    #[serde(default, rename = "varFiles", skip_serializing_if = "Vec::is_empty")]
    pub var_files: Vec<String>,
    /// the addresses the plan was limited to (`--target`), empty for the whole manifest
    /// .why = `apply --plan` plans again with the same targets, or every other resource would look new
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// whether the targeted tunnels were closed for every holder (`--force-close`)
    #[serde(
        default,
        rename = "forceClose",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub force_close: bool,
}

/// .what = the declared, live and differing state of one resource
/// .why = the plan document carries all three so a reader needs nothing else
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeState {
    /// the declared resource
    pub desired: Value,
    /// the live resource, or null when it does not exist
    pub remote: Option<Value>,
    /// a unified diff from remote to desired, or null when KEEP
    pub difference: Option<String>,
}

/// .what = one resource's planned change
/// .why = the unit that plan prints and apply executes
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// the resource this change is for
    pub for_resource: ResourceAddress,
    /// what apply will do
    pub action: Action,
    /// desired, remote and their difference
    pub state: ChangeState,
    /// what the action alone does not say, e.g. `released; stays open for …`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// .what = the whole plan: changes in the order apply will run them, and a hash of what they mean
/// .why = `plan --out` saves it, `apply --plan` checks its hash against a fresh plan before acting
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// sha256 hex of the canonical changes
    pub hash: String,
    /// when the plan was made, RFC 3339 UTC
    pub created_at: String,
    /// the manifest the plan was made from
    pub wish: Wish,
    /// the changes, in apply order
    pub changes: Vec<Change>,
    /// for each change, the indexes of the changes it waits for
    #[serde(skip)]
    pub dependencies: Vec<Vec<usize>>,
}

impl Plan {
    /// .what = plans every resource: action, difference, dependency order and hash
    /// .why = the single place where the live world is compared with the wish
    pub fn compute<R: Resource>(resources: &[R], wish: Wish) -> Result<Self, EngineError> {
        let addresses: Vec<ResourceAddress> = resources.iter().map(Resource::address).collect();
        let edges: Vec<_> = resources.iter().flat_map(Resource::edges).collect();
        let (order, predecessors) = order_by_dependencies(&addresses, &edges)?;

        let mut position = vec![0; resources.len()];
        for (rank, &index) in order.iter().enumerate() {
            position[index] = rank;
        }
        let changes: Vec<Change> = order
            .iter()
            .map(|&index| {
                let resource = &resources[index];
                let desired = resource.desired();
                let remote = resource.remote();
                let action = resource.action(&desired, remote.as_ref());
                let difference = resource.difference(action, &desired, remote.as_ref());
                Change {
                    for_resource: addresses[index].clone(),
                    action,
                    state: ChangeState {
                        desired,
                        remote,
                        difference,
                    },
                    note: resource.note(action),
                }
            })
            .collect();
        let dependencies = order
            .iter()
            .map(|&index| {
                predecessors[index]
                    .iter()
                    .map(|&before| position[before])
                    .collect()
            })
            .collect();

        Ok(Plan {
            hash: compute_plan_hash(&changes),
            created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            wish,
            changes,
            dependencies,
        })
    }

    /// .what = whether applying the plan would change anything
    /// .why = drives "no changes" and `--detailed-exitcode`
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|change| change.action.is_change())
    }

    /// .what = the resources whose planned change differs between `self` and a saved plan
    /// .why = "plan is stale" must say what changed, not only that something did
    pub fn differences_from(&self, saved: &Plan) -> Vec<String> {
        let saved_by_address: HashMap<&ResourceAddress, &Change> = saved
            .changes
            .iter()
            .map(|change| (&change.for_resource, change))
            .collect();
        let fresh_addresses: HashSet<&ResourceAddress> = self
            .changes
            .iter()
            .map(|change| &change.for_resource)
            .collect();
        let mut differences = Vec::new();
        for change in &self.changes {
            match saved_by_address.get(&change.for_resource) {
                None => differences.push(format!("{} is new", change.for_resource.slug)),
                Some(other) if canonical_change(other) != canonical_change(change) => {
                    let detail = if other.action == change.action {
                        "its live state changed".to_string()
                    } else {
                        format!("was {}, now {}", other.action, change.action)
                    };
                    differences.push(format!("{}: {detail}", change.for_resource.slug));
                }
                Some(_) => {}
            }
        }
        for other in &saved.changes {
            if !fresh_addresses.contains(&other.for_resource) {
                differences.push(format!("{} is no longer declared", other.for_resource.slug));
            }
        }
        if differences.is_empty() && self.hash != saved.hash {
            differences.push("the order or content of the changes differs".to_string());
        }
        differences
    }
}

/// what of a change its meaning depends on, as canonical JSON: never display text, never live metadata
fn canonical_change(change: &Change) -> Vec<u8> {
    let mut out = Vec::new();
    // writing into a Vec cannot fail
    let _ = write_canonical_change(change, &mut out);
    out
}

/// `{"action":…,"desired":…,"forResource":…,"remote":…}` with every object's keys sorted, the live state
/// projected onto the declared fields; written straight to `out`, with no intermediate JSON tree
fn write_canonical_change(change: &Change, out: &mut impl Write) -> std::io::Result<()> {
    let desired = &change.state.desired;
    out.write_all(b"{\"action\":")?;
    serde_json::to_writer(&mut *out, &change.action)?;
    out.write_all(b",\"desired\":")?;
    write_canonical(desired, out)?;
    out.write_all(b",\"forResource\":{\"class\":")?;
    serde_json::to_writer(&mut *out, &change.for_resource.class)?;
    out.write_all(b",\"slug\":")?;
    serde_json::to_writer(&mut *out, &change.for_resource.slug)?;
    out.write_all(b"},")?;
    // only where there is one: plans without notes hash as they always did
    if let Some(note) = &change.note {
        out.write_all(b"\"note\":")?;
        serde_json::to_writer(&mut *out, note)?;
        out.write_all(b",")?;
    }
    out.write_all(b"\"remote\":")?;
    match &change.state.remote {
        None => out.write_all(b"null")?,
        Some(remote) => write_canonical_projection(remote, desired, out)?,
    }
    out.write_all(b"}")
}

fn write_sorted_object<'a>(
    fields: impl Iterator<Item = (&'a String, Option<&'a Value>, Option<&'a Value>)>,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let mut entries: Vec<_> = fields.collect();
    entries.sort_unstable_by(|left, right| left.0.cmp(right.0));
    out.write_all(b"{")?;
    for (position, (key, value, onto)) in entries.into_iter().enumerate() {
        if position > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, key)?;
        out.write_all(b":")?;
        match (value, onto) {
            (None, _) => out.write_all(b"null")?,
            (Some(value), None) => write_canonical(value, out)?,
            (Some(value), Some(onto)) => write_canonical_projection(value, onto, out)?,
        }
    }
    out.write_all(b"}")
}

/// `value` as compact JSON with every object's keys sorted
fn write_canonical(value: &Value, out: &mut impl Write) -> std::io::Result<()> {
    match value {
        Value::Object(fields) => write_sorted_object(
            fields.iter().map(|(key, inner)| (key, Some(inner), None)),
            out,
        ),
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(item, out)?;
            }
            out.write_all(b"]")
        }
        scalar => Ok(serde_json::to_writer(&mut *out, scalar)?),
    }
}

/// `project_onto(remote, desired)` written canonically, without building it
fn write_canonical_projection(
    remote: &Value,
    desired: &Value,
    out: &mut impl Write,
) -> std::io::Result<()> {
    match (remote, desired) {
        (Value::Object(remote_fields), Value::Object(desired_fields)) => write_sorted_object(
            desired_fields
                .iter()
                .map(|(key, onto)| (key, remote_fields.get(key), Some(onto))),
            out,
        ),
        _ => write_canonical(remote, out),
    }
}

/// .what = a JSON value with every object's keys sorted, printed compactly
/// .why = equal meanings must hash equal whatever order fields were built in
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    let _ = write_canonical(value, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// feeds what is written into a sha256
struct Hashing(Sha256);

impl Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// .what = sha256 hex over the canonical changes (a JSON array of `canonical_change`s)
/// .why = the same plan hashes the same in a terminal and in CI, so a saved plan can be checked for staleness
pub fn compute_plan_hash(changes: &[Change]) -> String {
    let mut hashing = Hashing(Sha256::new());
    let _ = hashing.write_all(b"[");
    for (position, change) in changes.iter().enumerate() {
        if position > 0 {
            let _ = hashing.write_all(b",");
        }
        let _ = write_canonical_change(change, &mut hashing);
    }
    let _ = hashing.write_all(b"]");
    let digest = hashing.0.finalize();
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Edge;
    use serde_json::json;

    struct Fake {
        slug: &'static str,
        desired: Value,
        remote: Option<Value>,
        after: Option<&'static str>,
    }

    fn address(slug: &str) -> ResourceAddress {
        ResourceAddress {
            class: "Fake".into(),
            slug: slug.into(),
        }
    }

    impl Resource for Fake {
        fn address(&self) -> ResourceAddress {
            address(self.slug)
        }
        fn desired(&self) -> Value {
            self.desired.clone()
        }
        fn remote(&self) -> Option<Value> {
            self.remote.clone()
        }
        fn edges(&self) -> Vec<Edge> {
            self.after
                .map(|before| Edge {
                    before: address(before),
                    after: self.address(),
                })
                .into_iter()
                .collect()
        }
    }

    fn wish() -> Wish {
        Wish {
            uri: "declastruct.yml".into(),
            ..Wish::default()
        }
    }

    fn sample(tunnel_pid: u32) -> Vec<Fake> {
        vec![
            Fake {
                slug: "tunnel",
                desired: json!({"status": "OPEN"}),
                remote: Some(json!({"status": "CLOSED", "pid": tunnel_pid})),
                after: Some("bastion"),
            },
            Fake {
                slug: "bastion",
                desired: json!({"status": "running"}),
                remote: Some(json!({"status": "running", "instanceId": "i-1"})),
                after: None,
            },
            Fake {
                slug: "new",
                desired: json!({"status": "running"}),
                remote: None,
                after: None,
            },
        ]
    }

    #[test]
    fn actions_follow_the_declared_fields() {
        let plan = Plan::compute(&sample(1), wish()).expect("plan");
        let actions: Vec<_> = plan
            .changes
            .iter()
            .map(|change| (change.for_resource.slug.as_str(), change.action))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("bastion", Action::Keep),
                ("tunnel", Action::Update),
                ("new", Action::Create)
            ]
        );
        assert_eq!(plan.dependencies, vec![vec![], vec![0], vec![]]);
        assert!(plan.has_changes());
        assert_eq!(plan.changes[0].state.difference, None);
        assert!(plan.changes[1].state.difference.is_some());
    }

    #[test]
    fn hash_ignores_metadata_and_time_but_not_meaning() {
        let first = Plan::compute(&sample(1), wish()).expect("plan");
        let other_pid = Plan::compute(&sample(2), wish()).expect("plan");
        assert_eq!(first.hash, other_pid.hash);
        assert_eq!(first.hash.len(), 64);

        let mut changed = sample(1);
        changed[0].remote = Some(json!({"status": "OPEN"}));
        let fresh = Plan::compute(&changed, wish()).expect("plan");
        assert_ne!(first.hash, fresh.hash);
        assert_eq!(
            fresh.differences_from(&first),
            vec!["tunnel: was UPDATE, now KEEP"]
        );
    }

    /// the hash is defined as sha256 over a JSON array of `{forResource, action, desired, remote}` objects
    /// (remote projected onto desired), keys sorted, printed compactly; the streaming writer must agree
    #[test]
    fn hash_is_sha256_of_the_sorted_canonical_document() {
        fn sorted(value: &Value) -> Value {
            match value {
                Value::Object(fields) => {
                    let mut entries: Vec<_> = fields.iter().collect();
                    entries.sort_by(|left, right| left.0.cmp(right.0));
                    Value::Object(
                        entries
                            .into_iter()
                            .map(|(key, inner)| (key.clone(), sorted(inner)))
                            .collect(),
                    )
                }
                Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
                scalar => scalar.clone(),
            }
        }
        let mut resources = sample(1);
        resources.push(Fake {
            slug: "nested \"ü\"",
            desired: json!({"z": {"b": [1, {"y": 2, "x": "é\n"}], "a": null}, "m": 1.5}),
            remote: Some(json!({"z": {"a": 3, "b": "x", "extra": true}, "other": 1})),
            after: None,
        });
        let plan = Plan::compute(&resources, wish()).expect("plan");
        let document = Value::Array(
            plan.changes
                .iter()
                .map(|change| {
                    json!({
                        "forResource": change.for_resource,
                        "action": change.action,
                        "desired": change.state.desired,
                        "remote": change.state.remote.as_ref()
                            .map(|remote| crate::project_onto(remote, &change.state.desired)),
                    })
                })
                .collect(),
        );
        let expected: String = Sha256::digest(sorted(&document).to_string().as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(plan.hash, expected);
        assert_eq!(canonical_json(&document), sorted(&document).to_string());
    }

    #[test]
    fn canonical_json_sorts_keys() {
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": {"d": 2, "c": 3}})),
            r#"{"a":{"c":3,"d":2},"b":1}"#
        );
    }
}
