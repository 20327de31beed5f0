//! The deployment's value maps (proGres <-> Primero) as plain data, with the lookups the flows
//! use. No IO happens here: the maps arrive from configuration (`pp-config`) or from
//! [`Maps::gambella`], the reference deployment's values (`mapping-gambella.toml`).
//!
//! Rule R2 (no silent defaults): a lookup that misses returns `None` unless the deployment
//! configured an explicit fallback for that map; a hit through a fallback is reported with
//! [`Mapped::fallback_used`] so the ledger can flag the record. No personal data lives here.

use std::collections::BTreeMap;

/// The value maps and option-set codes of one deployment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Maps {
    /// 1.1: proGres intervention type description -> Primero `service_type`.
    pub intervention_type_to_service: BTreeMap<String, String>,
    /// 2.1: Primero `service_type` -> proGres requested service GUID.
    pub service_to_progres: BTreeMap<String, String>,
    /// 1.1: proGres language name -> Primero language key.
    pub language_to_primero: BTreeMap<String, String>,
    /// Primero language key -> proGres language name.
    pub language_to_progres: BTreeMap<String, String>,
    /// proGres sex code -> Primero sex value (2.1 uses the reverse; must be injective).
    pub sex_progres_to_primero: BTreeMap<i64, String>,
    /// 2.1: Primero protection concern -> specific-need category name.
    pub protection_concern_to_category: BTreeMap<String, String>,
    /// Specific-need category name -> proGres category GUID.
    pub specific_need_categories: BTreeMap<String, String>,
    /// Explicit fallbacks per map (R2); `None` means a missing value rejects the record.
    pub fallbacks: Fallbacks,
    /// Transfer status and interoperability referral status codes.
    pub codes: Codes,
}

/// Explicit, optional fallbacks per map. A record mapped through one is flagged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fallbacks {
    /// Primero language key used for a proGres language absent from the map.
    pub language_to_primero: Option<String>,
    /// Primero service type used for an intervention type absent from the map.
    pub intervention_type_to_service: Option<String>,
    /// proGres requested service GUID used for a Primero service type absent from the map.
    pub service_to_progres: Option<String>,
    /// Primero sex value used for a proGres sex code absent from the map.
    pub sex_progres_to_primero: Option<String>,
}

/// The proGres option-set codes the flows read and write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Codes {
    /// `progres_primerotransferstatus` codes (flows 1.1 and 1.2).
    pub transfer_status: TransferStatusCodes,
    /// `progres_interoperabilityreferralstatus` codes (flows 2.1 and 2.2).
    pub interop_status: InteropStatusCodes,
}

/// `progres_primerotransferstatus` option codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferStatusCodes {
    /// The transfer to Primero failed.
    pub delivery_fail: i64,
    /// Delivered to Primero, waiting for Primero's decision (written by 1.1).
    pub pending_acknowledgement: i64,
    /// Primero accepted the referral (written by 1.2).
    pub acknowledged: i64,
    /// Primero rejected the referral (written by 1.2).
    pub rejected: i64,
}

impl Default for TransferStatusCodes {
    fn default() -> Self {
        TransferStatusCodes {
            delivery_fail: 125_080_001,
            pending_acknowledgement: 125_080_002,
            acknowledged: 125_080_003,
            rejected: 125_080_004,
        }
    }
}

/// The values of `progres_primerotransferstatus`, as an exhaustive enum (R4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransferStatus {
    /// The transfer to Primero failed.
    DeliveryFail,
    /// Waiting for Primero's decision.
    PendingAcknowledgement,
    /// Accepted by Primero.
    Acknowledged,
    /// Rejected by Primero.
    Rejected,
}

impl TransferStatusCodes {
    /// The code configured for `status`.
    pub fn code(&self, status: TransferStatus) -> i64 {
        match status {
            TransferStatus::DeliveryFail => self.delivery_fail,
            TransferStatus::PendingAcknowledgement => self.pending_acknowledgement,
            TransferStatus::Acknowledged => self.acknowledged,
            TransferStatus::Rejected => self.rejected,
        }
    }

    /// The status a code stands for; `None` for a code this deployment does not know (R4).
    pub fn status(&self, code: i64) -> Option<TransferStatus> {
        [
            TransferStatus::DeliveryFail,
            TransferStatus::PendingAcknowledgement,
            TransferStatus::Acknowledged,
            TransferStatus::Rejected,
        ]
        .into_iter()
        .find(|s| self.code(*s) == code)
    }

    /// Every (name, code) pair, in declaration order (for validation and display).
    pub fn entries(&self) -> [(&'static str, i64); 4] {
        [
            ("delivery_fail", self.delivery_fail),
            ("pending_acknowledgement", self.pending_acknowledgement),
            ("acknowledged", self.acknowledged),
            ("rejected", self.rejected),
        ]
    }
}

/// `progres_interoperabilityreferralstatus` option codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InteropStatusCodes {
    /// Not decided yet (waits).
    pub new: i64,
    /// Accepted in proGres.
    pub accepted: i64,
    /// Rejected in proGres.
    pub rejected: i64,
    /// The decision was synced to Primero (written by 2.2).
    pub synced_with_primero: i64,
}

impl Default for InteropStatusCodes {
    fn default() -> Self {
        InteropStatusCodes {
            new: 125_080_000,
            accepted: 125_080_001,
            rejected: 125_080_002,
            synced_with_primero: 125_080_003,
        }
    }
}

/// The values of `progres_interoperabilityreferralstatus`, as an exhaustive enum (R4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InteropStatus {
    /// Not decided yet.
    New,
    /// Accepted in proGres.
    Accepted,
    /// Rejected in proGres.
    Rejected,
    /// Decision synced to Primero.
    SyncedWithPrimero,
}

impl InteropStatusCodes {
    /// The code configured for `status`.
    pub fn code(&self, status: InteropStatus) -> i64 {
        match status {
            InteropStatus::New => self.new,
            InteropStatus::Accepted => self.accepted,
            InteropStatus::Rejected => self.rejected,
            InteropStatus::SyncedWithPrimero => self.synced_with_primero,
        }
    }

    /// The status a code stands for; `None` for a code this deployment does not know (R4).
    pub fn status(&self, code: i64) -> Option<InteropStatus> {
        [
            InteropStatus::New,
            InteropStatus::Accepted,
            InteropStatus::Rejected,
            InteropStatus::SyncedWithPrimero,
        ]
        .into_iter()
        .find(|s| self.code(*s) == code)
    }

    /// Every (name, code) pair, in declaration order (for validation and display).
    pub fn entries(&self) -> [(&'static str, i64); 4] {
        [
            ("new", self.new),
            ("accepted", self.accepted),
            ("rejected", self.rejected),
            ("synced_with_primero", self.synced_with_primero),
        ]
    }
}

/// The result of a forward lookup: the mapped value and whether the map's fallback gave it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped<'a> {
    /// The value to send.
    pub value: &'a str,
    /// True when the value is the map's configured fallback (to flag in ledger and audit).
    pub fallback_used: bool,
}

fn lookup<'a, K: Ord + ?Sized, Q>(
    map: &'a BTreeMap<Q, String>,
    key: &K,
    fallback: &'a Option<String>,
) -> Option<Mapped<'a>>
where
    Q: Ord + std::borrow::Borrow<K>,
{
    match map.get(key) {
        Some(v) => Some(Mapped {
            value: v,
            fallback_used: false,
        }),
        None => fallback.as_deref().map(|v| Mapped {
            value: v,
            fallback_used: true,
        }),
    }
}

impl Maps {
    /// 1.1: the Primero service type for a proGres intervention type description.
    pub fn map_intervention_type(&self, description: &str) -> Option<Mapped<'_>> {
        lookup(
            &self.intervention_type_to_service,
            description,
            &self.fallbacks.intervention_type_to_service,
        )
    }

    /// 2.1: the proGres requested service GUID for a Primero service type.
    pub fn map_service_to_progres(&self, service_type: &str) -> Option<Mapped<'_>> {
        lookup(
            &self.service_to_progres,
            service_type,
            &self.fallbacks.service_to_progres,
        )
    }

    /// 1.1: the Primero language key for a proGres language name.
    pub fn map_language_to_primero(&self, language: &str) -> Option<Mapped<'_>> {
        lookup(
            &self.language_to_primero,
            language,
            &self.fallbacks.language_to_primero,
        )
    }

    /// The proGres language name for a Primero language key (no fallback).
    pub fn language_to_progres_name(&self, key: &str) -> Option<&str> {
        self.language_to_progres.get(key).map(String::as_str)
    }

    /// 1.1: the Primero sex value for a proGres sex code.
    pub fn map_sex_to_primero(&self, code: i64) -> Option<Mapped<'_>> {
        lookup(
            &self.sex_progres_to_primero,
            &code,
            &self.fallbacks.sex_progres_to_primero,
        )
    }

    /// 2.1: the proGres sex code for a Primero sex value (the sex map reversed, no fallback).
    /// Configuration validation guarantees the reverse is unambiguous.
    pub fn primero_sex_to_progres(&self, value: &str) -> Option<i64> {
        self.sex_progres_to_primero
            .iter()
            .find(|(_, v)| v.as_str() == value)
            .map(|(code, _)| *code)
    }

    /// 2.1: the proGres specific-need category GUID for one Primero protection concern.
    pub fn specific_need_guid(&self, concern: &str) -> Option<&str> {
        let category = self.protection_concern_to_category.get(concern)?;
        self.specific_need_categories
            .get(category)
            .map(String::as_str)
    }

    /// 2.1: the category GUID of the first concern (in the given order) that the map knows.
    pub fn first_specific_need_guid<'a, I>(&self, concerns: I) -> Option<&str>
    where
        I: IntoIterator<Item = &'a str>,
    {
        concerns
            .into_iter()
            .find_map(|c| self.specific_need_guid(c))
    }

    /// The value maps of the reference deployment (Primero CPIMS+ Gambella, Ethiopia), as in
    /// `mapping-gambella.toml`, with the spec's status codes. A starting example only.
    pub fn gambella() -> Maps {
        fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        }
        Maps {
            intervention_type_to_service: strings(GAMBELLA_INTERVENTION_TYPES),
            service_to_progres: strings(GAMBELLA_SERVICES),
            language_to_primero: strings(GAMBELLA_LANGUAGES_TO_PRIMERO),
            language_to_progres: strings(GAMBELLA_LANGUAGES_TO_PROGRES),
            sex_progres_to_primero: GAMBELLA_SEX
                .iter()
                .map(|(k, v)| (*k, (*v).to_owned()))
                .collect(),
            protection_concern_to_category: strings(GAMBELLA_PROTECTION_CONCERNS),
            specific_need_categories: strings(GAMBELLA_SPECIFIC_NEED_CATEGORIES),
            fallbacks: Fallbacks {
                language_to_primero: Some("language6".to_owned()),
                ..Fallbacks::default()
            },
            codes: Codes::default(),
        }
    }
}

const GAMBELLA_SEX: &[(i64, &str)] = &[
    (125_080_000, "female"),
    (125_080_001, "male"),
    (125_080_002, "other_b25f252"),
    (125_080_003, "unknown_4b34795"),
];

const GAMBELLA_INTERVENTION_TYPES: &[(&str, &str)] = &[
    ("Alternative Care", "alternative_care"),
    ("BID", "focuses_non_specialized_mhpss_care"),
    ("BIA", "focuses_non_specialized_mhpss_care"),
    ("Family Tracing and Reunification", "food"),
    ("Advocacy / Direct intervention", "other_please_specify"),
];

const GAMBELLA_SERVICES: &[(&str, &str)] = &[
    ("legal_support", "7ad37dd0-0306-e611-80d9-00155d34051a"),
    ("medical", "f98e1516-0406-e611-80d9-00155d34051a"),
    ("shelter", "20db76a2-0306-e611-80d9-00155d34051a"),
    ("education_formal", "79f7aee2-309e-e911-80e6-001dd8b71fe6"),
    (
        "non_formal_education",
        "79f7aee2-309e-e911-80e6-001dd8b71fe6",
    ),
    ("cash_assistance", "14d89ab0-0306-e611-80d9-00155d34051a"),
    ("documentation", "f6dd29c1-0306-e611-80d9-00155d34051a"),
    ("livelihoods", "80c37762-0406-e611-80d9-00155d34051a"),
    ("nutrition", "fab93078-7005-e611-80d9-00155d34051a"),
    (
        "basic_psychosocial_support",
        "3408e901-0406-e611-80d9-00155d34051a",
    ),
    (
        "specialized_mhpss_services",
        "3408e901-0406-e611-80d9-00155d34051a",
    ),
    (
        "focuses_non_specialized_mhpss_care",
        "3408e901-0406-e611-80d9-00155d34051a",
    ),
    ("relocation", "ca34f86f-0406-e611-80d9-00155d34051a"),
    (
        "durable_solution_in_coordination_with_unhcr",
        "ca34f86f-0406-e611-80d9-00155d34051a",
    ),
    (
        "other_please_specify",
        "e3a13f7d-0406-e611-80d9-00155d34051a",
    ),
];

const GAMBELLA_LANGUAGES_TO_PRIMERO: &[(&str, &str)] = &[
    ("Anyuak", "language1"),
    ("Cutchi-swahili", "language1"),
    ("Swahili", "language1"),
    ("Swahili, Congo", "language1"),
    ("Nuer", "language2"),
    ("Dinka, Northeastern", "language3"),
    ("Dinka, Northwestern; Alor", "language3"),
    ("Dinka, South Central", "language3"),
    ("Dinka, Southeastern;", "language3"),
    ("Dinka, Southeastern", "language3"),
    ("Dinka, Southwestern; Rek", "language3"),
    ("Bari", "language4"),
    ("Amharic", "language5"),
    ("Zande", "language5"),
    ("Bembe", "language7"),
    ("Somali", "language8"),
    ("Acholi", "language10"),
];

const GAMBELLA_LANGUAGES_TO_PROGRES: &[(&str, &str)] = &[
    ("language1", "Anyuak"),
    ("language2", "Nuer"),
    ("language3", "Dinka"),
    ("language4", "Bari"),
    ("language5", "Amharic"),
    ("language6", "Other"),
    ("language7", "Bembe"),
    ("language8", "Somali"),
    ("language10", "Acholi"),
    ("murle_fce1c91", "Murle"),
    ("if_other_language__please_specify_335944b", "Other"),
    ("_amharic", "Amharic"),
    ("_arabic", "Arabic"),
    ("_boma", "Boma"),
    ("_didinga", "Didinga"),
    ("_english", "English"),
    ("_french", "French"),
    ("_karamojong", "Karamojong"),
    ("_kifulero", "Fuliiru, Kifulero"),
    ("_kikongo", "Kikongo"),
    ("_kinyabiyisha", "Kinyabwisha"),
    ("_kinyarwanda", "Rwanda, Kinyarwanda"),
    ("_kirundi", "Rundi, Kirundi"),
    ("_lingala", "Lingala"),
    ("_lokoya", "Lokoya"),
    ("_lopit", "Lopit"),
    ("_luo", "Luo"),
    ("_makonde", "Makonde"),
    ("_mashi", "Mashi"),
    ("_moro", "Moro"),
    ("_murle", "Murle"),
    ("_oromo", "Oromo"),
    ("_sign_language", "Sign Language"),
    ("_tira", "Tira"),
    ("_toposa", "Toposa"),
    ("_toro", "Toro"),
];

const GAMBELLA_SPECIFIC_NEED_CATEGORIES: &[(&str, &str)] = &[
    ("child_at_risk", "a1c5b4fb-8f76-e611-80c9-00155d340529"),
    (
        "unaccompanied_or_separated",
        "abc5b4fb-8f76-e611-80c9-00155d340529",
    ),
    ("disability", "a3c5b4fb-8f76-e611-80c9-00155d340529"),
    (
        "serious_medical_condition",
        "adc5b4fb-8f76-e611-80c9-00155d340529",
    ),
    ("sgbv", "b1c5b4fb-8f76-e611-80c9-00155d340529"),
    ("torture", "b3c5b4fb-8f76-e611-80c9-00155d340529"),
    (
        "legal_and_physical_protection",
        "a9c5b4fb-8f76-e611-80c9-00155d340529",
    ),
    ("family_unity", "a7c5b4fb-8f76-e611-80c9-00155d340529"),
];

const GAMBELLA_PROTECTION_CONCERNS: &[(&str, &str)] = &[
    ("sexual_exploitation", "child_at_risk"),
    ("slavery_sale_abduction", "child_at_risk"),
    ("child_labour", "child_at_risk"),
    ("hazardous_work", "child_at_risk"),
    ("worst_forms_of_child_labor", "child_at_risk"),
    ("street_child", "child_at_risk"),
    ("child_mother", "child_at_risk"),
    ("child_headed_household", "child_at_risk"),
    ("child_survivor_of_explosive", "child_at_risk"),
    ("child_marriage", "child_at_risk"),
    ("pregnancy_child_parent", "child_at_risk"),
    ("child_neglect", "child_at_risk"),
    ("physical_abuse", "child_at_risk"),
    ("emotional_abuse", "child_at_risk"),
    ("neglect", "child_at_risk"),
    ("abandonment", "child_at_risk"),
    ("unaccompanied", "unaccompanied_or_separated"),
    ("separated", "unaccompanied_or_separated"),
    ("orphan", "unaccompanied_or_separated"),
    ("disabled", "disability"),
    ("functional_difficulty_seeing", "disability"),
    ("functional_difficulty_hearing", "disability"),
    ("functional_difficulty_walking", "disability"),
    ("functional_difficulty_remembering", "disability"),
    ("difficulty_with_self_care", "disability"),
    ("difficulty_communicating", "disability"),
    ("serious_health_issue", "serious_medical_condition"),
    ("serious_medical_condition", "serious_medical_condition"),
    ("rape", "sgbv"),
    ("sexual_abuse_violence", "sgbv"),
    ("sgbv__rape_sodomy", "sgbv"),
    ("sgbv__physical_assault", "sgbv"),
    ("sgbv__sexual_assault", "sgbv"),
    ("sgbv__child_marriage", "sgbv"),
    ("sgbv__sex_for_goods_services", "sgbv"),
    ("sgbv__teenage_pregnancy", "sgbv"),
    ("sgbv__psychological_emotional_abuse", "sgbv"),
    ("sgbv__fgm", "sgbv"),
    ("sgbv__commercial_sexual_exploitation", "sgbv"),
    (
        "sv_va__victim__survivor_of__sgbv_in_country_of_asylum_5422ac9",
        "sgbv",
    ),
    (
        "sv_vf__victim__survivor_of__sgbv_during_flight__64638f7",
        "sgbv",
    ),
    (
        "sv_vo__victim__survivor_of__sgbv_in_country_of_origin_a3f9c27",
        "sgbv",
    ),
    ("sv_gm__female_genital_mutilation_132d9d6", "sgbv"),
    ("sv_hp__harmful_traditional_practices_c68c552", "sgbv"),
    ("sv_hk__threat_of_honour_killing_violence_e3b4fbb", "sgbv"),
    ("sv_fm__forced__early_marriage__b1a8ba0", "sgbv"),
    ("sv_ss__survival_sex__0a5cc10", "sgbv"),
    (
        "tr_pi__psychological_and_or_physical_impairment_due_to_torture_be29dff",
        "torture",
    ),
    ("tr_ho__forced_to_egregious_acts_ff05b1c", "torture"),
    ("tr_wv__witness_of_violence_to_other_74e79f8", "torture"),
    (
        "lp_dt__detained_held_elsewhere_f8f8d21",
        "legal_and_physical_protection",
    ),
    ("lp_ih__in_hiding_a554ced", "legal_and_physical_protection"),
    (
        "lp_wp__absence_of_witness_protection_89f64dc",
        "legal_and_physical_protection",
    ),
    (
        "lp_an__violence__abuse_or_neglect_b424522",
        "legal_and_physical_protection",
    ),
    (
        "lp_rp__at_risk_due_to_profile_fb7c70c",
        "legal_and_physical_protection",
    ),
    (
        "lp_ms__marginalized_from_society_or_community_e07cb83",
        "legal_and_physical_protection",
    ),
    (
        "lp_ls__lack_of_durable_solutions_prospects_f9e8a11",
        "legal_and_physical_protection",
    ),
    (
        "lp_ap__alleged_perpetrator_db9e2f5",
        "legal_and_physical_protection",
    ),
    (
        "lp_cr__criminal_record_5a18ced",
        "legal_and_physical_protection",
    ),
    (
        "lp_st__security_threat_to_unhcr_partner_staff_or_others_28d5c9c",
        "legal_and_physical_protection",
    ),
    (
        "lp_af__formerly_associated_with_armed_forces_or_groups_ac746df",
        "legal_and_physical_protection",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_lookup_reports_fallback_use() {
        let maps = Maps::gambella();
        assert_eq!(
            maps.map_language_to_primero("Nuer"),
            Some(Mapped {
                value: "language2",
                fallback_used: false
            })
        );
        assert_eq!(
            maps.map_language_to_primero("Klingon"),
            Some(Mapped {
                value: "language6",
                fallback_used: true
            })
        );
        // No fallback configured for intervention types: a miss is a rejection (R2).
        assert_eq!(maps.map_intervention_type("Unknown type"), None);
        assert_eq!(
            maps.map_intervention_type("BIA").map(|m| m.value),
            Some("focuses_non_specialized_mhpss_care")
        );
    }

    #[test]
    fn sex_map_works_both_ways() {
        let maps = Maps::gambella();
        assert_eq!(
            maps.map_sex_to_primero(125_080_002).map(|m| m.value),
            Some("other_b25f252")
        );
        assert_eq!(
            maps.primero_sex_to_progres("unknown_4b34795"),
            Some(125_080_003)
        );
        assert_eq!(maps.primero_sex_to_progres("Unknown"), None);
        assert_eq!(maps.map_sex_to_primero(7), None);
    }

    #[test]
    fn specific_need_goes_through_category() {
        let maps = Maps::gambella();
        assert_eq!(
            maps.specific_need_guid("orphan"),
            Some("abc5b4fb-8f76-e611-80c9-00155d340529")
        );
        assert_eq!(maps.specific_need_guid("not_a_concern"), None);
        assert_eq!(
            maps.first_specific_need_guid(["not_a_concern", "rape", "orphan"]),
            Some("b1c5b4fb-8f76-e611-80c9-00155d340529")
        );
    }

    #[test]
    fn status_codes_are_exhaustive_enums() {
        let codes = Codes::default();
        assert_eq!(
            codes.interop_status.status(125_080_002),
            Some(InteropStatus::Rejected)
        );
        assert_eq!(codes.interop_status.status(125_080_009), None);
        assert_eq!(
            codes
                .transfer_status
                .code(TransferStatus::PendingAcknowledgement),
            125_080_002
        );
        assert_eq!(
            codes.transfer_status.status(125_080_004),
            Some(TransferStatus::Rejected)
        );
    }

    #[test]
    fn gambella_maps_are_complete() {
        let maps = Maps::gambella();
        assert_eq!(maps.intervention_type_to_service.len(), 5);
        assert_eq!(maps.service_to_progres.len(), 15);
        assert_eq!(maps.language_to_primero.len(), 17);
        assert_eq!(maps.language_to_progres.len(), 36);
        assert_eq!(maps.sex_progres_to_primero.len(), 4);
        assert_eq!(maps.specific_need_categories.len(), 8);
        assert_eq!(maps.protection_concern_to_category.len(), 61);
        // Every category a concern names has a GUID.
        for category in maps.protection_concern_to_category.values() {
            assert!(maps.specific_need_categories.contains_key(category));
        }
    }
}
