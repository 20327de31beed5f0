//! Scenario generator: realistic invented LP interventions (children of South Sudanese,
//! Ethiopian and Congolese families in Gambella) and optional interoperability referrals,
//! as a seed document. Deterministic for a given seed and reference date; fast for 10,000.

use chrono::{Datelike, Duration, NaiveDate};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use serde_json::{json, Map, Value};

use crate::model::{
    Delivery, Individual, InteropReferral, Intervention, SeedDoc, SpecificNeed, SystemUser,
    SERVICES, SPECIFIC_NEED_CATEGORIES,
};

/// What to generate.
#[derive(Clone, Debug)]
pub struct ScenarioOptions {
    /// Number of pending outgoing referrals (LP interventions).
    pub count: usize,
    /// Random seed; the same seed and reference date give the same document.
    pub seed: u64,
    /// Number of interoperability referrals (for Flow 2.2 tests).
    pub count_referrals: usize,
    /// "Today" for ages and dates; None = the current UTC date.
    pub reference_date: Option<NaiveDate>,
    /// Business unit GUID of every record.
    pub business_unit: String,
    /// Business unit name.
    pub business_unit_name: String,
    /// Organisation GUID written in generated referrals (`progres_organizationfrom`).
    pub organization_from: String,
    /// Country code in intervention numbers (`LP-ETH-2026-000123`).
    pub country_code: String,
    /// Share of individuals with location levels (0.0..=1.0).
    pub address_ratio: f64,
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        Self {
            count: 10,
            seed: 1,
            count_referrals: 0,
            reference_date: None,
            business_unit: "577ccdf6-86de-e811-80d8-001dd8b71fe3".into(),
            business_unit_name: "Ethiopia - Gambella".into(),
            organization_from: "c00582a6-d8f6-f011-8406-6045bd8ea5fb".into(),
            country_code: "ETH".into(),
            address_ratio: 0.5,
        }
    }
}

const FEMALE: &[&str] = &[
    "Nyakuoth",
    "Nyaluak",
    "Nyabang",
    "Nyadeng",
    "Nyachan",
    "Nyamal",
    "Nyagoa",
    "Nyaboth",
    "Achol",
    "Ayen",
    "Abuk",
    "Akech",
    "Adut",
    "Aluel",
    "Akway",
    "Ariet",
    "Adongo",
    "Aballa",
    "Tigist",
    "Selam",
    "Hana",
    "Mekdes",
    "Liya",
    "Meron",
    "Furaha",
    "Neema",
    "Esperance",
    "Mapendo",
    "Bahati",
    "Riziki",
];
const MALE: &[&str] = &[
    "Gatluak", "Riek", "Koang", "Buony", "Gatdet", "Tut", "Chuol", "Deng", "Garang", "Majok",
    "Mabior", "Ajak", "Ojulu", "Omot", "Obang", "Ochan", "Okwier", "Agwa", "Okello", "Abebe",
    "Dawit", "Yonas", "Bereket", "Mukendi", "Amani", "Baraka", "Josue", "Kasongo",
];
const FAMILY: &[&str] = &[
    "Gatkuoth",
    "Duoth",
    "Chuol",
    "Lual",
    "Deng",
    "Garang",
    "Mayen",
    "Thon",
    "Ruach",
    "Kuol",
    "Bol",
    "Makuei",
    "Ojulu",
    "Omot",
    "Obang",
    "Okello",
    "Ochan",
    "Tesfaye",
    "Bekele",
    "Haile",
    "Girma",
    "Kebede",
    "Mulumba",
    "Kabongo",
    "Ngoy",
    "Mwamba",
    "Ilunga",
    "Kalala",
    "Tshibanda",
];
const LANGUAGES: &[&str] = &[
    "Nuer",
    "Nuer",
    "Nuer",
    "Anyuak",
    "Anyuak",
    "Dinka, South Central",
    "Dinka, Northeastern",
    "Amharic",
    "Swahili",
    "Bari",
    "Acholi",
    "Somali",
    "Zande",
    "Bembe",
];
const INTERVENTION_TYPES: &[&str] = &[
    "Alternative Care",
    "BID",
    "BIA",
    "Family Tracing and Reunification",
    "Advocacy / Direct intervention",
];
const TITLES: &[&str] = &[
    "Protection Associate",
    "Senior Protection Assistant",
    "Child Protection Officer",
    "Community-Based Protection Assistant",
    "Associate Child Protection Officer",
];
const CAMPS: &[(&str, &str)] = &[
    ("Itang Special Woreda", "Nguenyyiel"),
    ("Itang Special Woreda", "Tierkidi"),
    ("Itang Special Woreda", "Kule"),
    ("Itang Special Woreda", "Jewi"),
    ("Agnewak Zone", "Pugnido"),
    ("Agnewak Zone", "Okugo"),
];
const RELATIVES: &[&str] = &[
    "grandmother",
    "aunt",
    "older sister",
    "uncle",
    "foster family",
];
const ISSUES: &[&str] = &[
    "missed school for two months",
    "no contact with the mother since arrival",
    "signs of distress at night",
    "works at the market during school hours",
    "lives in a crowded shelter",
];
const REASONS: &[&str] = &[
    "Needs an alternative care arrangement",
    "Requires psychosocial support",
    "Family tracing requested by the caregiver",
    "Best interests assessment follow-up",
    "Risk of school dropout and child labour",
];
/// (category index in SPECIFIC_NEED_CATEGORIES, subcategory code, subcategory name)
const SUBCATEGORIES: &[(usize, &str, &str)] = &[
    (0, "CR-CP", "Child parent"),
    (0, "CR-CS", "Child spouse"),
    (0, "CR-CL", "Child engaged in worst forms of child labour"),
    (0, "CR-NE", "Child at risk of not attending school"),
    (0, "CR-AF", "Child associated with armed forces or groups"),
    (1, "DS-BD", "Visual impairment (including blindness)"),
    (1, "DS-DF", "Hearing impairment (including deafness)"),
    (1, "DS-PM", "Physical disability - moderate"),
    (2, "SM-MI", "Mental illness"),
    (2, "SM-MN", "Malnutrition"),
    (2, "SM-CI", "Chronic illness"),
    (3, "LP-ND", "No legal documentation"),
    (3, "LP-AN", "Violence, abuse or neglect"),
    (3, "LP-MS", "Marginalized from society or community"),
    (4, "SV-VA", "Survivor of SGBV in country of asylum"),
    (4, "SV-FM", "Forced (early) marriage"),
    (5, "TR-WV", "Witness of violence to other"),
    (6, "UM-UM", "Unaccompanied minor"),
    (6, "SC-SC", "Separated child"),
    (6, "SC-CH", "Child-headed household"),
    (7, "FU-TR", "Tracing required"),
    (7, "FU-FR", "Family reunification required"),
];
const REJECTION_REASONS: &[&str] = &[
    "Individual Not Found",
    "Individual Not Match UNHCR ID",
    "Not applicable",
];

/// SplitMix64: a small, fast, deterministic generator (the scenario needs no cryptographic
/// quality, and a cheap generator keeps 10,000 records fast even in debug builds).
pub(crate) struct ScenarioRng(u64);

impl ScenarioRng {
    /// A generator for `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl RngCore for ScenarioRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

fn pick<'a, R: Rng>(rng: &mut R, pool: &[&'a str]) -> &'a str {
    pool.choose(rng).copied().unwrap_or_default()
}

/// A Dynamics-looking GUID (sequential-style middle groups).
fn guid<R: Rng>(rng: &mut R) -> String {
    format!(
        "{:08x}-{:04x}-ee11-{:04x}-000d3a{:06x}",
        rng.gen::<u32>(),
        rng.gen::<u16>(),
        0x8000 | (rng.gen::<u16>() & 0x3fff),
        rng.gen::<u32>() & 0x00ff_ffff
    )
}

/// A random v4-style GUID (Primero ids).
fn uuid4<R: Rng>(rng: &mut R) -> String {
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .to_string()
}

fn subcategory_guid(code: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in code.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}-9076-e611-80c9-00155d340529")
}

fn phone<R: Rng>(rng: &mut R) -> String {
    format!("+2519{:08}", rng.gen_range(0..100_000_000u32))
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// The intervention number of sequence `seq`: `LP-ETH-2026-000123`.
pub(crate) fn intervention_number(opts: &ScenarioOptions, today: NaiveDate, seq: u64) -> String {
    format!("LP-{}-{}-{:06}", opts.country_code, today.year(), seq)
}

fn description<R: Rng>(rng: &mut R, camp: &str) -> String {
    format!(
        "<p>Child lives with {} in {} &amp; {}.</p><p>Home visit done.<br>Caregiver agrees to the referral.</p>",
        pick(rng, RELATIVES),
        camp,
        pick(rng, ISSUES)
    )
}

/// One realistic pending outgoing referral.
pub(crate) fn random_intervention<R: Rng>(
    rng: &mut R,
    seq: u64,
    opts: &ScenarioOptions,
    today: NaiveDate,
) -> Intervention {
    let female = rng.gen_bool(0.5);
    let sex = match rng.gen_range(0..100) {
        0 => 125_080_002,
        1 => 125_080_003,
        _ if female => 125_080_000,
        _ => 125_080_001,
    };
    let given = if female {
        pick(rng, FEMALE)
    } else {
        pick(rng, MALE)
    };
    let middle = pick(rng, MALE);
    let family = pick(rng, FAMILY);
    let age_days = rng.gen_range(2 * 365 + 1..18 * 365 - 1);
    let dob = today - Duration::days(age_days);
    let start = today - Duration::days(rng.gen_range(0..180));
    let (zone, camp) = *CAMPS.choose(rng).unwrap_or(&CAMPS[0]);
    let yy = start.year() % 100;
    let mut langs: Vec<String> = Vec::new();
    for _ in 0..rng.gen_range(1..=2) {
        let l = pick(rng, LANGUAGES).to_string();
        if !langs.contains(&l) {
            langs.push(l);
        }
    }
    let mut needs: Vec<SpecificNeed> = Vec::new();
    let n_needs = rng.gen_range(0..=3);
    let mut chosen: Vec<usize> = (0..SUBCATEGORIES.len()).collect();
    chosen.shuffle(rng);
    for &si in chosen.iter().take(n_needs) {
        let (ci, code, name) = SUBCATEGORIES[si];
        let (cguid, cname) = SPECIFIC_NEED_CATEGORIES[ci];
        needs.push(SpecificNeed {
            progres_spncategory2: Some(cguid.into()),
            progres_spncategory2name: Some(cname.into()),
            progres_spnsubcategory2: Some(subcategory_guid(code)),
            progres_spnsubcategory2name: Some(name.into()),
        });
    }
    let with_address = rng.gen_bool(opts.address_ratio.clamp(0.0, 1.0));
    let cw_given = pick(rng, MALE);
    let cw_family = pick(rng, FAMILY);
    let individual = Individual {
        progres_individualid: Some(guid(rng)),
        progres_id: Some(format!(
            "231-{:08}",
            rng.gen_range(10_000_000..99_999_999u32)
        )),
        progres_registrationgroupid: Some(guid(rng)),
        progres_registrationgroupidname: Some(format!(
            "231-{yy:02}-{:07}",
            rng.gen_range(1_000_000..9_999_999u32)
        )),
        progres_givenname: Some(given.into()),
        progres_middlename: Some(middle.into()),
        progres_familyname: Some(family.into()),
        progres_commonyusedname: if rng.gen_bool(0.2) {
            Some(given.chars().take(4).collect())
        } else {
            None
        },
        progres_dateofbirth: Some(date(dob)),
        progres_sex: Some(sex),
        progres_primaryphonenumber: if rng.gen_bool(0.8) {
            Some(phone(rng))
        } else {
            None
        },
        progres_coalocationlevel1: with_address.then(|| "Gambella".to_string()),
        progres_coalocationlevel2: with_address.then(|| zone.to_string()),
        progres_coalocationlevel3: with_address.then(|| camp.to_string()),
        progres_coalocationlevel4: with_address
            .then(|| format!("Zone {}", ["A", "B", "C", "D"][rng.gen_range(0..4)])),
        progres_coalocationlevel5: with_address.then(|| format!("Block {}", rng.gen_range(1..40))),
        progres_coalocationlevel6: None,
    };
    Intervention {
        progres_lpinterventionid: guid(rng),
        progres_interventionnumber: intervention_number(opts, today, seq),
        progres_businessunit: opts.business_unit.clone(),
        progres_businessunitname: Some(opts.business_unit_name.clone()),
        intervention_type_description: Some(pick(rng, INTERVENTION_TYPES).into()),
        progres_interventionstartdate: Some(date(start)),
        progres_interventiondescription: Some(description(rng, camp)),
        progres_reasonforreferral: Some(pick(rng, REASONS).into()),
        progres_primerotransferstatus: None,
        progres_primerotransferstatusdate: None,
        progres_primeroid: None,
        progres_primerocaseworker: None,
        attachment_comments: Vec::new(),
        delivery: Some(Delivery {
            progres_dtpdeliveryid: Some(guid(rng)),
            progres_statusdate: Some(date(start)),
            ..Delivery::default()
        }),
        individual,
        systemuser: SystemUser {
            title: Some(pick(rng, TITLES).into()),
            mobilephone: Some(phone(rng)),
            internalemailaddress: Some(format!(
                "{}.{}@unhcr.example.org",
                cw_given.to_lowercase(),
                cw_family.to_lowercase()
            )),
        },
        languages: langs,
        specific_needs: needs,
    }
}

fn random_referral<R: Rng>(
    rng: &mut R,
    opts: &ScenarioOptions,
    today: NaiveDate,
) -> InteropReferral {
    let female = rng.gen_bool(0.5);
    let case_id = uuid4(rng);
    let dob = today - Duration::days(rng.gen_range(2 * 365 + 1..18 * 365 - 1));
    let (service, _) = *SERVICES.choose(rng).unwrap_or(&SERVICES[0]);
    let (category, _) = *SPECIFIC_NEED_CATEGORIES
        .choose(rng)
        .unwrap_or(&SPECIFIC_NEED_CATEGORIES[0]);
    let (_, camp) = *CAMPS.choose(rng).unwrap_or(&CAMPS[0]);
    let owner = (pick(rng, FEMALE), pick(rng, FAMILY));
    let mut fields = Map::new();
    let mut put = |k: &str, v: Value| {
        fields.insert(k.into(), v);
    };
    put("progres_externalguid", json!(uuid4(rng)));
    put("progres_externalid", json!(case_id));
    put("progres_businessunit", json!(opts.business_unit));
    put("progres_organizationfrom", json!(opts.organization_from));
    put("progres_orgreferredby", json!("Primero CP"));
    put("progres_orgposition", json!(pick(rng, TITLES)));
    put(
        "progres_orgemail",
        json!(format!(
            "{}.{}@unicef.example.org",
            owner.0.to_lowercase(),
            owner.1.to_lowercase()
        )),
    );
    put("progres_orgphonenumber", json!(phone(rng)));
    put("progres_orgreferralid", json!(uuid4(rng)));
    put(
        "progres_referraldate",
        json!(date(today - Duration::days(rng.gen_range(0..60)))),
    );
    put("progres_requestedservice", json!(service));
    put("progres_spneedcategory", json!(category));
    put("progres_reasonforreferral", json!(pick(rng, REASONS)));
    put(
        "progres_pocfirstname",
        json!(if female {
            pick(rng, FEMALE)
        } else {
            pick(rng, MALE)
        }),
    );
    put("progres_pocmiddlename", json!(pick(rng, MALE)));
    put("progres_poclastname", json!(pick(rng, FAMILY)));
    put("progres_pocdateofbirth", json!(date(dob)));
    put(
        "progres_pocsex",
        json!(if female { "125080000" } else { "125080001" }),
    );
    put("progres_pocphonenumber", json!(phone(rng)));
    put("progres_pocaddress", json!(format!("Gambella {camp}")));
    put(
        "progres_unhcrid",
        json!(format!(
            "231-{:08}",
            rng.gen_range(10_000_000..99_999_999u32)
        )),
    );
    put("progres_offlineid", json!(case_id));
    let roll = rng.gen_range(0..100);
    let (status, decision, reason, comment) = match roll {
        0..=39 => (125_080_000, None, None, None),
        40..=64 => (125_080_001, Some(125_080_000), None, None),
        65..=89 => (
            125_080_002,
            Some(125_080_001),
            Some(pick(rng, REJECTION_REASONS).to_string()),
            Some("Reviewed by the protection unit".to_string()),
        ),
        _ => (125_080_003, Some(125_080_000), None, None),
    };
    InteropReferral {
        progres_interoperabilityreferralid: guid(rng),
        progres_interoperabilityreferralstatus: Value::from(status),
        progres_reviewdecision: decision.map(Value::from),
        progres_interoperabiltyreferralrejectionreasonname: reason,
        progres_interoperabilityreferralrejectionomment: comment,
        progres_comments: (status == 125_080_003)
            .then(|| "Referral decision synced with PRIMERO".to_string()),
        attachment_comments: Vec::new(),
        external_id: Some(case_id.clone()),
        external_guid: None,
        sph_transaction_id: None,
        fields,
    }
}

/// Generates the seed as typed records (no JSON round trip; see [`generate`]).
pub fn generate_seed(opts: &ScenarioOptions) -> SeedDoc {
    let today = opts
        .reference_date
        .unwrap_or_else(|| chrono::Utc::now().date_naive());
    let mut rng = ScenarioRng::new(opts.seed);
    let interventions: Vec<Intervention> = (0..opts.count)
        .map(|i| random_intervention(&mut rng, i as u64 + 1, opts, today))
        .collect();
    let interop_referrals: Vec<InteropReferral> = (0..opts.count_referrals)
        .map(|_| random_referral(&mut rng, opts, today))
        .collect();
    SeedDoc {
        interventions,
        interop_referrals,
    }
}

/// Generates a seed document `{"interventions": [...], "interop_referrals": [...]}`.
pub fn generate(opts: &ScenarioOptions) -> Value {
    let doc = generate_seed(opts);
    json!({"interventions": doc.interventions, "interop_referrals": doc.interop_referrals})
}
