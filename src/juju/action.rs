//! The API a charm author writes actions and hooks against, and the runner that turns a
//! returned error (or a panic) into `action-fail` without losing the message.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result, chain};
use crate::juju::context::{Event, JujuContext};
use crate::juju::tools::{HookTools, LogLevel, Status, flatten_results};

mod data;

/// The error an action or hook handler returns: anything that is a `std::error::Error`,
/// including `anyhow::Error` and this crate's [`Error`]. Its whole source chain is reported.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One action of a charm.
///
/// `Params` is deserialised from `action-get` (Juju has already checked it against
/// `actions.yaml` and filled in the defaults); use `#[serde(rename_all = "kebab-case",
/// deny_unknown_fields)]`. `Results` is serialised, flattened to dotted keys and set with
/// `action-set`. Returning `Err` fails the action with the error's whole chain as the message,
/// so there is no way to forget to stop after failing.
pub trait Action {
    /// The action's name in `actions.yaml`.
    const NAME: &'static str;
    /// The parameters.
    type Params: DeserializeOwned;
    /// The results.
    type Results: Serialize;

    /// Does the work.
    ///
    /// # Errors
    /// Any error fails the action; results set earlier with [`Context::set_result`] are kept.
    fn run(&self, ctx: &mut Context, params: Self::Params) -> Result<Self::Results, BoxError>;
}

/// A relation as a charm reads it: its id, the remote application and the data that
/// application published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationData {
    /// The relation id, e.g. `s3-parameters:4`.
    pub id: String,
    /// The remote application's name.
    pub app: String,
    /// The remote application's data bag.
    pub data: BTreeMap<String, String>,
}

/// Everything a handler may ask of Juju: the environment, progress, partial results, status,
/// config, leadership, relation data and resources.
#[derive(Debug)]
pub struct Context {
    juju: JujuContext,
    tools: HookTools,
}

impl Context {
    /// A context over an environment and a hook-tool client.
    pub fn new(juju: JujuContext, tools: HookTools) -> Self {
        Context { juju, tools }
    }

    /// The environment Juju set.
    pub fn juju(&self) -> &JujuContext {
        &self.juju
    }

    /// The hook-tool client, for anything this type has no method for.
    pub fn tools(&self) -> &HookTools {
        &self.tools
    }

    /// Whether this process runs an action (else a hook).
    pub fn in_action(&self) -> bool {
        self.juju.action_name.is_some()
    }

    /// Reports progress: `action-log` in an action (the operator sees it live), `juju-log` in a
    /// hook. A failure to log is printed to stderr and otherwise ignored: progress must never
    /// fail the work.
    pub fn log(&self, message: &str) {
        let r = if self.in_action() {
            self.tools.action_log(message)
        } else {
            self.tools.juju_log(LogLevel::Info, message)
        };
        if let Err(e) = r {
            eprintln!("cannot log progress: {e}");
        }
    }

    /// Progress for a library command ([`crate::progress::Progress`]): its steps and warnings
    /// go to `action-log` (the operator sees them in `juju show-task` and `juju run`), bytes
    /// done at most every few seconds.
    pub fn progress(&self) -> crate::juju::ActionProgress<'_> {
        crate::juju::ActionProgress::new(self)
    }

    /// Writes a line to `juju debug-log` at `level`, ignoring failures like [`Context::log`].
    pub fn debug_log(&self, level: LogLevel, message: &str) {
        if let Err(e) = self.tools.juju_log(level, message) {
            eprintln!("cannot write to the Juju log: {e}");
        }
    }

    /// Sets results now (nested values are flattened), so they are kept even if the action
    /// fails later.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a key Juju would refuse; otherwise when `action-set` fails.
    pub fn set_result(&self, results: impl Serialize) -> Result<()> {
        let v = serde_json::to_value(results)
            .map_err(|e| Error::invalid("results cannot be serialised").with_source(e))?;
        self.tools.action_set(&flatten_results(&v)?)
    }

    /// Sets the unit's workload status.
    ///
    /// # Errors
    /// When `status-set` fails.
    pub fn set_status(&self, status: &Status) -> Result<()> {
        self.tools.status_set(status, false)
    }

    /// The charm config as a typed struct (options without a value and without a default are
    /// absent, so make them `Option` or give them `#[serde(default)]`).
    ///
    /// # Errors
    /// When `config-get` fails or the config does not fit `T`.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        let v = match self.tools.config_get()? {
            Value::Null => Value::Object(Default::default()),
            v => v,
        };
        serde_json::from_value(v)
            .map_err(|e| Error::invalid("the charm config does not fit the charm").with_source(e))
    }

    /// Whether this unit is its application's leader.
    ///
    /// # Errors
    /// When `is-leader` fails.
    pub fn is_leader(&self) -> Result<bool> {
        self.tools.is_leader()
    }

    /// The first relation on `endpoint` with the remote application's data, or `None` when the
    /// endpoint has no relation or the remote side has not joined yet.
    ///
    /// # Errors
    /// When a relation tool fails.
    pub fn relation(&self, endpoint: &str) -> Result<Option<RelationData>> {
        let Some(id) = self.tools.relation_ids(endpoint)?.into_iter().next() else {
            return Ok(None);
        };
        let app = match self.tools.relation_remote_app(&id) {
            Ok(app) => app,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let data = self.tools.relation_get(&id, &app, true)?;
        Ok(Some(RelationData { id, app, data }))
    }

    /// One value of a Juju secret (e.g. a password the operator granted with
    /// `juju grant-secret`), read with `secret-get`. The value is never logged.
    ///
    /// # Errors
    /// When the secret does not exist, is not granted to the application, or lacks `key`.
    pub fn secret(&self, uri: &str, key: &str) -> Result<String> {
        self.tools.secret_get(uri, key).map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "cannot read key {key:?} of secret {uri}: grant it with `juju grant-secret <secret> {}` ({e})",
                    self.juju.app_name()
                ),
            )
        })
    }

    /// The local path of an attached resource.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when none is attached (with how to attach one).
    pub fn resource(&self, name: &str) -> Result<PathBuf> {
        self.tools.resource_get(name).map_err(|e| {
            if e.kind() == ErrorKind::NotFound || e.to_string().contains("could not download") {
                Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no {name} resource is attached: attach one with `juju attach-resource {} \
                         {name}=./file`",
                        self.juju.app_name()
                    ),
                )
                .with_source(e)
            } else {
                e
            }
        })
    }
}

/// How a run ended, for the process exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded.
    Completed,
    /// The handler failed and the failure was reported with `action-fail` (message inside).
    Failed(String),
    /// The failure could not be reported through Juju (e.g. the hook tools are missing); the
    /// message went to stderr.
    Unreported(String),
}

impl Outcome {
    /// The exit code Juju must see: 0 whenever the failure was reported with `action-fail`
    /// (a non-zero exit would make Juju replace the message with `exit status N`), 1 otherwise.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Outcome::Completed | Outcome::Failed(_) => ExitCode::SUCCESS,
            Outcome::Unreported(_) => ExitCode::FAILURE,
        }
    }
}

thread_local! {
    /// Where the last panic on this thread happened.
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs, once per process, a panic hook that notes the location for [`guarded`] (per
/// thread, so concurrent handlers do not mix them up) and then runs the previous hook.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let loc = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            PANIC_LOCATION.with(|p| *p.borrow_mut() = Some(loc));
            prev(info);
        }));
    });
}

/// Runs `f`, turning a panic into an error that names where it happened.
fn guarded<T>(f: impl FnOnce() -> Result<T, BoxError>) -> Result<T, BoxError> {
    install_panic_hook();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let loc = PANIC_LOCATION
                .with(|p| p.borrow_mut().take())
                .unwrap_or_default();
            Err(format!(
                "internal error: the handler panicked at {loc}: {what} (this is a bug in the \
                 charm; please report it with this message)"
            )
            .into())
        }
    }
}

/// Reports a failed action: `action-fail` with the whole chain on one line, the same chain on
/// stderr (Juju keeps it in the task's `stderr`), exit 0.
fn report_failure(ctx: &Context, message: String) -> Outcome {
    eprintln!("action failed: {message}");
    match ctx.tools.action_fail(&message) {
        Ok(()) => Outcome::Failed(message),
        Err(e) => {
            eprintln!("cannot report the failure to Juju: {e}");
            Outcome::Unreported(message)
        }
    }
}

/// Runs one action against a context: reads params, runs it (panics caught), sets results or
/// fails it.
pub fn execute<A: Action>(action: &A, ctx: &mut Context) -> Outcome {
    let params = match ctx.tools.action_get() {
        Ok(v) => v,
        Err(e) => return report_failure(ctx, format!("cannot read the action parameters: {e}")),
    };
    let params = match serde_json::from_value::<A::Params>(match params {
        Value::Null => Value::Object(Default::default()),
        v => v,
    }) {
        Ok(p) => p,
        Err(e) => return report_failure(ctx, format!("invalid action parameters: {e}")),
    };
    let result = guarded(|| {
        let results = action.run(ctx, params)?;
        let v = serde_json::to_value(results)?;
        Ok(v)
    });
    match result.and_then(|v| {
        flatten_results(&v)
            .and_then(|r| ctx.tools.action_set(&r))
            .map_err(BoxError::from)
    }) {
        Ok(()) => Outcome::Completed,
        Err(e) => report_failure(ctx, chain(e.as_ref())),
    }
}

/// A hook handler: gets the hook name.
pub type HookFn = dyn Fn(&mut Context, &str) -> Result<(), BoxError>;

trait DynAction {
    fn name(&self) -> &'static str;
    fn execute(&self, ctx: &mut Context) -> Outcome;
}

struct Erased<A>(A);

impl<A: Action> DynAction for Erased<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }
    fn execute(&self, ctx: &mut Context) -> Outcome {
        execute(&self.0, ctx)
    }
}

/// A whole charm: its actions and hook handler, dispatched from one multi-call binary.
///
/// ```no_run
/// use charm_backup::juju::{Action, BoxError, Charm, Context, Status};
///
/// struct Hello;
/// impl Action for Hello {
///     const NAME: &'static str = "hello";
///     type Params = serde_json::Value;
///     type Results = std::collections::BTreeMap<String, String>;
///     fn run(&self, ctx: &mut Context, _: Self::Params) -> Result<Self::Results, BoxError> {
///         ctx.log("saying hello");
///         Ok([("greeting".to_string(), "hi".to_string())].into())
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     Charm::new()
///         .action(Hello)
///         .hooks(|ctx, _hook| Ok(ctx.set_status(&Status::Active(String::new()))?))
///         .main()
/// }
/// ```
#[derive(Default)]
pub struct Charm {
    actions: Vec<Box<dyn DynAction>>,
    hooks: Option<Box<HookFn>>,
    before: Option<Box<BeforeFn>>,
}

/// Work done before every action and hook (e.g. finishing an interrupted operation).
pub type BeforeFn = dyn Fn(&mut Context) -> Result<(), BoxError>;

impl std::fmt::Debug for Charm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charm")
            .field(
                "actions",
                &self.actions.iter().map(|a| a.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Charm {
    /// A charm with no actions and no hook handler.
    pub fn new() -> Self {
        Charm::default()
    }

    /// Adds an action.
    pub fn action<A: Action + 'static>(mut self, action: A) -> Self {
        self.actions.push(Box::new(Erased(action)));
        self
    }

    /// Sets the handler every hook goes to.
    pub fn hooks(
        mut self,
        f: impl Fn(&mut Context, &str) -> Result<(), BoxError> + 'static,
    ) -> Self {
        self.hooks = Some(Box::new(f));
        self
    }

    /// Sets work to do before every action and hook; its error fails the action (or the hook)
    /// before the handler runs.
    pub fn before(mut self, f: impl Fn(&mut Context) -> Result<(), BoxError> + 'static) -> Self {
        self.before = Some(Box::new(f));
        self
    }

    /// The names of the actions this charm handles.
    pub fn action_names(&self) -> Vec<&'static str> {
        self.actions.iter().map(|a| a.name()).collect()
    }

    /// Runs the event `event` against a context.
    pub fn run_event(&self, event: &Event, ctx: &mut Context) -> Outcome {
        if let Some(before) = &self.before
            && let Err(e) = guarded(|| before(ctx))
        {
            let msg = chain(e.as_ref());
            return match event {
                Event::Action(_) => report_failure(ctx, msg),
                Event::Hook(name) => {
                    ctx.debug_log(LogLevel::Error, &format!("hook {name} failed: {msg}"));
                    eprintln!("hook {name} failed: {msg}");
                    Outcome::Unreported(msg)
                }
            };
        }
        match event {
            Event::Action(name) => match self.actions.iter().find(|a| a.name() == name) {
                Some(a) => a.execute(ctx),
                None => report_failure(
                    ctx,
                    format!(
                        "this charm has no action {name:?}; it has: {}",
                        self.action_names().join(", ")
                    ),
                ),
            },
            Event::Hook(name) => {
                let Some(h) = &self.hooks else {
                    return Outcome::Completed;
                };
                match guarded(|| h(ctx, name)) {
                    Ok(()) => Outcome::Completed,
                    Err(e) => {
                        // A hook error puts the unit in error state and Juju retries the hook:
                        // say why in the Juju log and on stderr, and exit non-zero.
                        let msg = chain(e.as_ref());
                        ctx.debug_log(LogLevel::Error, &format!("hook {name} failed: {msg}"));
                        eprintln!("hook {name} failed: {msg}");
                        Outcome::Unreported(msg)
                    }
                }
            }
        }
    }

    /// The binary's `main`: reads the environment, picks the event (from `JUJU_DISPATCH_PATH`,
    /// else the program name), runs it with the real hook tools and returns the exit code
    /// Juju must see.
    pub fn main(self) -> ExitCode {
        let juju = JujuContext::from_env();
        let argv0 = std::env::args().next().unwrap_or_default();
        let event = match juju.event(&argv0) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let mut ctx = Context::new(juju, HookTools::default());
        self.run_event(&event, &mut ctx).exit_code()
    }
}
