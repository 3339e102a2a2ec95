//! `open-port`, `close-port` and `opened-ports`, and the port ranges they take.
//!
//! Parsing and validation follow Juju's `core/network/portrange.go` (`ParsePortRange`,
//! `PortRange.Validate`, `PortRange.String`, `SortPortRanges`) and the tools follow
//! `internal/worker/uniter/runner/jujuc/ports.go` and `opened-ports.go`.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::juju::tools::HookTools;

/// The protocol of a [`PortRange`]. Ordered as Juju sorts port ranges (by protocol name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// ICMP: no ports.
    Icmp,
    /// TCP, the default when none is given.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The name Juju uses: `icmp`, `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Icmp => "icmp",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// A port, a range of ports, or ICMP, as `open-port` and `close-port` take it (`80/tcp`,
/// `8000-8080/udp`, `icmp`).
///
/// Ordered as Juju's `SortPortRanges` orders them: by protocol, then first port, then last port.
/// An ICMP range has no ports ([`PortRange::from_port`] and [`PortRange::to_port`] are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    protocol: Protocol,
    from: u16,
    to: u16,
}

impl PortRange {
    /// One TCP port.
    pub fn tcp(port: u16) -> Self {
        PortRange {
            protocol: Protocol::Tcp,
            from: port,
            to: port,
        }
    }

    /// One UDP port.
    pub fn udp(port: u16) -> Self {
        PortRange {
            protocol: Protocol::Udp,
            from: port,
            to: port,
        }
    }

    /// ICMP (ping and friends).
    pub fn icmp() -> Self {
        PortRange {
            protocol: Protocol::Icmp,
            from: 0,
            to: 0,
        }
    }

    /// The ports `from` to `to` (both included) for `protocol`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] with Juju's message when `from` is above `to`, or when
    /// ports are given for ICMP.
    pub fn range(from: u16, to: u16, protocol: Protocol) -> Result<Self> {
        let (from, to) = match protocol {
            Protocol::Icmp if from == 0 && to == 0 => (-1, -1),
            _ => (i64::from(from), i64::from(to)),
        };
        validate(from, to, protocol.as_str()).map_err(Error::invalid)
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The first port (0 for ICMP).
    pub fn from_port(&self) -> u16 {
        self.from
    }

    /// The last port (0 for ICMP).
    pub fn to_port(&self) -> u16 {
        self.to
    }

    /// Whether the two ranges share a port of the same protocol (Juju's
    /// `PortRange.ConflictsWith`).
    pub fn conflicts_with(&self, other: &PortRange) -> bool {
        self.protocol == other.protocol && self.to >= other.from && other.to >= self.from
    }
}

impl fmt::Display for PortRange {
    /// `icmp`, `80/tcp` or `8000-8080/tcp`, as Juju's `PortRange.String` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Protocol::Icmp => f.write_str("icmp"),
            p if self.from == self.to => write!(f, "{}/{}", self.from, p.as_str()),
            p => write!(f, "{}-{}/{}", self.from, self.to, p.as_str()),
        }
    }
}

impl FromStr for PortRange {
    type Err = Error;

    /// Parses `<port>[/<protocol>]`, `<from>-<to>[/<protocol>]` or `icmp` as `open-port` does:
    /// the text is lowercased, the protocol defaults to `tcp`, and the error texts are Juju's
    /// (`invalid port "x": strconv.Atoi: parsing "x": invalid syntax`, `invalid port range
    /// 90-80/tcp`, `port range bounds must be between 0 and 65535, got 0-70000`, ...).
    fn from_str(s: &str) -> Result<Self> {
        parse_port_range(&s.to_lowercase()).map_err(Error::invalid)
    }
}

/// Go's `%q` for a string (JSON escaping is close enough for the texts Juju quotes).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Go's `strconv.Atoi` on a 64-bit platform, with its error text.
fn go_atoi(s: &str) -> std::result::Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", go_quote(s)))
}

/// Juju's `ParsePortRange` (on text the caller has already lowercased, as `open-port` does).
fn parse_port_range(text: &str) -> std::result::Result<PortRange, String> {
    let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let parts: Vec<&str> = ports.split('-').collect();
    let (from, to) = match parts.as_slice() {
        ["icmp"] => (-1, -1),
        [one] => {
            let p = go_atoi(one).map_err(|e| format!("invalid port {}: {e}", go_quote(ports)))?;
            (p, p)
        }
        [a, b] => (
            go_atoi(a).map_err(|e| format!("invalid port {}: {e}", go_quote(a)))?,
            go_atoi(b).map_err(|e| format!("invalid port {}: {e}", go_quote(b)))?,
        ),
        _ => return Err(format!("invalid port range {}", go_quote(ports))),
    };
    let protocol = if from == -1 { "icmp" } else { protocol };
    validate(from, to, protocol)
}

/// Juju's `PortRange.Validate`, building the range when it passes.
fn validate(from: i64, to: i64, protocol: &str) -> std::result::Result<PortRange, String> {
    let proto = protocol.to_lowercase();
    let protocol = match proto.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        _ => {
            return Err(format!(
                "invalid protocol {}, expected \"tcp\", \"udp\", or \"icmp\"",
                go_quote(&proto)
            ));
        }
    };
    if protocol == Protocol::Icmp {
        if from == -1 && to == -1 {
            return Ok(PortRange::icmp());
        }
        return Err(format!(
            "protocol \"icmp\" doesn't support any ports; got \"{from}\""
        ));
    }
    if from > to {
        return Err(format!("invalid port range {from}-{to}/{proto}"));
    }
    match (u16::try_from(from), u16::try_from(to)) {
        (Ok(from), Ok(to)) => Ok(PortRange { protocol, from, to }),
        _ => Err(format!(
            "port range bounds must be between 0 and 65535, got {from}-{to}"
        )),
    }
}

/// `[--endpoints a,b] <range>`, as `open-port` and `close-port` take them.
fn port_args(range: &PortRange, endpoints: &[&str]) -> Vec<String> {
    let mut args = Vec::new();
    let endpoints: Vec<&str> = endpoints
        .iter()
        .copied()
        .filter(|e| !e.is_empty())
        .collect();
    if !endpoints.is_empty() {
        args.extend(["--endpoints".to_string(), endpoints.join(",")]);
    }
    args.push(range.to_string());
    args
}

impl HookTools {
    /// `open-port [--endpoints <a,b>] <range>`: asks Juju to open `range` on every endpoint, or
    /// only on `endpoints`. Juju applies it when the hook exits successfully, and the port is
    /// reachable only while the application is exposed.
    ///
    /// # Errors
    /// When the tool fails, e.g. the range overlaps another one this unit opened (`cannot open
    /// 8000-8080/tcp (unit "app/0"): port range conflicts with 8080/tcp (unit "app/0")`).
    pub fn open_port(&self, range: &PortRange, endpoints: &[&str]) -> Result<()> {
        self.call("open-port", port_args(range, endpoints))
            .map(drop)
    }

    /// `close-port [--endpoints <a,b>] <range>`: asks Juju to close `range` (a no-op when it is
    /// not open), applied when the hook exits successfully.
    ///
    /// # Errors
    /// When the tool fails, e.g. the range overlaps an open range without matching it.
    pub fn close_port(&self, range: &PortRange, endpoints: &[&str]) -> Result<()> {
        self.call("close-port", port_args(range, endpoints))
            .map(drop)
    }

    /// `opened-ports --format=json`: the ranges this unit has open on any endpoint, changes
    /// requested in this hook included, sorted as Juju sorts them.
    ///
    /// # Errors
    /// When the tool fails or prints a range that does not parse.
    pub fn opened_ports(&self) -> Result<Vec<PortRange>> {
        let v = self.call_json("opened-ports", vec!["--format=json".into()])?;
        let Value::Array(items) = v else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .map(|i| {
                let s = i.as_str().unwrap_or_default();
                s.parse().map_err(|e: Error| {
                    Error::new(
                        ErrorKind::Other,
                        format!("opened-ports printed {s:?}, not a port range"),
                    )
                    .with_source(e)
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        match s.parse::<PortRange>() {
            Ok(r) => panic!("{s} parsed as {r}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_and_prints_like_juju() {
        for (text, shown) in [
            ("80", "80/tcp"),
            ("80/TCP", "80/tcp"),
            ("53/udp", "53/udp"),
            ("8000-8080", "8000-8080/tcp"),
            ("100-100/udp", "100/udp"),
            ("ICMP", "icmp"),
            ("icmp/tcp", "icmp"),
            ("+80", "80/tcp"),
            ("0", "0/tcp"),
        ] {
            let r: PortRange = text.parse().unwrap();
            assert_eq!(r.to_string(), shown, "{text}");
        }
        assert_eq!(
            err("abc"),
            "invalid port \"abc\": strconv.Atoi: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            err("-80"),
            "invalid port \"\": strconv.Atoi: parsing \"\": invalid syntax"
        );
        assert_eq!(err("1-2-3/udp"), "invalid port range \"1-2-3\"");
        assert_eq!(err("90-80"), "invalid port range 90-80/tcp");
        assert_eq!(
            err("80-70000"),
            "port range bounds must be between 0 and 65535, got 80-70000"
        );
        assert_eq!(
            err("80/sctp"),
            "invalid protocol \"sctp\", expected \"tcp\", \"udp\", or \"icmp\""
        );
        assert_eq!(
            err("80/icmp"),
            "protocol \"icmp\" doesn't support any ports; got \"80\""
        );
        assert_eq!(
            err("99999999999999999999"),
            "invalid port \"99999999999999999999\": strconv.Atoi: parsing \
             \"99999999999999999999\": value out of range"
        );
    }

    #[test]
    fn sorted_and_conflicting_as_juju() {
        let mut v = [
            PortRange::udp(53),
            PortRange::range(100, 200, Protocol::Tcp).unwrap(),
            PortRange::icmp(),
            PortRange::tcp(99),
        ];
        v.sort();
        let shown: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["icmp", "99/tcp", "100-200/tcp", "53/udp"]);
        assert!(v[2].conflicts_with(&PortRange::tcp(150)));
        assert!(!v[2].conflicts_with(&PortRange::udp(150)));
        assert!(PortRange::range(2, 1, Protocol::Udp).is_err());
        assert!(PortRange::range(1, 1, Protocol::Icmp).is_err());
    }
}
