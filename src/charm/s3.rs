//! The `s3-parameters` relation: the settings the s3-integrator charm publishes, turned into
//! a store.

use crate::juju::{BoxError, Context};
use crate::store::S3Options;

/// The relation endpoint.
pub const ENDPOINT: &str = "s3-parameters";

/// The remote application and the S3 settings it published, if the relation exists (complete
/// or not).
///
/// # Errors
/// When a relation tool fails.
pub fn s3_options(ctx: &Context) -> Result<Option<(String, S3Options)>, BoxError> {
    let Some(rel) = ctx.relation(ENDPOINT)? else {
        return Ok(None);
    };
    let get = |k: &str| rel.data.get(k).cloned().unwrap_or_default();
    // s3-integrator publishes tls-ca-chain as a JSON list of PEM strings.
    let ca = get("tls-ca-chain");
    let ca_chain = if ca.is_empty() {
        Vec::new()
    } else {
        serde_json::from_str::<Vec<String>>(&ca).unwrap_or_else(|_| vec![ca])
    };
    Ok(Some((
        rel.app.clone(),
        S3Options {
            bucket: get("bucket"),
            endpoint: get("endpoint"),
            region: get("region"),
            path: get("path"),
            access_key: get("access-key"),
            secret_key: get("secret-key"),
            uri_style: get("s3-uri-style"),
            ca_chain,
            storage_class: get("storage-class"),
        },
    )))
}
