//! The simulator's in-memory proGres: interventions, interoperability referrals and PING
//! transactions, with key indexes (GUIDs compare case-insensitively) and seed merging.
//!
//! Besides the keys, two secondary indexes keep per-record lookups O(1) at 10,000+ records:
//! intervention numbers (create-outgoing-referral picks an unused one) and
//! `progres_orgreferralid` (the SHP-2731 idempotency key, looked up for every ingested
//! record). They change only through [`Store::upsert_intervention`],
//! [`Store::upsert_referral`] and [`Store::merge_referral_fields`].

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::json::Doc;
use crate::model::{InteropReferral, Intervention, SeedDoc};
use crate::options::CheckStatusItemKeys;

/// Processing state of a PING transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxStatus {
    Pending,
    Processed,
}

/// The inner `Data` of a check-status item: (name, value) in order, names unique.
pub(crate) type ItemData = Vec<(&'static str, Value)>;

/// Outcome of one ingested record, as check-status reports it.
#[derive(Clone)]
pub(crate) struct ItemResult {
    /// The record's `ExternalId` (null when the record had none).
    pub external_id: Value,
    /// Identifiers of the written record (referral id, external ids…); nulls omitted.
    pub data: ItemData,
    pub success: bool,
    pub error: Option<String>,
}

/// One ingestion transaction (sync or async).
#[derive(Clone)]
pub(crate) struct Transaction {
    pub id: String,
    pub shp: String,
    pub kind: &'static str,
    pub received_at: String,
    pub status: TxStatus,
    pub error_message: Option<String>,
    pub items: Vec<ItemResult>,
    /// Records of an async transaction waiting to be processed (the `Data` array).
    pub pending_records: Option<Doc>,
}

impl ItemResult {
    fn data_json(&self) -> Value {
        Value::Object(
            self.data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    /// Check-status item: `ExternalId`, `Data`, `RecordStatus`, `ErrorMessage` (Data never
    /// last), or under `data_only` the inner `Data` between two unnamed null keys.
    pub fn to_json(&self, keys: CheckStatusItemKeys) -> Value {
        match keys {
            CheckStatusItemKeys::Named => json!({
                "ExternalId": self.external_id,
                "Data": self.data_json(),
                "RecordStatus": if self.success { "Success" } else { "Failed" },
                "ErrorMessage": self.error,
            }),
            CheckStatusItemKeys::DataOnly => json!({
                "Key1": null,
                "Data": self.data_json(),
                "Key2": null,
            }),
        }
    }
}

impl Transaction {
    fn to_json(&self) -> Value {
        json!({
            "SPHTransactionId": self.id,
            "ShippingProcessId": self.shp,
            "kind": self.kind,
            "received_at": self.received_at,
            "Status": match self.status { TxStatus::Pending => "Pending", TxStatus::Processed => "Processed" },
            "ErrorMessage": self.error_message,
            "records": self
                .items
                .iter()
                .map(|i| i.to_json(CheckStatusItemKeys::Named))
                .collect::<Vec<_>>(),
        })
    }
}

/// `id` as the key indexes hold (ASCII lower case), copied only when it has upper-case
/// letters: ids as the simulator hands them out are already lower case.
fn lower_key(id: &str) -> Cow<'_, str> {
    if id.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(id.to_ascii_lowercase())
    } else {
        Cow::Borrowed(id)
    }
}

/// All proGres-side state.
///
/// Code outside this module may change records in place (statuses, transfer fields), but
/// not the indexed keys: `progres_lpinterventionid`, `progres_interventionnumber`,
/// `progres_interoperabilityreferralid` and `fields["progres_orgreferralid"]`.
#[derive(Default)]
pub(crate) struct Store {
    pub interventions: Vec<Intervention>,
    iv_index: HashMap<String, usize>,
    /// `progres_interventionnumber` -> how many interventions carry it.
    iv_numbers: HashMap<String, usize>,
    pub referrals: Vec<InteropReferral>,
    ref_index: HashMap<String, usize>,
    /// `progres_orgreferralid` (when a string) -> positions of the referrals carrying it,
    /// ascending.
    org_index: HashMap<String, Vec<usize>>,
    transactions: HashMap<String, Transaction>,
    tx_order: Vec<String>,
}

impl Store {
    /// Merges a seed document: records with a known key replace the stored one.
    pub fn merge_seed(&mut self, doc: SeedDoc) -> Result<(), String> {
        for iv in &doc.interventions {
            if iv.progres_lpinterventionid.trim().is_empty() {
                return Err("interventions[].progres_lpinterventionid must not be empty".into());
            }
        }
        for r in &doc.interop_referrals {
            if r.progres_interoperabilityreferralid.trim().is_empty() {
                return Err(
                    "interop_referrals[].progres_interoperabilityreferralid must not be empty"
                        .into(),
                );
            }
        }
        for iv in doc.interventions {
            self.upsert_intervention(iv);
        }
        for r in doc.interop_referrals {
            self.upsert_referral(r);
        }
        Ok(())
    }

    /// Inserts or replaces an intervention; returns its index.
    pub fn upsert_intervention(&mut self, iv: Intervention) -> usize {
        let key = iv.progres_lpinterventionid.to_ascii_lowercase();
        *self
            .iv_numbers
            .entry(iv.progres_interventionnumber.clone())
            .or_insert(0) += 1;
        match self.iv_index.get(&key) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.interventions[i], iv);
                self.forget_number(&old.progres_interventionnumber);
                i
            }
            None => {
                self.interventions.push(iv);
                let i = self.interventions.len() - 1;
                self.iv_index.insert(key, i);
                i
            }
        }
    }

    fn forget_number(&mut self, number: &str) {
        if let Some(n) = self.iv_numbers.get_mut(number) {
            *n -= 1;
            if *n == 0 {
                self.iv_numbers.remove(number);
            }
        }
    }

    /// Inserts or replaces a referral; returns its index.
    pub fn upsert_referral(&mut self, r: InteropReferral) -> usize {
        let key = r.progres_interoperabilityreferralid.to_ascii_lowercase();
        match self.ref_index.get(&key) {
            Some(&i) => {
                self.unindex_org(i);
                self.referrals[i] = r;
                self.index_org(i);
                i
            }
            None => {
                self.referrals.push(r);
                let i = self.referrals.len() - 1;
                self.ref_index.insert(key, i);
                self.index_org(i);
                i
            }
        }
    }

    /// Sets SHP-2731 fields on the referral at `i` (re-indexing `progres_orgreferralid`).
    pub fn merge_referral_fields(&mut self, i: usize, fields: Map<String, Value>) {
        self.unindex_org(i);
        let r = &mut self.referrals[i];
        for (k, v) in fields {
            r.fields.insert(k, v);
        }
        self.index_org(i);
    }

    fn org_of(r: &InteropReferral) -> Option<&str> {
        r.fields
            .get("progres_orgreferralid")
            .and_then(Value::as_str)
    }

    fn index_org(&mut self, i: usize) {
        if let Some(org) = Self::org_of(&self.referrals[i]) {
            let list = self.org_index.entry(org.to_string()).or_default();
            if let Err(at) = list.binary_search(&i) {
                list.insert(at, i);
            }
        }
    }

    fn unindex_org(&mut self, i: usize) {
        let Some(org) = Self::org_of(&self.referrals[i]) else {
            return;
        };
        if let Some(list) = self.org_index.get_mut(org) {
            list.retain(|&x| x != i);
            if list.is_empty() {
                self.org_index.remove(org);
            }
        }
    }

    /// Index of an intervention by LP intervention id.
    pub fn intervention_index(&self, id: &str) -> Option<usize> {
        self.iv_index.get(lower_key(id).as_ref()).copied()
    }

    /// Index of a referral by id.
    pub fn referral_index(&self, id: &str) -> Option<usize> {
        self.ref_index.get(lower_key(id).as_ref()).copied()
    }

    /// Index of the first referral (in store order) whose `progres_orgreferralid` is the
    /// string `org`, exactly (the SHP-2731 idempotency key).
    pub fn referral_by_orgreferralid(&self, org: &str) -> Option<usize> {
        self.org_index.get(org).and_then(|l| l.first()).copied()
    }

    /// Whether an intervention number is already used (exact match).
    pub fn has_intervention_number(&self, number: &str) -> bool {
        self.iv_numbers.contains_key(number)
    }

    /// Records a transaction.
    pub fn put_transaction(&mut self, tx: Transaction) {
        if !self.transactions.contains_key(&tx.id) {
            self.tx_order.push(tx.id.clone());
        }
        self.transactions.insert(tx.id.clone(), tx);
    }

    pub fn transaction(&self, id: &str) -> Option<&Transaction> {
        self.transactions.get(id)
    }

    pub fn transaction_mut(&mut self, id: &str) -> Option<&mut Transaction> {
        self.transactions.get_mut(id)
    }

    /// Everything as JSON; `interventions` and `interop_referrals` are in seed format.
    pub fn to_json(&self) -> Value {
        json!({
            "interventions": self.interventions,
            "interop_referrals": self.referrals,
            "transactions": self.tx_order.iter().filter_map(|id| self.transactions.get(id)).map(Transaction::to_json).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn referral(id: &str, org: Value) -> InteropReferral {
        let mut v = json!({"progres_interoperabilityreferralid": id});
        if !org.is_null() {
            v["progres_orgreferralid"] = org;
        }
        serde_json::from_value(v).expect("referral")
    }

    fn intervention(id: &str, number: &str) -> Intervention {
        serde_json::from_value(json!({
            "progres_lpinterventionid": id,
            "progres_interventionnumber": number,
            "progres_businessunit": "577ccdf6-86de-e811-80d8-001dd8b71fe3",
        }))
        .expect("intervention")
    }

    /// The answer of the linear scan the indexes replace.
    fn scan_org(s: &Store, org: &str) -> Option<usize> {
        s.referrals.iter().position(|r| {
            r.fields
                .get("progres_orgreferralid")
                .and_then(Value::as_str)
                == Some(org)
        })
    }

    fn scan_number(s: &Store, number: &str) -> bool {
        s.interventions
            .iter()
            .any(|i| i.progres_interventionnumber == number)
    }

    fn assert_same(s: &Store) {
        for org in ["A", "a", "B", "C", "5", ""] {
            assert_eq!(s.referral_by_orgreferralid(org), scan_org(s, org), "{org}");
        }
        for n in ["LP-1", "LP-2", "LP-3", "lp-1"] {
            assert_eq!(s.has_intervention_number(n), scan_number(s, n), "{n}");
        }
    }

    #[test]
    fn org_index_answers_like_a_scan_through_replacements_and_merges() {
        let mut s = Store::default();
        s.upsert_referral(referral("r0", json!("A")));
        s.upsert_referral(referral("r1", json!("B")));
        s.upsert_referral(referral("r2", json!("A")));
        s.upsert_referral(referral("r3", json!(5)));
        s.upsert_referral(referral("r4", Value::Null));
        assert_same(&s);
        assert_eq!(s.referral_by_orgreferralid("A"), Some(0));
        // Replacing r0 (ids compare case-insensitively) moves it to another key: the first
        // "A" is now r2, and "C" is found at r0's position.
        s.upsert_referral(referral("R0", json!("C")));
        assert_same(&s);
        assert_eq!(s.referral_by_orgreferralid("A"), Some(2));
        assert_eq!(s.referral_by_orgreferralid("C"), Some(0));
        // A merge that changes the key re-indexes; one that keeps it changes nothing.
        let mut f = Map::new();
        f.insert("progres_orgreferralid".into(), json!("B"));
        s.merge_referral_fields(2, f.clone());
        assert_same(&s);
        assert_eq!(s.referral_by_orgreferralid("A"), None);
        assert_eq!(s.referral_by_orgreferralid("B"), Some(1));
        s.merge_referral_fields(1, f);
        assert_same(&s);
        // A referral that gains the key at a lower position than an existing holder wins.
        let mut f = Map::new();
        f.insert("progres_orgreferralid".into(), json!("5"));
        s.merge_referral_fields(4, f);
        s.upsert_referral(referral("r3", json!("5")));
        assert_same(&s);
        assert_eq!(s.referral_by_orgreferralid("5"), Some(3));
    }

    #[test]
    fn number_index_answers_like_a_scan_through_replacements() {
        let mut s = Store::default();
        s.upsert_intervention(intervention("i1", "LP-1"));
        s.upsert_intervention(intervention("i2", "LP-1"));
        s.upsert_intervention(intervention("i3", "LP-2"));
        assert_same(&s);
        s.upsert_intervention(intervention("I1", "LP-3"));
        assert_same(&s);
        assert!(s.has_intervention_number("LP-1"));
        s.upsert_intervention(intervention("i2", "LP-2"));
        assert_same(&s);
        assert!(!s.has_intervention_number("LP-1"));
        s.upsert_intervention(intervention("i2", "LP-2"));
        assert_same(&s);
        assert!(s.has_intervention_number("LP-2"));
    }
}
