//! `ordo scan TABLE`: a table's committed rows, read from a server
//! (the protocol's admin-only `Scan`) and decoded with the table's schema
//! where a deployed module declares one (`#[table]`), shown as bytes
//! otherwise.
//!
//! A table's rows are the keys `name 0x00 class key` (see the SDK's
//! `Table`), so the table is the range from `name 0x00` up to the next
//! name; `--prefix` narrows it to keys that start with the given leading
//! key elements, encoded as the SDK encodes them.

use anyhow::{Context, bail};
use ordo_client::Client;
// The engine's copy of the schema crate has the JSON features.
use ordo_engine::schema::{
    TableSchema, key_class, ordered_key_prefix_from_json, ordered_key_to_json, postcard_to_json,
    render,
};

/// Rows `ordo scan` shows when `--limit` is not given.
pub const SCAN_LIMIT_DEFAULT: u64 = 100;
/// The most rows one `ordo scan` shows (in pages of at most the server's
/// 1,000).
pub const SCAN_LIMIT_MAX: u64 = 1_000_000;

/// One row, decoded where the schema allows.
pub struct ScannedRow {
    /// The key as JSON, or (`Err`) its bytes as text.
    pub key: Result<serde_json::Value, String>,
    pub value: Result<serde_json::Value, String>,
    pub raw_key: Vec<u8>,
    pub raw_value: Vec<u8>,
}

pub struct Scan {
    /// Whether the table has a schema the rows were decoded with.
    pub schema: Option<TableSchema>,
    pub rows: Vec<ScannedRow>,
    /// The lowest and highest position the pages were read at (each page
    /// is one consistent state; a scan of several pages while writes go
    /// on may span positions).
    pub positions: (u64, u64),
    /// Whether the table holds rows after the last one shown.
    pub more: bool,
}

/// Reads up to `limit` rows of `table`, those whose key starts with
/// `prefix` (JSON: the key, or its leading elements) if given.
pub async fn scan(
    client: &Client,
    table: &str,
    prefix: Option<&str>,
    limit: u64,
) -> anyhow::Result<Scan> {
    if table.is_empty() || table.as_bytes().contains(&0) {
        bail!("a table name is not empty and holds no NUL byte");
    }
    if !(1..=SCAN_LIMIT_MAX).contains(&limit) {
        bail!("--limit must be 1 to {SCAN_LIMIT_MAX}");
    }
    let schema = client
        .describe()
        .await?
        .into_iter()
        .flat_map(|module| module.tables)
        .find(|schema| schema.name == table);
    let mut start = table.as_bytes().to_vec();
    start.push(0);
    if let Some(prefix) = prefix {
        let Some(schema) = &schema else {
            bail!(
                "--prefix needs the table's schema, and no deployed module declares a table `{table}` with #[table] (`ordo describe` lists the tables)"
            );
        };
        let value: serde_json::Value = serde_json::from_str(prefix)
            .with_context(|| format!("the prefix is not JSON ({prefix})"))?;
        let (Some(class), Some(encoded)) = (
            key_class(&schema.key, &schema.types),
            ordered_key_prefix_from_json(&schema.key, &schema.types, &value),
        ) else {
            bail!(
                "the prefix {value} is not a key of table `{table}` ({}) or its leading elements",
                render(&schema.key, &schema.types)
            );
        };
        start.push(class);
        start.extend_from_slice(&encoded);
    }
    let end = prefix_end(&start);
    let mut scan = Scan {
        schema,
        rows: Vec::new(),
        positions: (u64::MAX, 0),
        more: false,
    };
    let mut from = start;
    while (scan.rows.len() as u64) < limit {
        let page = u32::try_from(limit - scan.rows.len() as u64).unwrap_or(u32::MAX);
        let (position, rows, more) = client.scan_raw(from.clone(), end.clone(), page).await?;
        scan.positions = (
            scan.positions.0.min(position),
            scan.positions.1.max(position),
        );
        let last = rows.last().map(|(key, _)| key.clone());
        for (key, value) in rows {
            scan.rows
                .push(decode(scan.schema.as_ref(), table, key, value));
        }
        scan.more = more;
        match last {
            Some(mut last) if more => {
                // The smallest key after `last`.
                last.push(0);
                from = last;
            }
            _ => break,
        }
    }
    if scan.positions.0 == u64::MAX {
        scan.positions.0 = scan.positions.1;
    }
    Ok(scan)
}

fn decode(schema: Option<&TableSchema>, table: &str, key: Vec<u8>, value: Vec<u8>) -> ScannedRow {
    let render = |bytes: &[u8]| crate::replay::render_bytes(bytes);
    let (decoded_key, decoded_value) = match schema {
        Some(schema) => (
            // After `name 0x00` comes the class byte, then the key.
            key.get(table.len() + 2..)
                .and_then(|encoded| ordered_key_to_json(&schema.key, &schema.types, encoded))
                .ok_or_else(|| render(&key)),
            postcard_to_json(&schema.value, &schema.types, &value).map_err(|_| render(&value)),
        ),
        None => (Err(render(&key)), Err(render(&value))),
    };
    ScannedRow {
        key: decoded_key,
        value: decoded_value,
        raw_key: key,
        raw_value: value,
    }
}

/// The first key after every key that starts with `prefix`; `None` if
/// there is none (the prefix is all `0xFF`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_the_next_prefix() {
        assert_eq!(prefix_end(b"acct\0"), Some(b"acct\x01".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
    }
}
