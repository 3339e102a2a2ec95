//! `open-port`, `close-port` and `opened-ports` (juju/juju `ports.go`, `ports_test.go`,
//! `opened-ports.go`, `runner/context/ports.go`, `core/network/portrange.go`).

use std::collections::{BTreeMap, BTreeSet};

use charm_backup::juju::{HookTools, PortRange, Protocol};
use charm_backup::testing::{FakeAgent, UnitState};

use super::{Spy, call, printed, run_error, strs, usage_error};

fn unit() -> FakeAgent {
    FakeAgent::new(UnitState {
        unit: "u/0".into(),
        ..Default::default()
    })
}

/// Opened ranges by endpoint, as text.
fn opened(a: &FakeAgent) -> BTreeMap<String, Vec<String>> {
    a.state()
        .opened_ports
        .iter()
        .map(|(ep, set)| (ep.clone(), set.iter().map(ToString::to_string).collect()))
        .collect()
}

fn all(ranges: &[&str]) -> BTreeMap<String, Vec<String>> {
    BTreeMap::from([(String::new(), strs(ranges))])
}

#[test]
fn open_and_close_as_in_jujus_own_sequence() {
    let a = unit();
    let steps: [(&str, &[&str], &[&str]); 11] = [
        ("open-port", &["80"], &["80/tcp"]),
        ("open-port", &["99/tcp"], &["80/tcp", "99/tcp"]),
        (
            "open-port",
            &["100-200"],
            &["80/tcp", "99/tcp", "100-200/tcp"],
        ),
        (
            "open-port",
            &["443/udp"],
            &["80/tcp", "99/tcp", "100-200/tcp", "443/udp"],
        ),
        (
            "close-port",
            &["80/TCP"],
            &["99/tcp", "100-200/tcp", "443/udp"],
        ),
        ("close-port", &["100-200/tcP"], &["99/tcp", "443/udp"]),
        ("close-port", &["443"], &["99/tcp", "443/udp"]),
        ("close-port", &["443/udp"], &["99/tcp"]),
        ("open-port", &["123/udp"], &["99/tcp", "123/udp"]),
        ("close-port", &["9999/UDP"], &["99/tcp", "123/udp"]),
        ("open-port", &["icmp"], &["icmp", "99/tcp", "123/udp"]),
    ];
    for (tool, args, expect) in steps {
        assert_eq!(call(&a, tool, args), printed(""), "{tool} {args:?}");
        a.commit();
        assert_eq!(opened(&a), all(expect), "{tool} {args:?}");
    }
    call(&a, "open-port", &["--endpoints", "foo,bar", "1337/tcp"]);
    a.commit();
    let mut expect = all(&["icmp", "99/tcp", "123/udp"]);
    expect.insert("foo".into(), strs(&["1337/tcp"]));
    expect.insert("bar".into(), strs(&["1337/tcp"]));
    assert_eq!(opened(&a), expect);
    call(&a, "close-port", &["--endpoints", "foo", "1337/tcp"]);
    a.commit();
    expect.remove("foo");
    assert_eq!(opened(&a), expect);
    let shown: Vec<String> = a.state().ports().iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["icmp", "99/tcp", "1337/tcp", "123/udp"]);
}

#[test]
fn the_client_sends_ranges_and_endpoints_and_lists_what_is_open() {
    let a = unit();
    let (spy, tools) = Spy::new(&a);
    let web = PortRange::range(8000, 8080, Protocol::Tcp).unwrap();
    tools.open_port(&web, &[]).unwrap();
    assert_eq!(spy.last(), ("open-port".into(), strs(&["8000-8080/tcp"])));
    tools
        .open_port(&PortRange::icmp(), &["public", "admin"])
        .unwrap();
    assert_eq!(spy.last().1, strs(&["--endpoints", "public,admin", "icmp"]));
    tools.open_port(&PortRange::udp(53), &[]).unwrap();
    tools.close_port(&PortRange::udp(53), &[]).unwrap();
    assert_eq!(spy.last(), ("close-port".into(), strs(&["53/udp"])));
    assert_eq!(
        tools.opened_ports().unwrap(),
        [PortRange::icmp(), web],
        "requests made in this hook are listed"
    );
    assert!(a.state().ports().is_empty(), "applied when the hook ends");
    a.commit();
    assert_eq!(a.state().ports(), [PortRange::icmp(), web]);
    assert_eq!(
        a.state().opened_ports["public"],
        BTreeSet::from([PortRange::icmp()])
    );
    let e = tools
        .open_port(&PortRange::tcp(8080), &[])
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "open-port failed (exit status 1): cannot open 8080/tcp (unit \"u/0\"): port range \
         conflicts with 8000-8080/tcp (unit \"u/0\")"
    );
    tools.close_port(&web, &[]).unwrap();
    a.discard();
    assert_eq!(
        a.state().ports(),
        [PortRange::icmp(), web],
        "a failed hook changes nothing"
    );
}

#[test]
fn bad_ranges_and_conflicts_fail_as_in_juju() {
    let a = unit();
    for (args, msg) in [
        (&[][..], "no port or range specified"),
        (
            &["abc"],
            "invalid port \"abc\": strconv.Atoi: parsing \"abc\": invalid syntax",
        ),
        (&["90-80"], "invalid port range 90-80/tcp"),
        (&["1-2-3"], "invalid port range \"1-2-3\""),
        (
            &["80/ICMP"],
            "protocol \"icmp\" doesn't support any ports; got \"80\"",
        ),
        (
            &["80/sctp"],
            "invalid protocol \"sctp\", expected \"tcp\", \"udp\", or \"icmp\"",
        ),
        (
            &["70000"],
            "port range bounds must be between 0 and 65535, got 70000-70000",
        ),
        (&["80", "81"], "unrecognized args: [\"81\"]"),
        (&["--endpoints"], "option needs an argument: --endpoints"),
    ] {
        assert_eq!(call(&a, "open-port", args), usage_error(msg), "{args:?}");
        assert_eq!(call(&a, "close-port", args), usage_error(msg), "{args:?}");
    }

    assert_eq!(call(&a, "open-port", &["80-90"]), printed(""));
    assert_eq!(
        call(&a, "open-port", &["85"]),
        run_error(
            "cannot open 85/tcp (unit \"u/0\"): port range conflicts with 80-90/tcp (unit \
             \"u/0\") requested earlier"
        )
    );
    assert_eq!(
        call(&a, "open-port", &["80-90/tcp"]),
        printed(""),
        "asking twice is a no-op"
    );
    assert_eq!(call(&a, "open-port", &["85/udp"]), printed(""));
    a.commit();
    assert_eq!(
        call(&a, "open-port", &["85-95"]),
        run_error(
            "cannot open 85-95/tcp (unit \"u/0\"): port range conflicts with 80-90/tcp (unit \
             \"u/0\")"
        )
    );
    assert_eq!(
        call(&a, "close-port", &["85"]),
        run_error(
            "cannot close 85/tcp (unit \"u/0\"): port range conflicts with 80-90/tcp (unit \
             \"u/0\")"
        )
    );
    assert_eq!(
        call(&a, "open-port", &["--endpoints", "admin", "80-90"]),
        printed(""),
        "the same range for another endpoint is no conflict"
    );
    call(&a, "open-port", &["443"]);
    call(&a, "close-port", &["443"]);
    a.commit();
    let shown: Vec<String> = a.state().ports().iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["80-90/tcp", "85/udp"],
        "closing cancels an opening asked for in the same hook"
    );
    assert_eq!(
        call(&a, "open-port", &["--format", "foo", "80-90"]),
        (
            0,
            String::new(),
            "--format flag deprecated for command \"open-port\"".into()
        )
    );
    assert_eq!(
        call(&a, "close-port", &["--format", "foo", "9/udp"]),
        (
            0,
            String::new(),
            "--format flag deprecated for command \"close-port\"".into()
        )
    );
}

#[test]
fn opened_ports_formats_and_endpoints() {
    let a = unit();
    assert_eq!(call(&a, "opened-ports", &[]), printed(""));
    assert_eq!(
        call(&a, "opened-ports", &["--format=json"]),
        printed("[]\n")
    );
    let tools = HookTools::new(Box::new(a.clone()));
    assert!(tools.opened_ports().unwrap().is_empty());
    call(&a, "open-port", &["80"]);
    call(&a, "open-port", &["icmp"]);
    call(&a, "open-port", &["--endpoints", "foo,bar", "1337"]);
    assert_eq!(
        call(&a, "opened-ports", &[]),
        printed("icmp\n80/tcp\n1337/tcp\n")
    );
    assert_eq!(
        call(&a, "opened-ports", &["--endpoints"]),
        printed("icmp (*)\n80/tcp (*)\n1337/tcp (bar, foo)\n")
    );
    assert_eq!(
        call(&a, "opened-ports", &["--format=json"]),
        printed("[\"icmp\",\"80/tcp\",\"1337/tcp\"]\n")
    );
    assert_eq!(
        call(&a, "opened-ports", &["--format=yaml"]),
        printed("- icmp\n- 80/tcp\n- 1337/tcp\n")
    );
    assert_eq!(
        call(&a, "opened-ports", &["x"]),
        usage_error("unrecognized args: [\"x\"]")
    );
}
