//! Task records and how `juju run` / `juju show-task` print them.

use serde_json::{Map, Value, json};

use charm_backup::testing::jujuc::yaml;

/// Result keys Juju fills itself and plain output hides.
const HIDDEN: [&str; 5] = [
    "return-code",
    "stdout",
    "stderr",
    "stdout-encoding",
    "stderr-encoding",
];

/// Go's `time.Time.String()` for a timestamp, in UTC or local time.
pub fn go_time(t: jiff::Timestamp, utc: bool) -> String {
    let tz = if utc {
        jiff::tz::TimeZone::UTC
    } else {
        jiff::tz::TimeZone::system()
    };
    let z = t.to_zoned_datetime(tz);
    let abbrev = if utc {
        "UTC".to_string()
    } else {
        z.strftime("%Z").to_string()
    };
    format!("{} {abbrev}", z.strftime("%Y-%m-%d %H:%M:%S %z"))
}

/// `HH:MM:SS` as `juju run` prints log lines.
pub fn clock(t: jiff::Timestamp, utc: bool) -> String {
    let tz = if utc {
        jiff::tz::TimeZone::UTC
    } else {
        jiff::tz::TimeZone::system()
    };
    t.to_zoned_datetime(tz).strftime("%H:%M:%S").to_string()
}

/// Adds captured output to results as Juju does (`stdout`, or base64 plus `stdout-encoding`).
pub fn add_output(results: &mut Map<String, Value>, key: &str, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    match std::str::from_utf8(data) {
        Ok(s) => {
            results.insert(key.into(), Value::String(s.into()));
        }
        Err(_) => {
            results.insert(
                key.into(),
                Value::String(charm_backup::encoding::base64(data)),
            );
            results.insert(format!("{key}-encoding"), "base64".into());
        }
    }
}

/// The formatted task map (`formatActionResult`).
#[allow(clippy::too_many_arguments)]
pub fn task(
    id: u64,
    unit: &str,
    status: &str,
    message: &str,
    results: &Map<String, Value>,
    log: &[String],
    timing: [jiff::Timestamp; 3],
    utc: bool,
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(id.to_string()));
    m.insert("status".into(), status.into());
    m.insert("unit".into(), unit.into());
    if !message.is_empty() {
        m.insert("message".into(), message.into());
    }
    if !results.is_empty() {
        m.insert("results".into(), Value::Object(results.clone()));
    }
    if !log.is_empty() {
        m.insert("log".into(), json!(log));
    }
    m.insert(
        "timing".into(),
        json!({
            "enqueued": go_time(timing[0], utc),
            "started": go_time(timing[1], utc),
            "completed": go_time(timing[2], utc),
        }),
    );
    Value::Object(m)
}

/// Plain output of one task (`printPlainOutput`).
pub fn plain(task: &Value) -> String {
    let id = task["id"].as_str().unwrap_or_default();
    let status = task["status"].as_str().unwrap_or_default();
    let results = task["results"].as_object().cloned().unwrap_or_default();
    let shown: Map<String, Value> = results
        .iter()
        .filter(|(k, _)| !HIDDEN.contains(&k.as_str()))
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    let mut out = String::new();
    if status == "failed" {
        out.push_str(&format!(
            "Action id {id} failed: {}\n",
            task["message"].as_str().unwrap_or_default()
        ));
    }
    if shown.is_empty() {
        out.push_str(&format!("Task {id} {status}\n"));
    } else {
        out.push_str(&yaml(&Value::Object(shown)));
    }
    out.push('\n');
    for k in ["stdout", "stderr"] {
        if let Some(s) = results.get(k).and_then(Value::as_str) {
            let t = s.trim_matches('\n');
            if !t.is_empty() {
                out.push_str(t);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hides_juju_keys_and_prints_stdout_after() {
        let t = json!({"id": "1", "status": "completed", "results": {"foo": {"bar": "baz"}, "stdout": "hello", "return-code": 0}});
        assert_eq!(plain(&t), "foo:\n  bar: baz\n\nhello\n");
        let t = json!({"id": "3", "status": "failed", "message": "boom", "results": {"return-code": 0}});
        assert_eq!(plain(&t), "Action id 3 failed: boom\nTask 3 failed\n\n");
    }
}
