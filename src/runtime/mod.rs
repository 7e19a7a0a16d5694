//! Wiring of sessions: the dry run that records a plan, the dealer, and the parties run as
//! threads of this process. Depends on proto, offline, transport, comm.

pub mod job;
pub mod local;
pub mod process;

pub use local::{
    deal_in_process, record_plan, run_dealt, run_local, run_local_with, run_online, Dealing,
    Offline, PartyOutcome, SessionConfig, MAX_PARTIES,
};
