//! The YAML schema, parsed strictly: an unknown key is an error, so a typo never silently drops
//! an option.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileSchema {
    #[serde(default)]
    pub(super) defaults: DefaultsSchema,
    #[serde(default)]
    pub(super) maintain_order: bool,
    #[serde(default)]
    pub(super) members: Vec<MemberSchema>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DefaultsSchema {
    pub(super) store: Option<String>,
    pub(super) store_endpoint_override: Option<String>,
    pub(super) store_region: Option<String>,
    pub(super) store_path_style: Option<bool>,
    pub(super) store_allow_http: Option<bool>,
    pub(super) temp_dir: Option<PathBuf>,
    pub(super) compression: Option<String>,
    pub(super) parallel: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct MemberSchema {
    pub(super) alias: Option<String>,
    pub(super) store: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) member_set: Option<MemberSetSchema>,
    pub(super) to_revision: Option<i64>,
    pub(super) to_time: Option<TimeSchema>,
    pub(super) compression: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum TimeSchema {
    Unix(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct MemberSetSchema {
    pub(super) initial_cluster_token: Option<String>,
    #[serde(default)]
    pub(super) members: Vec<SetMemberSchema>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SetMemberSchema {
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) peer_urls: Vec<String>,
    pub(super) data_dir: Option<PathBuf>,
}
