mod cast_to_declared_aws_ec2_instance;
mod get_bastion_activity;
mod get_ec2_instance;
mod idle_stop_timer;
mod set_ec2_instance_status;

pub use cast_to_declared_aws_ec2_instance::cast_to_declared_aws_ec2_instance;
pub use get_bastion_activity::{
    BastionActivity, count_active_sessions, judge_bastion_activity, mark_bastion_in_use,
};
pub use get_ec2_instance::{Ec2InstanceLookup, closest_exids, get_ec2_instance, get_ec2_instances};
pub use idle_stop_timer::{
    IdleTimerRecord, local_tunnels_through, recorded_idle_timers, run_idle_timer_if_requested,
    start_idle_timer,
};
pub use set_ec2_instance_status::{DesiredInstanceStatus, set_ec2_instance_status};
