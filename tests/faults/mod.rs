//! The parts of the randomized fault episodes (tests/k8s_faults.rs): the model of what each
//! ManagedSecret must show, the step generator, a monitor of every write, apiserver restarts, and
//! the run itself.

pub mod control_plane;
pub mod invariants;
pub mod model;
pub mod monitor;
pub mod run;
pub mod steps;
