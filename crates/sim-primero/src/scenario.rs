//! Scenario generator: invented, realistic children (South Sudanese, Ethiopian and Congolese
//! name pools) with UNHCR service rows and in-progress referrals, deterministic for a seed,
//! in the seed format of `POST /_sim/seed`.

use crate::time::{fmt_date, fmt_ts};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use rand::{Rng, RngCore};
use serde_json::{Map, Value};

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

/// A small, fast, deterministic RNG (SplitMix64). Stable across platforms and rand
/// versions, and fast in unoptimised builds (ChaCha is not).
#[derive(Clone, Debug)]
pub struct FastRng(u64);

impl FastRng {
    /// A generator for `seed`.
    pub fn seed_from_u64(seed: u64) -> Self {
        FastRng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
}

impl RngCore for FastRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
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

fn s(x: &str) -> Value {
    Value::String(x.to_string())
}

fn strs<'a>(xs: impl IntoIterator<Item = &'a str>) -> Value {
    Value::Array(xs.into_iter().map(s).collect())
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
    let mut m = Map::with_capacity(16);
    m.insert("name_first".into(), s(first));
    m.insert("name_last".into(), s(last));
    m.insert("name".into(), s(&format!("{first} {last}")));
    m.insert("sex".into(), s(sex));
    m.insert("date_of_birth".into(), s(&fmt_date(dob)));
    m.insert("age".into(), Value::from(age));
    m.insert("estimated".into(), Value::Bool(false));
    m.insert("telephone_current".into(), s(&phone));
    m.insert("address_current".into(), s(&address));
    m.insert("location_current".into(), s("ET1203"));
    m.insert("language".into(), strs(langs.iter().copied()));
    m.insert("nationality".into(), strs([origin.nationality]));
    m.insert("protection_concerns".into(), strs(concerns.iter().copied()));
    m.insert(
        "unhcr_individual_no".into(),
        s(&format!(
            "945-{:08}",
            12_000_000 + n * 3 + rng.gen_range(0..3)
        )),
    );
    m.insert("unhcr_id_no".into(), s(&format!("945-C{:05}", 100 + n)));
    m
}

/// Generates a seed document `{"cases": [...], "referrals": [...]}`.
pub fn generate(opts: &ScenarioOptions) -> Value {
    let mut rng = FastRng::seed_from_u64(opts.seed);
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
        let mut d = Map::with_capacity(40);
        d.insert("id".into(), s(&id));
        d.insert("case_id".into(), s(&case_id));
        d.insert("unique_identifier".into(), s(&case_id));
        d.insert("short_id".into(), s(&short));
        d.insert("case_id_display".into(), s(&short));
        d.insert("module_id".into(), s(&opts.module_id));
        d.insert("status".into(), s("open"));
        d.insert("record_state".into(), Value::Bool(true));
        d.insert("workflow".into(), s("service_provision"));
        for (k, v) in child {
            d.insert(k, v);
        }
        d.insert("disclosure_other_orgs".into(), Value::Bool(true));
        d.insert("consent_for_services".into(), Value::Bool(true));
        d.insert("owned_by".into(), s(&owner));
        d.insert("owned_by_agency_id".into(), s("UNICEF"));
        d.insert("created_by".into(), s(&owner));
        d.insert(
            "registration_date".into(),
            s(&fmt_date(
                created.map(|c| c.date_naive()).unwrap_or(today)
                    - Duration::days(rng.gen_range(0..60)),
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
            let mut row = Map::with_capacity(10);
            row.insert("unique_id".into(), s(&uid));
            row.insert("service_type".into(), s(st));
            if st == "other_please_specify" {
                row.insert("service_type_other".into(), s("Assistive device"));
            }
            row.insert("service_response_type".into(), s("service_provision"));
            row.insert("service_implementing_agency".into(), s(agency));
            row.insert("service_referral_notes".into(), s(notes));
            row.insert("service_response_day_time".into(), s(&fmt_ts(response)));
            row.insert("service_implemented".into(), s("not_implemented"));
            if opts.with_referrals {
                row.insert("service_status_referred".into(), Value::Bool(true));
                let mut r = Map::with_capacity(18);
                r.insert("id".into(), s(&uuid_from(&mut rng)));
                r.insert("type".into(), s("Referral"));
                r.insert("status".into(), s("in_progress"));
                r.insert("record_id".into(), s(&id));
                r.insert("record_type".into(), s("case"));
                r.insert("transitioned_to".into(), s(&opts.receiving_user));
                r.insert("transitioned_to_agency".into(), s("UNHCR"));
                r.insert("transitioned_by".into(), s(&owner));
                r.insert("transitioned_by_user_agency".into(), s("UNICEF"));
                r.insert("notes".into(), s(notes));
                r.insert("service".into(), s(st));
                r.insert("service_record_id".into(), s(&uid));
                r.insert("remote".into(), Value::Bool(false));
                r.insert("consent_overridden".into(), Value::Bool(false));
                r.insert("consent_individual_transfer".into(), Value::Bool(false));
                if let Some(c) = created {
                    r.insert(
                        "created_at".into(),
                        s(&fmt_ts(c + Duration::minutes(rng.gen_range(1..120)))),
                    );
                }
                r.insert("record_owned_by".into(), s(&owner));
                referrals.push(Value::Object(r));
            }
            rows.push(Value::Object(row));
        }
        d.insert("services_section".into(), Value::Array(rows));
        let mut assigned = vec![];
        if opts.with_referrals {
            assigned.push(opts.receiving_user.clone());
            d.insert(
                "referred_users".into(),
                strs([opts.receiving_user.as_str()]),
            );
        }
        let mut associated = vec![owner.clone()];
        associated.extend(assigned.iter().cloned());
        d.insert(
            "assigned_user_names".into(),
            strs(assigned.iter().map(|x| x.as_str())),
        );
        d.insert(
            "associated_user_names".into(),
            strs(associated.iter().map(|x| x.as_str())),
        );
        if let Some(c) = created {
            d.insert("created_at".into(), s(&fmt_ts(c)));
            d.insert(
                "last_updated_at".into(),
                s(&fmt_ts(c + Duration::minutes(rng.gen_range(120..240)))),
            );
        }
        cases.push(Value::Object(d));
    }
    // Built by hand: `json!` would deep-copy every record through the serializer.
    let mut doc = Map::with_capacity(2);
    doc.insert("cases".into(), Value::Array(cases));
    doc.insert("referrals".into(), Value::Array(referrals));
    Value::Object(doc)
}
