//! .what = the tunnel kind, `DeclaredAwsVpcTunnel`: an SSM port-forwarding tunnel from a local port through a
//! bastion into a cluster, an instance or a host
//! .why = apply opens or closes it to match `status`; what this manifest opened and no longer declares is closed
//!
//! - `observe`: every declared tunnel inspected against the batched reads; the tunnels no longer declared, or
//!   declared CLOSED while their ends are gone; the ordering of port moves; a transport change
//! - `observed`: a tunnel's documents, action, note and difference (the engine's `Resource`)
//! - `apply`: opening, closing, releasing; the marks `--replace` and `--force-close` put on a tunnel
//! - `status`: a tunnel's status row, and how to connect through it in words

mod apply;
mod observe;
mod observed;
mod status;

use std::fmt::Debug;

use declastruct_aws::{
    AwsError, ClusterEndpoint, ContextAwsApi, DeclaredAwsVpcTunnel, IdleDuration, TunnelName,
    VpcTunnelConnect, VpcTunnelFrom, VpcTunnelInto, VpcTunnelStatus, VpcTunnelVia, tunnel_slug,
};
use declastruct_engine::ResourceAddress;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use apply::{apply_removed, force_close, force_replace};
pub use observe::{Inspected, inspect_tunnels, mark_transport_changes, waiting_for_tunnels};
pub(crate) use observe::{attach_owned_tunnels, attach_stranded_tunnels, order_port_moves};
pub use observed::{ObservedTunnel, PreviousIdentity, RemovedTunnel, Stranded, describe_holders};
pub use status::{client_command, connection_line, removed_status_row, tunnel_fields};

use super::Kind;
use crate::resources::{Assembly, FieldAt, References};

/// .what = a declared tunnel
/// .why = apply opens or closes it to match `status`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VpcTunnelDeclaration {
    /// the tunnel's address everywhere (`exec`, `env`, `logs`, `connect`, `--target`, `--replace`, plan, status),
    /// unique in a manifest: letters, digits, `-` and `_`, not starting with `-`, and unlike every other
    /// name by more than case or `-`/`_`; without it the address is `{bastion}.{target}.{port}`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<TunnelName>,
    /// the mechanism and the bastion to tunnel through
    pub via: VpcTunnelVia,
    /// what to tunnel into: a cluster (and which endpoint), an instance, or a host and port
    pub into: VpcTunnelInto,
    /// the local end: a loopback host and a port
    pub from: VpcTunnelFrom,
    /// OPEN or CLOSED
    pub status: VpcTunnelStatus,
    /// how `exec` and `env` log in through the tunnel: database, user, where the password comes from
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<VpcTunnelConnect>,
    /// close the tunnel after this long without a client connection (and without a running `exec` or `connect`):
    /// `90s`, `30m`, `2h`; the next OPEN apply opens it again
    #[serde(rename = "idleClose", default, skip_serializing_if = "Option::is_none")]
    pub idle_close: Option<IdleDuration>,
}

impl VpcTunnelDeclaration {
    /// .what = the declaration as the AWS crate's domain object
    /// .why = the operations take domain objects
    pub fn to_domain(&self) -> DeclaredAwsVpcTunnel {
        DeclaredAwsVpcTunnel {
            name: self.name.clone(),
            via: self.via.clone(),
            into: self.into.clone(),
            from: self.from.clone(),
            status: Some(self.status),
            pid: None,
            health: None,
            connect: self.connect.clone(),
            idle_close: self.idle_close,
        }
    }
}

/// .what = a tunnel's address: its name, or else `{bastion}.{target}.{port}` from its three ends
/// .why = a declared tunnel and a recorded one (whose manifest may no longer declare it) are named alike
pub fn tunnel_address(
    name: Option<&TunnelName>,
    via: &VpcTunnelVia,
    into: &VpcTunnelInto,
    from: &VpcTunnelFrom,
) -> ResourceAddress {
    ResourceAddress {
        class: VpcTunnelDeclaration::CLASS.into(),
        slug: tunnel_slug(name, via, into, from),
    }
}

/// .what = a recorded tunnel's address, as its manifest named it when it was opened
/// .why = `status --all`, `logs` and the plan's removed tunnels name a record as its declaration was named
pub fn record_address(tunnel: &DeclaredAwsVpcTunnel) -> ResourceAddress {
    tunnel_address(
        tunnel.name.as_ref(),
        &tunnel.via,
        &tunnel.into,
        &tunnel.from,
    )
}

impl Kind for VpcTunnelDeclaration {
    const CLASS: &'static str = "DeclaredAwsVpcTunnel";
    const NOUN: &'static str = "tunnel";
    type Observed = ObservedTunnel;

    /// the tunnel's address: its name, or `{bastion}.{target}.{port}` (the cluster's, the instance's name, or
    /// the host)
    fn address(&self) -> ResourceAddress {
        tunnel_address(self.name.as_ref(), &self.via, &self.into, &self.from)
    }

    /// its bastion, and its cluster (and custom endpoint) or instance; an OPEN tunnel needs them to exist, a
    /// CLOSED one is closed by its record when they are gone
    fn references(&self, index: usize, references: &mut References) {
        let at = |path| FieldAt {
            resource: index,
            path,
        };
        let open = self.status == VpcTunnelStatus::Open;
        let uses = |references: &mut References, reference: &dyn Debug| {
            let need = references.need(reference);
            if open {
                need.open = true;
            } else {
                need.closed = true;
            }
        };
        uses(references, &self.via.bastion);
        match &self.into {
            VpcTunnelInto::Cluster { cluster, endpoint } => {
                uses(references, cluster);
                if let Some(ClusterEndpoint::Custom(name)) = endpoint {
                    uses(references, &(cluster.clone(), name.clone()));
                }
            }
            VpcTunnelInto::Instance { instance } => uses(references, instance),
            VpcTunnelInto::Host { .. } => {}
        }
        references.add_bastion(self.via.bastion.clone(), at(&["via", "bastion"]));
        match &self.into {
            VpcTunnelInto::Cluster { cluster, endpoint } => {
                references.add_cluster(cluster.clone(), at(&["into", "cluster"]));
                if let Some(ClusterEndpoint::Custom(name)) = endpoint {
                    references
                        .add_endpoint((cluster.clone(), name.clone()), at(&["into", "endpoint"]));
                }
            }
            VpcTunnelInto::Instance { instance } => {
                references.add_instance(instance.clone(), at(&["into", "instance"]));
            }
            // a host needs no AWS lookup
            VpcTunnelInto::Host { .. } => {}
        }
    }

    fn observe(&self, index: usize, assembly: &mut Assembly<'_>) {
        observe::observe_tunnel(self, index, assembly);
    }

    async fn apply(
        tunnel: &ObservedTunnel,
        context: &ContextAwsApi,
    ) -> Result<Option<String>, AwsError> {
        apply::apply_tunnel(tunnel, context).await
    }

    fn status_row(tunnel: &ObservedTunnel) -> Value {
        status::tunnel_row(tunnel)
    }
}
