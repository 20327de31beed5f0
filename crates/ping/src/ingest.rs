//! Records sent to PING's ingestion endpoints (`/data`, `/asyncdata`) and what comes back.
//!
//! Field values of a record are personal data (names, dates of birth, phones): `Debug` shows
//! the external ids and field names only.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::error::RecordFailure;
use crate::mask::mask_message;

/// One record of an ingestion request.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct IngestRecord {
    /// `ExternalId`, chosen by the caller (LP intervention id, `case_id`, referral GUID).
    pub external_id: String,
    /// `ExternalGUID` (asynchronous ingestion: the Primero case `id`).
    pub external_guid: Option<String>,
    /// `Attachments[].Comment` texts.
    pub attachments: Vec<String>,
    /// `Fields[]` as (Name, Value); `None` sends JSON null.
    pub fields: Vec<(String, Option<String>)>,
}

impl fmt::Debug for IngestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestRecord")
            .field("external_id", &self.external_id)
            .field("external_guid", &self.external_guid)
            .field("attachments", &self.attachments.len())
            .field(
                "fields",
                &self
                    .fields
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl IngestRecord {
    pub fn new(external_id: impl Into<String>) -> Self {
        IngestRecord {
            external_id: external_id.into(),
            ..Default::default()
        }
    }

    /// Adds a field (builder style).
    pub fn field(mut self, name: impl Into<String>, value: Option<impl Into<String>>) -> Self {
        self.fields.push((name.into(), value.map(Into::into)));
        self
    }

    /// Adds an attachment comment (builder style).
    pub fn attachment(mut self, comment: impl Into<String>) -> Self {
        self.attachments.push(comment.into());
        self
    }

    pub fn with_external_guid(mut self, guid: impl Into<String>) -> Self {
        self.external_guid = Some(guid.into());
        self
    }

    /// The wire object `{ExternalId, ExternalGUID?, Attachments, Fields}`. `Attachments` is
    /// always present for `/data` (an empty list is what the reference sends) and only when
    /// non-empty for `/asyncdata`.
    pub(crate) fn wire(&self, always_attachments: bool) -> Wire<'_> {
        Wire {
            record: self,
            always_attachments,
        }
    }

    /// [`IngestRecord::wire`] as a JSON tree (for tests and for reading).
    #[cfg(test)]
    pub(crate) fn to_wire(&self, always_attachments: bool) -> Value {
        serde_json::to_value(self.wire(always_attachments)).expect("a wire record is JSON")
    }
}

/// A record as it goes on the wire, written straight to the request's text: a batch of 50
/// records built as a `serde_json::Value` first cost as much CPU as everything else the
/// service does for those records in flow 1.2. Keys in the order of the reference's
/// requests.
pub(crate) struct Wire<'a> {
    record: &'a IngestRecord,
    always_attachments: bool,
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// `{"Comment": c}`.
        struct Comment<'a>(&'a str);
        impl Serialize for Comment<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut m = serializer.serialize_map(Some(1))?;
                m.serialize_entry("Comment", self.0)?;
                m.end()
            }
        }
        /// `{"Name": n, "Value": v}` (`null` for `None`).
        struct Field<'a>(&'a str, Option<&'a str>);
        impl Serialize for Field<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut m = serializer.serialize_map(Some(2))?;
                m.serialize_entry("Name", self.0)?;
                m.serialize_entry("Value", &self.1)?;
                m.end()
            }
        }
        let r = self.record;
        let mut m = serializer.serialize_map(None)?;
        m.serialize_entry("ExternalId", &r.external_id)?;
        if let Some(g) = &r.external_guid {
            m.serialize_entry("ExternalGUID", g)?;
        }
        if self.always_attachments || !r.attachments.is_empty() {
            m.serialize_entry(
                "Attachments",
                &Seq(r.attachments.iter().map(|c| Comment(c))),
            )?;
        }
        m.serialize_entry(
            "Fields",
            &Seq(r.fields.iter().map(|(n, v)| Field(n, v.as_deref()))),
        )?;
        m.end()
    }
}

/// A sequence written from an iterator that can be cloned (walked once per write).
pub(crate) struct Seq<I>(pub(crate) I);

impl<I> Serialize for Seq<I>
where
    I: Iterator + Clone,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.clone())
    }
}

/// The answer to a synchronous `/data` call that was accepted (HTTP 2xx).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IngestOutcome {
    /// `SPHTransactionId` of the call, when PING sent one.
    pub transaction_id: Option<String>,
    /// Records PING reported as failed although it accepted the batch (partial mode); empty
    /// when every record was applied.
    pub failed: Vec<RecordFailure>,
}

/// Reads `FailedRecords` leniently: `[{ExternalId, ErrorMessage}]`, key case ignored, a
/// missing message becomes "refused without a message".
pub(crate) fn parse_failed_records(body: &Value) -> Vec<RecordFailure> {
    let Some(list) = crate::wire::get_ci(body, "FailedRecords").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|item| {
            let external_id = crate::wire::get_ci(item, "ExternalId")
                .map(crate::wire::text_of)
                .unwrap_or_default();
            let message = crate::wire::get_ci(item, "ErrorMessage")
                .or_else(|| crate::wire::get_ci(item, "Message"))
                .and_then(Value::as_str)
                .map(mask_message)
                .unwrap_or_else(|| "refused without a message".to_string());
            RecordFailure {
                external_id,
                message,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shape() {
        let r = IngestRecord::new("case-1")
            .with_external_guid("g-1")
            .attachment("Referral acknowledged by PRIMERO")
            .field("progres_primerotransferstatus", Some("125080003"))
            .field("progres_primeroid", None::<String>);
        assert_eq!(
            r.to_wire(true),
            json!({"ExternalId":"case-1","ExternalGUID":"g-1",
                   "Attachments":[{"Comment":"Referral acknowledged by PRIMERO"}],
                   "Fields":[{"Name":"progres_primerotransferstatus","Value":"125080003"},
                             {"Name":"progres_primeroid","Value":null}]})
        );
        let bare = IngestRecord::new("x").field("a", Some("b"));
        assert_eq!(
            bare.to_wire(false),
            json!({"ExternalId":"x","Fields":[{"Name":"a","Value":"b"}]})
        );
        assert_eq!(bare.to_wire(true)["Attachments"], json!([]));
    }

    #[test]
    fn debug_shows_no_values() {
        let r = IngestRecord::new("case-1")
            .attachment("secret note about Lindah")
            .field("progres_pocfirstname", Some("Lindah"));
        let d = format!("{r:?}");
        assert!(d.contains("case-1") && d.contains("progres_pocfirstname"));
        assert!(!d.contains("Lindah"));
    }

    #[test]
    fn failed_records_are_masked() {
        let body = json!({"failedRecords":[
            {"ExternalId":"c1","ErrorMessage":"Field 'progres_comments_displayfield' is not allowed"},
            {"externalid":"c2","ErrorMessage":"bad value 'Lindah'"},
            {"ExternalId":"c3"}]});
        let f = parse_failed_records(&body);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].external_id, "c1");
        assert!(f[0].message.contains("progres_comments_displayfield"));
        assert_eq!(f[1].external_id, "c2");
        assert!(!f[1].message.contains("Lindah"));
        assert_eq!(f[2].message, "refused without a message");
    }
}
