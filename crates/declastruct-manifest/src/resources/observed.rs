//! .what = each kind of observed resource: what is declared, what is live, and how the plan shows the difference
//! .why = the engine plans anything that implements `Resource`; each kind says here what "desired" means for it

use declastruct_aws::TunnelMeta;
use declastruct_aws::internal::VpcTunnelObservation;
use declastruct_aws::{
    DeclaredAwsEc2Instance, DeclaredAwsRdsCluster, DeclaredAwsRdsInstance, DesiredInstanceStatus,
    Ec2InstanceRef, TunnelHolder, TunnelTarget, VpcTunnelStatus,
};
use declastruct_engine::{
    Action, Edge, Resource, ResourceAddress, declared_action, project_onto, render_document,
    unified_difference,
};
use serde_json::{Value, json};

use crate::manifest::{
    Ec2InstanceDeclaration, RdsClusterDeclaration, RdsInstanceDeclaration, VpcTunnelDeclaration,
    bastion_address,
};

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// .what = a bastion: declared, or only named by a tunnel that will start it
/// .why = a plan shows every change apply will make, a bastion started for a tunnel included
#[derive(Debug, Clone)]
pub struct ObservedBastion {
    /// how the plan names it: the declared `exid`, or the reference a tunnel uses
    pub reference: Ec2InstanceRef,
    /// as declared; `None` when only a tunnel names it
    pub declaration: Option<Ec2InstanceDeclaration>,
    /// the status apply sets: the declared one, or `running` when an OPEN tunnel goes through it
    pub desired_status: Option<DesiredInstanceStatus>,
    /// whether `desired_status` comes from a tunnel rather than from the declaration
    pub started_for_a_tunnel: bool,
    /// why `idleStop` stops it, or why it cannot tell
    pub idle_note: Option<String>,
    /// its activity in words (`idle 12m of 30m`, what keeps it busy), when it is declared with `idleStop`
    pub activity: Option<String>,
    /// as found
    pub live: DeclaredAwsEc2Instance,
}

/// .what = a declared cluster, a read-only reference
/// .why = its plan is always KEEP
#[derive(Debug, Clone)]
pub struct ObservedCluster {
    /// as declared
    pub declaration: RdsClusterDeclaration,
    /// as found
    pub live: DeclaredAwsRdsCluster,
}

/// .what = a declared DB instance, a read-only reference
/// .why = its plan is always KEEP
#[derive(Debug, Clone)]
pub struct ObservedInstance {
    /// as declared
    pub declaration: RdsInstanceDeclaration,
    /// as found
    pub live: DeclaredAwsRdsInstance,
}

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

/// .what = one resource of the plan with what was observed of it live
/// .why = the unit the engine plans and apply executes
#[derive(Debug, Clone)]
pub enum Observed {
    /// a bastion
    Bastion(ObservedBastion),
    /// a cluster
    Cluster(ObservedCluster),
    /// a DB instance
    Instance(ObservedInstance),
    /// a tunnel
    Tunnel(Box<ObservedTunnel>),
    /// a tunnel the manifest holds and no longer declares, or declares CLOSED while its ends are gone
    Removed(Box<RemovedTunnel>),
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

    /// .what = whether applying the CLOSED declaration closes a session: the tunnel's or its old identity's,
    /// when no other holder keeps it (or the close is forced)
    /// .why = a tunnel another holder uses is only released: a KEEP with a note
    pub fn closes(&self) -> bool {
        self.declaration.status == VpcTunnelStatus::Closed
            && ((self.is_open() && (self.others.is_empty() || self.force_close))
                || self
                    .previous
                    .as_ref()
                    .is_some_and(|previous| previous.others.is_empty() || self.force_close))
    }

    /// .what = whether applying the CLOSED declaration only lets go of a tunnel others keep open
    /// .why = the plan shows it as a KEEP with `released; stays open for …`, and apply releases the hold
    pub fn only_releases(&self) -> bool {
        self.declaration.status == VpcTunnelStatus::Closed
            && !self.closes()
            && (self.is_open() || self.previous.is_some())
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
}

impl Observed {
    /// .what = whether a KEEP of this resource still lets go of this manifest's hold: a tunnel declared CLOSED, or
    /// no longer declared, that others keep open
    /// .why = apply releases the hold, so that the tunnel closes when the others let go
    pub fn releases_when_kept(&self) -> bool {
        match self {
            Self::Removed(removed) => !removed.closes(),
            Self::Tunnel(tunnel) => {
                tunnel.only_releases() && (tunnel.held || tunnel.previous.is_some())
            }
            _ => false,
        }
    }
}

impl Resource for Observed {
    fn address(&self) -> ResourceAddress {
        match self {
            Self::Bastion(bastion) => bastion_address(&bastion.reference),
            Self::Cluster(cluster) => cluster.declaration.address(),
            Self::Instance(instance) => instance.declaration.address(),
            Self::Tunnel(tunnel) => tunnel.declaration.address(),
            Self::Removed(removed) => removed.address.clone(),
        }
    }

    fn desired(&self) -> Value {
        match self {
            Self::Bastion(bastion) => {
                let mut desired = match &bastion.declaration {
                    Some(declaration) => to_value(declaration),
                    None => to_value(&bastion.reference),
                };
                if let (Value::Object(fields), Some(status)) =
                    (&mut desired, bastion.desired_status)
                {
                    fields.insert("status".into(), to_value(&status));
                }
                desired
            }
            Self::Cluster(cluster) => to_value(&cluster.declaration),
            Self::Instance(instance) => to_value(&instance.declaration),
            Self::Tunnel(tunnel) => to_value(&tunnel.declaration),
            Self::Removed(removed) => match &removed.stranded {
                Some(stranded) => to_value(&stranded.declaration),
                // nothing is declared: it goes
                None => Value::Null,
            },
        }
    }

    fn remote(&self) -> Option<Value> {
        Some(match self {
            Self::Bastion(bastion) => {
                let mut live = to_value(&bastion.live);
                // idleStop is this manifest's setting, not the instance's: the same on both sides
                if let (Value::Object(fields), Some(idle_stop)) = (
                    &mut live,
                    bastion
                        .declaration
                        .as_ref()
                        .and_then(|declaration| declaration.idle_stop),
                ) {
                    fields.insert("idleStop".into(), to_value(&idle_stop));
                }
                live
            }
            Self::Cluster(cluster) => to_value(&cluster.live),
            Self::Instance(instance) => to_value(&instance.live),
            Self::Tunnel(tunnel) => match &tunnel.previous {
                // what runs is the old identity
                Some(previous)
                    if tunnel.observation.tunnel.status != Some(VpcTunnelStatus::Open) =>
                {
                    to_value(&previous.meta.tunnel)
                }
                _ => to_value(&tunnel.observation.tunnel),
            },
            Self::Removed(removed) => to_value(&removed.meta.tunnel),
        })
    }

    fn edges(&self) -> Vec<Edge> {
        match self {
            Self::Tunnel(tunnel) => tunnel.edges.clone(),
            Self::Removed(removed) => removed.edges.clone(),
            _ => Vec::new(),
        }
    }

    fn action(&self, desired: &Value, remote: Option<&Value>) -> Action {
        match self {
            Self::Removed(removed) if !removed.closes() => return Action::Keep,
            Self::Removed(removed) if removed.stranded.is_some() => return Action::Update,
            Self::Removed(_) => return Action::Destroy,
            Self::Tunnel(tunnel) if tunnel.is_replaced() => return Action::Replace,
            Self::Tunnel(tunnel) if tunnel.only_releases() => return Action::Keep,
            // declared CLOSED while a session of it runs that nobody else holds: closing it is an update
            Self::Tunnel(tunnel) if tunnel.closes() => return Action::Update,
            Self::Tunnel(tunnel) if tunnel.unhealthy_reason().is_some() => return Action::Update,
            Self::Tunnel(tunnel) if tunnel.takes_hold() => return Action::Update,
            _ => {}
        }
        declared_action(desired, remote)
    }

    fn note(&self, action: Action) -> Option<String> {
        let note = self.plain_note(action);
        // a tunnel that listens beyond loopback is said every time it is opened
        match self {
            Self::Tunnel(tunnel)
                if tunnel.declaration.from.is_exposed()
                    && tunnel.declaration.status == VpcTunnelStatus::Open
                    && action != Action::Keep =>
            {
                let warning = format!(
                    "warning: from.expose: listens on {}:{}, reachable by anyone who reaches that address",
                    tunnel.declaration.from.host.as_str(),
                    tunnel.declaration.from.port
                );
                Some(match note {
                    Some(note) => format!("{note}; {warning}"),
                    None => warning,
                })
            }
            _ => note,
        }
    }

    /// what the declared fields do not hold is shown too: an unhealthy tunnel's health, a replaced tunnel's old
    /// and new far ends; a removed tunnel shows everything that goes
    fn difference(
        &self,
        action: Action,
        desired: &Value,
        remote: Option<&Value>,
    ) -> Option<String> {
        if action == Action::Keep {
            return None;
        }
        if let Self::Removed(removed) = self {
            return Some(match &removed.stranded {
                Some(stranded) => {
                    let mut remote = project_onto(&to_value(&removed.meta.tunnel), desired);
                    let mut desired = desired.clone();
                    if let (Value::Object(remote), Value::Object(desired)) =
                        (&mut remote, &mut desired)
                    {
                        remote.insert("gone".into(), json!(stranded.reason));
                        desired.insert("gone".into(), json!(stranded.reason));
                    }
                    unified_difference(Some(&remote), &desired).unwrap_or_default()
                }
                None => removal_difference(&to_value(&removed.meta.tunnel)),
            });
        }
        if let Self::Tunnel(tunnel) = self
            && tunnel.takes_hold()
            && let Some(remote) = remote
        {
            let mut remote = project_onto(remote, desired);
            let mut desired = desired.clone();
            let before = describe_holders(&tunnel.others);
            if let (Value::Object(remote), Value::Object(desired)) = (&mut remote, &mut desired) {
                remote.insert("heldBy".into(), json!(before));
                desired.insert("heldBy".into(), json!(format!("{before}, this manifest")));
            }
            return unified_difference(Some(&remote), &desired);
        }
        if let Self::Tunnel(tunnel) = self
            && (tunnel.previous.is_some() || tunnel.forced_replace)
        {
            return Some(replacement_difference(tunnel, desired, remote));
        }
        let unhealthy = match self {
            Self::Tunnel(tunnel) => tunnel.unhealthy_reason(),
            _ => None,
        };
        match (unhealthy, remote) {
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
    unified_difference(Some(&remote), &desired).unwrap_or_default()
}

impl Observed {
    /// the note of `note`, without the exposure warning
    fn plain_note(&self, action: Action) -> Option<String> {
        match self {
            Self::Bastion(bastion) => bastion.idle_note.clone(),
            Self::Removed(removed) => release_note(&removed.others, removed.force_close),
            Self::Tunnel(tunnel) if tunnel.declaration.status == VpcTunnelStatus::Closed => {
                let mut others = tunnel.others.clone();
                if let Some(previous) = &tunnel.previous {
                    others.extend(previous.others.iter().cloned());
                }
                release_note(&others, tunnel.force_close)
            }
            Self::Tunnel(tunnel) if action == Action::Update && tunnel.takes_hold() => {
                Some(format!(
                    "open already, for {}: this manifest holds it too from now on",
                    describe_holders(&tunnel.others)
                ))
            }
            // closed by itself (idleClose): say so, and that apply opens it again
            Self::Tunnel(tunnel) if action == Action::Update && !tunnel.is_open() => tunnel
                .observation
                .meta
                .as_ref()
                .and_then(|meta| meta.closed.as_ref())
                .map(|closed| format!("{} at {}; apply opens it again", closed.reason, closed.at)),
            _ => None,
        }
    }
}
