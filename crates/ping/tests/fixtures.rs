//! The shared PING fixtures read through the client's row types: the SHP-2747 sample (which
//! lacks `progres_lpinterventionid`) must parse into rows and pending referrals that report
//! the missing LP id, without any personal value in `Debug`.

use std::path::PathBuf;

use pp_ping::rows::keys_2747;
use pp_ping::wire::parse_page;
use pp_ping::{FromRow, PendingReferral, RowError};

fn fixture(name: &str) -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/ping")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} unreadable: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

#[test]
fn pending_referrals_fixture_parses_into_rows_and_referrals() {
    let body = fixture("shp-2747-pending-referrals.json");
    let page = parse_page(body, 1).expect("a valid retrieval page");
    assert_eq!(page.rows.len(), 3);
    assert!(page.next.is_none(), "IsMoreRecordsAvailable is false");
    assert_eq!(
        page.transaction_id.as_deref(),
        Some("da6893b2-c2b4-f011-bbd2-6045bd8c71b1")
    );
    let first = &page.rows[0];
    assert_eq!(first.get_i64("progres_deliverytype"), Some(125080004));
    assert_eq!(
        first.get_str("progres_lpintervention.int.progres_interventionnumber"),
        Some("803-23-PRTITV-1000642")
    );
    let row_debug = format!("{first:?}");
    assert!(row_debug.contains("progres_individual.indiv.progres_givenname"));
    assert!(!row_debug.contains("Lindah"));

    let referrals: Vec<PendingReferral> = page
        .rows
        .iter()
        .map(|r| PendingReferral::from_row(r).expect("identifier fields are well formed"))
        .collect();
    let numbers: Vec<_> = referrals
        .iter()
        .map(|r| r.intervention_number.as_deref().unwrap())
        .collect();
    assert_eq!(
        numbers,
        [
            "803-23-PRTITV-1000642",
            "803-23-PRTITV-1000387",
            "803-22-PRTITV-0000005"
        ]
    );
    for r in &referrals {
        // The sample carries progres_intervention, not progres_lpinterventionid.
        assert_eq!(r.lp_intervention_id, None);
        assert!(r.intervention_id.is_some());
        assert_eq!(
            r.require_lp_intervention_id(),
            Err(RowError::MissingKeys(vec![keys_2747::LP_INTERVENTION_ID]))
        );
        assert_eq!(r.delivery_type, Some(125080004));
        assert_eq!(
            r.business_unit.as_deref(),
            Some("577ccdf6-86de-e811-80d8-001dd8b71fe3")
        );
        let d = format!("{r:?}");
        for personal in ["Lindah", "Maria", "Alejandra"] {
            assert!(!d.contains(personal));
        }
    }
    assert_eq!(
        referrals[2].status_date,
        chrono::NaiveDate::from_ymd_opt(2022, 7, 21)
    );
}
