//! The charm's `dispatch`: Juju runs it for every action and hook.

fn main() -> std::process::ExitCode {
    myapp_charm::charm().main()
}
