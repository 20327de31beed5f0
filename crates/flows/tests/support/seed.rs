//! Seed data shared by the flow tests: LP interventions in the PING simulator's seed format
//! (pending referrals for flow 1.1, known interventions for flow 1.2's write-backs) and
//! referrals a Primero caseworker has decided, with the interventions they came from. Every
//! person in it is invented.

use serde_json::{json, Value};

use super::TestEnv;

/// The business unit of the seeded interventions.
pub const BU: &str = "577ccdf6-86de-e811-80d8-001dd8b71fe3";

pub fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// An LP intervention proGres knows (not a pending referral), of `individual`.
pub fn known_intervention(lp: &str, number: &str, individual: &str) -> Value {
    json!({
        "progres_lpinterventionid": lp,
        "progres_interventionnumber": number,
        "progres_businessunit": BU,
        "intervention_type_description": "BIA",
        "progres_interventionstartdate": "2026-11-02",
        "progres_interventiondescription": "Needs care",
        "progres_reasonforreferral": "Risk",
        "individual": {
            "progres_id": individual,
            "progres_registrationgroupid": "0a0a0a0a-1111-2222-3333-444444444444",
            "progres_registrationgroupidname": "803-00012345",
            "progres_givenname": "Amanimarker",
            "progres_familyname": "Okello",
            "progres_dateofbirth": "2014-03-02",
            "progres_sex": 125080000
        },
        "systemuser": {"title": "Protection Officer"},
        "languages": ["Nuer"]
    })
}

/// A pending outgoing referral (flow 1.1) of `individual`.
pub fn pending_referral(lp: &str, number: &str, individual: &str) -> Value {
    let mut v = known_intervention(lp, number, individual);
    v["delivery"] = json!({});
    v
}

/// The LP intervention `lp` as the PING simulator holds it.
pub async fn ping_intervention(env: &TestEnv, lp: &str) -> Value {
    let state = env.ping_get("/_sim/state").await;
    state["interventions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["progres_lpinterventionid"] == lp)
        .cloned()
        .unwrap_or_else(|| panic!("intervention {lp} in the PING simulator"))
}

/// One decided referral: the LP intervention in PING, and its case in Primero.
pub struct Decided {
    pub lp: String,
    pub case_uuid: String,
    pub case_id: String,
    pub unique_id: String,
    pub decision: &'static str,
}

impl Decided {
    /// The ledger key of the decision (its first instance).
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.case_uuid, self.unique_id, self.decision)
    }
}

/// Seeds `n` decided referrals, case `i` created and last updated at second `i` after
/// 10:00:00 (Primero lists the newest first); with `reject_every = Some(k)`, every `k`-th one
/// is rejected with a reason, the others accepted.
pub async fn seed_decisions(env: &TestEnv, n: usize, reject_every: Option<usize>) -> Vec<Decided> {
    let (mut ivs, mut cases, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let rejected = reject_every.is_some_and(|k| i % k == k - 1);
        let d = Decided {
            lp: guid(),
            case_uuid: guid(),
            case_id: format!("case-{i:03}"),
            unique_id: guid(),
            decision: if rejected { "rejected" } else { "accepted" },
        };
        let number = format!("803-26-PRTITV-80{i:05}");
        ivs.push(known_intervention(&d.lp, &number, &format!("ind-{number}")));
        let at = format!("2026-03-01T10:00:{i:02}.000Z");
        let mut row = json!({
            "unique_id": d.unique_id,
            "service_type": "food",
            "service_request_agency": "UNHCR",
            "service_referral": "external_referral",
            "unhcr_referral_status": d.decision,
            "progres_interventionnumber": format!("{number},{},{BU}", d.lp),
        });
        if rejected {
            row["unhcr_referral_rejection_reason"] = json!(format!("No capacity {i}"));
        }
        cases.push(json!({
            "id": d.case_uuid,
            "case_id": d.case_id,
            "unhcr_individual_no": format!("ind-{number}"),
            "module_id": "primeromodule-cp",
            "owned_by": format!("cw_{i}"),
            "name_first": "Nyakimmarker",
            "created_at": at,
            "last_updated_at": at,
            "services_section": [row]
        }));
        out.push(d);
    }
    env.ping_post("/_sim/seed", json!({ "interventions": ivs }))
        .await;
    env.primero_post("/_sim/seed", json!({ "cases": cases }))
        .await;
    out
}
