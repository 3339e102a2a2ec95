//! The Juju boundary: hook tools, the environment, and the action and hook API.
//!
//! Only this module (and the binaries) know about hook tools, `JUJU_*` variables, action
//! parameters and result keys. The archive engine, stores and sources know nothing of Juju.

mod action;
mod context;
mod progress;
pub mod replay;
mod tools;

pub use action::{
    Action, BeforeFn, BoxError, Charm, Context, HookFn, Outcome, RelationData, execute,
};
pub use context::{Event, JujuContext, program_name};
pub use progress::ActionProgress;
pub use tools::{
    HookTools, LogLevel, MAX_ARG_BYTES, MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES, PortRange,
    ProcessRunner, Protocol, RESERVED_RESULT_KEYS, Status, ToolOutput, ToolRunner,
    check_result_key, flatten_results, is_valid_name,
};
