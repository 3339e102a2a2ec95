//! The example charm's actions through the harness, as Juju would run them.

use std::path::Path;

use charm_backup::testing::{Harness, action};

fn harness(data: &Path, unit: &Path) -> Harness {
    Harness::from_charm_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .charm_dir(unit.join("charm"))
        .config("data-dir", data.display().to_string())
}

#[test]
fn a_backup_restores_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("sub/a.txt"), "alpha\n").unwrap();
    let h = harness(&data, &tmp.path().join("unit"));
    let charm = myapp_charm::charm();
    let out = h
        .run_action(
            &charm,
            action("backup-myapp").param("target", tmp.path().join("out").display().to_string()),
        )
        .unwrap();
    let path = out.results["path"].as_str().unwrap().to_string();
    let sha = out.results["sha256"].as_str().unwrap().to_string();
    assert!(
        out.logs.iter().any(|l| l.starts_with("archiving ")),
        "{:?}",
        out.logs
    );

    std::fs::write(data.join("sub/a.txt"), "changed\n").unwrap();
    h.run_action(
        &charm,
        action("restore-myapp")
            .param("path", path.as_str())
            .param("sha256", sha.as_str()),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(data.join("sub/a.txt")).unwrap(),
        "alpha\n"
    );

    // A wrong checksum is refused with the data as it was.
    std::fs::write(data.join("sub/a.txt"), "kept\n").unwrap();
    let failed = h
        .run_action(
            &charm,
            action("restore-myapp")
                .param("path", path.as_str())
                .param("sha256", "0".repeat(64)),
        )
        .unwrap_err();
    assert!(failed.message.contains("sha256"), "{}", failed.message);
    assert_eq!(
        std::fs::read_to_string(data.join("sub/a.txt")).unwrap(),
        "kept\n"
    );
}

#[test]
fn errors_name_this_charms_option() {
    let tmp = tempfile::tempdir().unwrap();
    let h = harness(&tmp.path().join("missing"), &tmp.path().join("unit"));
    let failed = h
        .run_action(
            &myapp_charm::charm(),
            action("backup-myapp").param("target", tmp.path().display().to_string()),
        )
        .unwrap_err();
    assert!(failed.message.contains("data-dir"), "{}", failed.message);
    assert!(
        failed.message.contains("juju config myapp data-dir="),
        "{}",
        failed.message
    );
}
