//! .what = declarative AWS bastions, RDS clusters and SSM port-forwarding tunnels: the domain objects and
//! their operations
//! .why = the same code serves the `declastruct` command line and Rust programs that need a private database
//! through a bastion: a test harness, a migration runner, a dev script
//!
//! The model is the blueprint's: a [`DeclaredAwsEc2Instance`] (the bastion, referenced by its `exid` tag or
//! its instance id), a [`DeclaredAwsRdsCluster`] (referenced by identifier) and a [`DeclaredAwsVpcTunnel`]
//! from a local port through the bastion into the cluster. Every operation takes `(input, context)`, where
//! [`ContextAwsApi`] carries the AWS clients, the region and the state folder.
//!
//! ```no_run
//! use declastruct_aws::{
//!     AwsSettings, ContextAwsApi, DeclaredAwsVpcTunnel, Ec2InstanceRef, LoopbackHost, RdsClusterRef,
//!     TunnelMechanism, VpcTunnelFrom, VpcTunnelInto, VpcTunnelStatus, VpcTunnelVia, get_vpc_tunnel,
//!     set_vpc_tunnel,
//! };
//!
//! # async fn example() -> Result<(), declastruct_aws::AwsError> {
//! let context = ContextAwsApi::load(&AwsSettings { region: Some("us-east-1".into()), profile: None }).await?;
//! let tunnel = DeclaredAwsVpcTunnel {
//!     name: None,
//!     via: VpcTunnelVia { mechanism: TunnelMechanism::AwsSsm, bastion: Ec2InstanceRef::by_exid("vpc-main-bastion"), transport: None },
//!     into: VpcTunnelInto::cluster(RdsClusterRef::by_name("ahbodedb")),
//!     from: VpcTunnelFrom { host: LoopbackHost::Localhost, port: 7775, expose: false },
//!     status: None,
//!     pid: None,
//!     health: None,
//!     connect: None,
//!     idle_close: None,
//! };
//! // open the tunnel (starts the bastion if needed, waits until the database answers)
//! set_vpc_tunnel(&tunnel.with_status(VpcTunnelStatus::Open, None), &context).await?;
//! // ... use the database at localhost:7775; the tunnel outlives this process ...
//! let current = get_vpc_tunnel(&tunnel, &context).await?;
//! assert_eq!(current.status, Some(VpcTunnelStatus::Open));
//! set_vpc_tunnel(&tunnel.with_status(VpcTunnelStatus::Closed, None), &context).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A program that opens tunnels must call [`run_supervisor_if_requested`] first thing in `main`: the tunnel's
//! detached supervisor is the program itself, started again with a marker argument.
#![deny(missing_docs)]
// a library never writes to the terminal: only the binary renders
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod domain_objects;
mod domain_operations;
mod env_vars;
mod error;
#[cfg(test)]
mod test_support;

pub use declastruct_tunnel::{HoldingProcess, ManifestEnvironment, TunnelHolder, TunnelId};
pub use domain_objects::{
    AwsSettings, ClusterEndpoint, ContextAwsApi, DeclaredAwsEc2Instance, DeclaredAwsRdsCluster,
    DeclaredAwsRdsInstance, DeclaredAwsVpcTunnel, Ec2InstanceRef, Ec2InstanceStatus, EndpointRole,
    HostEngine, IN_USE_TAG, IdleDuration, LoopbackHost, PORT_EXPECTED, PasswordSource,
    ProgressReporter, RdsClusterHost, RdsClusterRef, RdsInstanceRef, TUNNEL_NAME_EXPECTED,
    TransportChoice, TunnelHealth, TunnelMechanism, TunnelName, VpcTunnelConnect, VpcTunnelFrom,
    VpcTunnelInto, VpcTunnelStatus, VpcTunnelVia, tunnel_slug,
};
pub use domain_operations::ec2_instance::{
    BastionActivity, DesiredInstanceStatus, Ec2InstanceLookup, IdleTimerRecord,
    count_active_sessions, get_ec2_instance, judge_bastion_activity, mark_bastion_in_use,
    recorded_idle_timers, set_ec2_instance_status, start_idle_timer,
};

/// .what = runs the tunnel supervisor (with the AWS crate's in-use renewer) or a bastion's idle timer and exits,
/// when this process was started as one; otherwise returns
/// .why = both are this program started again: call this first thing in `main`
pub fn run_supervisor_if_requested() {
    domain_operations::ec2_instance::run_idle_timer_if_requested();
    declastruct_tunnel::supervisor::run_supervisor_if_requested_with(
        declastruct_tunnel::supervisor::SupervisorHooks {
            renew_in_use: Some(Box::new(renew_in_use)),
            closed_by_itself: Some(Box::new(start_idle_timer_after_self_close)),
            run_native: Some(Box::new(run_native_session)),
        },
    );
}

/// .what = runs one native session (`declastruct-ssm`) in the supervisor's process until it ends or `stop` turns
/// true (then it is closed with TerminateSession), writing its events as lines the tunnel's log reads like the
/// plugin's (`Port N opened for sessionId X.`, `Waiting for connections...` in mux mode)
/// .why = the native transport: no AWS CLI, no plugin; one current-thread runtime, credentials loaded per session
fn run_native_session(
    spec: &declastruct_tunnel::supervisor::NativeSpec,
    stop: &std::sync::atomic::AtomicBool,
    say: &dyn Fn(&str),
) -> Result<String, String> {
    use declastruct_ssm::{NativeOptions, NativeSession, PortForwardRequest};
    use std::sync::atomic::Ordering;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("no async runtime: {error}"))?;
    runtime.block_on(async {
        let settings = AwsSettings {
            region: spec.region.clone(),
            profile: spec.profile.clone(),
        };
        let context = ContextAwsApi::load(&settings)
            .await
            .map_err(|error| error.to_string())?;
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let request = PortForwardRequest {
            target: spec.target.clone(),
            remote_host: Some(spec.remote_host.clone()),
            remote_port: spec.remote_port,
            local_port: spec.local_port,
            local_addresses: spec.listen.clone(),
        };
        let options = NativeOptions {
            events: Some(events),
            ..NativeOptions::default()
        };
        let mut session = NativeSession::start(&context.sdk_config, request, options)
            .await
            .map_err(|error| error.to_string())?;
        let closer = session.closer();
        let serve = session.serve();
        tokio::pin!(serve);
        let mut ticker = tokio::time::interval(std::time::Duration::from_millis(100));
        let mut closing = false;
        loop {
            tokio::select! {
                ended = &mut serve => {
                    // the events sent before the end are written first
                    while let Ok(event) = received.try_recv() {
                        say_event(&event, say);
                    }
                    return ended.map(|end| end.to_string()).map_err(|error| error.to_string());
                }
                Some(event) = received.recv() => say_event(&event, say),
                _ = ticker.tick() => {
                    if !closing && stop.load(Ordering::SeqCst) {
                        closing = true;
                        closer.close();
                    }
                }
            }
        }
    })
}

/// writes a native session's event as the plugin's lines, so readiness and the mode read the same
fn say_event(event: &declastruct_ssm::SessionEvent, say: &dyn Fn(&str)) {
    use declastruct_ssm::{ForwardingMode, SessionEvent};
    match event {
        SessionEvent::PortOpened {
            session_id,
            port,
            addresses,
            skipped,
            mode,
            agent_version,
        } => {
            // the plugin's port line alone, then the native details on a line of their own
            say(&format!("Port {port} opened for sessionId {session_id}."));
            let mux = matches!(mode, ForwardingMode::Mux { .. });
            if mux {
                say("Waiting for connections...");
            }
            let addresses: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            let mut details = format!(
                "native transport: listening on {}; {} mode, agent {agent_version}",
                addresses.join(", "),
                if mux { "mux" } else { "basic" }
            );
            for (address, why) in skipped {
                details.push_str(&format!("; not on {address}: {why}"));
            }
            say(&details);
        }
        other => say(&other.to_string()),
    }
}

/// starts the bastion's idle timer once a supervisor closed the last tunnel of this machine through it
fn start_idle_timer_after_self_close(target: &declastruct_tunnel::supervisor::InUseTarget) {
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let (Ok(state_dir), Ok(tunnels_dir)) = (
        ContextAwsApi::default_state_dir(),
        ContextAwsApi::default_tunnels_dir(),
    ) else {
        return;
    };
    if domain_operations::ec2_instance::local_tunnels_through(&tunnels_dir, &target.instance_id) > 0
    {
        return;
    }
    let _ = start_idle_timer(
        &program,
        &state_dir,
        &target.instance_id,
        target.idle_stop,
        &AwsSettings {
            region: target.region.clone(),
            profile: target.profile.clone(),
        },
    );
}

/// renews a bastion's in-use tag from the supervisor, which has no runtime of its own: one current-thread runtime
/// for the supervisor's life, and the AWS configuration loaded on each renewal (credentials are never held longer)
fn renew_in_use(target: &declastruct_tunnel::supervisor::InUseTarget) -> Result<(), String> {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    let runtime = RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()
        })
        .as_ref()
        .ok_or_else(|| "no async runtime".to_string())?;
    runtime.block_on(async {
        let settings = AwsSettings {
            region: target.region.clone(),
            profile: target.profile.clone(),
        };
        let context = ContextAwsApi::load(&settings)
            .await
            .map_err(|error| error.to_string())?;
        mark_bastion_in_use(&target.instance_id, &context)
            .await
            .map_err(|error| error.to_string())
    })
}
pub use domain_operations::rds_cluster::get_rds_cluster;
pub use domain_operations::rds_instance::get_rds_instance;
pub use domain_operations::vpc_tunnel::TunnelMeta;
pub use domain_operations::vpc_tunnel::{
    ConnectionVariables, TargetKind, TunnelTarget, get_connection_variables, get_tunnel_target,
    get_vpc_tunnel, iam_auth_token, set_vpc_tunnel,
};
pub use env_vars::EnvVars;
pub use error::AwsError;

/// .what = the plumbing under the operations: batched reads, tunnel inspection, tunnel files and utilities
/// .why = the `declastruct` command line plans a hundred tunnels in a few AWS calls with these; they are not
/// part of the SDK's stable surface and may change in any release
#[doc(hidden)]
pub mod internal {
    pub use crate::domain_operations::ec2_instance::{
        cast_to_declared_aws_ec2_instance, closest_exids, get_ec2_instances, local_tunnels_through,
    };
    pub use crate::domain_operations::rds_cluster::{
        RdsClusterEndpoint, cast_to_declared_aws_rds_cluster, closest_cluster_names,
        get_rds_cluster_endpoints, get_rds_clusters,
    };
    pub use crate::domain_operations::rds_instance::{
        cast_to_declared_aws_rds_instance, closest_instance_names, get_rds_instances,
    };
    pub use crate::domain_operations::vpc_tunnel::{
        Released, ResolvedVpcTunnel, TargetLookups, VpcTunnelObservation, inspect_local_tunnel,
        inspect_vpc_tunnel, release_tunnel_identity, resolve_tunnel_target,
        set_vpc_tunnel_resolved,
    };
}
