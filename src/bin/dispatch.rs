//! The charm's one executable: Juju runs it as `dispatch` (or through the `actions/<name>` and
//! `hooks/<name>` links), and it runs the action or hook Juju asked for.

fn main() -> std::process::ExitCode {
    charm_backup::charm::charm().main()
}
