//! The simulator's in-memory proGres: interventions, interoperability referrals and PING
//! transactions, with key indexes (GUIDs compare case-insensitively) and seed merging.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::model::{InteropReferral, Intervention, SeedDoc};

/// Processing state of a PING transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxStatus {
    Pending,
    Processed,
}

/// Outcome of one ingested record, as check-status reports it.
#[derive(Clone)]
pub(crate) struct ItemResult {
    /// The record's `ExternalId` (null when the record had none).
    pub external_id: Value,
    /// Identifiers of the written record (referral id, external ids…); nulls omitted.
    pub data: Map<String, Value>,
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
    /// Records of an async transaction waiting to be processed.
    pub pending_records: Option<Vec<Value>>,
}

impl ItemResult {
    /// Check-status item: `ExternalId`, `Data`, `RecordStatus`, `ErrorMessage` (Data never last).
    pub fn to_json(&self) -> Value {
        json!({
            "ExternalId": self.external_id,
            "Data": Value::Object(self.data.clone()),
            "RecordStatus": if self.success { "Success" } else { "Failed" },
            "ErrorMessage": self.error,
        })
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
            "records": self.items.iter().map(ItemResult::to_json).collect::<Vec<_>>(),
        })
    }
}

/// All proGres-side state.
#[derive(Default)]
pub(crate) struct Store {
    pub interventions: Vec<Intervention>,
    iv_index: HashMap<String, usize>,
    pub referrals: Vec<InteropReferral>,
    ref_index: HashMap<String, usize>,
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
        match self.iv_index.get(&key) {
            Some(&i) => {
                self.interventions[i] = iv;
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

    /// Inserts or replaces a referral; returns its index.
    pub fn upsert_referral(&mut self, r: InteropReferral) -> usize {
        let key = r.progres_interoperabilityreferralid.to_ascii_lowercase();
        match self.ref_index.get(&key) {
            Some(&i) => {
                self.referrals[i] = r;
                i
            }
            None => {
                self.referrals.push(r);
                let i = self.referrals.len() - 1;
                self.ref_index.insert(key, i);
                i
            }
        }
    }

    /// Index of an intervention by LP intervention id.
    pub fn intervention_index(&self, id: &str) -> Option<usize> {
        self.iv_index.get(&id.to_ascii_lowercase()).copied()
    }

    /// Index of a referral by id.
    pub fn referral_index(&self, id: &str) -> Option<usize> {
        self.ref_index.get(&id.to_ascii_lowercase()).copied()
    }

    /// Index of a referral by `progres_orgreferralid` (the SHP-2731 idempotency key).
    pub fn referral_by_orgreferralid(&self, org: &str) -> Option<usize> {
        self.referrals.iter().position(|r| {
            r.fields
                .get("progres_orgreferralid")
                .and_then(Value::as_str)
                == Some(org)
        })
    }

    /// Whether an intervention number is already used.
    pub fn has_intervention_number(&self, number: &str) -> bool {
        self.interventions
            .iter()
            .any(|i| i.progres_interventionnumber == number)
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
