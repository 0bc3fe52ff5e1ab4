//! What probes made and what an aggregator stored, by result id: for the
//! tests that hold "nothing lost, nothing twice" across kills and moves.

use super::{client, get_json};

/// Result ids a probe logged as made (its `ran` lines, at debug).
pub fn made_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" ran ") || l.ends_with(" ran"))
        .filter_map(|l| l.split("id=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The ids of `check`'s results stored, as `base` serves them (the newest
/// 1,000).
pub async fn stored_ids_of(base: &str, check: &str) -> Vec<String> {
    let (status, body) = get_json(
        &client(),
        &format!("{base}/api/v1/checks/{check}/results?limit=1000"),
    )
    .await;
    if status != 200 {
        return Vec::new();
    }
    body["results"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
