//! .what = the declared resources with what was observed of them live, as the engine's `Resource`s
//! .why = reads all of AWS in a few batched calls (`live`), then lets the engine plan every kind the same way
//!
//! - `live`: the references a manifest makes and the batched reads that answer them
//! - `assemble`: each declaration observed by its kind, in manifest order, with the tunnels' ordering edges
//! - `observed`: one resource of the plan, whatever its kind, applied and shown through its kind

mod assemble;
mod live;
mod observed;

pub(crate) use assemble::plan_bastion;
pub use assemble::{Assembly, assemble};
pub use live::{
    FieldAt, LiveState, Missing, Need, References, read_live_state, read_local_tunnels,
};
pub use observed::{Observed, with_address};

use declastruct_aws::ContextAwsApi;

use crate::kinds::vpc_tunnel::{inspect_tunnels, mark_transport_changes, waiting_for_tunnels};
use crate::manifest::Manifest;

/// .what = what `observe_in_steps` tells its caller as it goes
/// .why = the caller shows it (a warning at once, a progress line that names what is waited for); this crate prints
/// nothing
#[derive(Debug)]
pub enum Step {
    /// something is gone that nothing needs (a bastion only CLOSED tunnels name): located, and it stops nothing
    Warning(miette::Report),
    /// what is waited for now, in words
    Waiting(String),
}

/// .what = reads the live state of every declared resource and assembles the observed resources, telling `on_step`
/// each warning and what it waits for once AWS has answered: the checks of the tunnels on this machine, each with
/// its health probe through its local port
/// .why = `plan`, `apply` and `status` start from here; every tunnel is inspected concurrently, with no AWS call;
/// a progress line names what is waited for at that moment, not the AWS calls that have already answered
pub async fn observe_in_steps(
    manifest: &Manifest,
    context: &ContextAwsApi,
    on_step: impl Fn(Step),
) -> Result<Vec<Observed>, Vec<miette::Report>> {
    let references = References::of(manifest);
    let mut live = read_live_state(manifest, &references, context).await?;
    // what is gone but needed by nothing is said, and stops nothing
    for warning in std::mem::take(&mut live.warnings) {
        on_step(Step::Warning(warning));
    }
    if let Some(waiting) = waiting_for_tunnels(manifest) {
        on_step(Step::Waiting(waiting));
    }
    let tunnels = inspect_tunnels(manifest, &live, context).await?;
    let mut observed = assemble(manifest, &live, tunnels)?;
    mark_transport_changes(&mut observed, context);
    Ok(observed)
}

/// .what = only the resources named by `targets` (their addresses, as `plan` prints them) and what they depend on
/// .why = `--target`: apply one tunnel of a large manifest, with the bastion it needs, and nothing else
pub fn select_targets(
    resources: Vec<Observed>,
    targets: &[String],
) -> Result<Vec<Observed>, String> {
    use declastruct_engine::Resource;
    if targets.is_empty() {
        return Ok(resources);
    }
    let addresses: Vec<String> = resources
        .iter()
        .map(|resource| resource.address().slug)
        .collect();
    if let Some(unknown) = targets.iter().find(|target| !addresses.contains(target)) {
        return Err(format!(
            "--target {unknown} names no resource of this manifest; its addresses are: {}",
            addresses.join(", ")
        ));
    }
    let edges: Vec<declastruct_engine::Edge> = resources.iter().flat_map(Resource::edges).collect();
    let mut wanted: Vec<String> = targets.to_vec();
    let mut index = 0;
    while index < wanted.len() {
        let dependencies: Vec<String> = edges
            .iter()
            .filter(|edge| edge.after.slug == wanted[index])
            .map(|edge| edge.before.slug.clone())
            .collect();
        for dependency in dependencies {
            if !wanted.contains(&dependency) {
                wanted.push(dependency);
            }
        }
        index += 1;
    }
    Ok(resources
        .into_iter()
        .filter(|resource| wanted.contains(&resource.address().slug))
        .collect())
}
