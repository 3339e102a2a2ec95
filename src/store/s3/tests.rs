//! The store against a scripted S3 server, for answers a real test server does not give
//! (credentials that may not delete versions).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::{S3Options, S3Store};
use crate::error::ErrorKind;
use crate::store::Store;

/// Serves every request with `answer(method, path and query)` (status, body) on a loopback
/// port, recording the requests; returns the endpoint and the record.
fn scripted(answer: fn(&str, &str) -> (u16, String)) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, target) = (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            );
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = std::io::Read::read_exact(&mut reader, &mut body);
            record.lock().unwrap().push(format!("{method} {target}"));
            let (status, text) = answer(&method, &target);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (endpoint, seen)
}

/// What `DeleteObjects` answers (`object_store` deletes through it).
fn deleted() -> String {
    "<DeleteResult><Deleted><Key>p/backup/k</Key></Deleted></DeleteResult>".into()
}

fn store(endpoint: &str) -> S3Store {
    S3Store::open(&S3Options {
        bucket: "bkt".into(),
        endpoint: endpoint.into(),
        path: "p".into(),
        access_key: "k".into(),
        secret_key: "s".into(),
        uri_style: "path".into(),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn versions_that_may_not_be_deleted_are_reported_and_the_key_is_still_deleted() {
    let (endpoint, seen) = scripted(|method, target| match (method, target) {
        ("GET", t) if t.contains("versioning") => (
            200,
            "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>".into(),
        ),
        ("GET", t) if t.contains("versions") => (
            200,
            "<ListVersionsResult><IsTruncated>false</IsTruncated>\
             <Version><Key>p/backup/k</Key><VersionId>v2</VersionId></Version>\
             <Version><Key>p/backup/k</Key><VersionId>v1</VersionId></Version>\
             </ListVersionsResult>"
                .into(),
        ),
        ("DELETE", t) if t.contains("versionId") => (
            403,
            "<Error><Code>AccessDenied</Code><Message>no</Message></Error>".into(),
        ),
        ("POST", t) if t.contains("delete") => (200, deleted()),
        _ => (400, String::new()),
    });
    let e = store(&endpoint).delete("backup/k").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        e.to_string(),
        "deleted backup/k from versioned bucket bkt, but 2 old version(s) of p/backup/k are left \
         (AccessDenied: v2, v1); allow s3:DeleteObjectVersion to these credentials, or remove \
         them by hand"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "GET /bkt/?versioning=",
            "GET /bkt/?versions=&prefix=p%2Fbackup%2Fk",
            "DELETE /bkt/p/backup/k?versionId=v2",
            "DELETE /bkt/p/backup/k?versionId=v1",
            "POST /bkt?delete",
        ]
    );
}

#[test]
fn a_server_without_versioning_gets_a_plain_delete() {
    let (endpoint, seen) = scripted(|method, _| match method {
        "POST" => (200, deleted()),
        _ => (501, "<Error><Code>NotImplemented</Code></Error>".into()),
    });
    let s = store(&endpoint);
    assert!(s.versioning().is_err());
    s.delete("backup/k").unwrap();
    s.delete("backup/l").unwrap();
    let seen = seen.lock().unwrap().clone();
    // Asked once per store.
    assert_eq!(
        seen,
        [
            "GET /bkt/?versioning=",
            "GET /bkt/?versioning=",
            "POST /bkt?delete",
            "POST /bkt?delete",
        ]
    );
}
