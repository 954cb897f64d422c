//! .what = a tunnel as the plan sees it: declared and observed, or only recorded (no longer declared, or declared
//! CLOSED while its ends are gone); its documents, action, note and difference
//! .why = the engine plans anything that implements `Resource`; a tunnel's action is more than its declared fields
//! (its health, its holders, an old identity), and its difference says so

use declastruct_aws::internal::VpcTunnelObservation;
use declastruct_aws::{
    DeclaredAwsEc2Instance, TunnelHolder, TunnelMeta, TunnelTarget, VpcTunnelStatus,
};
use declastruct_engine::{
    Action, Edge, Resource, ResourceAddress, declared_action, project_onto, render_document,
    unified_difference,
};
use serde_json::{Value, json};

use super::VpcTunnelDeclaration;
use crate::kinds::{Kind, to_value};

/// .what = a declared tunnel with its observation and both of its ends as found
/// .why = apply opens it without looking them up again
#[derive(Debug, Clone)]
pub struct ObservedTunnel {
    /// as declared
    pub declaration: VpcTunnelDeclaration,
    /// as observed
    pub observation: VpcTunnelObservation,
    /// its bastion as found
    pub bastion: DeclaredAwsEc2Instance,
    /// its far end as resolved
    pub target: TunnelTarget,
    /// ordering against its bastion, cluster or instance
    pub edges: Vec<Edge>,
    /// the identity this manifest opened it under before its bastion or far end resolved differently, still
    /// running
    pub previous: Option<PreviousIdentity>,
    /// `apply --replace` asked to close and open it again even if it looks healthy
    pub forced_replace: bool,
    /// the transport its session runs on and the one it would open with now, when they differ
    pub transport_change: Option<(String, String)>,
    /// whether this manifest environment holds the tunnel now
    pub held: bool,
    /// the other live holders of the tunnel: exec and connect commands, other manifests and environments
    pub others: Vec<TunnelHolder>,
    /// `--force-close` asked to close it for every holder
    pub force_close: bool,
    /// the address of a change of this apply that frees this tunnel's local port before it opens (a moved tunnel)
    pub displaces: Option<String>,
    /// its bastion's `idleStop`, when declared: the tunnel renews the bastion's in-use tag
    pub bastion_idle_stop: Option<declastruct_aws::IdleDuration>,
}

/// .what = a tunnel identity this manifest opened that no longer matches what its declaration resolves to
/// .why = a bastion replaced under the same `exid`, or a writer that moved, must not leave the old session
/// running: it is closed when the new one opens (REPLACE)
#[derive(Debug, Clone)]
pub struct PreviousIdentity {
    /// its identity
    pub hash: declastruct_aws::TunnelId,
    /// its record
    pub meta: TunnelMeta,
    /// its other live holders: while there are any, it is only released
    pub others: Vec<TunnelHolder>,
}

/// .what = a tunnel this manifest opened and no longer declares, still running
/// .why = a Terraform user expects a removed resource to be destroyed: its plan is DESTROY, its apply a close
#[derive(Debug, Clone)]
pub struct RemovedTunnel {
    /// its address, as it was declared
    pub address: ResourceAddress,
    /// its identity
    pub hash: declastruct_aws::TunnelId,
    /// its record
    pub meta: TunnelMeta,
    /// ordering: closed before a bastion the manifest stops
    pub edges: Vec<Edge>,
    /// its other live holders: while there are any, this manifest only releases its hold
    pub others: Vec<TunnelHolder>,
    /// `--force-close` asked to close it for every holder
    pub force_close: bool,
    /// declared CLOSED, but its bastion or far end no longer exists: found by its record, closed by it
    pub stranded: Option<Stranded>,
}

/// .what = a tunnel declared CLOSED whose bastion, cluster or instance is gone, and why
/// .why = a terminated bastion must not keep its session serving: the plan is an UPDATE to CLOSED, with the
/// reason
#[derive(Debug, Clone)]
pub struct Stranded {
    /// the declaration
    pub declaration: VpcTunnelDeclaration,
    /// what is gone, e.g. "its bastion { exid: b } no longer exists"
    pub reason: String,
}

/// .what = holders in words, `pid 4242 (exec psql), manifest other.yml (region=us-east-1)`
/// .why = plans and `status` say who keeps a tunnel open
pub fn describe_holders(holders: &[TunnelHolder]) -> String {
    holders
        .iter()
        .map(declastruct_aws::TunnelHolder::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// the note of a tunnel let go of: who keeps it open, or whom a forced close closes it for
fn release_note(others: &[TunnelHolder], force_close: bool) -> Option<String> {
    match (others.is_empty(), force_close) {
        (true, _) => None,
        (false, false) => Some(format!(
            "released; stays open for {}",
            describe_holders(others)
        )),
        (false, true) => Some(format!(
            "--force-close: closes it for every holder: {}",
            describe_holders(others)
        )),
    }
}

impl RemovedTunnel {
    /// .what = whether applying it closes the tunnel: no other holder, or a forced close
    /// .why = otherwise it is a KEEP that only releases this manifest's hold
    pub fn closes(&self) -> bool {
        self.others.is_empty() || self.force_close
    }

    /// .what = whether a KEEP of it still lets go of this manifest's hold: others keep it open
    /// .why = apply releases the hold, so that the tunnel closes when the others let go
    pub fn releases_when_kept(&self) -> bool {
        !self.closes()
    }
}

impl ObservedTunnel {
    /// .what = whether the tunnel is open and serves, as observed
    /// .why = an open healthy tunnel this manifest does not hold yet is held by apply, not opened again
    fn is_open(&self) -> bool {
        self.observation.tunnel.status == Some(VpcTunnelStatus::Open)
    }

    /// .what = whether apply only has to record this manifest's hold on a healthy tunnel someone else opened
    /// .why = an `exec` or another manifest opened it; this manifest holds it too from now on, and it stays open
    /// when they let go
    pub fn takes_hold(&self) -> bool {
        self.declaration.status == VpcTunnelStatus::Open
            && !self.is_replaced()
            && self.observation.is_healthy()
            && !self.held
    }

    /// .what = the name its record holds when the declaration names the open healthy tunnel otherwise (named or
    /// renamed while open): `Some(None)` for a record without a name
    /// .why = apply records the new name and keeps the session, so `status --all` and `logs` show the tunnel by it
    pub fn renamed_from(&self) -> Option<Option<String>> {
        let name = self.declaration.name.as_ref()?;
        let recorded = self.observation.meta.as_ref()?.tunnel.name.as_ref();
        // while another manifest or an exec holds it too, the name it was recorded under stays: two manifests that
        // name one session differently would otherwise rename it back and forth on every apply
        (self.declaration.status == VpcTunnelStatus::Open
            && !self.is_replaced()
            && self.observation.is_healthy()
            && self.others.is_empty()
            && recorded != Some(name))
        .then(|| recorded.map(ToString::to_string))
    }

    /// .what = whether applying the CLOSED declaration closes a session: the tunnel's or its old identity's,
    /// when no other holder keeps it (or the close is forced)
    /// .why = a tunnel another holder uses is only released: a KEEP with a note
    pub fn closes(&self) -> bool {
        self.closes_current_session()
            || (self.declaration.status == VpcTunnelStatus::Closed
                && self
                    .previous
                    .as_ref()
                    .is_some_and(|previous| previous.others.is_empty() || self.force_close))
    }

    /// .what = whether applying the CLOSED declaration closes the session of the tunnel's current identity (on its
    /// declared port): open, and no other holder keeps it (or the close is forced)
    /// .why = `closes`, and the ordering that lets an opener of that port wait for the close
    pub(crate) fn closes_current_session(&self) -> bool {
        self.declaration.status == VpcTunnelStatus::Closed
            && self.is_open()
            && (self.others.is_empty() || self.force_close)
    }

    /// .what = whether applying the CLOSED declaration only lets go of a tunnel others keep open
    /// .why = the plan shows it as a KEEP with `released; stays open for …`, and apply releases the hold
    pub fn only_releases(&self) -> bool {
        self.declaration.status == VpcTunnelStatus::Closed
            && !self.closes()
            && (self.is_open() || self.previous.is_some())
    }

    /// .what = whether a KEEP of it still lets go of this manifest's hold: declared CLOSED while others keep it
    /// open
    /// .why = apply releases the hold, so that the tunnel closes when the others let go
    pub fn releases_when_kept(&self) -> bool {
        self.only_releases() && (self.held || self.previous.is_some())
    }

    /// .what = whether apply opens a tunnel this machine has no record of: declared OPEN, not running, never
    /// opened here (or closed and forgotten), nothing old in its place
    /// .why = the plan shows it as being opened (its whole declaration added, where it will lead), not as an edit
    /// of a CLOSED record
    pub fn opens_anew(&self) -> bool {
        self.declaration.status == VpcTunnelStatus::Open
            && !self.is_open()
            && !self.is_replaced()
            && self.observation.meta.is_none()
    }

    /// .what = whether apply closes this tunnel's session and opens a new one
    /// .why = an old identity still running, or `--replace`, while the tunnel is declared OPEN
    pub fn is_replaced(&self) -> bool {
        self.declaration.status == VpcTunnelStatus::Open
            && (self.previous.is_some() || self.forced_replace)
    }

    /// .what = why a tunnel declared OPEN and observed OPEN does not serve, if it does not
    /// .why = such a tunnel is planned as an UPDATE that heals it, never as KEEP
    pub fn unhealthy_reason(&self) -> Option<String> {
        let health = self.observation.tunnel.health.as_ref()?;
        (self.declaration.status == VpcTunnelStatus::Open
            && self.observation.tunnel.status == Some(VpcTunnelStatus::Open)
            && !health.healthy)
            .then(|| {
                health
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".into())
            })
    }

    /// the note of `note`, without the exposure warning
    fn plain_note(&self, action: Action) -> Option<String> {
        if self.declaration.status == VpcTunnelStatus::Closed {
            let mut others = self.others.clone();
            if let Some(previous) = &self.previous {
                others.extend(previous.others.iter().cloned());
            }
            return release_note(&others, self.force_close);
        }
        if action == Action::Update && self.takes_hold() {
            return Some(format!(
                "open already, for {}: this manifest holds it too from now on",
                describe_holders(&self.others)
            ));
        }
        // the old session others still use is only let go of: say so before apply does
        if action == Action::Replace
            && let Some(previous) = &self.previous
            && let Some(released) = release_note(&previous.others, self.force_close)
        {
            return Some(format!(
                "the old session (local port {}): {released}",
                previous.meta.local_port
            ));
        }
        if action == Action::Update
            && let Some(recorded) = self.renamed_from()
        {
            return Some(match recorded {
                Some(old) => format!("renamed from `{old}`: the session stays"),
                None => "named: the session stays".to_string(),
            });
        }
        if action == Action::Update && self.opens_anew() {
            let bastion = self.bastion.instance_id.as_deref().unwrap_or("the bastion");
            return Some(format!(
                "opens it: {}:{} -> {bastion} -> {}:{}",
                self.declaration.from.host.as_str(),
                self.declaration.from.port,
                self.target.host,
                self.target.port
            ));
        }
        // closed by itself (idleClose): say so, and that apply opens it again
        if action == Action::Update && !self.is_open() {
            return self
                .observation
                .meta
                .as_ref()
                .and_then(|meta| meta.closed.as_ref())
                .map(|closed| format!("{} at {}; apply opens it again", closed.reason, closed.at));
        }
        None
    }
}

impl Resource for ObservedTunnel {
    fn address(&self) -> ResourceAddress {
        self.declaration.address()
    }

    fn desired(&self) -> Value {
        to_value(&self.declaration)
    }

    fn remote(&self) -> Option<Value> {
        Some(match &self.previous {
            // what runs is the old identity
            Some(previous) if self.observation.tunnel.status != Some(VpcTunnelStatus::Open) => {
                to_value(&previous.meta.tunnel)
            }
            _ => to_value(&self.observation.tunnel),
        })
    }

    fn edges(&self) -> Vec<Edge> {
        self.edges.clone()
    }

    fn action(&self, desired: &Value, remote: Option<&Value>) -> Action {
        if self.is_replaced() {
            return Action::Replace;
        }
        if self.only_releases() {
            return Action::Keep;
        }
        // declared CLOSED while a session of it runs that nobody else holds: closing it is an update
        if self.closes()
            || self.unhealthy_reason().is_some()
            || self.takes_hold()
            || self.renamed_from().is_some()
        {
            return Action::Update;
        }
        declared_action(desired, remote)
    }

    fn note(&self, action: Action) -> Option<String> {
        let note = self.plain_note(action);
        // a tunnel that listens beyond loopback is said every time it is opened
        if self.declaration.from.is_exposed()
            && self.declaration.status == VpcTunnelStatus::Open
            && action != Action::Keep
        {
            let warning = format!(
                "warning: from.expose: listens on {}:{}, reachable by anyone who reaches that address",
                self.declaration.from.host.as_str(),
                self.declaration.from.port
            );
            return Some(match note {
                Some(note) => format!("{note}; {warning}"),
                None => warning,
            });
        }
        note
    }

    /// what the declared fields do not hold is shown too: an unhealthy tunnel's health, a replaced tunnel's old
    /// and new far ends, the holders of a tunnel this manifest takes hold of
    fn difference(
        &self,
        action: Action,
        desired: &Value,
        remote: Option<&Value>,
    ) -> Option<String> {
        if action == Action::Keep {
            return None;
        }
        if self.takes_hold()
            && let Some(remote) = remote
        {
            let mut remote = project_onto(remote, desired);
            let mut desired = desired.clone();
            let before = describe_holders(&self.others);
            if let (Value::Object(remote), Value::Object(desired)) = (&mut remote, &mut desired) {
                remote.insert("heldBy".into(), json!(before));
                desired.insert("heldBy".into(), json!(format!("{before}, this manifest")));
            }
            return unified_difference(Some(&remote), &desired);
        }
        if let (Some(recorded), Some(remote)) = (self.renamed_from(), remote) {
            let mut remote = project_onto(remote, desired);
            if let Value::Object(fields) = &mut remote {
                match recorded {
                    Some(old) => fields.insert("name".into(), json!(old)),
                    None => fields.remove("name"),
                };
            }
            return unified_difference(Some(&remote), desired);
        }
        if self.previous.is_some() || self.forced_replace {
            return Some(replacement_difference(self, desired, remote));
        }
        // nothing ran before: everything declared is new, as a create reads
        if self.opens_anew() {
            return unified_difference(None, desired);
        }
        match (self.unhealthy_reason(), remote) {
            (Some(reason), Some(remote)) => {
                let mut remote = project_onto(remote, desired);
                let mut desired = desired.clone();
                if let (Value::Object(remote), Value::Object(desired)) = (&mut remote, &mut desired)
                {
                    remote.insert("health".into(), json!(format!("unhealthy: {reason}")));
                    desired.insert("health".into(), json!("healthy"));
                }
                unified_difference(Some(&remote), &desired)
            }
            _ => unified_difference(remote, desired),
        }
    }
}

impl Resource for RemovedTunnel {
    fn address(&self) -> ResourceAddress {
        self.address.clone()
    }

    fn desired(&self) -> Value {
        match &self.stranded {
            Some(stranded) => to_value(&stranded.declaration),
            // nothing is declared: it goes
            None => Value::Null,
        }
    }

    fn remote(&self) -> Option<Value> {
        Some(to_value(&self.meta.tunnel))
    }

    fn edges(&self) -> Vec<Edge> {
        self.edges.clone()
    }

    fn action(&self, _desired: &Value, _remote: Option<&Value>) -> Action {
        if !self.closes() {
            Action::Keep
        } else if self.stranded.is_some() {
            Action::Update
        } else {
            Action::Destroy
        }
    }

    fn note(&self, _action: Action) -> Option<String> {
        release_note(&self.others, self.force_close)
    }

    /// a removed tunnel shows everything that goes; a stranded one, what is gone
    fn difference(
        &self,
        action: Action,
        desired: &Value,
        _remote: Option<&Value>,
    ) -> Option<String> {
        if action == Action::Keep {
            return None;
        }
        Some(match &self.stranded {
            Some(stranded) => {
                let mut remote = project_onto(&to_value(&self.meta.tunnel), desired);
                let mut desired = desired.clone();
                if let (Value::Object(remote), Value::Object(desired)) = (&mut remote, &mut desired)
                {
                    remote.insert("gone".into(), json!(stranded.reason));
                    desired.insert("gone".into(), json!(stranded.reason));
                }
                unified_difference(Some(&remote), &desired).unwrap_or_default()
            }
            None => removal_difference(&to_value(&self.meta.tunnel)),
        })
    }
}

/// every line of what goes, removed
fn removal_difference(remote: &Value) -> String {
    let text = render_document(remote);
    let lines = text.lines().count();
    let mut out = format!("--- remote\n+++ desired\n@@ -1,{lines} +0,0 @@\n");
    for line in text.lines() {
        out.push('-');
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// the declared fields' difference, then where the session goes: the old identity's far end and the new one's
fn replacement_difference(
    tunnel: &ObservedTunnel,
    desired: &Value,
    remote: Option<&Value>,
) -> String {
    let mut remote = remote.map_or(Value::Null, |remote| project_onto(remote, desired));
    let mut desired = desired.clone();
    let target = |instance: &str, host: &str, port: u16| format!("{instance} -> {host}:{port}");
    let old = match &tunnel.previous {
        Some(previous) => target(
            &previous.meta.instance_id,
            &previous.meta.remote_host,
            previous.meta.remote_port,
        ),
        None => "the running session".to_string(),
    };
    let new = match &tunnel.bastion.instance_id {
        Some(instance) => target(instance, &tunnel.target.host, tunnel.target.port),
        None => "a new session".to_string(),
    };
    let new = if tunnel.previous.is_none() {
        format!("{new} (a new session)")
    } else {
        new
    };
    if let (Value::Object(remote), Value::Object(desired)) = (&mut remote, &mut desired) {
        remote.insert("session".into(), json!(old));
        desired.insert("session".into(), json!(new));
        if let Some((running, wanted)) = &tunnel.transport_change {
            remote.insert("transport".into(), json!(running));
            desired.insert(
                "transport".into(),
                json!(format!("{wanted} (forces a new session)")),
            );
        }
    }
    let difference = unified_difference(Some(&remote), &desired).unwrap_or_default();
    if tunnel.previous.is_none() {
        return difference;
    }
    // as Terraform's `# forces replacement`: the changed ends are why the session is new
    difference
        .lines()
        .map(|line| {
            if forces_new_session(line) {
                format!("{line}  # forces a new session\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// .what = whether a `+` line of a tunnel's difference sets one of its ends: the bastion, the far end, the local
/// host or port, the transport
/// .why = those are the session's identity; `connect:` and `idleClose:` change without a new session
fn forces_new_session(line: &str) -> bool {
    let Some(field) = line.strip_prefix('+') else {
        return false;
    };
    // the top level holds `name`, `status` and the blocks; only nested fields are ends
    if field.starts_with('+') || !field.starts_with(' ') {
        return false;
    }
    let key = field.trim_start().trim_start_matches("- ");
    let key = key.split(':').next().unwrap_or_default();
    matches!(
        key,
        "exid" | "instanceId" | "name" | "endpoint" | "host" | "port" | "transport" | "expose"
    )
}
