//! Scenario generator: invented, realistic children (South Sudanese, Ethiopian and Congolese
//! name pools) with UNHCR service rows and in-progress referrals, deterministic for a seed,
//! in the seed format of `POST /_sim/seed`.

use crate::time::{fmt_date, fmt_ts};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

/// What to generate.
#[derive(Clone, Debug)]
pub struct ScenarioOptions {
    /// Number of cases.
    pub count: usize,
    /// RNG seed: same options, same output.
    pub seed: u64,
    /// Case owners, used in turn at random.
    pub caseworkers: Vec<String>,
    /// `transitioned_to` of the referrals.
    pub receiving_user: String,
    /// Module of the cases.
    pub module_id: String,
    /// Share of service rows whose implementing agency is spelled `unhcr` (lower case).
    pub lowercase_agency_share: f64,
    /// Create one in-progress referral per service row.
    pub with_referrals: bool,
    /// Reference instant: `created_at`/`last_updated_at` are spread over the 30 days before
    /// it and ages are computed at its date. `None`: timestamps are left to the seed (now)
    /// and ages use today's date.
    pub anchor: Option<DateTime<Utc>>,
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        ScenarioOptions {
            count: 10,
            seed: 1,
            caseworkers: vec!["cw_amina".into(), "cw_john".into(), "cw_incomplete".into()],
            receiving_user: "unhcr_cw".into(),
            module_id: "primeromodule-cp".into(),
            lowercase_agency_share: 0.2,
            with_referrals: true,
            anchor: None,
        }
    }
}

/// Service types generated.
pub const SERVICE_TYPES: [&str; 10] = [
    "legal_support",
    "medical",
    "shelter",
    "education_formal",
    "cash_assistance",
    "documentation",
    "livelihoods",
    "nutrition",
    "basic_psychosocial_support",
    "other_please_specify",
];

const CONCERNS: [&str; 14] = [
    "child_labour",
    "unaccompanied",
    "separated",
    "sgbv__rape_sodomy",
    "disabled",
    "orphan",
    "child_marriage",
    "physical_abuse",
    "neglect",
    "serious_medical_condition",
    "street_child",
    "hazardous_work",
    "emotional_abuse",
    "sgbv__physical_assault",
];

struct Origin {
    nationality: &'static str,
    male: &'static [&'static str],
    female: &'static [&'static str],
    family: &'static [&'static str],
    languages: &'static [&'static str],
}

const ORIGINS: [Origin; 3] = [
    Origin {
        nationality: "south_sudan",
        male: &[
            "Gatluak", "Deng", "Garang", "Chuol", "Riek", "Bol", "Majok", "Kuol", "Ojulu",
            "Okello", "Puok", "Lual", "Machar", "Thon",
        ],
        female: &[
            "Nyakuoth", "Nyaluak", "Achol", "Nyabol", "Nyagoa", "Akuot", "Ayen", "Nyadak", "Abuk",
            "Nyariek", "Adut", "Akech",
        ],
        family: &[
            "Gatkuoth", "Deng", "Garang", "Chuol", "Puok", "Ojulu", "Lual", "Tut", "Kong", "Both",
            "Wal", "Nhial", "Okwier", "Omot",
        ],
        languages: &["language1", "language2", "language3", "language4", "_murle"],
    },
    Origin {
        nationality: "ethiopia",
        male: &[
            "Abebe", "Yonas", "Dawit", "Bekele", "Tesfaye", "Haile", "Kebede", "Getachew", "Ojho",
            "Omod",
        ],
        female: &[
            "Almaz", "Tigist", "Selam", "Hana", "Mekdes", "Hiwot", "Meseret", "Aberash", "Abang",
            "Ariet",
        ],
        family: &[
            "Tadesse", "Girma", "Alemu", "Bekele", "Mulugeta", "Wolde", "Okoth", "Ochan", "Obang",
            "Ujulu",
        ],
        languages: &["language5", "_oromo", "language1", "_amharic"],
    },
    Origin {
        nationality: "drc",
        male: &[
            "Mukendi",
            "Ilunga",
            "Kalonji",
            "Tshimanga",
            "Mwamba",
            "Kasongo",
            "Lukusa",
            "Mbuyi",
            "Banza",
            "Kabongo",
        ],
        female: &[
            "Ngalula", "Ndaya", "Mbombo", "Kapinga", "Mujinga", "Tshiela", "Bijou", "Nsimba",
            "Furaha", "Neema",
        ],
        family: &[
            "Mbuyi",
            "Kabeya",
            "Tshibangu",
            "Ilunga",
            "Mutombo",
            "Kalala",
            "Ngoy",
            "Mwanza",
            "Kazadi",
            "Lumbu",
        ],
        languages: &["_lingala", "_kikongo", "language7", "_french", "language1"],
    },
];

const CAMPS: [&str; 7] = [
    "Kule",
    "Tierkidi",
    "Nguenyyiel",
    "Jewi",
    "Pugnido",
    "Okugo",
    "Gure-Shombola",
];

const NOTES: [&str; 10] = [
    "Child needs follow-up by UNHCR protection staff.",
    "Referred for assessment; caregiver informed and agrees.",
    "Urgent: child reports no access to the service in the camp.",
    "Family requests support; please contact the caseworker first.",
    "Case discussed in the case conference; referral agreed.",
    "Child missed school for two months, needs documents.",
    "Caregiver is ill; household has no income.",
    "Follow-up of previous assistance, situation unchanged.",
    "Child lives with extended family in the block.",
    "Please confirm receipt and expected response time.",
];

fn pick<'a, R: Rng>(rng: &mut R, xs: &'a [&'a str]) -> &'a str {
    xs[rng.gen_range(0..xs.len())]
}

fn uuid_from<R: Rng>(rng: &mut R) -> String {
    uuid::Builder::from_random_bytes(rng.gen::<[u8; 16]>())
        .into_uuid()
        .to_string()
}

fn age_at(dob: NaiveDate, today: NaiveDate) -> i64 {
    let mut a = today.year() - dob.year();
    if (today.month(), today.day()) < (dob.month(), dob.day()) {
        a -= 1;
    }
    a as i64
}

/// A realistic invented child: name parts, sex, date of birth with age (2-17), phone,
/// address, languages, nationality, protection concerns and UNHCR numbers. `n` makes the
/// UNHCR numbers unique.
pub fn random_child<R: Rng>(rng: &mut R, today: NaiveDate, n: u64) -> Map<String, Value> {
    let origin = &ORIGINS[rng.gen_range(0..ORIGINS.len())];
    let sex = match rng.gen_range(0..100) {
        0..=46 => "male",
        47..=93 => "female",
        94..=96 => "other_b25f252",
        _ => "unknown_4b34795",
    };
    let first = match sex {
        "male" => pick(rng, origin.male),
        "female" => pick(rng, origin.female),
        _ => {
            if rng.gen_bool(0.5) {
                pick(rng, origin.male)
            } else {
                pick(rng, origin.female)
            }
        }
    };
    let last = pick(rng, origin.family);
    let wanted: i64 = rng.gen_range(2..=17);
    let days = wanted * 365 + wanted / 4 + rng.gen_range(1..360);
    let dob = today - Duration::days(days);
    let age = age_at(dob, today).clamp(2, 17);
    let mut langs: Vec<&str> = vec![pick(rng, origin.languages)];
    if rng.gen_bool(0.3) {
        let l = pick(rng, origin.languages);
        if !langs.contains(&l) {
            langs.push(l);
        }
    }
    let mut concerns: Vec<&str> = vec![pick(rng, &CONCERNS)];
    if rng.gen_bool(0.4) {
        let c = pick(rng, &CONCERNS);
        if !concerns.contains(&c) {
            concerns.push(c);
        }
    }
    let camp = pick(rng, &CAMPS);
    let block = (b'A' + rng.gen_range(0..6u8)) as char;
    let address = format!(
        "Block {block}{}, Zone {}, {camp} camp, Gambella",
        rng.gen_range(1..30),
        rng.gen_range(1..6)
    );
    let phone = format!(
        "+251 9{}{} {:03} {:03}",
        rng.gen_range(1..10),
        rng.gen_range(0..10),
        rng.gen_range(0..1000),
        rng.gen_range(0..1000)
    );
    let mut m = Map::new();
    m.insert("name_first".into(), json!(first));
    m.insert("name_last".into(), json!(last));
    m.insert("name".into(), json!(format!("{first} {last}")));
    m.insert("sex".into(), json!(sex));
    m.insert("date_of_birth".into(), json!(fmt_date(dob)));
    m.insert("age".into(), json!(age));
    m.insert("estimated".into(), json!(false));
    m.insert("telephone_current".into(), json!(phone));
    m.insert("address_current".into(), json!(address));
    m.insert("location_current".into(), json!("ET1203"));
    m.insert("language".into(), json!(langs));
    m.insert("nationality".into(), json!([origin.nationality]));
    m.insert("protection_concerns".into(), json!(concerns));
    m.insert(
        "unhcr_individual_no".into(),
        json!(format!(
            "945-{:08}",
            12_000_000 + n * 3 + rng.gen_range(0..3)
        )),
    );
    m.insert("unhcr_id_no".into(), json!(format!("945-C{:05}", 100 + n)));
    m
}

/// Generates a seed document `{"cases": [...], "referrals": [...]}`.
pub fn generate(opts: &ScenarioOptions) -> Value {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let today = opts
        .anchor
        .map(|a| a.date_naive())
        .unwrap_or_else(|| Utc::now().date_naive());
    let reference = today.and_hms_opt(8, 0, 0).unwrap_or_default().and_utc();
    let owners: Vec<String> = if opts.caseworkers.is_empty() {
        vec!["cw_amina".into()]
    } else {
        opts.caseworkers.clone()
    };
    let mut cases = Vec::with_capacity(opts.count);
    let mut referrals = Vec::with_capacity(opts.count * 2);
    for i in 0..opts.count {
        let owner = owners[rng.gen_range(0..owners.len())].clone();
        let id = uuid_from(&mut rng);
        let case_id = uuid_from(&mut rng);
        let short: String = case_id[case_id.len() - 7..].to_string();
        let child = random_child(&mut rng, today, i as u64);
        let created = opts
            .anchor
            .map(|a| a - Duration::minutes(rng.gen_range(60..30 * 24 * 60)));
        let mut d = Map::new();
        d.insert("id".into(), json!(id));
        d.insert("case_id".into(), json!(case_id));
        d.insert("unique_identifier".into(), json!(case_id));
        d.insert("short_id".into(), json!(short));
        d.insert("case_id_display".into(), json!(short));
        d.insert("module_id".into(), json!(opts.module_id));
        d.insert("status".into(), json!("open"));
        d.insert("record_state".into(), json!(true));
        d.insert("workflow".into(), json!("service_provision"));
        for (k, v) in child {
            d.insert(k, v);
        }
        d.insert("disclosure_other_orgs".into(), json!(true));
        d.insert("consent_for_services".into(), json!(true));
        d.insert("owned_by".into(), json!(owner));
        d.insert("owned_by_agency_id".into(), json!("UNICEF"));
        d.insert("created_by".into(), json!(owner));
        d.insert(
            "registration_date".into(),
            json!(fmt_date(
                created.map(|c| c.date_naive()).unwrap_or(today)
                    - Duration::days(rng.gen_range(0..60))
            )),
        );
        let mut rows = vec![];
        let nrows = rng.gen_range(1..=2);
        for _ in 0..nrows {
            let uid = uuid_from(&mut rng);
            let st = pick(&mut rng, &SERVICE_TYPES);
            let agency = if rng.gen_bool(opts.lowercase_agency_share.clamp(0.0, 1.0)) {
                "unhcr"
            } else {
                "UNHCR"
            };
            let notes = pick(&mut rng, &NOTES);
            let response =
                created.unwrap_or(reference) - Duration::minutes(rng.gen_range(0..24 * 60));
            let mut row = Map::new();
            row.insert("unique_id".into(), json!(uid));
            row.insert("service_type".into(), json!(st));
            if st == "other_please_specify" {
                row.insert("service_type_other".into(), json!("Assistive device"));
            }
            row.insert("service_response_type".into(), json!("service_provision"));
            row.insert("service_implementing_agency".into(), json!(agency));
            row.insert("service_referral_notes".into(), json!(notes));
            row.insert("service_response_day_time".into(), json!(fmt_ts(response)));
            row.insert("service_implemented".into(), json!("not_implemented"));
            if opts.with_referrals {
                row.insert("service_status_referred".into(), json!(true));
                let mut r = Map::new();
                r.insert("id".into(), json!(uuid_from(&mut rng)));
                r.insert("type".into(), json!("Referral"));
                r.insert("status".into(), json!("in_progress"));
                r.insert("record_id".into(), json!(id));
                r.insert("record_type".into(), json!("case"));
                r.insert("transitioned_to".into(), json!(opts.receiving_user));
                r.insert("transitioned_to_agency".into(), json!("UNHCR"));
                r.insert("transitioned_by".into(), json!(owner));
                r.insert("transitioned_by_user_agency".into(), json!("UNICEF"));
                r.insert("notes".into(), json!(notes));
                r.insert("service".into(), json!(st));
                r.insert("service_record_id".into(), json!(uid));
                r.insert("remote".into(), json!(false));
                r.insert("consent_overridden".into(), json!(false));
                r.insert("consent_individual_transfer".into(), json!(false));
                if let Some(c) = created {
                    r.insert(
                        "created_at".into(),
                        json!(fmt_ts(c + Duration::minutes(rng.gen_range(1..120)))),
                    );
                }
                r.insert("record_owned_by".into(), json!(owner));
                referrals.push(Value::Object(r));
            }
            rows.push(Value::Object(row));
        }
        d.insert("services_section".into(), Value::Array(rows));
        let mut assigned = vec![];
        if opts.with_referrals {
            assigned.push(opts.receiving_user.clone());
            d.insert("referred_users".into(), json!([opts.receiving_user]));
        }
        let mut associated = vec![owner.clone()];
        associated.extend(assigned.iter().cloned());
        d.insert("assigned_user_names".into(), json!(assigned));
        d.insert("associated_user_names".into(), json!(associated));
        if let Some(c) = created {
            d.insert("created_at".into(), json!(fmt_ts(c)));
            d.insert(
                "last_updated_at".into(),
                json!(fmt_ts(c + Duration::minutes(rng.gen_range(120..240)))),
            );
        }
        cases.push(Value::Object(d));
    }
    json!({"cases": cases, "referrals": referrals})
}
