//! Retrieval rows in PING's flat, dotted-key encoding (spec §3, contract items 6-8) and
//! keyset paging with an opaque, Dynamics-style paging cookie (contract item 10).
//! Null attributes are omitted; option sets are numbers with a `…name` sibling.

use serde_json::{Map, Value};

use crate::model::{
    delivery_type_name, lookup_name, option_value, referral_status_name, review_decision_name,
    sex_name, InteropReferral, Intervention, SERVICES, SPECIFIC_NEED_CATEGORIES,
};
use crate::store::Store;

/// Position of a row in a result: (record position, join row). Ordered, stable.
pub(crate) type RowKey = (usize, usize);

/// A row with its position.
pub(crate) type KeyedRow = (RowKey, Map<String, Value>);

/// The four retrieval shipping processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetrieveKind {
    Pending,
    Details,
    DecisionList,
    DecisionDetails,
}

impl RetrieveKind {
    /// Whether the process takes `{record_ids}` (required) or no parameter at all.
    pub fn takes_record_ids(self) -> bool {
        matches!(self, RetrieveKind::Details | RetrieveKind::DecisionDetails)
    }
}

fn put_str(m: &mut Map<String, Value>, k: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(k.into(), Value::String(v.into()));
    }
}

fn put_val(m: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v.filter(|v| !v.is_null()) {
        m.insert(k.into(), v);
    }
}

/// Inserts an option-set value and its `…name` sibling when the code is known.
fn put_option(
    m: &mut Map<String, Value>,
    key: &str,
    name_key: &str,
    v: Option<Value>,
    names: fn(i64) -> Option<&'static str>,
) {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return;
    };
    let v = option_value(&v);
    if let Some(name) = v.as_i64().and_then(names) {
        m.insert(key.into(), v);
        m.insert(name_key.into(), Value::String(name.into()));
    } else {
        m.insert(key.into(), v);
    }
}

/// Whether an intervention is a pending outgoing referral (SHP-2747).
pub(crate) fn is_pending(iv: &Intervention, drop_transferred: bool) -> bool {
    let outgoing = iv
        .delivery
        .as_ref()
        .is_some_and(|d| d.progres_deliverytype == crate::model::DELIVERY_TYPE_PRIMERO_OUTGOING);
    outgoing && !(drop_transferred && iv.progres_primerotransferstatus.is_some())
}

/// SHP-2747 row: keys of the sample `referral-from-progres.json` plus `progres_lpinterventionid`.
pub(crate) fn pending_row(iv: &Intervention) -> Map<String, Value> {
    let ind = &iv.individual;
    let d = iv.delivery.clone().unwrap_or_default();
    let mut m = Map::new();
    put_str(
        &mut m,
        "progres_lpinterventionid",
        Some(&iv.progres_lpinterventionid),
    );
    put_str(
        &mut m,
        "progres_statusdate",
        d.progres_statusdate.as_deref(),
    );
    put_option(
        &mut m,
        "progres_individual.indiv.progres_sex",
        "progres_individual.progres_sexname",
        ind.progres_sex.map(Value::from),
        sex_name,
    );
    put_str(
        &mut m,
        "progres_individual.indiv.progres_givenname",
        ind.progres_givenname.as_deref(),
    );
    put_str(
        &mut m,
        "progres_individual.indiv.progres_middlename",
        ind.progres_middlename.as_deref(),
    );
    put_str(
        &mut m,
        "progres_individual.indiv.progres_registrationgroupid",
        ind.progres_registrationgroupid.as_deref(),
    );
    put_str(
        &mut m,
        "progres_individual.progres_registrationgroupidname",
        ind.progres_registrationgroupidname.as_deref(),
    );
    put_str(
        &mut m,
        "progres_lpintervention.int.progres_interventionnumber",
        Some(&iv.progres_interventionnumber),
    );
    m.insert("statuscode".into(), Value::from(d.statuscode));
    put_str(
        &mut m,
        "progres_lpintervention.int.progres_interventionstartdate",
        iv.progres_interventionstartdate.as_deref(),
    );
    put_str(
        &mut m,
        "progres_lpintervention.int.progres_interventiondescription",
        iv.progres_interventiondescription.as_deref(),
    );
    put_str(
        &mut m,
        "progres_dtpdeliveryid",
        d.progres_dtpdeliveryid.as_deref(),
    );
    put_option(
        &mut m,
        "progres_deliverytype",
        "progres_deliverytypename",
        Some(Value::from(d.progres_deliverytype)),
        delivery_type_name,
    );
    put_str(
        &mut m,
        "progres_businessunit",
        Some(&iv.progres_businessunit),
    );
    put_str(
        &mut m,
        "progres_businessunitname",
        iv.progres_businessunitname.as_deref(),
    );
    put_str(
        &mut m,
        "progres_individual.indiv.progres_id",
        ind.progres_id.as_deref(),
    );
    put_str(
        &mut m,
        "progres_intervention",
        Some(&iv.progres_lpinterventionid),
    );
    put_str(
        &mut m,
        "progres_interventionname",
        Some(&iv.progres_interventionnumber),
    );
    put_str(
        &mut m,
        "progres_lpintervention.int.progres_individual",
        ind.progres_individualid.as_deref(),
    );
    put_str(
        &mut m,
        "progres_lpintervention.progres_individualname",
        ind.progres_id.as_deref(),
    );
    m
}

/// SHP-2358 rows of one intervention: one per language × specific need (at least one).
pub(crate) fn detail_rows(iv: &Intervention) -> Vec<Map<String, Value>> {
    let ind = &iv.individual;
    let su = &iv.systemuser;
    let mut base = Map::new();
    put_str(
        &mut base,
        "progres_interventionnumber",
        Some(&iv.progres_interventionnumber),
    );
    put_str(
        &mut base,
        "progres_lpinterventionid",
        Some(&iv.progres_lpinterventionid),
    );
    put_str(
        &mut base,
        "progres_businessunit",
        Some(&iv.progres_businessunit),
    );
    put_str(
        &mut base,
        "progres_businessunitname",
        iv.progres_businessunitname.as_deref(),
    );
    put_str(
        &mut base,
        "progres_interventionstartdate",
        iv.progres_interventionstartdate.as_deref(),
    );
    put_str(
        &mut base,
        "progres_interventiondescription",
        iv.progres_interventiondescription.as_deref(),
    );
    put_str(
        &mut base,
        "progres_reasonforreferral",
        iv.progres_reasonforreferral.as_deref(),
    );
    put_str(
        &mut base,
        "progres_primerotransferstatusdate",
        iv.progres_primerotransferstatusdate.as_deref(),
    );
    put_str(
        &mut base,
        "progres_primeroid",
        iv.progres_primeroid.as_deref(),
    );
    put_str(
        &mut base,
        "progres_interventiontype2.interventiontype.progres_description",
        iv.intervention_type_description.as_deref(),
    );
    let p = "progres_individual.individuals.";
    let text = [
        ("progres_id", &ind.progres_id),
        (
            "progres_registrationgroupid",
            &ind.progres_registrationgroupid,
        ),
        ("progres_givenname", &ind.progres_givenname),
        ("progres_middlename", &ind.progres_middlename),
        ("progres_familyname", &ind.progres_familyname),
        ("progres_commonyusedname", &ind.progres_commonyusedname),
        ("progres_dateofbirth", &ind.progres_dateofbirth),
    ];
    for (k, v) in text {
        put_str(&mut base, &format!("{p}{k}"), v.as_deref());
    }
    put_option(
        &mut base,
        "progres_individual.individuals.progres_sex",
        "progres_individual.individuals.progres_sexname",
        ind.progres_sex.map(Value::from),
        sex_name,
    );
    put_str(
        &mut base,
        "progres_individual.individuals.progres_primaryphonenumber",
        ind.progres_primaryphonenumber.as_deref(),
    );
    put_str(
        &mut base,
        "progres_individual.progres_registrationgroupidname",
        ind.progres_registrationgroupidname.as_deref(),
    );
    let levels = [
        &ind.progres_coalocationlevel1,
        &ind.progres_coalocationlevel2,
        &ind.progres_coalocationlevel3,
        &ind.progres_coalocationlevel4,
        &ind.progres_coalocationlevel5,
        &ind.progres_coalocationlevel6,
    ];
    for (i, v) in levels.iter().enumerate() {
        put_str(
            &mut base,
            &format!(
                "progres_individual.individuals.progres_coalocationlevel{}",
                i + 1
            ),
            v.as_deref(),
        );
    }
    put_str(&mut base, "systemuser.title", su.title.as_deref());
    put_str(
        &mut base,
        "systemuser.su.mobilephone",
        su.mobilephone.as_deref(),
    );
    put_str(
        &mut base,
        "systemuser.su.internalemailaddress",
        su.internalemailaddress.as_deref(),
    );
    let langs: Vec<Option<&String>> = if iv.languages.is_empty() {
        vec![None]
    } else {
        iv.languages.iter().map(Some).collect()
    };
    let needs: Vec<Option<&crate::model::SpecificNeed>> = if iv.specific_needs.is_empty() {
        vec![None]
    } else {
        iv.specific_needs.iter().map(Some).collect()
    };
    let mut rows = Vec::with_capacity(langs.len() * needs.len());
    for l in &langs {
        for n in &needs {
            let mut row = base.clone();
            put_str(
                &mut row,
                "progres_language.progres_languagecodeidname",
                l.map(String::as_str),
            );
            if let Some(n) = n {
                put_str(
                    &mut row,
                    "progres_specificneed.progres_spncategory2name",
                    n.progres_spncategory2name.as_deref(),
                );
                put_str(
                    &mut row,
                    "progres_specificneed.progres_spnsubcategory2name",
                    n.progres_spnsubcategory2name.as_deref(),
                );
                put_str(
                    &mut row,
                    "progres_specificneed.specificneeds.progres_spncategory2",
                    n.progres_spncategory2.as_deref(),
                );
                put_str(
                    &mut row,
                    "progres_specificneed.specificneeds.progres_spnsubcategory2",
                    n.progres_spnsubcategory2.as_deref(),
                );
            }
            rows.push(row);
        }
    }
    rows
}

/// SHP-2795 row: id and status (numeric, with name when the code is known).
pub(crate) fn decision_list_row(r: &InteropReferral) -> Map<String, Value> {
    let mut m = Map::new();
    put_str(
        &mut m,
        "progres_interoperabilityreferralid",
        Some(&r.progres_interoperabilityreferralid),
    );
    put_option(
        &mut m,
        "progres_interoperabilityreferralstatus",
        "progres_interoperabilityreferralstatusname",
        Some(r.progres_interoperabilityreferralstatus.clone()),
        referral_status_name,
    );
    m
}

/// SHP-2796 row: the decision fields, then every stored SHP-2731 field.
pub(crate) fn decision_detail_row(r: &InteropReferral) -> Map<String, Value> {
    let mut m = decision_list_row(r);
    put_option(
        &mut m,
        "progres_reviewdecision",
        "progres_reviewdecisionname",
        r.progres_reviewdecision.clone(),
        review_decision_name,
    );
    put_str(
        &mut m,
        "progres_interoperabiltyreferralrejectionreasonname",
        r.progres_interoperabiltyreferralrejectionreasonname
            .as_deref(),
    );
    put_str(
        &mut m,
        "progres_interoperabilityreferralrejectionomment",
        r.progres_interoperabilityreferralrejectionomment.as_deref(),
    );
    put_str(&mut m, "progres_comments", r.progres_comments.as_deref());
    for (k, v) in &r.fields {
        if m.contains_key(k) {
            continue;
        }
        match k.as_str() {
            "progres_pocsex" => {
                put_option(&mut m, k, "progres_pocsexname", Some(v.clone()), sex_name)
            }
            "progres_requestedservice" | "progres_spneedcategory" => {
                let name = v.as_str().and_then(|g| {
                    if k == "progres_requestedservice" {
                        lookup_name(SERVICES, g)
                    } else {
                        lookup_name(SPECIFIC_NEED_CATEGORIES, g)
                    }
                });
                put_val(&mut m, k, Some(v.clone()));
                if let (Some(n), false) = (name, v.is_null()) {
                    m.insert(format!("{k}name"), Value::String(n.into()));
                }
            }
            _ => put_val(&mut m, k, Some(v.clone())),
        }
    }
    m
}

/// Where a page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PageStart {
    /// After the row a paging cookie names (`None`: at the first row). Keyset paging: rows
    /// that leave the result between two pages do not shift the later ones.
    After(Option<RowKey>),
    /// After this many rows of the result (offset paging, `paging_mode: page_number`).
    Skip(usize),
}

/// Collects the rows of one page, building only those it keeps.
struct Collector {
    after: Option<RowKey>,
    skip: usize,
    limit: usize,
    out: Vec<KeyedRow>,
    more: bool,
}

impl Collector {
    /// Offers the row at `k`; false once the page is full (and a further row exists).
    fn offer(&mut self, k: RowKey, make: impl FnOnce() -> Map<String, Value>) -> bool {
        if self.after.is_some_and(|a| k <= a) {
            return true;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return true;
        }
        if self.out.len() == self.limit {
            self.more = true;
            return false;
        }
        self.out.push((k, make()));
        true
    }
}

/// One page of at most `limit` rows from `start`; the bool says whether more follow.
pub(crate) fn page(
    store: &Store,
    kind: RetrieveKind,
    record_ids: &[String],
    drop_transferred: bool,
    start: PageStart,
    limit: usize,
) -> (Vec<KeyedRow>, bool) {
    let (after, skip) = match start {
        PageStart::After(a) => (a, 0),
        PageStart::Skip(n) => (None, n),
    };
    let first = after.map_or(0, |a| a.0);
    let mut c = Collector {
        after,
        skip,
        limit,
        out: Vec::new(),
        more: false,
    };
    match kind {
        RetrieveKind::Pending => {
            for (i, iv) in store.interventions.iter().enumerate().skip(first) {
                if is_pending(iv, drop_transferred) && !c.offer((i, 0), || pending_row(iv)) {
                    break;
                }
            }
        }
        RetrieveKind::DecisionList => {
            for (i, r) in store.referrals.iter().enumerate().skip(first) {
                if !c.offer((i, 0), || decision_list_row(r)) {
                    break;
                }
            }
        }
        RetrieveKind::Details => {
            'outer: for (pos, id) in record_ids.iter().enumerate().skip(first) {
                if let Some(i) = store.intervention_index(id) {
                    for (j, row) in detail_rows(&store.interventions[i]).into_iter().enumerate() {
                        if !c.offer((pos, j), move || row) {
                            break 'outer;
                        }
                    }
                }
            }
        }
        RetrieveKind::DecisionDetails => {
            for (pos, id) in record_ids.iter().enumerate().skip(first) {
                if let Some(i) = store.referral_index(id) {
                    if !c.offer((pos, 0), || decision_detail_row(&store.referrals[i])) {
                        break;
                    }
                }
            }
        }
    }
    (c.out, c.more)
}

fn pct_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02x}"));
        }
    }
    o
}

fn pct_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A paging cookie as read back: the page it asks for and the last row already served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cookie {
    /// The page the cookie leads to (the `PageNumber` of the answer that issued it + 1).
    pub page: i64,
    /// The last row of the answer that issued it.
    pub last: RowKey,
}

/// Builds the opaque paging cookie for the page after `last`, issued by an answer whose
/// `PageNumber` is `page_number`.
pub(crate) fn make_cookie(shp: &str, page_number: i64, last: RowKey) -> String {
    pct_encode(&format!(
        "<cookie page=\"{}\" shp=\"{}\"><row last=\"{}.{}\" /></cookie>",
        page_number.saturating_add(1),
        shp,
        last.0,
        last.1
    ))
}

/// Reads a cookie made by [`make_cookie`]; None when it is not one of ours or not for `shp`.
pub(crate) fn read_cookie(shp: &str, cookie: &str) -> Option<Cookie> {
    let text = pct_decode(cookie)?;
    let shp_attr = format!(" shp=\"{shp}\"");
    let rest = text.strip_prefix("<cookie page=\"")?;
    if !text.contains(&shp_attr) {
        return None;
    }
    let page = rest.split('"').next()?.parse().ok()?;
    let rest = text.split("<row last=\"").nth(1)?;
    let last = rest.split('"').next()?;
    let (a, b) = last.split_once('.')?;
    Some(Cookie {
        page,
        last: (a.parse().ok()?, b.parse().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip_and_refuse_strangers() {
        let c = make_cookie("SHP-2747", 3, (12, 4));
        assert!(!c.contains('<') && !c.contains('"'), "opaque: {c}");
        assert_eq!(
            read_cookie("SHP-2747", &c),
            Some(Cookie {
                page: 4,
                last: (12, 4)
            })
        );
        assert_eq!(read_cookie("SHP-2795", &c), None, "another SHP's cookie");
        assert_eq!(read_cookie("SHP-2747", "garbage"), None);
        assert_eq!(read_cookie("SHP-2747", "%zz"), None);
        let no_page =
            pct_encode("<cookie page=\"x\" shp=\"SHP-2747\"><row last=\"1.0\" /></cookie>");
        assert_eq!(read_cookie("SHP-2747", &no_page), None);
    }

    fn pending_store(n: usize) -> Store {
        let mut store = Store::default();
        let doc = crate::scenario::generate_seed(&crate::scenario::ScenarioOptions {
            count: n,
            ..Default::default()
        });
        store.merge_seed(doc).expect("generated seed");
        store
    }

    #[test]
    fn keyset_and_offset_pages_cover_the_result_once() {
        let store = pending_store(7);
        let (all, more) = page(
            &store,
            RetrieveKind::Pending,
            &[],
            true,
            PageStart::After(None),
            100,
        );
        assert_eq!((all.len(), more), (7, false));
        let keys: Vec<RowKey> = all.iter().map(|(k, _)| *k).collect();
        let mut keyset = Vec::new();
        let mut after = None;
        loop {
            let (rows, more) = page(
                &store,
                RetrieveKind::Pending,
                &[],
                true,
                PageStart::After(after),
                3,
            );
            after = rows.last().map(|(k, _)| *k);
            keyset.extend(rows.into_iter().map(|(k, _)| k));
            if !more {
                break;
            }
        }
        assert_eq!(keyset, keys);
        let mut offset = Vec::new();
        for n in 0.. {
            let (rows, more) = page(
                &store,
                RetrieveKind::Pending,
                &[],
                true,
                PageStart::Skip(n * 3),
                3,
            );
            offset.extend(rows.into_iter().map(|(k, _)| k));
            if !more {
                break;
            }
        }
        assert_eq!(offset, keys);
        let (past, more) = page(
            &store,
            RetrieveKind::Pending,
            &[],
            true,
            PageStart::Skip(7),
            3,
        );
        assert!(past.is_empty() && !more);
        // A full last page says no more rows follow.
        let (last, more) = page(
            &store,
            RetrieveKind::Pending,
            &[],
            true,
            PageStart::Skip(4),
            3,
        );
        assert_eq!((last.len(), more), (3, false));
    }
}
